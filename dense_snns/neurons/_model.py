"""The declaration of a neuron model: its states, its parameters and one update function.

A model is declared once, in one module of `dense_snns.neurons`, as a `NeuronModel`::

    def update(current, state, p):
        v = p.beta * state.v + current
        x = v - p.threshold                  # the pre-spike value: spike where x > 0
        spikes = p.spike_fn(x)
        v = apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
        return spikes, (v,), x

    MODEL = NeuronModel(
        name="lif", class_name="LIF", update=update,
        states=[("v", "membrane")],
        params=[decay("beta", 0.9, "membrane decay per step"),
                threshold("threshold", 1.0, "firing threshold"),
                choice("reset", RESET_MODES, "subtract", "reset after a spike")],
        summary="Single-state leaky integrate-and-fire neuron.",
        equations="V' = beta V + I ;  S = H(V' - threshold) ;  reset V'",
    )

Everything else is derived from it: the `State` and `Params` NamedTuples, the pure step
function ``step(current, state, params) -> (spikes, new_state)``, the validation of every
parameter value, which parameters can be trained and how (`KINDS`), the Keras RNN cell
(`dense_snns.cells`), its configuration, the model registries (`dense_snns.neurons.MODELS`,
graph specs) and the reference documentation (`docs/NEURONS.md`).

The update returns ``(spikes, new_state, pre_spike)``: the pre-spike value is the quantity
the spike function is applied to (membrane minus threshold), explicitly, so that sparse
blocks select neurons on it whatever else the update computes. Non-spiking models
(``spiking=False``, the readouts' leaky integrator) return their output in place of the
spikes and None as the pre-spike value.

Shapes: `current` and every state are [batch, ..., units]; a parameter is a Python number
(or string, or callable) or a [units] tensor, broadcast along the last axis.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

__all__ = [
    "KINDS",
    "NeuronModel",
    "Param",
    "Update",
    "choice",
    "decay",
    "function",
    "positive",
    "real",
    "threshold",
]


class Update(NamedTuple):
    """What a model's update function returns for one step."""

    spikes: Any  # [batch, ..., units]: the spikes (a non-spiking model: its output)
    state: Any  # the new state, a `State` NamedTuple (or a tuple in its field order)
    pre_spike: Any  # [batch, ..., units]: the argument of the spike function; None if not spiking


class Kind(NamedTuple):
    """How the parameters of one kind are checked and, if trained, parametrised.

    A trained parameter is a per-neuron weight w with value ``to_value(w)``; its weight is
    named ``name + weight_suffix`` and initialised to ``to_weight(value)``.
    """

    description: str
    numeric: bool
    check: Optional[Callable[[float], bool]] = None
    requirement: str = ""
    weight_suffix: Optional[str] = None  # None: cannot be trained
    to_value: Optional[Callable] = None
    to_weight: Optional[Callable[[float], float]] = None


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


#: The parameter kinds. Trainable decays are sigmoid-parametrised (they stay in (0, 1)),
#: positive parameters exp-parametrised, thresholds and real parameters raw.
KINDS: Dict[str, Kind] = {
    "decay": Kind(
        "a decay factor per step",
        True,
        lambda v: 0.0 < v < 1.0,
        "must be in the open interval (0, 1)",
        "_logit",
        tf.sigmoid,
        _logit,
    ),
    "threshold": Kind("a threshold", True, math.isfinite, "must be a finite number", "", lambda w: w, lambda v: v),
    "real": Kind("a real number", True, math.isfinite, "must be a finite number", "", lambda w: w, lambda v: v),
    "positive": Kind(
        "a positive number",
        True,
        lambda v: math.isfinite(v) and v > 0.0,
        "must be a finite number > 0",
        "_log",
        tf.exp,
        math.log,
    ),
    "choice": Kind("one of a set of names", False),
    "function": Kind("a Keras activation (name or callable)", False),
}


class Param(NamedTuple):
    """One parameter of a model (build it with `decay`, `threshold`, `real`, `positive`,
    `choice` or `function`)."""

    name: str  # the constructor argument and config key
    kind: str  # a key of KINDS
    default: Any
    doc: str
    choices: Tuple[str, ...] = ()  # kind "choice"
    default_from: Optional[str] = None  # default None means: the value of this other parameter
    field: Optional[str] = None  # its field in `Params` if not `name` (kind "function")

    @property
    def params_field(self) -> str:
        return self.field or self.name

    @property
    def trainable(self) -> bool:
        return KINDS[self.kind].weight_suffix is not None

    def check(self, value, units: int):
        """The value normalised (a float, a list of `units` floats, or a string), or a
        ValueError naming the parameter. None is allowed when `default_from` is set."""
        name = self.name
        if value is None and self.default_from is not None:
            return None
        kind = KINDS[self.kind]
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(f"{name} must be one of {self.choices}, got {name}={value!r}")
            return value
        if not kind.numeric:
            return value  # a function: resolved by the Keras cell
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]  # a 0-d array is a number
        per_neuron = isinstance(value, (list, tuple, np.ndarray))
        if per_neuron:
            items = np.asarray(value).tolist() if isinstance(value, np.ndarray) else list(value)
            if isinstance(value, np.ndarray) and value.ndim != 1:
                raise ValueError(
                    f"{name} must be a number or a list of {units} per-neuron values, got shape {value.shape}"
                )
            if len(items) != units:
                raise ValueError(f"{name} has {len(items)} per-neuron values but units={units}")
        else:
            items = [value]
        checked = []
        for item in items:
            if isinstance(item, (bool, np.bool_)) or not isinstance(item, (numbers.Real, np.floating, np.integer)):
                raise ValueError(f"{name} {kind.requirement}, got {name}={value!r}")
            item = float(item)
            if not kind.check(item):
                raise ValueError(f"{name} {kind.requirement}, got {name}={value!r}")
            checked.append(item)
        return checked if per_neuron else checked[0]


def decay(name: str, default, doc: str) -> Param:
    """A decay factor per step, in (0, 1); trained through a sigmoid."""
    return Param(name, "decay", default, doc)


def threshold(name: str, default, doc: str) -> Param:
    """A threshold (finite); `trainable_threshold=True` trains every parameter of this kind."""
    return Param(name, "threshold", default, doc)


def real(name: str, default, doc: str, default_from: Optional[str] = None) -> Param:
    """A finite real number. ``default_from``: a default of None takes that parameter's value."""
    return Param(name, "real", default, doc, default_from=default_from)


def positive(name: str, default, doc: str) -> Param:
    """A number > 0; trained through exp."""
    return Param(name, "positive", default, doc)


def choice(name: str, choices: Sequence[str], default: str, doc: str) -> Param:
    """A static choice among names (e.g. the reset mode)."""
    return Param(name, "choice", default, doc, choices=tuple(choices))


def function(name: str, default, doc: str, field: Optional[str] = None) -> Param:
    """A static function (a Keras activation name or callable); `field` names it in `Params`."""
    return Param(name, "function", default, doc, field=field)


#: The fields every spiking model's `Params` has after its declared numeric and choice
#: parameters (function parameters come last).
SPIKING_FIELDS = ("stop_reset_grad", "spike_fn")


class NeuronModel:
    """A neuron model: states, parameters and the update of one step, declared once.

    Args:
        name: registry name, snake_case (``"lif"``).
        class_name: name of the Keras cell class made from it (``"LIF"``).
        update: ``update(current, state, params) -> (spikes, new_state, pre_spike)``, a pure
            function of tensors (see the module docstring).
        states: ``(name, description)`` of each state, in order.
        params: the parameters (`decay`, `threshold`, ...), in order.
        summary: one line describing the model.
        equations: the update as equations, line by line (for docstrings and docs).
        spiking: False for a model whose output is not spikes (no spike function, no reset
            gradient option).
        references: publications the model follows.

    Derived: `State` and `Params` (NamedTuples), `step` (``(spikes, new_state)``),
    `state_names`, `param_specs`, `params_from`, `block_update`.
    """

    def __init__(
        self,
        name: str,
        class_name: str,
        update: Callable,
        states: Sequence[Tuple[str, str]],
        params: Sequence[Param],
        summary: str,
        equations: str,
        spiking: bool = True,
        references: Sequence[str] = (),
    ):
        if not name.isidentifier() or name != name.lower():
            raise ValueError(f"a model name must be a snake_case identifier, got name={name!r}")
        if not class_name.isidentifier():
            raise ValueError(f"class_name must be an identifier, got class_name={class_name!r}")
        self.name = name
        self.class_name = class_name
        self.update_fn = update
        self.states = tuple((str(n), str(d)) for n, d in states)
        self.params = tuple(params)
        self.summary = summary
        self.equations = equations.strip("\n")
        self.spiking = bool(spiking)
        self.references = tuple(references)
        self._check_declaration()
        self.state_names = [n for n, _ in self.states]
        self.param_specs: Dict[str, Param] = {p.name: p for p in self.params}
        self.State = NamedTuple(f"{class_name}State", [(n, Any) for n in self.state_names])
        fields = [p.params_field for p in self.params if p.kind != "function"]
        fields += list(SPIKING_FIELDS) if self.spiking else []
        fields += [p.params_field for p in self.params if p.kind == "function"]
        self.Params = NamedTuple(f"{class_name}Params", [(f, Any) for f in fields])
        self.step = self._make_step()

    def _check_declaration(self):
        names = [n for n, _ in self.states]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"model {self.name!r}: states must be a non-empty list of distinct names, got {names}")
        seen = set()
        for p in self.params:
            if not isinstance(p, Param) or p.kind not in KINDS:
                raise ValueError(
                    f"model {self.name!r}: parameters must be Params of a kind in {sorted(KINDS)}, got {p!r}"
                )
            if p.params_field in seen or p.params_field in SPIKING_FIELDS:
                raise ValueError(f"model {self.name!r}: parameter name {p.params_field!r} is used twice or reserved")
            seen.add(p.params_field)
            if p.default_from is not None and p.default_from not in {q.name for q in self.params}:
                raise ValueError(f"model {self.name!r}: {p.name}.default_from names no parameter: {p.default_from!r}")
            if p.kind != "function" and not (p.default is None and p.default_from is not None):
                p.check(p.default, 1)  # a wrong default fails when the model is declared

    def _make_step(self) -> Callable:
        update = self.update_fn

        def step(current, state, params):
            spikes, new_state, _ = update(current, state, params)
            return spikes, self.State(*new_state)

        step.__name__ = f"{self.name}_step"
        step.__qualname__ = step.__name__
        step.__doc__ = f"One step of the {self.class_name} model: (spikes, new {self.class_name}State).\n\n" + (
            "    " + self.equations.replace("\n", "\n    ")
        )
        return step

    # -- use ---------------------------------------------------------------------------
    def update(self, current, state, params) -> Update:
        """One step: `Update` (spikes, new `State`, pre-spike value)."""
        spikes, new_state, pre_spike = self.update_fn(current, state, params)
        return Update(spikes, self.State(*new_state), pre_spike)

    def params_from(self, values: Dict[str, Any], spike_fn=None, stop_reset_grad: bool = True):
        """`Params` from parameter values by name (defaults for missing ones; a parameter
        whose value is None takes that of its `default_from`)."""
        resolved = {p.name: values.get(p.name, p.default) for p in self.params}
        for p in self.params:
            if resolved[p.name] is None and p.default_from is not None:
                resolved[p.name] = resolved[p.default_from]
        fields = {p.params_field: resolved[p.name] for p in self.params}
        if self.spiking:
            fields.update(stop_reset_grad=stop_reset_grad, spike_fn=spike_fn)
        return self.Params(**fields)

    def block_update(self, current, states: Sequence, params, recurrent_kernel=None) -> Tuple[Any, List, Any]:
        """One step of an SNN block: (spikes, new states list, pre-spike value).

        `states` lists the neuron's states, then, if `recurrent_kernel` ([units, units]) is
        given, the block's spikes of the previous step, whose product with it adds to the
        current (self-recurrence); the new states keep that layout.
        """
        n = len(self.states)
        if recurrent_kernel is not None:
            current = current + tf.matmul(states[n], recurrent_kernel)
        spikes, new_state, pre_spike = self.update(current, self.State(*states[:n]), params)
        return spikes, list(new_state) + ([spikes] if recurrent_kernel is not None else []), pre_spike

    def __repr__(self) -> str:
        return f"NeuronModel({self.name!r}, class_name={self.class_name!r})"

    # -- documentation -----------------------------------------------------------------
    def describe_params(self, indent: str = "    ") -> str:
        """One line per parameter: ``name: doc (kind). Default value.``"""
        lines = []
        for p in self.params:
            default = f"the value of `{p.default_from}`" if p.default is None and p.default_from else repr(p.default)
            kind = {
                "decay": "in (0, 1), trainable",
                "positive": "> 0, trainable",
                "choice": "one of " + ", ".join(repr(c) for c in p.choices),
            }.get(p.kind, "trainable" if p.trainable else "static")
            lines.append(f"{indent}{p.name}: {p.doc} ({kind}). Default {default}.")
        return "\n".join(lines)
