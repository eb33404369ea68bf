"""What the modules of sparse_snns share: the choice of implementation and the checks of
sparse-spike arguments (ids, count).

Depends on TensorFlow, `sparse_snns.ops` and `dense_snns` only (the op library is built by
`resolve` on the first ``"auto"`` or ``"kernel"`` call).
"""

from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import tensorflow as tf

from dense_snns import implementation as implementation_choice
from dense_snns.implementation import IMPLEMENTATIONS
from dense_snns.ops import in_xla_context
from dense_snns.validation import check_positive_int

from . import ops as _ops

__all__ = [
    "IMPLEMENTATIONS",
    "OP_DTYPES",
    "as_tensor",
    "check_ids_count",
    "check_implementation",
    "check_positive_int",
    "check_values_eagerly",
    "in_xla_context",
    "kernel_refusal",
    "resolve",
    "sanitize",
    "shape_list",
    "valid_mask",
    "value_assertions",
    "with_value_assertions",
]

#: Dtypes of the C++ kernels (float16 and bfloat16 take the pure-TF path under "auto").
OP_DTYPES = (tf.float32, tf.float64)


# --------------------------------------------------------------------------------------------
# implementation
# --------------------------------------------------------------------------------------------


def check_implementation(implementation) -> str:
    """An `implementation` value of `dense_snns.implementation` (earlier names mapped)."""
    return implementation_choice.check(implementation)


def kernel_refusal(dtype: tf.DType):
    """Why the C++ ops cannot run on `dtype` here (None if they can; may build the library)."""
    if in_xla_context():
        return "the call is compiled by XLA (jit_compile=True), where the C++ ops have no kernel"
    if dtype not in OP_DTYPES:
        return f"the C++ ops support float32 and float64, got dtype {dtype.name}"
    if not _ops.op_available():
        return f"the C++ ops are unavailable: {_ops.load_error()}"
    return None


def resolve(implementation: str, dtype: tf.DType, what: str = "this sparse operation", refusal=None) -> str:
    """The implementation that runs for `dtype`: "kernel" or "compiled" ("reference" is the
    pure-TF path too). An impossible "kernel" raises `dense_snns.ImplementationError`.
    `refusal(dtype)` says why the kernels cannot run (default: those of `sparse_snns.ops`)."""
    refusal = kernel_refusal if refusal is None else refusal
    chosen = implementation_choice.resolve(check_implementation(implementation), lambda: refusal(dtype), what)
    return "kernel" if chosen == "kernel" else "compiled"


# --------------------------------------------------------------------------------------------
# shapes and conversions
# --------------------------------------------------------------------------------------------


def shape_list(x: tf.Tensor) -> list:
    """The shape of `x` as a list: static dimensions as ints, unknown ones as scalar tensors."""
    static = x.shape.as_list()
    if all(d is not None for d in static):
        return static
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(static)]


def as_tensor(value, name: str) -> tf.Tensor:
    if isinstance(value, tf.Tensor):
        return value
    try:
        return tf.convert_to_tensor(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a tensor, could not convert it: {err}") from None


# --------------------------------------------------------------------------------------------
# ids and count
# --------------------------------------------------------------------------------------------


def check_ids_count(ids, count) -> Tuple[tf.Tensor, tf.Tensor]:
    """Static checks of ids int32 [..., K] (K static) and count int32 [...]: TypeError or
    ValueError naming the argument. Returns them as tensors."""
    ids = as_tensor(ids, "ids")
    count = as_tensor(count, "count")
    if ids.dtype != tf.int32:
        raise TypeError(f"`ids` must be int32, got dtype {ids.dtype.name}")
    if count.dtype != tf.int32:
        raise TypeError(f"`count` must be int32, got dtype {count.dtype.name}")
    if ids.shape.rank is None or ids.shape.rank == 0 or ids.shape[-1] is None:
        raise ValueError(f"`ids` must have a static shape [..., K] (K known), got shape {ids.shape}")
    if not count.shape.is_compatible_with(ids.shape[:-1]):
        raise ValueError(f"`count` must have the shape {ids.shape[:-1]} (ids without K), got {count.shape}")
    return ids, count


def valid_mask(count: tf.Tensor, k: int) -> tf.Tensor:
    """bool [..., K]: True at the entries k < count[...]."""
    return tf.range(k, dtype=tf.int32) < tf.expand_dims(count, -1)


def check_values_eagerly(
    ids: tf.Tensor, count: tf.Tensor, n: int, bound: str = "N_in", where: str = "the first dimension of `kernel`"
) -> None:
    """ids of valid entries in [0, n) and count in [0, K]: ValueError naming the field."""
    k = int(ids.shape[-1])
    count_np = np.asarray(count.numpy())
    ids_np = np.asarray(ids.numpy())
    if count_np.size:
        if count_np.min() < 0:
            raise ValueError(f"`count` must be >= 0, got min count {count_np.min()}")
        if count_np.max() > k:
            raise ValueError(f"`count` > K (capacity={k}, the last dimension of `ids`): got max count {count_np.max()}")
    valid = np.arange(k) < count_np[..., None]
    used = ids_np[valid]
    if used.size and (used.min() < 0 or used.max() >= n):
        raise ValueError(
            f"`ids` out of range: must be in [0, {bound}={n}) ({where}), got min {used.min()}, max {used.max()}"
        )


def value_assertions(
    ids: tf.Tensor,
    count: tf.Tensor,
    n: Union[int, tf.Tensor],
    bound: str = "N_in",
    where: str = "the first dimension of `kernel`",
) -> List[tf.Operation]:
    """The checks of `check_values_eagerly` as `tf.debugging` assertions (InvalidArgumentError
    at run time; compiled out by XLA)."""
    k = int(ids.shape[-1])
    used = tf.where(valid_mask(count, k), ids, tf.zeros_like(ids))
    return [
        tf.debugging.assert_greater_equal(count, 0, message="`count` must be >= 0"),
        tf.debugging.assert_less_equal(count, k, message=f"`count` > K (capacity={k}, the last dimension of `ids`)"),
        tf.debugging.assert_greater_equal(used, 0, message=f"`ids` out of range [0, {bound})"),
        tf.debugging.assert_less(used, n, message=f"`ids` out of range [0, {bound}) ({bound}: {where})"),
    ]


def with_value_assertions(ids: tf.Tensor, count: tf.Tensor, n, bound: str, where: str) -> tf.Tensor:
    """`ids`, depending on `value_assertions` (unchanged under XLA, which compiles them out)."""
    if in_xla_context():
        return ids
    with tf.control_dependencies(value_assertions(ids, count, n, bound, where)):
        return tf.identity(ids)


def sanitize(
    ids: tf.Tensor, values: tf.Tensor, count: tf.Tensor, n
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """What XLA runs instead of the value assertions it compiles out: invalid sparse input made
    harmless and counted, never read outside a buffer nor turned into other neurons' values.

    A count outside [0, K] is clipped; a valid entry whose id is outside [0, n) gets id 0 and
    value 0 (it contributes nothing). Returns (ids, values, count, invalid int32 [...]: the
    entries with an id out of range plus the excess of count, per vector).
    """
    k = int(ids.shape[-1])
    clipped = tf.clip_by_value(count, 0, k)
    valid = valid_mask(clipped, k)
    bad = tf.logical_and(valid, tf.logical_or(ids < 0, ids >= n))
    invalid = tf.reduce_sum(tf.cast(bad, tf.int32), axis=-1) + tf.abs(count - clipped)
    ids = tf.where(bad, tf.zeros_like(ids), ids)
    values = tf.where(bad, tf.zeros_like(values), values)
    return ids, values, clipped, invalid


def batch_of(input_shape):
    """The batch size of a layer input's shape: a dense raster's, or that of sparse spikes'
    ids (a list of three shapes); None if unknown."""
    if input_shape is None:
        return None
    first = input_shape[0] if len(input_shape) else None
    if isinstance(first, (list, tuple, tf.TensorShape)):  # [ids, values, count] shapes
        first = tuple(first)[0] if len(first) else None
    return None if first is None else int(first)
