"""The two-state LIF neuron of the original design: a membrane U and a slow state V that
acts as a dynamic threshold."""

from __future__ import annotations

from ._common import reset_spikes
from ._model import NeuronModel, decay, function, real, threshold


def update(current, state, p):
    f_v = state.v if p.state2_fn is None else p.state2_fn(state.v)
    u = p.alpha * state.u + (1.0 - p.alpha) * (current + f_v)
    v = p.beta * state.v + (1.0 - p.beta) * p.gamma * state.u
    x = u - v - p.u_thresh
    spikes = p.spike_fn(x)
    u = u - p.reset_val * reset_spikes(spikes, p.stop_reset_grad)
    return spikes, (u, v), x


MODEL = NeuronModel(
    name="lif_neuron",
    class_name="LIFNeuron",
    update=update,
    states=[("u", "membrane potential U"), ("v", "slow second state V, a dynamic threshold")],
    params=[
        decay("alpha", 0.9, "decay of U per step"),
        decay("beta", 0.9, "decay of V per step"),
        real("gamma", 0.9, "gain from U into V"),
        threshold("u_thresh", 0.5, "threshold offset: a neuron spikes when U - V exceeds it (0: H(U - V))"),
        real("reset_val", None, "subtracted from U at each spike", default_from="u_thresh"),
        function("state2_func", None, "f applied to V in the U update (None: identity)", field="state2_fn"),
    ],
    summary="Two-state LIF neuron: membrane U and a slow state V acting as a dynamic threshold.",
    equations="""
U[t] = alpha U[t-1] + (1 - alpha) (I[t] + f(V[t-1]))
V[t] = beta V[t-1] + (1 - beta) gamma U[t-1]
S[t] = H(U[t] - V[t] - u_thresh)
U[t] = U[t] - reset_val S[t]
""",
)

LIFNeuronState = MODEL.State
LIFNeuronParams = MODEL.Params
lif_neuron_step = MODEL.step
