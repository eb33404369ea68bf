"""Input checks shared by all layers: clear errors that name the offending argument."""

from __future__ import annotations

import numbers
from typing import Optional

import tensorflow as tf

from .ops import in_xla_context


def check_positive_int(value, name: str) -> int:
    """`value` (a Python or NumPy integer) must be > 0; ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    return int(value)


def check_units(units, name: str = "units") -> int:
    """The number of neurons of a layer: a positive integer."""
    return check_positive_int(units, name)


def check_seed(seed) -> Optional[int]:
    """None or a non-negative integer."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got seed={seed!r}")
    return int(seed)


def as_numeric_tensor(x, name: str, dtype) -> tf.Tensor:
    """Convert `x` to a tensor of `dtype`; bool and integer spike rasters are cast.

    Raises TypeError naming `name` for non-numeric input (strings, ...).
    """
    if not tf.is_tensor(x):
        try:
            x = tf.convert_to_tensor(x)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be a numeric tensor, could not convert it: {err}") from None
    x_dtype = tf.as_dtype(x.dtype)
    if not (x_dtype.is_floating or x_dtype.is_integer or x_dtype.is_bool):
        raise TypeError(f"`{name}` must be numeric (float, int or bool spikes), got dtype {x_dtype.name}")
    if x_dtype != tf.as_dtype(dtype):
        x = tf.cast(x, dtype)
    return x


def check_rank(x, rank: int, name: str, layout: str) -> None:
    """The static rank of `x` must be `rank` (layout describes the expected axes)."""
    actual = x.shape.rank
    if actual is not None and actual != rank:
        raise ValueError(f"`{name}` must have rank {rank} ({layout}), got shape {x.shape}")


def check_features(shape, expected: int, name: str, what: str) -> None:
    """The last dimension of `shape` (if known) must equal `expected`."""
    shape = tf.TensorShape(shape)
    if shape.rank is None or shape.rank == 0:
        raise ValueError(f"`{name}` must have a feature dimension, got shape {shape}")
    features = shape[-1]
    if features is not None and int(features) != expected:
        raise ValueError(f"`{name}` has {int(features)} features in its last dimension but {what} is {expected}")


def check_sequence(layer_name: str, shape, rank: int, layout: str, features=None, what: str = "") -> tf.TensorShape:
    """The checks of a sequence input's shape [batch, time, ...] that every sequence layer
    shares, at build and at call: its rank, at least one step, and, if `features` is given,
    its feature dimensions (those it was built for, `what`). Returns the shape."""
    shape = tf.TensorShape(shape)
    if shape.rank is not None and shape.rank != rank:
        raise ValueError(f"{layer_name}: `inputs` must have rank {rank} ({layout}), got shape {shape}")
    if shape.rank is not None and shape[1] == 0:
        raise ValueError(
            f"{layer_name}: `inputs` has a time dimension of 0 (shape {shape}); at least one step is needed"
        )
    if features is not None and shape.rank is not None:
        expected = tf.TensorShape(features)
        if not shape[2:].is_compatible_with(expected):
            raise ValueError(
                f"{layer_name}: `inputs` of shape {shape} have features {shape[2:].as_list()}, "
                f"but {what or 'the layer'} has {expected.as_list()}"
            )
    return shape


def check_steps(layer_name: str, x: tf.Tensor) -> tf.Tensor:
    """`x` [batch, time, ...], depending on a run-time check of at least one step when the
    time dimension is not static (outside XLA, which compiles assertions out)."""
    if x.shape[1] is not None or in_xla_context():
        return x
    check = tf.debugging.assert_positive(tf.shape(x)[1], message=f"{layer_name}: `inputs` has a time dimension of 0")
    with tf.control_dependencies([check]):
        return tf.identity(x)


def check_mask(layer_name: str, mask, x: tf.Tensor) -> tf.Tensor:
    """`mask` as a bool [batch, time] tensor matching the first two dimensions of `x`: a
    ValueError naming both shapes when the static shapes differ; a run-time assertion when they
    are not known (outside XLA, which compiles assertions out)."""
    if not tf.is_tensor(mask):
        mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        mask = tf.cast(mask, tf.bool)
    expected = x.shape[:2]
    message = f"{layer_name}: `mask` must have shape [batch, time] = {expected.as_list()} (of `inputs` {x.shape})"
    if mask.shape.rank is not None and (mask.shape.rank != 2 or not mask.shape.is_compatible_with(expected)):
        raise ValueError(f"{message}, got shape {mask.shape}")
    if not (mask.shape.is_fully_defined() and expected.is_fully_defined()) and not in_xla_context():
        check = tf.debugging.assert_equal(tf.shape(mask), tf.shape(x)[:2], message=message)
        with tf.control_dependencies([check]):
            mask = tf.identity(mask)
    return mask


def check_states(layer_name: str, states, expected, what: str = "initial_state") -> list:
    """`states` (a list) against the per-state shapes `expected` ([batch, ...] each, batch may
    be None): their number and each static shape, a ValueError naming the state and both shapes."""
    states = list(states)
    if len(states) != len(expected):
        raise ValueError(f"{layer_name}: `{what}` must hold {len(expected)} tensors, got {len(states)}")
    for i, (state, shape) in enumerate(zip(states, expected)):
        shape = tf.TensorShape(shape)
        if not tf.TensorShape(state.shape).is_compatible_with(shape):
            raise ValueError(f"{layer_name}: `{what}[{i}]` must have shape {shape.as_list()}, got shape {state.shape}")
    return states
