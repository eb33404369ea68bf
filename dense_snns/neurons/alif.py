"""Adaptive-threshold LIF neuron (ALIF) of LSNNs and e-prop."""

from __future__ import annotations

from ._common import RESET_MODES, apply_reset
from ._model import NeuronModel, choice, decay, real, threshold


def update(current, state, p):
    v = p.beta * state.v + current
    x = v - (p.threshold + p.adaptation * state.a)
    spikes = p.spike_fn(x)
    v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    a = p.rho * state.a + (1.0 - p.rho) * spikes
    return spikes, (v, a), x


MODEL = NeuronModel(
    name="alif",
    class_name="ALIF",
    update=update,
    states=[("v", "membrane potential"), ("a", "threshold adaptation")],
    params=[
        decay("beta", 0.9, "membrane decay per step"),
        decay("rho", 0.99, "adaptation decay per step"),
        threshold("threshold", 1.0, "baseline threshold"),
        real("adaptation", 1.8, "threshold increase per unit of adaptation (beta in the LSNN paper)"),
        choice(
            "reset", RESET_MODES, "subtract", "reset after a spike: subtract the baseline threshold, to zero, or none"
        ),
    ],
    summary="Adaptive-threshold leaky integrate-and-fire neuron.",
    equations="""
V[t] = beta V[t-1] + I[t]
S[t] = H(V[t] - (threshold + adaptation a[t-1]))
V[t] = V[t] - threshold S[t]   (reset by the baseline threshold; "zero", "none")
a[t] = rho a[t-1] + (1 - rho) S[t]
""",
    references=[
        "Bellec et al. 2018, Long short-term memory and learning-to-learn in networks of spiking neurons",
        "Bellec et al. 2020, A solution to the learning dilemma for recurrent networks of spiking neurons",
    ],
)

ALIFState = MODEL.State
ALIFParams = MODEL.Params
alif_step = MODEL.step
