"""Firing-rate regulariser and a per-layer firing-rate metric for `fit` logs."""

from __future__ import annotations

import tensorflow as tf

from .compat import add_layer_metric, declare_layer_metric, keras, register


def firing_rates(spikes: tf.Tensor) -> tf.Tensor:
    """Mean spikes per step of each neuron: [..., units] -> [units]."""
    axes = list(range(spikes.shape.rank - 1))
    return tf.reduce_mean(tf.cast(spikes, tf.float32), axis=axes)


@register()
class FiringRateRegularizer(keras.regularizers.Regularizer):
    """Penalty pulling each neuron's firing rate (spikes per step) towards `target`.

        loss = strength * mean_over_neurons((rate - target)**2)

    Usable as a layer's `activity_regularizer` or through `SpikeMonitor(regularizer=...)`.

    Args:
        target: wanted spikes per step per neuron, in [0, 1]. Default 0.05.
        strength: weight of the penalty (>= 0). Default 1.0.
    """

    def __init__(self, target: float = 0.05, strength: float = 1.0):
        if not 0.0 <= float(target) <= 1.0:
            raise ValueError(f"target must be a firing rate in [0, 1] spikes per step, got target={target!r}")
        if not float(strength) >= 0.0:
            raise ValueError(f"strength must be >= 0, got strength={strength!r}")
        self.target = float(target)
        self.strength = float(strength)

    def __call__(self, spikes):
        rates = firing_rates(spikes)
        return self.strength * tf.reduce_mean(tf.square(rates - self.target))

    def get_config(self):
        return {"target": self.target, "strength": self.strength}


@register()
class SpikeMonitor(keras.layers.Layer):
    """Pass-through layer reporting the mean firing rate of its input spikes in `fit` logs.

    The metric ``<name>_rate`` is the mean number of spikes per neuron per step. With a
    `regularizer` (e.g. `FiringRateRegularizer`) it also adds that penalty to the loss.

    Input and output: spikes [batch, time, units] (unchanged).
    """

    def __init__(self, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.regularizer = keras.regularizers.get(regularizer)
        self.metric_name = f"{self.name}_rate"
        declare_layer_metric(self, self.metric_name)

    def call(self, inputs):
        rate = tf.reduce_mean(tf.cast(inputs, tf.float32))
        add_layer_metric(self, self.metric_name, rate)
        if self.regularizer is not None:
            self.add_loss(self.regularizer(inputs))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["regularizer"] = keras.regularizers.serialize(self.regularizer) if self.regularizer is not None else None
        return config
