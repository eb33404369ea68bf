"""What the spiking models share: the reset modes and the reset itself."""

from __future__ import annotations

import tensorflow as tf

#: Reset modes of the single-threshold models: subtract the threshold, set to zero, or none.
RESET_MODES = ("subtract", "zero", "none")


def reset_spikes(spikes: tf.Tensor, stop_reset_grad: bool) -> tf.Tensor:
    """The spikes as they enter a reset term: without gradient if `stop_reset_grad`."""
    return tf.stop_gradient(spikes) if stop_reset_grad else spikes


def apply_reset(u: tf.Tensor, spikes: tf.Tensor, threshold, reset: str, stop_reset_grad: bool) -> tf.Tensor:
    """Membrane after the reset of the spikes of this step ([batch, ..., units]).

    ``"subtract"``: u - threshold * S; ``"zero"``: u * (1 - S); ``"none"``: u.
    """
    s = reset_spikes(spikes, stop_reset_grad)
    if reset == "subtract":
        return u - threshold * s
    if reset == "zero":
        return u * (1.0 - s)
    if reset == "none":
        return u
    raise ValueError(f"reset must be one of {RESET_MODES}, got reset={reset!r}")
