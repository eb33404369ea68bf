"""Keras RNN cells: neuron models (current in, spikes out) and the SNN block.

Cells are thin wrappers around the pure step functions of `dense_snns.neurons`: they own
weights, configuration and shapes, never neuron math. Each cell follows the Keras RNN-cell
contract (`state_size`, `output_size`, `get_initial_state`, `call(inputs, states)`), so it
runs inside `keras.layers.RNN`, alone or stacked, under Keras 2 and Keras 3.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Union

import tensorflow as tf

from . import neurons, surrogates
from ._compat import keras, register
from .validation import as_numeric_tensor, check_features, check_rank, check_units


def _check_open_unit_interval(name: str, value, units: int):
    """Validate a decay: a number or a per-neuron sequence, every value in (0, 1)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and len(values) != units:
        raise ValueError(f"{name} has {len(values)} per-neuron values but units={units}")
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0.0 < item < 1.0:
            raise ValueError(f"{name} must be in the open interval (0, 1), got {name}={value!r}")
    return list(map(float, value)) if isinstance(value, (list, tuple)) else float(value)


def _check_real(name: str, value, units: int):
    values = value if isinstance(value, (list, tuple)) else [value]
    if isinstance(value, (list, tuple)) and len(values) != units:
        raise ValueError(f"{name} has {len(values)} per-neuron values but units={units}")
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise ValueError(f"{name} must be a finite number, got {name}={value!r}")
    return list(map(float, value)) if isinstance(value, (list, tuple)) else float(value)


def _check_reset(reset: str) -> str:
    if reset not in neurons.RESET_MODES:
        raise ValueError(f"reset must be one of {neurons.RESET_MODES}, got reset={reset!r}")
    return reset


def zero_states(cell, inputs=None, batch_size=None, dtype=None) -> List[tf.Tensor]:
    """Zero initial states of `cell`, one [batch, size] tensor per entry of its state_size.

    Takes both Keras signatures (Keras 2 passes inputs/batch_size/dtype, Keras 3 only
    batch_size). States are always floating: Keras 2 passes the dtype of integer or bool
    spike inputs, which is replaced by the cell's compute dtype.
    """
    if batch_size is None:
        batch_size = tf.shape(inputs)[0]
    if dtype is None or not tf.as_dtype(dtype).is_floating:
        dtype = cell.compute_dtype
    return [tf.zeros([batch_size, size], dtype=dtype) for size in cell.state_size]


def _logit(p):
    return math.log(p / (1.0 - p))


class NeuronCell(keras.layers.Layer):
    """Base class of the neuron cells: input is the synaptic current, output the spikes.

    Subclasses set `state_type` (a NamedTuple of states), `step_fn` (a pure step function of
    `dense_snns.neurons`), the names of their decay and threshold parameters, and implement
    `params()`.

    Input: current [batch, units]. Output: spikes [batch, units] (0/1, compute dtype).
    State: one [batch, units] tensor per field of `state_type`.
    """

    state_type: Any = None
    step_fn: Any = None
    decay_names: Sequence[str] = ()
    threshold_names: Sequence[str] = ()

    def __init__(
        self,
        units: int,
        spike_func=None,
        stop_reset_grad: bool = True,
        trainable_decays: bool = False,
        trainable_threshold: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_units(units)
        self.spike_func = surrogates.get(spike_func)
        self.stop_reset_grad = bool(stop_reset_grad)
        self.trainable_decays = bool(trainable_decays)
        self.trainable_threshold = bool(trainable_threshold)
        self._param_weights: Dict[str, Any] = {}

    # -- Keras RNN-cell contract ------------------------------------------------------
    @property
    def state_size(self) -> List[int]:
        return [self.units] * len(self.state_type._fields)

    @property
    def state_names(self) -> List[str]:
        """Names of the states, in `state_size` order (the fields of `state_type`)."""
        return list(self.state_type._fields)

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zero states, a list of [batch_size, units] tensors."""
        return zero_states(self, inputs, batch_size, dtype)

    def build(self, input_shape):
        check_features(input_shape, self.units, "inputs", what=f"{type(self).__name__} units")
        self._build_params()
        self.built = True

    def _build_params(self):
        """Create per-neuron weights for trainable decays (sigmoid-parametrised) and thresholds."""
        if self._param_weights:
            return
        if self.trainable_decays:
            for name in self.decay_names:
                init = _logit_init(getattr(self, name), self.units)
                self._param_weights[name] = self.add_weight(
                    name=name + "_logit", shape=(self.units,), initializer=init, trainable=True
                )
        if self.trainable_threshold:
            for name in self.threshold_names:
                init = keras.initializers.Constant(getattr(self, name))
                self._param_weights[name] = self.add_weight(
                    name=name, shape=(self.units,), initializer=init, trainable=True
                )

    def param(self, name: str, dtype=None):
        """Current value of a parameter: a Python float, or a [units] tensor of `dtype`
        (default: the compute dtype) if per-neuron."""
        dtype = dtype or self.compute_dtype
        weight = self._param_weights.get(name)
        if weight is not None:
            value = tf.cast(weight, dtype)
            return tf.sigmoid(value) if name in self.decay_names else value
        value = getattr(self, name)
        if isinstance(value, list):
            return tf.constant(value, dtype=dtype)
        return value

    def params(self, dtype=None):
        """The NamedTuple of parameters that `step_fn` takes, tensors cast to `dtype`."""
        raise NotImplementedError

    def step(self, current: tf.Tensor, states: Sequence[tf.Tensor]):
        """(spikes, new_states list) for current [batch, units] and a list of states."""
        if not self.built:
            self.build(current.shape)
        spikes, new_state = type(self).step_fn(current, self.state_type(*states), self.params(current.dtype))
        return spikes, list(new_state)

    def call(self, inputs, states, training=None):
        current = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_rank(current, 2, "inputs", "[batch, units]")
        check_features(current.shape, self.units, "inputs", what=f"{type(self).__name__} units")
        states = tf.nest.flatten(states)
        return self.step(current, states)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "spike_func": self.spike_func.get_config(),
                "stop_reset_grad": self.stop_reset_grad,
                "trainable_decays": self.trainable_decays,
                "trainable_threshold": self.trainable_threshold,
            }
        )
        return config


def _logit_init(value, units):
    if isinstance(value, list):
        return keras.initializers.Constant([_logit(v) for v in value])
    return keras.initializers.Constant(_logit(value))


@register()
class LIFNeuron(NeuronCell):
    """The seed's two-state LIF neuron (membrane U and a slow state V acting as threshold).

        U[t+1] = alpha U[t] + (1 - alpha) (I[t] + f(V[t]))
        V[t+1] = beta V[t] + (1 - beta) gamma U[t]
        S[t+1] = H(U[t+1] - V[t+1] - u_thresh)
        U[t+1] = U[t+1] - reset_val S[t+1]

    Args:
        units: number of neurons (> 0).
        alpha: decay of U per step, in (0, 1) (a float or a per-neuron list). Default 0.9.
        beta: decay of V per step, in (0, 1). Default 0.9.
        gamma: gain from U into V. Default 0.9.
        u_thresh: threshold offset: a neuron spikes when U - V exceeds it. ``u_thresh=0``
            is the seed's spike condition H(U - V). Default 0.5.
        reset_val: subtracted from U at each spike; None (default) ties it to `u_thresh`.
        stop_reset_grad: no gradient through the spike in the reset term. Default True.
        spike_func: surrogate spike function (name, ``{"name", "scale"}`` or `Surrogate`).
            Default ``"superspike"`` (scale 10).
        state2_func: f, a Keras activation name or callable applied to V. Default identity.
        trainable_decays: learn per-neuron alpha and beta (kept in (0, 1) by a sigmoid).
        trainable_threshold: learn a per-neuron `u_thresh`.
    """

    state_type = neurons.LIFNeuronState
    step_fn = staticmethod(neurons.lif_neuron_step)
    decay_names = ("alpha", "beta")
    threshold_names = ("u_thresh",)

    def __init__(
        self,
        units: int,
        alpha=0.9,
        beta=0.9,
        gamma=0.9,
        u_thresh=0.5,
        reset_val=None,
        stop_reset_grad: bool = True,
        spike_func=None,
        state2_func=None,
        trainable_decays: bool = False,
        trainable_threshold: bool = False,
        **kwargs,
    ):
        super().__init__(units, spike_func, stop_reset_grad, trainable_decays, trainable_threshold, **kwargs)
        self.alpha = _check_open_unit_interval("alpha", alpha, self.units)
        self.beta = _check_open_unit_interval("beta", beta, self.units)
        self.gamma = _check_real("gamma", gamma, self.units)
        self.u_thresh = _check_real("u_thresh", u_thresh, self.units)
        self.reset_val = None if reset_val is None else _check_real("reset_val", reset_val, self.units)
        self.state2_func = keras.activations.get(state2_func if state2_func is not None else "linear")

    def params(self, dtype=None):
        u_thresh = self.param("u_thresh", dtype)
        reset_val = u_thresh if self.reset_val is None else self.param("reset_val", dtype)
        return neurons.LIFNeuronParams(
            alpha=self.param("alpha", dtype),
            beta=self.param("beta", dtype),
            gamma=self.param("gamma", dtype),
            u_thresh=u_thresh,
            reset_val=reset_val,
            stop_reset_grad=self.stop_reset_grad,
            spike_fn=self.spike_func,
            state2_fn=self.state2_func,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "beta": self.beta,
                "gamma": self.gamma,
                "u_thresh": self.u_thresh,
                "reset_val": self.reset_val,
                "state2_func": keras.activations.serialize(self.state2_func),
            }
        )
        return config


@register()
class LIF(NeuronCell):
    """Single-state leaky integrate-and-fire neuron.

        V[t+1] = beta V[t] + I[t] ;  S = H(V[t+1] - threshold) ;  reset V[t+1]

    Args:
        units: number of neurons (> 0).
        beta: membrane decay per step, in (0, 1). Default 0.9.
        threshold: firing threshold. Default 1.0.
        reset: ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        stop_reset_grad, spike_func, trainable_decays, trainable_threshold: as `LIFNeuron`.
    """

    state_type = neurons.LIFState
    step_fn = staticmethod(neurons.lif_step)
    decay_names = ("beta",)
    threshold_names = ("threshold",)

    def __init__(
        self,
        units: int,
        beta=0.9,
        threshold=1.0,
        reset: str = "subtract",
        stop_reset_grad: bool = True,
        spike_func=None,
        trainable_decays: bool = False,
        trainable_threshold: bool = False,
        **kwargs,
    ):
        super().__init__(units, spike_func, stop_reset_grad, trainable_decays, trainable_threshold, **kwargs)
        self.beta = _check_open_unit_interval("beta", beta, self.units)
        self.threshold = _check_real("threshold", threshold, self.units)
        self.reset = _check_reset(reset)

    def params(self, dtype=None):
        return neurons.LIFParams(
            beta=self.param("beta", dtype),
            threshold=self.param("threshold", dtype),
            reset=self.reset,
            stop_reset_grad=self.stop_reset_grad,
            spike_fn=self.spike_func,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"beta": self.beta, "threshold": self.threshold, "reset": self.reset})
        return config


@register()
class ALIF(NeuronCell):
    """Adaptive-threshold LIF neuron (LSNN, Bellec et al. 2018; e-prop, 2020).

        V' = beta V + I ;  S = H(V' - (threshold + adaptation a)) ;  reset V'
        a' = rho a + (1 - rho) S

    Args:
        units: number of neurons (> 0).
        beta: membrane decay per step, in (0, 1). Default 0.9.
        rho: adaptation decay per step, in (0, 1). Default 0.99.
        threshold: baseline threshold. Default 1.0.
        adaptation: threshold increase per unit of the adaptation variable. Default 1.8.
        reset: ``"subtract"`` (by the baseline threshold, default), ``"zero"``, ``"none"``.
        stop_reset_grad, spike_func, trainable_decays, trainable_threshold: as `LIFNeuron`.
    """

    state_type = neurons.ALIFState
    step_fn = staticmethod(neurons.alif_step)
    decay_names = ("beta", "rho")
    threshold_names = ("threshold",)

    def __init__(
        self,
        units: int,
        beta=0.9,
        rho=0.99,
        threshold=1.0,
        adaptation=1.8,
        reset: str = "subtract",
        stop_reset_grad: bool = True,
        spike_func=None,
        trainable_decays: bool = False,
        trainable_threshold: bool = False,
        **kwargs,
    ):
        super().__init__(units, spike_func, stop_reset_grad, trainable_decays, trainable_threshold, **kwargs)
        self.beta = _check_open_unit_interval("beta", beta, self.units)
        self.rho = _check_open_unit_interval("rho", rho, self.units)
        self.threshold = _check_real("threshold", threshold, self.units)
        self.adaptation = _check_real("adaptation", adaptation, self.units)
        self.reset = _check_reset(reset)

    def params(self, dtype=None):
        return neurons.ALIFParams(
            beta=self.param("beta", dtype),
            rho=self.param("rho", dtype),
            threshold=self.param("threshold", dtype),
            adaptation=self.param("adaptation", dtype),
            reset=self.reset,
            stop_reset_grad=self.stop_reset_grad,
            spike_fn=self.spike_func,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "rho": self.rho,
                "threshold": self.threshold,
                "adaptation": self.adaptation,
                "reset": self.reset,
            }
        )
        return config


@register()
class CubaLIF(NeuronCell):
    """Current-based LIF neuron: a synaptic current state feeding the membrane.

        i' = alpha i + I ;  V' = beta V + i' ;  S = H(V' - threshold) ;  reset V'

    Args:
        units: number of neurons (> 0).
        alpha: synaptic current decay per step, in (0, 1). Default 0.8.
        beta: membrane decay per step, in (0, 1). Default 0.9.
        threshold: firing threshold. Default 1.0.
        reset: ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        stop_reset_grad, spike_func, trainable_decays, trainable_threshold: as `LIFNeuron`.
    """

    state_type = neurons.CubaLIFState
    step_fn = staticmethod(neurons.cuba_lif_step)
    decay_names = ("alpha", "beta")
    threshold_names = ("threshold",)

    def __init__(
        self,
        units: int,
        alpha=0.8,
        beta=0.9,
        threshold=1.0,
        reset: str = "subtract",
        stop_reset_grad: bool = True,
        spike_func=None,
        trainable_decays: bool = False,
        trainable_threshold: bool = False,
        **kwargs,
    ):
        super().__init__(units, spike_func, stop_reset_grad, trainable_decays, trainable_threshold, **kwargs)
        self.alpha = _check_open_unit_interval("alpha", alpha, self.units)
        self.beta = _check_open_unit_interval("beta", beta, self.units)
        self.threshold = _check_real("threshold", threshold, self.units)
        self.reset = _check_reset(reset)

    def params(self, dtype=None):
        return neurons.CubaLIFParams(
            alpha=self.param("alpha", dtype),
            beta=self.param("beta", dtype),
            threshold=self.param("threshold", dtype),
            reset=self.reset,
            stop_reset_grad=self.stop_reset_grad,
            spike_fn=self.spike_func,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "threshold": self.threshold, "reset": self.reset})
        return config


#: Neuron models by name: snake_case names and class names both resolve.
NEURON_MODELS = {
    "lif_neuron": LIFNeuron,
    "lif": LIF,
    "alif": ALIF,
    "cuba_lif": CubaLIF,
}
for _cls in (LIFNeuron, LIF, ALIF, CubaLIF):
    NEURON_MODELS[_cls.__name__] = _cls


def get_neuron(identifier: Union[None, str, dict, NeuronCell], units: int, dtype=None) -> NeuronCell:
    """A neuron cell from a model name, a ``{"class_name", "config"}`` dict or an instance.

    None gives the seed's `LIFNeuron` with its defaults. Names: ``lif_neuron``, ``lif``,
    ``alif``, ``cuba_lif`` (or the class names).
    """
    if identifier is None:
        identifier = "lif_neuron"
    if isinstance(identifier, NeuronCell):
        if identifier.units != units:
            raise ValueError(f"neuron has units={identifier.units} but the block has units={units}; they must match")
        return identifier
    if isinstance(identifier, str):
        if identifier not in NEURON_MODELS:
            raise ValueError(f"Unknown neuron model neuron={identifier!r}; expected one of {sorted(NEURON_MODELS)}")
        return NEURON_MODELS[identifier](units, dtype=dtype)
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = NEURON_MODELS.get(identifier["class_name"])
        if cls is None:
            raise ValueError(f"Unknown neuron model class_name={identifier['class_name']!r}")
        config = dict(identifier.get("config", {}))
        config.setdefault("units", units)
        if dtype is not None:
            config["dtype"] = dtype
        return get_neuron(cls.from_config(config), units)
    raise ValueError(f"neuron must be a model name, a config dict or a NeuronCell, got {identifier!r}")


def serialize_neuron(neuron: NeuronCell) -> dict:
    return {"class_name": type(neuron).__name__, "config": neuron.get_config()}


@register()
class SNNBlock(keras.layers.Layer):
    """The SNN block as an RNN cell: a dense synaptic transform followed by a neuron model.

        I[t] = x[t] W (+ S[t-1] R if self_recurrent) (+ b)
        S[t], state[t] = neuron_step(I[t], state[t-1])

    Weight layout (shared with the fused sequence layers): ``kernel`` [features, units],
    ``recurrent_kernel`` [units, units] (only if `self_recurrent`), ``bias`` [units].

    Args:
        units: number of neurons (> 0).
        neuron: the neuron model: a name (``"lif_neuron"`` (default), ``"lif"``, ``"alif"``,
            ``"cuba_lif"``), a `NeuronCell` with the same `units`, or its config dict.
        self_recurrent: add recurrent weights from the block's own spikes of the previous
            step (the seed's ``self_recurrent``). Default False.
        use_bias: add a bias to the synaptic current. Default True.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Keras regularizers.

    Input: spikes or currents [batch, features] (float, int or bool; cast to float).
    Output: spikes [batch, units]. State: the neuron's states, then (if self-recurrent) the
    previous spikes.
    """

    def __init__(
        self,
        units: int,
        neuron=None,
        self_recurrent: bool = False,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_units(units)
        self.neuron = get_neuron(neuron, self.units, dtype=self.dtype_policy)
        self.self_recurrent = bool(self_recurrent)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)

    @property
    def state_size(self) -> List[int]:
        return list(self.neuron.state_size) + ([self.units] if self.self_recurrent else [])

    @property
    def state_names(self) -> List[str]:
        """The neuron's state names, then ``"spikes"`` (previous step) if self-recurrent."""
        return self.neuron.state_names + (["spikes"] if self.self_recurrent else [])

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zero states, a list of [batch_size, units] tensors."""
        return zero_states(self, inputs, batch_size, dtype)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the feature dimension of inputs must be known, got {input_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(features), self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.recurrent_kernel = None
        if self.self_recurrent:
            self.recurrent_kernel = self.add_weight(
                name="recurrent_kernel",
                shape=(self.units, self.units),
                initializer=self.recurrent_initializer,
                regularizer=self.recurrent_regularizer,
            )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer, regularizer=self.bias_regularizer
            )
        if not self.neuron.built:
            self.neuron.build((None, self.units))
        self.built = True

    def synaptic_current(self, inputs: tf.Tensor, use_bias: bool = True) -> tf.Tensor:
        """Feed-forward current x W (+ b unless `use_bias` is False); inputs [...,
        features] -> [..., units].

        For a whole sequence [batch, time, features] this is one matmul over all steps.
        """
        kernel = tf.cast(self.kernel, inputs.dtype)
        if inputs.shape.rank == 2:
            current = tf.matmul(inputs, kernel)
        else:
            current = tf.tensordot(inputs, kernel, axes=1)
        if use_bias and self.bias is not None:
            current = current + tf.cast(self.bias, inputs.dtype)
        return current

    def call(self, inputs, states, training=None):
        x = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_rank(x, 2, "inputs", "[batch, features]")
        check_features(x.shape, int(self.kernel.shape[0]), "inputs", what="the block's kernel input size")
        return self.step(self.synaptic_current(x), tf.nest.flatten(states))

    def step(self, current: tf.Tensor, states: Sequence[tf.Tensor]):
        """(spikes, new states) from the feed-forward current x W + b of this step."""
        recurrent = tf.cast(self.recurrent_kernel, current.dtype) if self.self_recurrent else None
        neuron = self.neuron
        return neurons.block_step(
            type(neuron).step_fn, neuron.state_type, current, list(states), neuron.params(current.dtype), recurrent
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "neuron": serialize_neuron(self.neuron),
                "self_recurrent": self.self_recurrent,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer
                else None,
                "recurrent_regularizer": keras.regularizers.serialize(self.recurrent_regularizer)
                if self.recurrent_regularizer
                else None,
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer)
                if self.bias_regularizer
                else None,
            }
        )
        return config


@register()
class LeakyReadoutCell(keras.layers.Layer):
    """Non-spiking leaky-integrator readout as an RNN cell.

        V[t] = beta V[t-1] + x[t] W (+ b) ;  output V[t]

    Args:
        units: number of readout units (> 0), e.g. the number of classes.
        beta: decay per step, in (0, 1). Default 0.9.
        use_bias: add a bias. Default True.
        kernel_initializer, bias_initializer: Keras initializers.
        trainable_decay: learn a per-unit beta (sigmoid-parametrised).

    Input: [batch, features]. Output: membrane [batch, units] (use as logits over time).
    """

    def __init__(
        self,
        units: int,
        beta=0.9,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        trainable_decay: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_units(units)
        self.beta = _check_open_unit_interval("beta", beta, self.units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.trainable_decay = bool(trainable_decay)

    @property
    def state_size(self) -> List[int]:
        return [self.units]

    @property
    def state_names(self) -> List[str]:
        return ["v"]

    @property
    def output_size(self) -> int:
        return self.units

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        """Zero state, a list of one [batch_size, units] tensor."""
        return zero_states(self, inputs, batch_size, dtype)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the feature dimension of inputs must be known, got {input_shape}")
        self.kernel = self.add_weight(
            name="kernel", shape=(int(features), self.units), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )
        self.beta_logit = (
            self.add_weight(name="beta_logit", shape=(self.units,), initializer=_logit_init(self.beta, self.units))
            if self.trainable_decay
            else None
        )
        self.built = True

    def params(self, dtype=None) -> neurons.LeakyIntegratorParams:
        """The leak parameter, cast to `dtype` (default: the compute dtype) if a tensor."""
        dtype = dtype or self.compute_dtype
        if self.beta_logit is not None:
            return neurons.LeakyIntegratorParams(tf.sigmoid(tf.cast(self.beta_logit, dtype)))
        if isinstance(self.beta, list):
            return neurons.LeakyIntegratorParams(tf.constant(self.beta, dtype=dtype))
        return neurons.LeakyIntegratorParams(self.beta)

    def synaptic_current(self, inputs: tf.Tensor, use_bias: bool = True) -> tf.Tensor:
        """x W (+ b unless `use_bias` is False) for inputs [..., features] -> [..., units]."""
        kernel = tf.cast(self.kernel, inputs.dtype)
        current = tf.matmul(inputs, kernel) if inputs.shape.rank == 2 else tf.tensordot(inputs, kernel, axes=1)
        if use_bias and self.bias is not None:
            current = current + tf.cast(self.bias, inputs.dtype)
        return current

    def call(self, inputs, states, training=None):
        x = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_rank(x, 2, "inputs", "[batch, features]")
        check_features(x.shape, int(self.kernel.shape[0]), "inputs", what="the readout's kernel input size")
        (v,) = tf.nest.flatten(states)
        out, new_state = neurons.leaky_integrator_step(
            self.synaptic_current(x), neurons.LeakyIntegratorState(v), self.params(x.dtype)
        )
        return out, list(new_state)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "beta": self.beta,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "trainable_decay": self.trainable_decay,
            }
        )
        return config
