"""Losses and metrics on [batch, time, classes] outputs (readout membranes or spikes).

The time axis is reduced first (max, mean or sum over time), then the usual sparse
categorical cross-entropy on the reduced logits. Labels: int [batch] or [batch, 1].
"""

from __future__ import annotations

import tensorflow as tf

from .compat import keras, register

TIME_REDUCTIONS = ("max", "mean", "sum")


def reduce_over_time(outputs: tf.Tensor, time_reduction: str) -> tf.Tensor:
    """[batch, time, classes] -> [batch, classes] by max, mean or sum over time."""
    outputs = tf.convert_to_tensor(outputs)  # NumPy arrays and lists too (their .shape has no .rank)
    if outputs.shape.rank is not None and outputs.shape.rank != 3:
        raise ValueError(f"`y_pred` must have rank 3 ([batch, time, classes]), got shape {outputs.shape}")
    if time_reduction == "max":
        return tf.reduce_max(outputs, axis=1)
    if time_reduction == "mean":
        return tf.reduce_mean(outputs, axis=1)
    if time_reduction == "sum":
        return tf.reduce_sum(outputs, axis=1)
    raise ValueError(f"time_reduction must be one of {TIME_REDUCTIONS}, got time_reduction={time_reduction!r}")


def _check_time_reduction(time_reduction: str) -> str:
    if time_reduction not in TIME_REDUCTIONS:
        raise ValueError(f"time_reduction must be one of {TIME_REDUCTIONS}, got time_reduction={time_reduction!r}")
    return time_reduction


@register()
class TimeReducedCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy on outputs reduced over time.

    Args:
        time_reduction: ``"max"`` (max-over-time of a readout), ``"mean"`` (mean readout) or
            ``"sum"`` (spike counts).
        from_logits: treat the reduced outputs as logits. Default True.
    """

    def __init__(self, time_reduction: str = "max", from_logits: bool = True, name=None, **kwargs):
        super().__init__(name=name or f"{time_reduction}_over_time_crossentropy", **kwargs)
        self.time_reduction = _check_time_reduction(time_reduction)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        logits = reduce_over_time(y_pred, self.time_reduction)
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=self.from_logits)

    def get_config(self):
        config = super().get_config()
        config.update({"time_reduction": self.time_reduction, "from_logits": self.from_logits})
        return config


@register()
class MaxOverTimeCrossEntropy(TimeReducedCrossEntropy):
    """Cross-entropy on the max over time of a readout [batch, time, classes]."""

    def __init__(self, from_logits: bool = True, name=None, **kwargs):
        kwargs.pop("time_reduction", None)
        super().__init__("max", from_logits, name=name, **kwargs)


@register()
class MeanOverTimeCrossEntropy(TimeReducedCrossEntropy):
    """Cross-entropy on the mean over time of a readout [batch, time, classes]."""

    def __init__(self, from_logits: bool = True, name=None, **kwargs):
        kwargs.pop("time_reduction", None)
        super().__init__("mean", from_logits, name=name, **kwargs)


@register()
class SpikeCountCrossEntropy(TimeReducedCrossEntropy):
    """Cross-entropy on spike counts: output spikes [batch, time, classes] summed over time."""

    def __init__(self, from_logits: bool = True, name=None, **kwargs):
        kwargs.pop("time_reduction", None)
        super().__init__("sum", from_logits, name=name, **kwargs)


@register()
class TimeReducedAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy of the class with the largest output after reducing over time."""

    def __init__(self, time_reduction: str = "max", name=None, dtype=None):
        super().__init__(name=name or f"{time_reduction}_over_time_accuracy", dtype=dtype)
        self.time_reduction = _check_time_reduction(time_reduction)

    def update_state(self, y_true, y_pred, sample_weight=None):
        logits = reduce_over_time(y_pred, self.time_reduction)
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        return super().update_state(labels, logits, sample_weight)

    def get_config(self):
        config = super().get_config()
        config["time_reduction"] = self.time_reduction
        return config
