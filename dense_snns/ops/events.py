"""Event-driven products as C++ kernels: a product whose cost follows the nonzero inputs.

    y[m, :] = sum_{k < count[m]} values[m, k] * W[ids[m, k], :]

`event_linear(ids, values, count, kernel)` takes the events (`sparse_snns`' SparseLinear
runs on it); `event_matmul(x, kernel)` is ``x @ kernel`` for a dense x [M, N_in] computed over
its nonzero entries only: the kernel `DenseSnnsDenseToEvents` lists them per row (no
capacity, nothing dropped: K is the largest count of the call), then the same product
runs. Exact for any values (zeros contribute nothing to a product), equal to the dense
product to float round-off (the sum runs in another order). Its gradients: the kernel's over
the events only, x's dense (``dy @ W^T``: a zero input has a gradient too), which graph
pruning removes where nothing asks for it (the first layer of a model).

The kernels (`event_linear_ops.cc`, blocked over output columns, multi-threaded over
TensorFlow's intra-op threads, vectorised per instruction set) are built at first use
(see `OpLibrary`).
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from ._build import OpLibrary, in_xla_context

__all__ = [
    "LIBRARY",
    "OP_DTYPES",
    "event_linear",
    "event_matmul",
    "event_weight_gradient",
    "events_of",
    "load",
    "load_error",
    "nonzero_fraction",
    "op_available",
    "refusal",
]

LIBRARY = OpLibrary(
    directory=os.path.dirname(os.path.abspath(__file__)),
    sources=("event_linear_ops.cc",),
    headers=("spikes_common.h", "simd.h"),
    prefix="dense_snns_event_ops",
    description="dense_snns: the C++ event-driven products (SparseLinear, event inputs of the dense layers)",
)

load = LIBRARY.load
op_available = LIBRARY.op_available
load_error = LIBRARY.load_error

#: Dtypes of the kernels.
OP_DTYPES = (tf.float32, tf.float64)

tf.no_gradient("DenseSnnsDenseToEvents")
tf.no_gradient("DenseSnnsNonzeroFraction")


def refusal(dtype) -> Optional[str]:
    """Why the kernels cannot run a product of `dtype` here (None if they can; may build the
    library)."""
    if in_xla_context():
        return "the call is compiled by XLA (jit_compile=True), where the C++ ops have no kernel"
    if tf.as_dtype(dtype) not in OP_DTYPES:
        return f"the C++ ops support float32 and float64, got dtype {tf.as_dtype(dtype).name}"
    if not op_available():
        return f"the C++ ops are unavailable: {load_error()}"
    return None


def event_linear(ids: tf.Tensor, values: tf.Tensor, count: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """[M, N_out] from events ids int32 [M, K], values [M, K], count int32 [M] (entries
    k >= count are padding) and kernel [N_in, N_out]; no checks. Gradients to values (the K
    entries) and kernel (dense [N_in, N_out])."""
    lib = load()

    @tf.custom_gradient
    def linear(values, kernel):
        output = lib.dense_snns_sparse_linear(ids, values, count, kernel)

        def grad(dy):
            dy = tf.convert_to_tensor(dy)
            d_kernel = event_weight_gradient(ids, values, count, dy, kernel)
            d_values = lib.dense_snns_sparse_linear_grad_values(ids, count, kernel, dy)
            return d_values, d_kernel

        return output, grad

    return linear(values, kernel)


def event_weight_gradient(ids, values, count, dy: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """The kernel gradient [N_in, N_out] of `event_linear` given dy [M, N_out] (no checks)."""
    return load().dense_snns_sparse_linear_grad_weights(ids, values, count, dy, kernel)


def events_of(x: tf.Tensor):
    """(ids int32 [M, K], values [M, K], count int32 [M]): the nonzero entries of each row of
    x [M, N_in] in column order, K the largest count (at least 1); padding: id 0, value 0."""
    return load().dense_snns_dense_to_events(x)


def nonzero_fraction(x: tf.Tensor, sample: int = 1 << 16) -> tf.Tensor:
    """float32 scalar: the fraction of nonzero entries of x [M, N] over evenly spaced rows
    holding about `sample` entries (one pass, no copies)."""
    return load().dense_snns_nonzero_fraction(x, sample=sample)


def event_matmul(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """``x @ kernel`` (x [M, N_in], kernel [N_in, N_out], one float dtype) over the nonzero
    entries of x; gradients: kernel's over the events, x's dense."""
    lib = load()

    @tf.custom_gradient
    def product(x, kernel):
        ids, values, count = lib.dense_snns_dense_to_events(x)
        output = lib.dense_snns_sparse_linear(ids, values, count, kernel)

        def grad(dy):
            dy = tf.convert_to_tensor(dy)
            d_kernel = lib.dense_snns_sparse_linear_grad_weights(ids, values, count, dy, kernel)
            return tf.matmul(dy, kernel, transpose_b=True), d_kernel

        return output, grad

    return product(x, kernel)
