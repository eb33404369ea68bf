"""Event-driven products as C++ kernels: a product whose cost follows the nonzero inputs.

    y[m, :] = sum_{k < count[m]} values[m, k] * W[ids[m, k], :]

`event_linear(ids, values, count, kernel)` takes the events (`sparse_snns`' SparseLinear
runs on it); `event_linear_packed` the same with the kernel already in the kernels' packed
layout (`pack_kernel`: a loop that multiplies by one kernel at every step packs it once);
`event_matmul(x, kernel)` is ``x @ kernel`` for a dense x [M, N_in] computed over its
nonzero entries only: the kernel `DenseSnnsDenseToEvents` lists them per row (no
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
    "event_linear_packed",
    "event_matmul",
    "event_weight_gradient",
    "events_of",
    "load",
    "load_error",
    "nonzero_fraction",
    "op_available",
    "pack_kernel",
    "packed_weight_gradient",
    "packed_width",
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


#: The kernels' column blocks are at most 4 cache lines wide, and narrower when a block of all
#: N_in rows would exceed this many bytes (it must stay in L2; `event_linear_ops.cc`).
PACK_BUDGET_BYTES = 1 << 20


def packed_width(n_in: int, dtype) -> int:
    """Columns per block of `pack_kernel` for N_in rows: 4, 2 or 1 cache lines of 64 bytes,
    the widest whose block of N_in rows fits PACK_BUDGET_BYTES (the kernels' own choice)."""
    lines = 4
    while lines > 1 and n_in * 64 * lines > PACK_BUDGET_BYTES:
        lines //= 2
    return lines * 64 // tf.as_dtype(dtype).size


def pack_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """kernel [N_in, N_out] (static shape) -> packed [blocks, N_in, width], packed[b, i, j] =
    kernel[i, b * width + j], zeros past N_out (width: `packed_width`). Plain TensorFlow ops
    (a pad and a transpose), so gradients flow back through it."""
    n_in, n_out = (int(d) for d in kernel.shape)
    width = packed_width(n_in, kernel.dtype)
    blocks = -(-n_out // width)
    padded = tf.pad(kernel, [[0, 0], [0, blocks * width - n_out]])
    return tf.transpose(tf.reshape(padded, [n_in, blocks, width]), [1, 0, 2])


def event_linear_packed(ids: tf.Tensor, values: tf.Tensor, count: tf.Tensor, packed: tf.Tensor, n_out: int):
    """`event_linear` with the kernel packed (`pack_kernel`; N_out = `n_out`): [M, N_out].
    Gradients to values and to `packed` (in the packed layout)."""
    lib = load()
    n_in = int(packed.shape[1])

    @tf.custom_gradient
    def linear(values, packed):
        output = lib.dense_snns_sparse_linear_packed(ids, values, count, packed, n_out=n_out)

        def grad(dy):
            dy = tf.convert_to_tensor(dy)
            d_values = lib.dense_snns_sparse_linear_packed_grad_values(ids, count, packed, dy)
            return d_values, packed_weight_gradient(ids, values, count, dy, n_in)

        return output, grad

    return linear(values, packed)


def packed_weight_gradient(ids, values, count, dy: tf.Tensor, n_in: int) -> tf.Tensor:
    """The gradient of the packed kernel of `event_linear_packed` given dy [M, N_out], in the
    packed layout (no checks)."""
    shape_only = tf.zeros([n_in, int(dy.shape[-1])], dy.dtype)  # the op reads only its shape
    return pack_kernel(event_weight_gradient(ids, values, count, dy, shape_only))


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
