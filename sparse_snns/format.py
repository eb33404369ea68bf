"""The sparse spike format: at most K events per spike vector, as three dense tensors.

A batch of spike vectors of size N (any leading shape ``[...]``) with at most K active
entries per vector is stored as::

    ids    int32 [..., K]   indices of the selected neurons, in [0, N)
    values float [..., K]   event values (1.0 for a spike), 0.0 for padding
    count  int32 [...]      number of valid entries per vector, in [0, K]

Entries ``k >= count`` are padding: their value is 0 and their id is 0 (a valid index), so
gathers and scatters on padding are harmless. All shapes are static (K is the last static
dimension of ``ids``), so the format flows through ``tf.nest``, ``tf.function``,
``tf.while_loop``, ``keras.layers.RNN`` states and XLA (``jit_compile=True``).

Overflow (more than K events in one vector) is never silent: ``from_dense_with_overflow``
returns the number of dropped events per vector, and ``strict=True`` raises.

This module does not use Keras. With ``implementation="auto"`` (the default) or ``"kernel"``,
`from_dense` and `to_dense` use the C++ ops of `sparse_snns.rowops`, which are built from
source at the first such call (pure TensorFlow without a compiler, with a warning);
``implementation="compiled"`` never touches them.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf

from ._checks import check_positive_int, resolve
from .rowops import compact_indices, gather, scatter_rows, select_indices

__all__ = [
    "SparseSpikes",
    "compact_indices",
    "default_capacity",
    "describe",
    "from_dense",
    "from_dense_with_overflow",
    "to_dense",
    "validate",
]


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def check_capacity(capacity) -> int:
    """The capacity K: a positive integer."""
    return check_positive_int(capacity, "capacity")


def check_num_neurons(num_neurons) -> int:
    """The number of neurons N of a spike vector: a positive integer."""
    return check_positive_int(num_neurons, "num_neurons")


def default_capacity(num_neurons: int, density: float) -> int:
    """Capacity K for vectors of `num_neurons` neurons firing at mean `density`.

    K = ceil(d*N + 4*sqrt(d*N) + 4), capped at N: the mean plus about four standard
    deviations of a Poisson count, plus a margin for small d*N.
    """
    num_neurons = check_num_neurons(num_neurons)
    if isinstance(density, bool) or not isinstance(density, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"`density` must be a number in (0, 1], got density={density!r}")
    density = float(density)
    if not (0.0 < density <= 1.0):  # also rejects NaN
        raise ValueError(f"`density` must be in (0, 1], got density={density}")
    mean = density * num_neurons
    # The small tolerance keeps float round-off (e.g. 0.07 * 100) from adding one.
    k = int(math.ceil(mean + 4.0 * math.sqrt(mean) + 4.0 - 1e-9))
    return min(k, num_neurons)


# --------------------------------------------------------------------------------------------
# the format
# --------------------------------------------------------------------------------------------


def _field_summary(field) -> Tuple[Optional[tuple], str]:
    """(shape as a tuple or None, dtype name) of a field that may be a tensor, array, spec or shape."""
    if isinstance(field, tf.TensorShape):
        return (tuple(field.as_list()) if field.rank is not None else None), "?"
    shape = getattr(field, "shape", None)
    if shape is not None:
        try:
            shape = tuple(tf.TensorShape(shape).as_list())
        except (TypeError, ValueError):
            shape = None
    dtype = getattr(field, "dtype", None)
    if dtype is not None:
        try:
            dtype = tf.as_dtype(dtype).name
        except TypeError:
            dtype = str(dtype)
    return shape, (dtype if dtype is not None else type(field).__name__)


def describe(spikes) -> str:
    """One line with the batch shape, capacity K and dtypes of `spikes` (not the tensor values)."""
    ids_shape, ids_dtype = _field_summary(spikes.ids)
    _, values_dtype = _field_summary(spikes.values)
    _, count_dtype = _field_summary(spikes.count)
    if ids_shape is None or len(ids_shape) == 0:
        batch_shape, capacity = "?", "?"
    else:
        batch_shape = tuple(ids_shape[:-1])
        capacity = ids_shape[-1]
    return (
        f"SparseSpikes(batch_shape={batch_shape}, capacity={capacity}, "
        f"values_dtype={values_dtype}, ids_dtype={ids_dtype}, count_dtype={count_dtype})"
    )


class SparseSpikes(NamedTuple):
    """At most K events per spike vector: ids int32 [..., K], values float [..., K], count int32 [...].

    Entries with index >= count are padding (value 0, id 0). Being a NamedTuple of dense
    tensors it works with tf.nest, tf.function, tf.while_loop and XLA.
    """

    ids: tf.Tensor
    values: tf.Tensor
    count: tf.Tensor

    def __repr__(self) -> str:
        return describe(self)

    @property
    def capacity(self) -> Optional[int]:
        """K, the static last dimension of `ids` (None if unknown)."""
        shape, _ = _field_summary(self.ids)
        if not shape:
            return None
        return shape[-1]

    @property
    def batch_shape(self) -> tf.TensorShape:
        """The leading shape [...] (the shape of `count`)."""
        return tf.TensorShape(self.ids.shape)[:-1]

    @classmethod
    def from_dense(
        cls, spikes, capacity: int, strict: bool = False, dtype=None, implementation: str = "auto"
    ) -> "SparseSpikes":
        """Dense spikes [..., N] -> SparseSpikes with capacity K (see module `from_dense`)."""
        return from_dense(spikes, capacity, strict=strict, dtype=dtype, implementation=implementation)

    @classmethod
    def from_dense_with_overflow(
        cls, spikes, capacity: int, strict: bool = False, dtype=None, implementation: str = "auto"
    ) -> Tuple["SparseSpikes", tf.Tensor]:
        """Dense spikes [..., N] -> (SparseSpikes, dropped int32 [...])."""
        return from_dense_with_overflow(spikes, capacity, strict=strict, dtype=dtype, implementation=implementation)

    def to_dense(self, num_neurons: int, implementation: str = "auto") -> tf.Tensor:
        """Scatter the values at their ids: float [..., num_neurons]."""
        return to_dense(self, num_neurons, implementation=implementation)

    def validate(self, num_neurons: int) -> "SparseSpikes":
        """Check this value against the format (see module `validate`)."""
        return validate(self, num_neurons)


# --------------------------------------------------------------------------------------------
# dense -> sparse
# --------------------------------------------------------------------------------------------


def _as_spike_tensor(spikes) -> tf.Tensor:
    if not tf.is_tensor(spikes):
        try:
            spikes = tf.convert_to_tensor(spikes)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`spikes` must be a numeric tensor, could not convert it: {err}") from None
    dtype = tf.as_dtype(spikes.dtype)
    if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
        raise TypeError(f"`spikes` must be numeric (float, int or bool), got dtype {dtype.name}")
    rank = spikes.shape.rank
    if rank is None or rank == 0:
        raise ValueError(f"`spikes` must have a static rank >= 1 ([..., N]), got shape {spikes.shape}")
    if spikes.shape[-1] is None:
        raise ValueError(f"`spikes` must have a static last dimension N, got shape {spikes.shape}")
    if spikes.shape[-1] == 0:
        raise ValueError(f"`spikes` must have at least one neuron in its last dimension, got shape {spikes.shape}")
    return spikes


def _values_dtype(spikes_dtype: tf.DType, dtype) -> tf.DType:
    if dtype is None:
        return spikes_dtype if spikes_dtype.is_floating else tf.float32
    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise TypeError(f"`dtype` must be a floating dtype for the values, got {dtype.name}")
    return dtype


def _exact_cast(in_dtype: tf.DType, out_dtype: tf.DType) -> bool:
    """True when casting `in_dtype` to `out_dtype` keeps every nonzero value nonzero: bool and
    integers, the same dtype, or a strictly wider float (float16 -> float32, bfloat16 ->
    float32; not bfloat16 -> float16, whose range is smaller)."""
    return not in_dtype.is_floating or in_dtype == out_dtype or out_dtype.size > in_dtype.size


def from_dense_with_overflow(
    spikes, capacity: int, strict: bool = False, dtype=None, implementation: str = "auto"
) -> Tuple[SparseSpikes, tf.Tensor]:
    """Dense spikes [..., N] -> (SparseSpikes with K = `capacity`, dropped int32 [...]).

    Every nonzero entry of `spikes` (float, int or bool) is an event; its value is kept
    (1.0 for binary spikes, counts for binned event streams), cast to `dtype` (default: the
    dtype of `spikes` if floating, else float32). Events are stored in increasing neuron
    index. When a vector has more than K events, the K lowest indices are kept and
    `dropped` counts the others (`dropped = max(0, events - K)`).

    `strict=True` raises when anything is dropped: a ValueError naming the capacity when
    executing eagerly; inside `tf.function` a `tf.debugging.Assert` (InvalidArgumentError at
    run time). XLA (`jit_compile=True`) compiles assertions out, so under XLA rely on
    `dropped`. Gradients flow from `values` back to the kept entries of `spikes`.

    `implementation` (``"auto"``, ``"kernel"``, ``"compiled"``): the selection and gather of
    `sparse_snns.rowops` (a C++ op, or pure TensorFlow, which is what XLA compiles).
    """
    capacity = check_capacity(capacity)
    x = _as_spike_tensor(spikes)
    in_dtype = tf.as_dtype(x.dtype)
    out_dtype = _values_dtype(in_dtype, dtype)

    xf = tf.cast(x, out_dtype)
    # The events are selected on the values cast to `out_dtype` when the cast keeps every
    # nonzero entry nonzero (see `_exact_cast`), else on `x`.
    if _exact_cast(in_dtype, out_dtype):
        ids, count, total, values = select_indices(
            xf, capacity, first="nonzero", implementation=implementation, gather=True
        )
    else:
        ids, count, total = select_indices(x, capacity, first="nonzero", implementation=implementation)
        values = gather(xf, ids, count, resolve(implementation, out_dtype))
    dropped = total - count
    return finish_selection(ids, values, count, dropped, capacity, strict)


def finish_selection(ids, values, count, dropped, capacity: int, strict: bool) -> Tuple[SparseSpikes, tf.Tensor]:
    """Selected ids/values [..., min(K, N)] -> (SparseSpikes with K slots, dropped): slots past
    N are padding; `strict` raises when anything was dropped."""
    n = int(ids.shape[-1])
    if capacity > n:  # K > N: the extra slots are always padding
        paddings = [[0, 0]] * (ids.shape.rank - 1) + [[0, capacity - n]]
        ids = tf.pad(ids, paddings)
        values = tf.pad(values, paddings)
    result = SparseSpikes(ids=ids, values=values, count=count)
    if strict:
        result, dropped = _enforce_no_overflow(result, dropped, capacity)
    return result, dropped


def _enforce_no_overflow(result: SparseSpikes, dropped: tf.Tensor, capacity: int):
    if tf.executing_eagerly():
        dropped_np = np.asarray(dropped.numpy())
        if np.any(dropped_np > 0):
            raise ValueError(
                f"more events than capacity={capacity} in {int(np.count_nonzero(dropped_np))} "
                f"vector(s): {int(dropped_np.sum())} event(s) would be dropped "
                f"(max {int(dropped_np.max())} in one vector); increase `capacity` or use strict=False "
                "and monitor the dropped count"
            )
        return result, dropped
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(dropped, 0)),
        [
            f"from_dense(strict=True): more events than capacity={capacity}; dropped events:",
            tf.reduce_sum(dropped),
        ],
        name="capacity_overflow_check",
    )
    with tf.control_dependencies([check]):
        result = tf.nest.map_structure(tf.identity, result)
        dropped = tf.identity(dropped)
    return result, dropped


def from_dense(spikes, capacity: int, strict: bool = False, dtype=None, implementation: str = "auto") -> SparseSpikes:
    """Dense spikes [..., N] -> SparseSpikes with K = `capacity`.

    Same as `from_dense_with_overflow` without the dropped count; with `strict=False` use
    that function when overflow is possible, so dropped events are seen.
    """
    result, _ = from_dense_with_overflow(spikes, capacity, strict=strict, dtype=dtype, implementation=implementation)
    return result


# --------------------------------------------------------------------------------------------
# sparse -> dense
# --------------------------------------------------------------------------------------------


def as_spikes(spikes) -> SparseSpikes:
    """A SparseSpikes from itself, a list/tuple ``[ids, values, count]`` or a dict of the fields."""
    if isinstance(spikes, SparseSpikes):
        return spikes
    if isinstance(spikes, (tuple, list)) and len(spikes) == 3:
        return SparseSpikes(*spikes)
    if isinstance(spikes, dict) and set(spikes) == set(SparseSpikes._fields):
        return SparseSpikes(**spikes)
    raise TypeError(
        "`spikes` must be a SparseSpikes (ids, values, count) or a list/tuple [ids, values, count], "
        f"got {type(spikes).__name__}"
    )


def swap_batch_time(spikes: SparseSpikes) -> SparseSpikes:
    """Spikes [B, T, K] (count [B, T]) -> [T, B, K] (count [T, B]), and back."""
    return SparseSpikes(
        tf.transpose(spikes.ids, [1, 0, 2]), tf.transpose(spikes.values, [1, 0, 2]), tf.transpose(spikes.count)
    )


def to_dense(spikes: SparseSpikes, num_neurons: int, implementation: str = "auto") -> tf.Tensor:
    """SparseSpikes -> float [..., num_neurons]: values summed at their ids, padding adds 0.

    ids and count: integer tensors (cast to int32; TypeError naming the field otherwise).
    Ids must be in [0, num_neurons) and count in [0, K] (see `validate`): otherwise an
    InvalidArgumentError, except under XLA, which compiles the checks out (and whose scatter
    drops out-of-range ids). `implementation`: the scatter of `sparse_snns.rowops`
    (``"auto"``, ``"kernel"``, ``"compiled"``).
    """
    spikes = as_spikes(spikes)
    n = check_num_neurons(num_neurons)
    ids = tf.convert_to_tensor(spikes.ids)
    values = tf.convert_to_tensor(spikes.values)
    count = tf.convert_to_tensor(spikes.count)
    if ids.shape.rank is None or ids.shape.rank == 0 or ids.shape[-1] is None:
        raise ValueError(f"`ids` must have a static shape [..., K], got shape {ids.shape}")
    for name, field in (("ids", ids), ("count", count)):
        if not field.dtype.is_integer:
            raise TypeError(f"`{name}` must be an integer tensor (int32), got dtype {field.dtype.name}")
    ids, count = tf.cast(ids, tf.int32), tf.cast(count, tf.int32)
    return scatter_rows(ids, count, values, n, implementation=implementation)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate(spikes, num_neurons: int) -> SparseSpikes:
    """Check `spikes` against the format for vectors of `num_neurons` neurons; return it.

    Static checks (always): structure, dtypes (ids/count int32 -> TypeError, values floating
    -> TypeError), shapes (ids and values [..., K], count [...], K >= 1 -> ValueError).
    Value checks: ids in [0, N), count in [0, K], padding values 0, values finite. Eagerly
    they raise ValueError naming the field; inside `tf.function` they are
    `tf.debugging` assertions (InvalidArgumentError at run time; compiled out under XLA) and
    the returned tensors depend on them.
    """
    spikes = as_spikes(spikes)
    n = check_num_neurons(num_neurons)
    fields = {}
    for name in SparseSpikes._fields:
        value = getattr(spikes, name)
        if not tf.is_tensor(value):
            try:
                value = tf.convert_to_tensor(value)
            except (TypeError, ValueError) as err:
                raise TypeError(f"`{name}` must be a tensor, could not convert it: {err}") from None
        fields[name] = value
    ids, values, count = fields["ids"], fields["values"], fields["count"]

    if ids.dtype != tf.int32:
        raise TypeError(f"`ids` must be int32, got dtype {ids.dtype.name}")
    if count.dtype != tf.int32:
        raise TypeError(f"`count` must be int32, got dtype {count.dtype.name}")
    if not values.dtype.is_floating:
        raise TypeError(f"`values` must be floating, got dtype {values.dtype.name}")

    if ids.shape.rank is None or ids.shape.rank == 0 or ids.shape[-1] is None:
        raise ValueError(f"`ids` must have a static shape [..., K], got shape {ids.shape}")
    k = int(ids.shape[-1])
    if k <= 0:
        raise ValueError(f"`capacity` (K, the last dimension of `ids`) must be positive, got shape {ids.shape}")
    if not ids.shape.is_compatible_with(values.shape):
        raise ValueError(f"`values` must have the shape of `ids` {ids.shape}, got {values.shape}")
    if not count.shape.is_compatible_with(ids.shape[:-1]):
        raise ValueError(f"`count` must have the shape {ids.shape[:-1]} (ids without K), got {count.shape}")

    if tf.executing_eagerly():
        # eager shapes are fully defined, so the static shape checks above were exact
        ids_np, values_np, count_np = ids.numpy(), values.numpy(), count.numpy()
        if ids_np.size and (ids_np.min() < 0 or ids_np.max() >= n):
            raise ValueError(
                f"`ids` out of range: must be in [0, num_neurons={n}), got min {ids_np.min()}, max {ids_np.max()}"
            )
        if count_np.size and count_np.min() < 0:
            raise ValueError(f"`count` must be >= 0, got min {count_np.min()}")
        if count_np.size and count_np.max() > k:
            raise ValueError(f"`count` > K (capacity={k}): got max count {count_np.max()}")
        padding = np.arange(k) >= count_np[..., None]
        if np.any(values_np[padding] != 0):
            raise ValueError("`values` must be 0 at padding entries (index >= count)")
        if not np.all(np.isfinite(values_np)):
            raise ValueError("`values` contain NaN or infinite entries")
        return SparseSpikes(ids=ids, values=values, count=count)

    checks = [
        tf.debugging.assert_equal(tf.shape(values), tf.shape(ids), message="`values` must have the shape of `ids`"),
        tf.debugging.assert_equal(
            tf.shape(count), tf.shape(ids)[:-1], message="`count` must have the shape of `ids` without K"
        ),
        tf.debugging.assert_greater_equal(ids, 0, message=f"`ids` out of range [0, num_neurons={n})"),
        tf.debugging.assert_less(ids, n, message=f"`ids` out of range [0, num_neurons={n})"),
        tf.debugging.assert_greater_equal(count, 0, message="`count` must be >= 0"),
        tf.debugging.assert_less_equal(count, k, message=f"`count` > K (capacity={k})"),
    ]
    with tf.control_dependencies(checks[:2]):
        padding = tf.range(k, dtype=tf.int32) >= tf.expand_dims(count, -1)
        padding_values = tf.where(padding, values, tf.zeros_like(values))
    checks.append(
        tf.debugging.assert_equal(
            padding_values,
            tf.zeros_like(padding_values),
            message="`values` must be 0 at padding entries (index >= count)",
        )
    )
    checks.append(tf.debugging.assert_all_finite(values, message="`values` contain NaN or infinite entries"))
    with tf.control_dependencies(checks):
        return SparseSpikes(ids=tf.identity(ids), values=tf.identity(values), count=tf.identity(count))
