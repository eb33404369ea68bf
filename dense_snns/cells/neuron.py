"""Neuron cells: one Keras RNN cell class per neuron model, made from its declaration.

`cell_class(model)` turns a `dense_snns.neurons.NeuronModel` into a subclass of `NeuronCell`
whose constructor takes the model's parameters (checked by their kind), whose trainable
parameters become per-neuron weights, and whose `get_config` holds every argument. The cell
owns weights, configuration and shapes; the step is the model's pure function.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Sequence, Union

import tensorflow as tf

from .. import neurons, surrogates
from ..compat import keras, register
from ..neurons import KINDS, NeuronModel
from ..validation import as_numeric_tensor, check_features, check_rank, check_units

__all__ = [
    "DEFAULT_NEURON",
    "NEURON_MODELS",
    "NeuronCell",
    "cell_class",
    "get_neuron",
    "register_neuron_model",
    "serialize_neuron",
    "zero_states",
]

DEFAULT_NEURON = neurons.DEFAULT_NEURON


def zero_states(cell, inputs=None, batch_size=None, dtype=None) -> List[tf.Tensor]:
    """Zero initial states of `cell`, one [batch, size] tensor per entry of its state_size.

    Takes both Keras signatures (Keras 2 passes inputs/batch_size/dtype, Keras 3 only
    batch_size). States are in the cell's compute dtype, what its step computes in: Keras 2
    passes the dtype of the RNN's inputs (integer or bool spikes; float32 for a cell of a
    mixed-precision policy inside an RNN of the default one), which is not used.
    """
    del dtype  # see the docstring
    if batch_size is None:
        batch_size = tf.shape(inputs)[0]
    return [tf.zeros([batch_size, size], dtype=cell.compute_dtype) for size in cell.state_size]


def _constructor_parameters(model: NeuronModel) -> List[inspect.Parameter]:
    """The cell's constructor arguments after `units`, in positional order: the numeric and
    choice parameters, the spike options, the function parameters, then what is trained."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    values = [inspect.Parameter(p.name, keyword, default=p.default) for p in model.params if p.kind != "function"]
    if model.spiking:
        values += [
            inspect.Parameter("stop_reset_grad", keyword, default=True),
            inspect.Parameter("spike_func", keyword, default=None),
        ]
    values += [inspect.Parameter(p.name, keyword, default=p.default) for p in model.params if p.kind == "function"]
    values += [
        inspect.Parameter("trainable_decays", keyword, default=False),
        inspect.Parameter("trainable_threshold", keyword, default=False),
        inspect.Parameter("trainable_params", keyword, default=None),
    ]
    return values


class NeuronCell(keras.layers.Layer):
    """Base of the neuron cells: input is the synaptic current, output the spikes.

    A subclass is made for each neuron model by `cell_class` (`dense_snns.LIF`, ...); its
    class attribute `model` is the `dense_snns.neurons.NeuronModel`. Arguments: `units`,
    then the model's parameters, and

    - ``stop_reset_grad``, ``spike_func`` (spiking models): see `dense_snns.neurons`;
    - ``trainable_params``: names of parameters learned as per-neuron weights (decays through
      a sigmoid, positive parameters through exp, others raw); ``trainable_decays=True`` adds
      every decay, ``trainable_threshold=True`` every threshold.

    A parameter is a number or a per-neuron list of `units` numbers (NumPy values too).

    Input: current [batch, units]. Output: spikes [batch, units] (0/1 in the compute dtype;
    the output of a non-spiking model). State: one [batch, units] tensor per model state.
    """

    model: Optional[NeuronModel] = None

    def __init__(self, units: int, *args, **kwargs):
        model = self.model
        if model is None:
            raise TypeError("NeuronCell is a base class: use a model's cell (dense_snns.LIF, ...) or get_neuron(name)")
        signature = inspect.Signature(_constructor_parameters(model))
        own = {name: kwargs.pop(name) for name in list(kwargs) if name in signature.parameters}
        try:
            bound = signature.bind(*args, **own)
        except TypeError as err:
            raise TypeError(f"{model.class_name}: {err}") from None
        bound.apply_defaults()
        arguments = bound.arguments
        super().__init__(**kwargs)
        self.units = check_units(units)
        for spec in model.params:
            value = arguments[spec.name]
            if spec.kind == "function":
                value = keras.activations.get(value if value is not None else "linear")
            else:
                value = spec.check(value, self.units)
            setattr(self, spec.name, value)
        if model.spiking:
            self.spike_func = surrogates.get(arguments["spike_func"])
            self.stop_reset_grad = bool(arguments["stop_reset_grad"])
        self.trainable_params = self._trainable_names(
            arguments["trainable_params"], arguments["trainable_decays"], arguments["trainable_threshold"]
        )
        self._param_weights: Dict[str, Any] = {}

    def _trainable_names(self, names, all_decays, all_thresholds) -> List[str]:
        if names is None:
            names = []
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise ValueError(f"trainable_params must be a list of parameter names, got trainable_params={names!r}")
        specs = self.model.param_specs
        for name in names:
            if name not in specs:
                raise ValueError(
                    f"trainable_params: {self.model.class_name} has no parameter {name!r}; it has {list(specs)}"
                )
            if not specs[name].trainable:
                raise ValueError(
                    f"trainable_params: {name!r} cannot be trained (it is {KINDS[specs[name].kind].description})"
                )
        chosen = set(names)
        chosen |= {p.name for p in self.model.params if all_decays and p.kind == "decay"}
        chosen |= {p.name for p in self.model.params if all_thresholds and p.kind == "threshold"}
        return [p.name for p in self.model.params if p.name in chosen]

    # -- Keras RNN-cell contract ------------------------------------------------------
    @property
    def state_type(self):
        """The model's `State` NamedTuple."""
        return self.model.State

    @property
    def state_size(self) -> List[int]:
        return [self.units] * len(self.model.states)

    @property
    def state_names(self) -> List[str]:
        """Names of the states, in `state_size` order."""
        return list(self.model.state_names)

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zero states, a list of [batch_size, units] tensors."""
        return zero_states(self, inputs, batch_size, dtype)

    def build(self, input_shape):
        check_features(input_shape, self.units, "inputs", what=f"{type(self).__name__} units")
        for spec in self.model.params:
            if spec.name in self.trainable_params and spec.name not in self._param_weights:
                kind = KINDS[spec.kind]
                value = self._static_value(spec.name)
                init = [kind.to_weight(v) for v in value] if isinstance(value, list) else kind.to_weight(value)
                self._param_weights[spec.name] = self.add_weight(
                    name=spec.name + kind.weight_suffix,
                    shape=(self.units,),
                    initializer=keras.initializers.Constant(init),
                    trainable=True,
                )
        self.built = True

    def _static_value(self, name: str):
        """The configured value of parameter `name` (that of its `default_from` if None)."""
        value = getattr(self, name)
        spec = self.model.param_specs[name]
        if value is None and spec.default_from is not None:
            return self._static_value(spec.default_from)
        return value

    def param_weight(self, name: str):
        """The weight of trained parameter `name` (before its parametrisation), or None."""
        return self._param_weights.get(name)

    def param(self, name: str, dtype=None):
        """Current value of a parameter: a Python value, or a [units] tensor of `dtype`
        (default: the compute dtype) if per-neuron or trained."""
        dtype = dtype or self.compute_dtype
        spec = self.model.param_specs[name]
        weight = self._param_weights.get(name)
        if weight is not None:
            return KINDS[spec.kind].to_value(tf.cast(weight, dtype))
        value = getattr(self, name)
        if value is None and spec.default_from is not None:
            return self.param(spec.default_from, dtype)
        if isinstance(value, list):
            return tf.constant(value, dtype=dtype)
        return value

    def params(self, dtype=None):
        """The model's `Params` NamedTuple, tensors cast to `dtype`."""
        values = {spec.name: self.param(spec.name, dtype) for spec in self.model.params}
        if not self.model.spiking:
            return self.model.params_from(values)
        return self.model.params_from(values, self.spike_func, self.stop_reset_grad)

    def step(self, current: tf.Tensor, states: Sequence[tf.Tensor]):
        """(spikes, new_states list) for current [batch, units] and a list of states."""
        if not self.built:
            self.build(current.shape)
        spikes, new_state = self.model.step(current, self.model.State(*states), self.params(current.dtype))
        return spikes, list(new_state)

    def call(self, inputs, states, training=None):
        current = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_rank(current, 2, "inputs", "[batch, units]")
        check_features(current.shape, self.units, "inputs", what=f"{type(self).__name__} units")
        return self.step(current, tf.nest.flatten(states))

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        for spec in self.model.params:
            value = getattr(self, spec.name)
            config[spec.name] = keras.activations.serialize(value) if spec.kind == "function" else value
        if self.model.spiking:
            config.update(spike_func=self.spike_func.get_config(), stop_reset_grad=self.stop_reset_grad)
        config["trainable_params"] = list(self.trainable_params)
        return config


def _cell_docstring(model: NeuronModel) -> str:
    spike_args = (
        "    stop_reset_grad: no gradient through the spike in the reset term. Default True.\n"
        "    spike_func: the surrogate spike function: a name of `dense_snns.surrogates`, its config\n"
        '        ``{"name", "scale"}`` or a `Surrogate`. Default "superspike" (scale 10).\n'
        if model.spiking
        else ""
    )
    trainable = [p.name for p in model.params if p.trainable]
    states = ", ".join(f"{name} ({doc})" for name, doc in model.states)
    references = "".join(f"\n    {r}" for r in model.references)
    return (
        f"{model.summary}\n\n"
        + "    "
        + model.equations.replace("\n", "\n    ")
        + "\n\nArgs:\n    units: number of neurons (> 0).\n"
        + model.describe_params()
        + "\n"
        + spike_args
        + f"    trainable_params: parameters learned as per-neuron weights, of {trainable}. Default none.\n"
        + "    trainable_decays: learn every decay. trainable_threshold: learn every threshold.\n\n"
        + f"Input: current [batch, units]. Output: {'spikes' if model.spiking else 'the membrane'} [batch, units]. "
        + f"States: {states}.\n"
        + f"Declared in `dense_snns.neurons` as {model.name!r}."
        + (f"\n\nReferences:{references}" if references else "")
    )


_CELL_CLASSES: Dict[str, type] = {}


def cell_class(model: Union[str, NeuronModel]) -> type:
    """The Keras cell class of a neuron model (made once per model, Keras-serialisable as
    ``dense_snns>{class_name}``)."""
    model = neurons.get(model)
    cls = _CELL_CLASSES.get(model.name)
    if cls is None:
        namespace = {
            "model": model,
            "step_fn": staticmethod(model.step),
            "__doc__": _cell_docstring(model),
            "__module__": "dense_snns.cells",
            "__qualname__": model.class_name,
        }
        cls = register()(type(model.class_name, (NeuronCell,), namespace))
        parameters = [inspect.Parameter("units", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        parameters += _constructor_parameters(model) + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
        cls.__signature__ = inspect.Signature(parameters)
        _CELL_CLASSES[model.name] = cls
    return cls


#: Neuron cell classes by model name and by class name (``"lif"`` and ``"LIF"``).
NEURON_MODELS: Dict[str, type] = {}


def register_neuron_model(model: NeuronModel) -> type:
    """Register a model declared outside `dense_snns.neurons` everywhere (cells, layers, sparse
    blocks, graph specs); returns its cell class."""
    neurons.register(model)
    cls = cell_class(model)
    NEURON_MODELS[model.name] = NEURON_MODELS[model.class_name] = cls
    return cls


for _model in neurons.MODELS.values():
    register_neuron_model(_model)


def get_neuron(identifier: Union[None, str, dict, NeuronModel, NeuronCell], units: int, dtype=None) -> NeuronCell:
    """A neuron cell from a model name, a `NeuronModel`, a ``{"class_name", "config"}`` dict or an
    instance (whose units must match).

    None gives `DEFAULT_NEURON` with its defaults. Names: those of `dense_snns.neurons.names()`
    (``"lif"``, ``"alif"``, ``"cuba_lif"``, ``"lif_neuron"`` (the two-state model of the
    original design), ``"resonate_and_fire"``, ... or their class names).
    """
    if identifier is None:
        identifier = DEFAULT_NEURON
    if isinstance(identifier, NeuronCell):
        if identifier.units != units:
            raise ValueError(f"neuron has units={identifier.units} but the block has units={units}; they must match")
        return identifier
    if isinstance(identifier, (str, NeuronModel)):
        try:
            model = neurons.get(identifier)
        except ValueError:
            raise ValueError(f"Unknown neuron model neuron={identifier!r}; expected one of {neurons.names()}") from None
        return cell_class(model)(units, dtype=dtype)
    if isinstance(identifier, dict) and "class_name" in identifier:
        try:
            model = neurons.get(identifier["class_name"])
        except ValueError:
            raise ValueError(
                f"Unknown neuron model class_name={identifier['class_name']!r}; expected one of {neurons.names()}"
            ) from None
        config = dict(identifier.get("config", {}))
        config.setdefault("units", units)
        if dtype is not None:
            config["dtype"] = dtype
        return get_neuron(cell_class(model).from_config(config), units)
    raise ValueError(f"neuron must be a model name, a config dict or a NeuronCell, got {identifier!r}")


def serialize_neuron(neuron: NeuronCell) -> dict:
    """``{"class_name", "config"}`` of a neuron cell, as `get_neuron` takes it."""
    return {"class_name": type(neuron).__name__, "config": neuron.get_config()}
