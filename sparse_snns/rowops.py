"""Per-vector index selection, gathers and scatters: a C++ op or pure TensorFlow.

Three building blocks of the sparse format, on vectors of size N with any leading shape
``[...]``:

* `select_indices` (x [..., N] -> ids [..., Ke], count [...], first_total [...]): the indices
  of the neurons selected by a first rule (``x > 0`` or NaN, or ``x != 0``) in increasing order, then
  optionally the others (all, or those with ``x > second_threshold``) in increasing order,
  up to Ke = min(capacity, N) slots; unused slots hold id 0. ``first_total`` counts all
  first-rule neurons, also those that did not fit, so overflow is exact. With
  ``gather=True`` it also returns x at the selected neurons (as `gather_rows`), which the
  op gathers while it selects.
* `gather_rows` (x [..., N], ids [..., K], count -> [..., K]): ``x[..., ids[..., k]]`` for
  ``k < count``, 0 at padding. Gradient to x: `scatter_rows`.
* `scatter_rows` (ids, count, updates [..., K], N -> [..., N]): zeros, plus the updates added
  at their ids (padding adds nothing). Gradient to updates: `gather_rows`.

Two implementations with one contract, tested against each other:

* ``"kernel"``: C++ CPU kernels (`sparse_snns.ops`, ``select_ops.cc``, built from source with the
  SparseLinear kernels into one library at first use): multi-threaded over vectors;
  float32/float64.
* ``"compiled"``: pure TensorFlow (prefix sums and a segment max for the selection, no sort;
  batched gather; scatter-add); compiles under XLA.

``implementation="auto"`` takes the op when it is available, the dtype is float32/float64
and the call is not being compiled by XLA; float16 and bfloat16 take the pure-TF path. The
first ``"auto"`` or ``"kernel"`` call builds the C++ library (a C++ compiler is needed; without
one the pure-TF path runs, with a warning); ``"compiled"`` never touches it.

ids and count must be int32 (TypeError naming the argument). Their values (count in [0, K],
ids of valid entries in [0, N)) are checked by the op, and on the pure-TF path by
`tf.debugging` assertions (InvalidArgumentError on both paths; XLA compiles the assertions
out).
"""

from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf

from . import ops as _ops
from ._checks import (
    IMPLEMENTATIONS,
    OP_DTYPES,
    check_ids_count,
    check_implementation,
    check_positive_int,
    in_xla_context,
    resolve,
    valid_mask,
    with_value_assertions,
)

__all__ = [
    "IMPLEMENTATIONS",
    "OP_DTYPES",
    "check_implementation",
    "compact_indices",
    "gather_rows",
    "in_xla_context",
    "resolve",
    "scatter_rows",
    "select_indices",
]

_FIRST_RULES = ("positive", "nonzero")
_SECOND_RULES = (None, "all", "above")


def _flat(x: tf.Tensor, width: int) -> tf.Tensor:
    return x if x.shape.rank == 2 else tf.reshape(x, [-1, width])


def _lead_shape(x: tf.Tensor) -> list:
    static = x.shape.as_list()[:-1]
    if all(d is not None for d in static):
        return static
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(static)]


def _restore(flat: tf.Tensor, lead: list, last: int) -> tf.Tensor:
    if len(lead) == 1 and flat.shape.rank == 2:
        return flat
    return tf.reshape(flat, lead + [last])


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------


def compact_indices(first: tf.Tensor, then: Optional[tf.Tensor], capacity: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Slots of the selected neurons of each vector, in O(N) (prefix sums, no sort): pure TF.

    Args:
        first: bool [..., N], neurons selected first, in increasing index.
        then: bool [..., N] or None, neurons that take the remaining slots, in increasing
            index (entries also in `first` are ignored).
        capacity: K.
    Returns: (ids int32 [..., min(K, N)] with 0 at unused slots, count int32 [...]).
    """
    n = int(first.shape[-1])
    k_eff = min(capacity, n)
    lead = tf.shape(first)[:-1]
    first_i = tf.cast(first, tf.int32)
    slot = tf.cumsum(first_i, axis=-1, exclusive=True)
    n_first = tf.reduce_sum(first_i, axis=-1)
    selected = first
    total = n_first
    if then is not None:
        second = tf.logical_and(then, tf.logical_not(first))
        second_i = tf.cast(second, tf.int32)
        slot = tf.where(second, n_first[..., None] + tf.cumsum(second_i, axis=-1, exclusive=True), slot)
        selected = tf.logical_or(first, second)
        total = total + tf.reduce_sum(second_i, axis=-1)
    keep = tf.logical_and(selected, slot < k_eff)
    # One segment per (vector, slot); whatever is not kept goes to an extra, discarded slot.
    rows = tf.reshape(tf.range(tf.reduce_prod(lead)), tf.concat([lead, [1]], 0))
    segment = rows * (k_eff + 1) + tf.where(keep, slot, k_eff)
    iota = tf.broadcast_to(tf.range(n, dtype=tf.int32), tf.shape(first))
    num_segments = tf.reduce_prod(lead) * (k_eff + 1)
    best = tf.math.unsorted_segment_max(tf.reshape(iota, [-1]), tf.reshape(segment, [-1]), num_segments)
    ids = tf.reshape(best, tf.concat([lead, [k_eff + 1]], 0))[..., :k_eff]
    count = tf.minimum(total, k_eff)
    ids = tf.where(tf.range(k_eff, dtype=tf.int32) < count[..., None], ids, tf.zeros_like(ids))
    return ids, count


def select_indices(
    x: tf.Tensor,
    capacity: int,
    first: str = "positive",
    second: Optional[str] = None,
    second_threshold: float = 0.0,
    implementation: str = "auto",
    gather: bool = False,
) -> Tuple[tf.Tensor, ...]:
    """Select up to Ke = min(`capacity`, N) neurons of each vector of `x` [..., N].

    Args:
        x: floating [..., N] with a static N >= 1 (the op needs float32/float64; float16
            and bfloat16 take the pure-TF path under ``"auto"``).
        capacity: K > 0.
        first: ``"positive"`` (x > 0 or NaN) or ``"nonzero"`` (x != 0, NaN included): the
            neurons taken first.
        second: None, ``"all"`` (every other neuron) or ``"above"`` (the others with
            x > `second_threshold`): the neurons that take the free slots.
        implementation: ``"auto"``, ``"kernel"`` or ``"compiled"``.
        gather: also return ``gather_rows(x, ids, count)``, x at the selected neurons
            (the op gathers while it selects, without a second pass over x).
    Returns: (ids int32 [..., Ke] with 0 at unused slots, count int32 [...] = filled slots,
    first_total int32 [...] = number of first-rule neurons, also those that did not fit)
    and, with `gather`, the gathered x [..., Ke] (0 at unused slots; gradient to x). The
    indices have no gradient.
    """
    if first not in _FIRST_RULES:
        raise ValueError(f"`first` must be one of {_FIRST_RULES}, got first={first!r}")
    if second not in _SECOND_RULES:
        raise ValueError(f"`second` must be one of {_SECOND_RULES}, got second={second!r}")
    capacity = check_positive_int(capacity, "capacity")
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(f"`x` must be floating, got dtype {x.dtype.name}")
    if x.shape.rank is None or x.shape.rank == 0:
        raise ValueError(f"`x` must have a static rank >= 1 ([..., N]), got shape {x.shape}")
    if x.shape[-1] is None or x.shape[-1] == 0:
        raise ValueError(f"`x` must have a static last dimension N >= 1, got shape {x.shape}")
    n = int(x.shape[-1])
    k_eff = min(capacity, n)
    source = x
    x = tf.stop_gradient(x)
    if resolve(implementation, x.dtype) == "kernel":
        lead = _lead_shape(x)
        flat_ids, flat_count, first_total, selected = _ops.load().dense_snns_select_spikes(
            _flat(x, n),
            tf.constant(second_threshold, x.dtype),
            capacity=capacity,
            first=first,
            second="none" if second is None else second,
        )
        count_shape = lead if lead else []
        result = (
            _restore(flat_ids, lead, k_eff),
            tf.reshape(flat_count, count_shape),
            tf.reshape(first_total, count_shape),
        )
        if gather:
            selected = _with_scatter_gradient(_flat(source, n), flat_ids, flat_count, selected)
            result += (_restore(selected, lead, k_eff),)
        return result
    zero = tf.zeros([], x.dtype)
    # "positive" takes NaN too (not x <= 0): a NaN membrane is selected, so it surfaces.
    first_mask = tf.logical_not(x <= zero) if first == "positive" else tf.not_equal(x, zero)
    then = None
    if second == "all":
        then = tf.ones_like(first_mask)
    elif second == "above":
        then = x > tf.constant(second_threshold, x.dtype)
    ids, count = compact_indices(first_mask, then, capacity)
    first_total = tf.reduce_sum(tf.cast(first_mask, tf.int32), axis=-1)
    if gather:
        return ids, count, first_total, _tf_gather(source, ids, count)
    return ids, count, first_total


# --------------------------------------------------------------------------------------------
# gather / scatter along the last axis
# --------------------------------------------------------------------------------------------


def _tf_gather(x, ids, count):
    rank = x.shape.rank
    valid = valid_mask(count, int(ids.shape[-1]))
    safe_ids = tf.where(valid, ids, tf.zeros_like(ids))
    gathered = tf.gather(x, safe_ids, axis=rank - 1, batch_dims=rank - 1)
    return tf.where(valid, gathered, tf.zeros_like(gathered))


def _tf_scatter(ids, count, updates, n):
    k = int(ids.shape[-1])
    valid = valid_mask(count, k)
    updates = tf.where(valid, updates, tf.zeros_like(updates))
    safe_ids = tf.where(valid, ids, tf.zeros_like(ids))
    lead = _lead_shape(ids)
    flat_ids = _flat(safe_ids, k)
    flat_updates = _flat(updates, k)
    rows = tf.shape(flat_ids)[0]
    row_index = tf.broadcast_to(tf.range(rows, dtype=flat_ids.dtype)[:, None], tf.shape(flat_ids))
    indices = tf.stack([row_index, flat_ids], axis=-1)  # [M, K, 2]
    dense = tf.tensor_scatter_nd_add(tf.zeros(tf.stack([rows, n]), updates.dtype), indices, flat_updates)
    return tf.reshape(dense, lead + [n])


# The op versions work on flat rows: ids [M, K], count [M]. Each one's gradient is the other
# one, called through its own custom gradient, so gradients of any order exist.


def _op_gather_flat(x, ids, count):
    """x [M, N] -> [M, K]; gradient to x: `_op_scatter_flat`."""
    n = int(x.shape[-1])

    @tf.custom_gradient
    def gather(x):
        def grad(dy):
            return _op_scatter_flat(ids, count, dy, n)

        return _ops.load().dense_snns_gather_rows(x, ids, count), grad

    return gather(x)


def _op_scatter_flat(ids, count, updates, n):
    """updates [M, K] -> [M, n]; gradient to updates: `_op_gather_flat`."""

    @tf.custom_gradient
    def scatter(updates):
        def grad(dy):
            return _op_gather_flat(dy, ids, count)

        return _ops.load().dense_snns_scatter_rows(ids, count, updates, num_columns=n), grad

    return scatter(updates)


def _with_scatter_gradient(x, ids, count, gathered):
    """`gathered` (= x [M, N] at ids [M, K], computed by the selection op) with the gradient
    of `_op_gather_flat` to x."""
    n = int(x.shape[-1])

    @tf.custom_gradient
    def attach(x):
        def grad(dy):
            return _op_scatter_flat(ids, count, dy, n)

        return tf.identity(gathered), grad

    return attach(x)


def _op_gather(x, ids, count):
    lead, k, n = _lead_shape(ids), int(ids.shape[-1]), int(x.shape[-1])
    out = _op_gather_flat(_flat(x, n), _flat(ids, k), tf.reshape(count, [-1]))
    return _restore(out, lead, k)


def _op_scatter(ids, count, updates, n):
    lead, k = _lead_shape(ids), int(ids.shape[-1])
    out = _op_scatter_flat(_flat(ids, k), tf.reshape(count, [-1]), _flat(updates, k), n)
    return _restore(out, lead, n)


def gather(x, ids, count, chosen: str):
    """`gather_rows` on checked arguments with a resolved implementation ("kernel" or
    "compiled"): what callers use after checking their inputs once."""
    return _op_gather(x, ids, count) if chosen == "kernel" else _tf_gather(x, ids, count)


def scatter(ids, count, updates, n: int, chosen: str):
    """`scatter_rows` on checked arguments with a resolved implementation."""
    return _op_scatter(ids, count, updates, n) if chosen == "kernel" else _tf_scatter(ids, count, updates, n)


def _checked(ids, count, other, other_name: str, n: int, chosen: str):
    """Checks shared by `gather_rows` and `scatter_rows`; the pure-TF path gets the value
    assertions the op makes itself."""
    ids, count = check_ids_count(ids, count)
    if not ids.shape[:-1].is_compatible_with(other.shape[:-1]):
        raise ValueError(f"`{other_name}` must have the leading shape of `ids` {ids.shape[:-1]}, got {other.shape}")
    if chosen == "compiled":
        ids = with_value_assertions(ids, count, n, "N", f"the last dimension of the dense rows, {n}")
    return ids, count


def gather_rows(x, ids, count, implementation: str = "auto") -> tf.Tensor:
    """``x[..., ids[..., k]]`` for ``k < count[...]``, 0 at padding: [..., K].

    `x` [..., N] (static N), ids int32 [..., K] (static K; entries past count may hold any
    value), count int32 [...] in [0, K]. Gradient to `x` (a scatter of the K entries), of
    any order.
    """
    check_implementation(implementation)
    x = tf.convert_to_tensor(x)
    if x.shape.rank is None or x.shape.rank == 0 or x.shape[-1] is None:
        raise ValueError(f"`x` must have a static shape [..., N] (N known), got shape {x.shape}")
    chosen = resolve(implementation, x.dtype)
    ids, count = _checked(ids, count, x, "x", int(x.shape[-1]), chosen)
    return gather(x, ids, count, chosen)


def scatter_rows(ids, count, updates, num_columns: int, implementation: str = "auto") -> tf.Tensor:
    """Zeros [..., num_columns] plus ``updates[..., k]`` added at ``ids[..., k]`` for ``k < count``.

    ids int32 [..., K], count int32 [...] in [0, K], updates [..., K]. Gradient to `updates`
    (a gather of the K entries), of any order. Ids of valid entries must be in
    [0, num_columns): the op and the assertions of the pure-TF path raise otherwise (under
    XLA, whose scatter drops them, they are not checked).
    """
    check_implementation(implementation)
    updates = tf.convert_to_tensor(updates)
    num_columns = check_positive_int(num_columns, "num_columns")
    chosen = resolve(implementation, updates.dtype)
    ids, count = _checked(ids, count, updates, "updates", num_columns, chosen)
    if not ids.shape.is_compatible_with(updates.shape):
        raise ValueError(f"`updates` must have the shape of `ids` {ids.shape}, got {updates.shape}")
    return scatter(ids, count, updates, num_columns, chosen)
