"""Non-spiking leaky integrator: the readout neuron."""

from __future__ import annotations

from ._model import NeuronModel, decay


def update(current, state, p):
    v = p.beta * state.v + current
    return v, (v,), None


MODEL = NeuronModel(
    name="leaky_integrator",
    class_name="LeakyIntegrator",
    update=update,
    states=[("v", "membrane potential, the output")],
    params=[decay("beta", 0.9, "decay per step")],
    summary="Non-spiking leaky integrator (readout): its output is its membrane.",
    equations="V[t] = beta V[t-1] + I[t] ;  output V[t]",
    spiking=False,
)

LeakyIntegratorState = MODEL.State
LeakyIntegratorParams = MODEL.Params
leaky_integrator_step = MODEL.step
