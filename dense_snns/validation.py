"""Input checks shared by all layers: clear errors that name the offending argument."""

from __future__ import annotations

import numbers

import tensorflow as tf


def check_units(units) -> int:
    """`units` must be a positive integer."""
    if isinstance(units, bool) or not isinstance(units, numbers.Integral):
        raise ValueError(f"units must be a positive integer, got units={units!r}")
    units = int(units)
    if units <= 0:
        raise ValueError(f"units must be a positive integer, got units={units}")
    return units


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
