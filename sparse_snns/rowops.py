"""Per-vector index selection, gathers and scatters: a C++ op or pure TensorFlow.

Three building blocks of the sparse format, on vectors of size N with any leading shape
``[...]``:

* `select_indices` (x [..., N] -> ids [..., Ke], count [...], first_total [...]): the indices
  of the neurons selected by a first rule (``x > 0`` or ``x != 0``) in increasing order, then
  optionally the others (all, or those with ``x > second_threshold``) in increasing order,
  up to Ke = min(capacity, N) slots; unused slots hold id 0. ``first_total`` counts all
  first-rule neurons, also those that did not fit, so overflow is exact.
* `gather_rows` (x [..., N], ids [..., K], count -> [..., K]): ``x[..., ids[..., k]]`` for
  ``k < count``, 0 at padding. Gradient to x: `scatter_rows`.
* `scatter_rows` (ids, count, updates [..., K], N -> [..., N]): zeros, plus the updates added
  at their ids (padding adds nothing). Gradient to updates: `gather_rows`.

Two implementations with one contract, tested against each other:

* ``"op"``: C++ CPU kernels (`sparse_snns.ops`, ``select_ops.cc``): one pass per vector,
  multi-threaded over vectors; float32/float64.
* ``"tf"``: pure TensorFlow (prefix sums and a segment max for the selection, no sort;
  batched gather; scatter-add); compiles under XLA.

``implementation="auto"`` takes the op when it is available, the dtype is float32/float64
and the call is not being compiled by XLA. This module depends on TensorFlow only.
"""
from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf

from . import ops as _ops

__all__ = [
    "IMPLEMENTATIONS",
    "compact_indices",
    "gather_rows",
    "in_xla_context",
    "resolve",
    "scatter_rows",
    "select_indices",
]

#: Accepted values of `implementation`.
IMPLEMENTATIONS = ("auto", "op", "tf")

#: Dtypes of the C++ kernels.
OP_DTYPES = (tf.float32, tf.float64)

_FIRST_RULES = ("positive", "nonzero")
_SECOND_RULES = (None, "all", "above")


def in_xla_context() -> bool:
    """True while TensorFlow traces a function for XLA (``tf.function(jit_compile=True)``)."""
    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - very old or stripped TensorFlow
        return False
    try:
        return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
    except Exception:  # noqa: BLE001 - internal API: never fail because of the probe
        return False


def check_implementation(implementation) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"`implementation` must be one of {IMPLEMENTATIONS}, got implementation={implementation!r}")
    return implementation


def resolve(implementation: str, dtype: tf.DType, what: str = "the C++ op") -> str:
    """The implementation that will run for `dtype`: "op" or "tf" (errors for an impossible "op")."""
    check_implementation(implementation)
    if implementation == "tf":
        return "tf"
    if implementation == "op":
        if in_xla_context():
            raise ValueError(
                f"implementation='op' cannot be compiled by XLA (jit_compile=True): {what} has no XLA "
                "kernel; use implementation='auto' or 'tf'"
            )
        if dtype not in OP_DTYPES:
            raise TypeError(
                f"implementation='op' supports float32 and float64, got dtype {dtype.name}; "
                "use implementation='auto' or 'tf'"
            )
        if not _ops.op_available():
            raise RuntimeError(f"implementation='op' requested but {what} is unavailable: {_ops.load_error()}")
        return "op"
    if dtype in OP_DTYPES and not in_xla_context() and _ops.op_available():
        return "op"
    return "tf"


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
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Select up to Ke = min(`capacity`, N) neurons of each vector of `x` [..., N].

    Args:
        x: [..., N] with a static N (float; the op needs float32/float64).
        capacity: K > 0 (checked by the callers).
        first: ``"positive"`` (x > 0) or ``"nonzero"`` (x != 0): the neurons taken first.
        second: None, ``"all"`` (every other neuron) or ``"above"`` (the others with
            x > `second_threshold`): the neurons that take the free slots.
        implementation: ``"auto"``, ``"op"`` or ``"tf"``.
    Returns: (ids int32 [..., Ke] with 0 at unused slots, count int32 [...] = filled slots,
    first_total int32 [...] = number of first-rule neurons, also those that did not fit).
    No gradient (indices only).
    """
    if first not in _FIRST_RULES:
        raise ValueError(f"`first` must be one of {_FIRST_RULES}, got first={first!r}")
    if second not in _SECOND_RULES:
        raise ValueError(f"`second` must be one of {_SECOND_RULES}, got second={second!r}")
    n = int(x.shape[-1])
    k_eff = min(int(capacity), n)
    x = tf.stop_gradient(x)
    if resolve(implementation, x.dtype) == "op":
        lead = _lead_shape(x)
        ids, count, first_total = _ops.load().dense_snns_select_spikes(
            _flat(x, n), tf.constant(second_threshold, x.dtype), capacity=int(capacity), first=first,
            second="none" if second is None else second,
        )
        count_shape = lead if lead else []
        return (_restore(ids, lead, k_eff), tf.reshape(count, count_shape), tf.reshape(first_total, count_shape))
    zero = tf.zeros([], x.dtype)
    first_mask = x > zero if first == "positive" else tf.not_equal(x, zero)
    then = None
    if second == "all":
        then = tf.ones_like(first_mask)
    elif second == "above":
        then = x > tf.constant(second_threshold, x.dtype)
    ids, count = compact_indices(first_mask, then, capacity)
    first_total = tf.reduce_sum(tf.cast(first_mask, tf.int32), axis=-1)
    return ids, count, first_total


# --------------------------------------------------------------------------------------------
# gather / scatter along the last axis
# --------------------------------------------------------------------------------------------


def _valid(count: tf.Tensor, k: int) -> tf.Tensor:
    return tf.range(k, dtype=tf.int32) < tf.expand_dims(count, -1)


def _tf_gather(x, ids, count):
    rank = x.shape.rank
    valid = _valid(count, int(ids.shape[-1]))
    safe_ids = tf.where(valid, ids, tf.zeros_like(ids))
    gathered = tf.gather(x, safe_ids, axis=rank - 1, batch_dims=rank - 1)
    return tf.where(valid, gathered, tf.zeros_like(gathered))


def _tf_scatter(ids, count, updates, n):
    k = int(ids.shape[-1])
    valid = _valid(count, k)
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


def _op_gather(x, ids, count):
    lead, k, n = _lead_shape(ids), int(ids.shape[-1]), int(x.shape[-1])
    flat_ids, flat_count = _flat(ids, k), tf.reshape(count, [-1])

    @tf.custom_gradient
    def gather(x):
        out = _ops.load().dense_snns_gather_rows(_flat(x, n), flat_ids, flat_count)

        def grad(dy):
            return tf.reshape(_ops.load().dense_snns_scatter_rows(flat_ids, flat_count, _flat(dy, k), num_columns=n),
                              tf.shape(x))

        return _restore(out, lead, k), grad

    return gather(x)


def _op_scatter(ids, count, updates, n):
    lead, k = _lead_shape(ids), int(ids.shape[-1])
    flat_ids, flat_count = _flat(ids, k), tf.reshape(count, [-1])

    @tf.custom_gradient
    def scatter(updates):
        out = _ops.load().dense_snns_scatter_rows(flat_ids, flat_count, _flat(updates, k), num_columns=n)

        def grad(dy):
            return tf.reshape(_ops.load().dense_snns_gather_rows(_flat(dy, n), flat_ids, flat_count), tf.shape(updates))

        return _restore(out, lead, n), grad

    return scatter(updates)


def gather_rows(x, ids, count, implementation: str = "auto") -> tf.Tensor:
    """``x[..., ids[..., k]]`` for ``k < count[...]``, 0 at padding: [..., K].

    `x` [..., N] (static N), ids int32 [..., K] (static K; entries past count may hold any
    value), count int32 [...]. Gradient to `x` (a scatter of the K entries).
    """
    if resolve(implementation, x.dtype) == "op":
        return _op_gather(x, ids, count)
    return _tf_gather(x, ids, count)


def scatter_rows(ids, count, updates, num_columns: int, implementation: str = "auto") -> tf.Tensor:
    """Zeros [..., num_columns] plus ``updates[..., k]`` added at ``ids[..., k]`` for ``k < count``.

    Gradient to `updates` (a gather of the K entries). Ids must be in [0, num_columns): the
    op and TensorFlow's CPU scatter raise otherwise (XLA and GPU scatters drop them).
    """
    if resolve(implementation, updates.dtype) == "op":
        return _op_scatter(ids, count, updates, int(num_columns))
    return _tf_scatter(ids, count, updates, int(num_columns))
