"""Single-state leaky integrate-and-fire neuron (LIF)."""

from __future__ import annotations

from ._common import RESET_MODES, apply_reset
from ._model import NeuronModel, choice, decay, threshold


def update(current, state, p):
    v = p.beta * state.v + current
    x = v - p.threshold
    spikes = p.spike_fn(x)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    return spikes, (v,), x


MODEL = NeuronModel(
    name="lif",
    class_name="LIF",
    update=update,
    states=[("v", "membrane potential")],
    params=[
        decay("beta", 0.9, "membrane decay per step"),
        threshold("threshold", 1.0, "firing threshold"),
        choice("reset", RESET_MODES, "subtract", "reset after a spike: subtract the threshold, to zero, or none"),
    ],
    summary="Single-state leaky integrate-and-fire neuron.",
    equations="""
V[t] = beta V[t-1] + I[t]
S[t] = H(V[t] - threshold)
V[t] = V[t] - threshold S[t]   (reset "subtract"; "zero": V[t] (1 - S[t]); "none")
""",
)

LIFState = MODEL.State
LIFParams = MODEL.Params
lif_step = MODEL.step
