"""The SNN block as an RNN cell (dense synapses + a neuron model) and the leaky readout cell."""

from __future__ import annotations

from typing import List, Sequence

import tensorflow as tf

from ..compat import keras, register
from ..validation import as_numeric_tensor, check_features, check_rank, check_units
from .neuron import cell_class, get_neuron, serialize_neuron, zero_states

__all__ = ["LeakyReadoutCell", "SNNBlock"]


@register()
class SNNBlock(keras.layers.Layer):
    """The SNN block as an RNN cell: a dense synaptic transform followed by a neuron model.

        I[t] = x[t] W (+ S[t-1] R if self_recurrent) (+ b)
        S[t], state[t] = neuron_step(I[t], state[t-1])

    Weight layout (shared with the fused sequence layers): ``kernel`` [features, units],
    ``recurrent_kernel`` [units, units] (only if `self_recurrent`), ``bias`` [units], then
    the neuron's trained parameters.

    Args:
        units: number of neurons (> 0).
        neuron: the neuron model: a name of `dense_snns.neurons` (default
            `dense_snns.neurons.DEFAULT_NEURON`, ``"cuba_lif"``; the two-state model of the
            original design is ``"lif_neuron"``), a neuron cell with the same `units`, or its
            config dict.
        self_recurrent: add recurrent weights from the block's own spikes of the previous
            step. Default False.
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
    def model(self):
        """The neuron's `dense_snns.neurons.NeuronModel`."""
        return self.neuron.model

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

    def recurrent_kernel_as(self, dtype):
        """The recurrent kernel cast to `dtype`, or None without self-recurrence."""
        return tf.cast(self.recurrent_kernel, dtype) if self.self_recurrent else None

    def step(self, current: tf.Tensor, states: Sequence[tf.Tensor]):
        """(spikes, new states) from the feed-forward current x W + b of this step."""
        spikes, new_states, _ = self.model.block_update(
            current, list(states), self.neuron.params(current.dtype), self.recurrent_kernel_as(current.dtype)
        )
        return spikes, new_states

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
                "kernel_regularizer": _serialize_regularizer(self.kernel_regularizer),
                "recurrent_regularizer": _serialize_regularizer(self.recurrent_regularizer),
                "bias_regularizer": _serialize_regularizer(self.bias_regularizer),
            }
        )
        return config


def _serialize_regularizer(regularizer):
    return keras.regularizers.serialize(regularizer) if regularizer else None


@register()
class LeakyReadoutCell(SNNBlock):
    """Non-spiking leaky-integrator readout as an RNN cell: an `SNNBlock` whose neuron is the
    leaky integrator (`dense_snns.neurons.leaky_integrator`).

        V[t] = beta V[t-1] + x[t] W (+ b) ;  output V[t]

    Args:
        units: number of readout units (> 0), e.g. the number of classes.
        beta: decay per step, in (0, 1) (or per unit). Default 0.9.
        use_bias: add a bias. Default True.
        kernel_initializer, bias_initializer: Keras initializers.
        trainable_params: ``["beta"]`` learns a per-unit beta (sigmoid-parametrised), as for
            the neuron cells; ``trainable_decay=True`` (the earlier name) does the same.

    Input: [batch, features]. Output: membrane [batch, units] (use as logits over time).
    """

    #: The constructor arguments, which are also its config (besides the Layer's own).
    ARGUMENTS = ("units", "beta", "use_bias", "kernel_initializer", "bias_initializer", "trainable_params")

    def __init__(
        self,
        units: int,
        beta=0.9,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        trainable_decay: bool = False,
        trainable_params=None,
        **kwargs,
    ):
        neuron = cell_class("leaky_integrator")(
            units,
            beta=beta,
            trainable_decays=trainable_decay,
            trainable_params=trainable_params,
            dtype=kwargs.get("dtype"),
        )
        super().__init__(
            units,
            neuron=neuron,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )

    @property
    def beta(self):
        return self.neuron.beta

    @property
    def trainable_decay(self) -> bool:
        return "beta" in self.neuron.trainable_params

    @property
    def beta_logit(self):
        """The weight of a trained beta (its logit), or None."""
        return self.neuron.param_weight("beta")

    def params(self, dtype=None):
        """The leaky integrator's `Params` (beta as a float or a [units] tensor of `dtype`)."""
        return self.neuron.params(dtype)

    def get_config(self):
        config = keras.layers.Layer.get_config(self)
        config.update(
            {
                "units": self.units,
                "beta": self.beta,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "trainable_params": list(self.neuron.trainable_params),
            }
        )
        return config
