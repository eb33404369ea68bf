"""Current-based LIF neuron: a decaying synaptic current feeds the membrane."""

from __future__ import annotations

from ._common import RESET_MODES, apply_reset
from ._model import NeuronModel, choice, decay, threshold


def update(current, state, p):
    i = p.alpha * state.i + current
    v = p.beta * state.v + i
    x = v - p.threshold
    spikes = p.spike_fn(x)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    return spikes, (i, v), x


MODEL = NeuronModel(
    name="cuba_lif",
    class_name="CubaLIF",
    update=update,
    states=[("i", "synaptic current"), ("v", "membrane potential")],
    params=[
        decay("alpha", 0.8, "synaptic current decay per step"),
        decay("beta", 0.9, "membrane decay per step"),
        threshold("threshold", 1.0, "firing threshold"),
        choice("reset", RESET_MODES, "subtract", "reset after a spike: subtract the threshold, to zero, or none"),
    ],
    summary="Current-based leaky integrate-and-fire neuron.",
    equations="""
i[t] = alpha i[t-1] + I[t]
V[t] = beta V[t-1] + i[t]
S[t] = H(V[t] - threshold)
V[t] = V[t] - threshold S[t]   (reset "subtract"; "zero", "none")
""",
)

CubaLIFState = MODEL.State
CubaLIFParams = MODEL.Params
cuba_lif_step = MODEL.step
