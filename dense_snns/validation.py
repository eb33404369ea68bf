"""Input checks shared by all layers: clear errors that name the offending argument."""

from __future__ import annotations

import numbers
from typing import Optional

import tensorflow as tf


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
