"""Neuron models as pure functions: the one place the neuron math is written.

Each public module of this package declares one model, ``MODEL = NeuronModel(...)``: its
states, its parameters (with their kind and default) and its update function (see
`dense_snns.neurons._model`). All of them are registered when the package is imported, so
adding a model is adding one module. The Keras cells (`dense_snns.cells`), the fused layers,
the sparse blocks, the graph nodes and the documentation are made from the declarations;
the C++ kernels of `dense_snns.ops` are a second implementation of the models listed in
their kernel table, tested against these functions.

Every model's step is ``step(current, state, params) -> (spikes, new_state)`` with
`current` [batch, ..., units], `state` a NamedTuple of [batch, ..., units] tensors and
`params` a NamedTuple of Python values or [units] tensors. Conventions of the spiking models:
a spike is S = H(x) for the pre-spike value x (membrane minus threshold; H(0) = 0, see
`dense_snns.surrogates`); the reset acts in the step of the spike, and with
``stop_reset_grad`` the spike in the reset term carries no gradient.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, List, Sequence, Union

import tensorflow as tf

from ._common import RESET_MODES, apply_reset, reset_spikes
from ._model import KINDS, NeuronModel, Param, Update, choice, decay, function, positive, real, threshold

#: The model of every block, layer and graph node that is not given one: the current-based
#: LIF of the main example. Its two integrations (synaptic current, then membrane) spread an
#: input spike over several steps with a gain of 1 / ((1 - alpha)(1 - beta)) = 50, so sparse
#: spike inputs through Glorot-initialised weights reach its threshold: a default model
#: fires in every layer (a single-state LIF with threshold 1 stays silent on the same data).
DEFAULT_NEURON = "cuba_lif"

#: The registered models by name (snake_case), in registration order.
MODELS: Dict[str, NeuronModel] = {}


def register(model: NeuronModel) -> NeuronModel:
    """Add `model` to `MODELS` (its name and class name must be new). Returns it."""
    if not isinstance(model, NeuronModel):
        raise TypeError(f"register takes a NeuronModel, got {type(model).__name__}")
    for other in MODELS.values():
        if other is model:
            return model
        if model.name == other.name or model.class_name == other.class_name:
            raise ValueError(
                f"a neuron model named {model.name!r} / {model.class_name!r} is already registered ({other!r})"
            )
    MODELS[model.name] = model
    return model


def get(identifier: Union[str, NeuronModel]) -> NeuronModel:
    """The registered model of a name (``"lif"``) or class name (``"LIF"``), or the model itself."""
    if isinstance(identifier, NeuronModel):
        return identifier
    if isinstance(identifier, str):
        model = MODELS.get(identifier)
        if model is not None:
            return model
        for model in MODELS.values():
            if model.class_name == identifier:
                return model
    raise ValueError(f"Unknown neuron model {identifier!r}; expected one of {names()}")


def names() -> List[str]:
    """Every name a model can be referred to by: the snake_case names and the class names."""
    return sorted([m.name for m in MODELS.values()] + [m.class_name for m in MODELS.values()])


def package_models() -> List[NeuronModel]:
    """The models declared in this package (not those registered from elsewhere)."""
    return [m for m in MODELS.values() if m.update_fn.__module__.startswith(__name__ + ".")]


def reference_markdown(models: Sequence[NeuronModel] = None) -> str:
    """The reference of `models` (default: `package_models()`); docs/NEURONS.md is this
    text, written by ``python -m dense_snns.neurons``."""
    models = package_models() if models is None else list(models)
    lines = [
        "# Neuron models",
        "",
        "Generated from the declarations in `dense_snns/neurons/` by `python -m dense_snns.neurons`;",
        "a test checks that this file is up to date. Every model is usable by name (or class name)",
        "in every cell and layer (`neuron=...`) and in graph specs. The default is",
        f"`{DEFAULT_NEURON}`. Spiking models also take `stop_reset_grad` and `spike_func`; every",
        "model takes `trainable_params` (which parameters are learned as per-neuron weights).",
        "",
        "| name | cell class | states | parameters (default) |",
        "|---|---|---|---|",
    ]
    for model in models:
        params = ", ".join(f"{p.name} ({p.default!r})" for p in model.params)
        lines.append(f"| `{model.name}` | `{model.class_name}` | {', '.join(model.state_names)} | {params} |")
    for model in models:
        lines += [
            "",
            f"## `{model.name}`: {model.class_name}",
            "",
            model.summary,
            "",
            "```",
            model.equations,
            "```",
            "",
        ]
        lines += ["States: " + "; ".join(f"`{name}`: {doc}" for name, doc in model.states) + ".", ""]
        lines += ["Parameters:", "", model.describe_params(indent="- ")]
        if model.references:
            lines += ["", "References: " + "; ".join(model.references) + "."]
    return "\n".join(lines) + "\n"


def _register_package_models() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            register(importlib.import_module(f"{__name__}.{info.name}").MODEL)


_register_package_models()

# The step functions, states and parameters of the built-in models under their own names.
from .alif import ALIFParams, ALIFState, alif_step  # noqa: E402
from .cuba_lif import CubaLIFParams, CubaLIFState, cuba_lif_step  # noqa: E402
from .leaky_integrator import LeakyIntegratorParams, LeakyIntegratorState, leaky_integrator_step  # noqa: E402
from .lif import LIFParams, LIFState, lif_step  # noqa: E402
from .lif_neuron import LIFNeuronParams, LIFNeuronState, lif_neuron_step  # noqa: E402
from .resonate_and_fire import ResonateAndFireParams, ResonateAndFireState, resonate_and_fire_step  # noqa: E402


def block_step(step_fn, state_type, current, states: Sequence, params, recurrent_kernel=None):
    """One step of an SNN block given a step function (see `NeuronModel.block_update`, which
    also returns the pre-spike value): (spikes, new states list).

    `states`: the neuron's states, then (if `recurrent_kernel` [units, units] is given) the
    block's spikes of the previous step, which add S[t-1] R to the current.
    """
    if recurrent_kernel is None:
        spikes, new_state = step_fn(current, state_type(*states), params)
        return spikes, list(new_state)
    current = current + tf.matmul(states[-1], recurrent_kernel)
    spikes, new_state = step_fn(current, state_type(*states[:-1]), params)
    return spikes, list(new_state) + [spikes]


__all__ = [
    "ALIFParams",
    "ALIFState",
    "CubaLIFParams",
    "CubaLIFState",
    "DEFAULT_NEURON",
    "KINDS",
    "LIFNeuronParams",
    "LIFNeuronState",
    "LIFParams",
    "LIFState",
    "LeakyIntegratorParams",
    "LeakyIntegratorState",
    "MODELS",
    "NeuronModel",
    "Param",
    "RESET_MODES",
    "ResonateAndFireParams",
    "ResonateAndFireState",
    "Update",
    "alif_step",
    "apply_reset",
    "block_step",
    "choice",
    "cuba_lif_step",
    "decay",
    "function",
    "get",
    "leaky_integrator_step",
    "lif_neuron_step",
    "lif_step",
    "names",
    "package_models",
    "positive",
    "real",
    "reference_markdown",
    "register",
    "reset_spikes",
    "resonate_and_fire_step",
    "threshold",
]
