"""SparseLinear: a linear map whose input is `SparseSpikes`.

    y[..., :] = sum_{k < count[...]} values[..., k] * kernel[ids[..., k], :]  (+ bias)

Cost O(K * N_out) per vector instead of O(N_in * N_out) for the dense product. Gradients flow
to `kernel` (a dense [N_in, N_out] tensor: only the rows of the K selected inputs receive
non-zero values), to `bias` and to `values` (computed only for the K entries, 0 for padding),
never to `ids` or `count`. Chained through the surrogate gradient of the neurons that
produced the spikes this is sparse BPTT: only the selected neurons receive gradient.

Two implementations with one contract, tested against each other and against
``to_dense(spikes) @ kernel``:

* ``"kernel"``: C++ CPU kernels (`dense_snns.ops.events`, built from source at first use), blocked over
  output columns and multi-threaded over TensorFlow's intra-op thread pool; float32/float64.
* ``"compiled"``: pure TensorFlow (gathers, weighted sums and a dense scatter-add); compiles under
  XLA (``jit_compile=True``), which is what the IPU and other XLA devices use. Large inputs
  are processed in row chunks so the gathered rows never exceed about 32 MiB.

``implementation="auto"`` takes the op when it is available, the dtype is float32/float64
and the call is not being compiled by XLA; otherwise (float16, bfloat16, XLA, no compiler)
the pure-TF path.

Entries of value 0 (the gradient-only entries of a selection) contribute nothing to the
output and to the kernel gradient, by definition, and the op skips them (those at the end of
a row in the forward sum, all of them in the kernel gradient); they still receive a values
gradient. So where a kernel row or an output gradient holds Inf or NaN, the pure-TF path
computes 0 * Inf = NaN for such an entry and the op may give a finite result; with finite
kernels and gradients the two agree.

Inputs are checked: the structure and dtypes of the spikes (ids and count int32, values of
the kernel's floating dtype), shapes, and the values: ids in [0, N_in) and count in [0, K]
(eagerly: ValueError; in a graph: InvalidArgumentError from the op or from assertions;
under XLA, which compiles the value checks out, invalid entries contribute nothing and are
counted instead: `check_spikes`, `SparseLinear.last_invalid`). Entries k >= count are
padding and ignored, whatever their ids.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from dense_snns.compat import keras, output_shape, register
from dense_snns.ops import events as event_ops

from ._checks import (
    IMPLEMENTATIONS,
    as_tensor as _as_tensor,
    check_ids_count,
    check_implementation as _check_implementation,
    check_positive_int as _check_positive_int,
    check_values_eagerly,
    in_xla_context,
    resolve,
    sanitize,
    shape_list as _shape_list,
    valid_mask,
    with_value_assertions,
)
from .format import SparseSpikes, as_spikes

__all__ = [
    "IMPLEMENTATIONS",
    "CheckedSpikes",
    "PackedKernel",
    "SparseLinear",
    "check_inputs",
    "check_spikes",
    "check_values",
    "in_xla_context",
    "linear_product",
    "linear_values_gradient",
    "linear_weight_gradient",
    "loop_kernel",
    "sparse_linear",
    "stepped_kernel",
]

#: Elements of the gathered [rows, K, N_out] block of the pure-TF path above which it works
#: in row chunks (2**18 float32 = 1 MiB: the block stays in cache, the loop overhead is small).
TF_CHUNK_ELEMENTS = 1 << 18


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def check_inputs(spikes, kernel, bias):
    """Static checks of sparse spikes against a kernel [N_in, N_out] and an optional bias:
    TypeError or ValueError naming the argument. Returns the tensors."""
    spikes = as_spikes(spikes)
    ids, count = check_ids_count(spikes.ids, spikes.count)
    values = _as_tensor(spikes.values, "values")
    kernel = _as_tensor(kernel, "kernel")

    if not kernel.dtype.is_floating:
        raise TypeError(f"`kernel` must be floating, got dtype {kernel.dtype.name}")
    if not values.dtype.is_floating:
        raise TypeError(f"`values` must be floating, got dtype {values.dtype.name}")
    if values.dtype != kernel.dtype:
        raise TypeError(
            f"`values` dtype {values.dtype.name} does not match the `kernel` dtype {kernel.dtype.name}; "
            "cast one of them"
        )

    if kernel.shape.rank != 2:
        raise ValueError(f"`kernel` must have rank 2 [N_in, N_out], got shape {kernel.shape}")
    if not ids.shape.is_compatible_with(values.shape):
        raise ValueError(f"`values` must have the shape of `ids` {ids.shape}, got {values.shape}")

    if bias is not None:
        bias = _as_tensor(bias, "bias")
        if bias.dtype != kernel.dtype:
            raise TypeError(f"`bias` dtype {bias.dtype.name} does not match the `kernel` dtype {kernel.dtype.name}")
        if bias.shape.rank != 1:
            raise ValueError(f"`bias` must have rank 1 [N_out], got shape {bias.shape}")
        if not bias.shape.is_compatible_with(kernel.shape[1:]):
            raise ValueError(f"`bias` must have shape [N_out] = {kernel.shape[1:]}, got {bias.shape}")
    return ids, values, count, kernel, bias


def check_values(ids: tf.Tensor, count: tf.Tensor, kernel: tf.Tensor, chosen: str) -> tf.Tensor:
    """Value checks: ids of valid entries in [0, N_in), count in [0, K]. Eagerly a ValueError
    naming the field; in a graph the op checks them itself and the pure-TF path gets
    assertions (compiled out by XLA). Returns `ids` (depending on the assertions)."""
    where = "the first dimension of `kernel`"
    if tf.executing_eagerly():
        if kernel.shape[0] is not None:
            check_values_eagerly(ids, count, int(kernel.shape[0]), "N_in", where)
        return ids
    if chosen == "compiled":
        return with_value_assertions(ids, count, tf.shape(kernel, out_type=tf.int32)[0], "N_in", where)
    return ids


class CheckedSpikes(NamedTuple):
    """What `check_spikes` returns, for `linear_product`."""

    spikes: SparseSpikes  # of tensors; under XLA with invalid entries made harmless
    kernel: tf.Tensor
    bias: Optional[tf.Tensor]
    chosen: str  # the implementation that runs: "kernel" or "compiled"
    invalid: tf.Tensor  # int32 [...]: invalid entries per vector (only under XLA, else 0)


def check_spikes(spikes, kernel, bias=None, implementation: str = "auto", what: str = "sparse_linear"):
    """Everything `sparse_linear` checks, once, where spikes enter a public function or layer:
    a `CheckedSpikes`, which `linear_product` then takes as it is. Invalid ids and counts are a
    ValueError eagerly and an InvalidArgumentError in a graph; under XLA, which compiles such
    checks out, they are made harmless and counted (`_checks.sanitize`)."""
    ids, values, count, kernel, bias = check_inputs(spikes, kernel, bias)
    chosen = resolve(implementation, kernel.dtype, what, event_ops.refusal)
    ids = check_values(ids, count, kernel, chosen)
    if chosen == "compiled" and in_xla_context():
        ids, values, count, invalid = sanitize(ids, values, count, tf.shape(kernel, out_type=tf.int32)[0])
    else:
        invalid = tf.zeros_like(count)
    return CheckedSpikes(SparseSpikes(ids, values, count), kernel, bias, chosen, invalid)


# --------------------------------------------------------------------------------------------
# the two implementations on flat [M, K] spikes
# --------------------------------------------------------------------------------------------


def _chunk_rows(k: int, n_out) -> int:
    """Rows per chunk of the pure-TF path (the gathered block stays under TF_CHUNK_ELEMENTS)."""
    width = max(1, k * (n_out if isinstance(n_out, int) else 1024))
    return max(1, TF_CHUNK_ELEMENTS // width)


def _split_rows(tensors: Sequence[tf.Tensor], rows: int):
    """Zero-pad tensors [M, ...] to a multiple of `rows` rows and reshape them to [C, rows, ...]."""
    m = tf.shape(tensors[0])[0]
    chunks = tf.maximum((m + rows - 1) // rows, 1)
    out = []
    for t in tensors:  # padding rows: id 0, value 0, dy 0 -> contribute nothing
        t = tf.pad(t, [[0, chunks * rows - m]] + [[0, 0]] * (t.shape.rank - 1))
        out.append(tf.reshape(t, tf.concat([[chunks, rows], tf.shape(t)[1:]], 0)))
    return out, m


def _map_rows(fn, tensors: Sequence[tf.Tensor], rows: int, single: bool, dtype):
    """fn on row chunks of `tensors` (all [M, ...]), results concatenated to [M, ...]."""
    if single:
        return fn(*tensors)
    chunks, m = _split_rows(tensors, rows)
    out = tf.map_fn(lambda xs: fn(*xs), tuple(chunks), fn_output_signature=dtype, parallel_iterations=1)
    out = tf.reshape(out, tf.concat([[-1], tf.shape(out)[2:]], 0))
    return out[:m]


def _scatter_rows(ids, masked, dy, n_in, rows: int, single: bool):
    """Dense [N_in, N_out]: out[ids[m, k]] += masked[m, k] * dy[m], in row chunks."""
    n_out = tf.shape(dy)[-1]
    zeros = tf.zeros(tf.stack([n_in, n_out]), dy.dtype)

    def add(acc, chunk_ids, chunk_values, chunk_dy):
        updates = tf.expand_dims(chunk_values, -1) * tf.expand_dims(chunk_dy, 1)  # [R, K, N_out]
        return tf.tensor_scatter_nd_add(acc, tf.reshape(chunk_ids, [-1, 1]), tf.reshape(updates, tf.stack([-1, n_out])))

    if single:
        return add(zeros, ids, masked, dy)
    if not in_xla_context():
        # Outside XLA a loop would copy the [N_in, N_out] accumulator at every step: use the
        # sparse-dense product S^T dy over the valid entries instead (no [M, K, N_out] block).
        entries = tf.where(tf.not_equal(masked, 0))  # [events, 2] (m, k), int64
        rows_ids = tf.stack([tf.gather_nd(tf.cast(ids, tf.int64), entries), entries[:, 0]], axis=1)
        sparse_t = tf.sparse.SparseTensor(
            rows_ids, tf.gather_nd(masked, entries), tf.cast(tf.stack([n_in, tf.shape(dy)[0]]), tf.int64)
        )
        return tf.sparse.sparse_dense_matmul(sparse_t, dy)
    chunks, _ = _split_rows([ids, masked, dy], rows)
    return tf.foldl(lambda acc, xs: add(acc, *xs), tuple(chunks), initializer=zeros, parallel_iterations=1)


def _tf_linear(ids, values, count, kernel):
    k = int(ids.shape[-1])
    rows = _chunk_rows(k, kernel.shape[1])
    single = isinstance(ids.shape[0], int) and ids.shape[0] <= rows
    valid = valid_mask(count, k)
    safe_ids = tf.where(valid, ids, tf.zeros_like(ids))  # padding: a valid index with weight 0

    @tf.custom_gradient
    def linear(values, kernel):
        masked = tf.where(valid, values, tf.zeros_like(values))

        def forward_chunk(chunk_ids, chunk_values):
            gathered = tf.gather(kernel, chunk_ids)  # [R, K, N_out]
            return tf.reduce_sum(tf.expand_dims(chunk_values, -1) * gathered, axis=1)

        def values_grad_chunk(chunk_ids, chunk_dy):
            gathered = tf.gather(kernel, chunk_ids)  # [R, K, N_out]
            return tf.reduce_sum(gathered * tf.expand_dims(chunk_dy, 1), axis=-1)

        output = _map_rows(forward_chunk, [safe_ids, masked], rows, single, kernel.dtype)

        def grad(dy):
            dy = tf.convert_to_tensor(dy)
            d_kernel = _scatter_rows(safe_ids, masked, dy, tf.shape(kernel)[0], rows, single)
            d_values = _map_rows(values_grad_chunk, [safe_ids, dy], rows, single, kernel.dtype)
            d_values = tf.where(valid, d_values, tf.zeros_like(d_values))
            return d_values, d_kernel

        return output, grad

    return linear(values, kernel)


# --------------------------------------------------------------------------------------------
# public function
# --------------------------------------------------------------------------------------------


@tf.autograph.experimental.do_not_convert  # plain Python control flow only: trace it as is
def sparse_linear(spikes, kernel, bias=None, implementation: str = "auto") -> tf.Tensor:
    """y[..., :] = sum_{k < count} values[..., k] * kernel[ids[..., k], :] (+ bias).

    Args:
        spikes: a `SparseSpikes` (or a list/tuple ``[ids, values, count]``): ids int32
            [..., K], values [..., K] of the kernel's dtype, count int32 [...], any leading
            shape [...].
        kernel: [N_in, N_out] floating tensor or variable.
        bias: optional [N_out] of the kernel's dtype.
        implementation: ``"auto"`` (the C++ op when available and not under XLA, else pure
            TF), ``"kernel"`` (the C++ op; error if unavailable or under XLA) or ``"compiled"``.

    Returns:
        [..., N_out] tensor of the kernel's dtype. Gradients: kernel (dense), bias, values
        (only the K entries; 0 at padding); none for ids and count.
    """
    checked = check_spikes(spikes, kernel, bias, implementation)
    return linear_product(checked.spikes, checked.kernel, checked.bias, checked.chosen)


class PackedKernel(NamedTuple):
    """A kernel [N_in, N_out] in the C++ kernels' packed layout (`dense_snns.ops.events.pack_kernel`)
    and its N_out, for `linear_product` and `linear_weight_gradient` with ``chosen="kernel"``.
    A loop that multiplies by one kernel at every step packs it once per call (`loop_kernel`)
    instead of the kernels packing it at every product."""

    packed: tf.Tensor  # [blocks, N_in, width]
    n_out: int


def loop_kernel(kernel: tf.Tensor, chosen: str) -> tf.Tensor:
    """What a loop passes as a step tensor for `kernel` [N_in, N_out]: packed once
    ([blocks, N_in, width]) for the C++ kernels (a static shape needed), else the kernel.
    The step turns it back into a kernel argument with `stepped_kernel`."""
    if chosen == "kernel" and kernel.shape.rank == 2 and kernel.shape.is_fully_defined():
        return event_ops.pack_kernel(kernel)
    return kernel


def stepped_kernel(tensor: tf.Tensor, n_out: int):
    """The kernel argument of `linear_product` from a step tensor made by `loop_kernel` (or a
    plain kernel [N_in, N_out]): a `PackedKernel` if it is packed (rank 3), else the tensor."""
    return PackedKernel(tensor, int(n_out)) if tensor.shape.rank == 3 else tensor


@tf.autograph.experimental.do_not_convert
def linear_product(spikes: SparseSpikes, kernel, bias, chosen: str) -> tf.Tensor:
    """`sparse_linear` on what `check_spikes` returned (no checks): [..., N_out]. `kernel` may
    be a `PackedKernel` (then `chosen` must be ``"kernel"``)."""
    ids, values, count = spikes
    k = int(ids.shape[-1])
    flatten = ids.shape.rank != 2
    if flatten:  # any leading shape -> M rows
        flat_ids = tf.reshape(ids, [-1, k])
        flat_values = tf.reshape(values, [-1, k])
        flat_count = tf.reshape(count, [-1])
    else:
        flat_ids, flat_values, flat_count = ids, values, count

    if isinstance(kernel, PackedKernel):
        flat = event_ops.event_linear_packed(flat_ids, flat_values, flat_count, kernel.packed, kernel.n_out)
        out_features = tf.TensorShape([kernel.n_out])
    elif chosen == "kernel":
        flat = event_ops.event_linear(flat_ids, flat_values, flat_count, kernel)
        out_features = kernel.shape[1:]
    else:
        flat = _tf_linear(flat_ids, flat_values, flat_count, kernel)
        out_features = kernel.shape[1:]
    if bias is not None:
        flat = tf.nn.bias_add(flat, bias)
    if not flatten:
        return flat
    out_shape = ids.shape[:-1].concatenate(out_features)
    if out_shape.is_fully_defined():
        return tf.reshape(flat, out_shape.as_list())
    n_out = out_features[0] if out_features[0] is not None else tf.shape(kernel)[1]
    output = tf.reshape(flat, _shape_list(ids)[:-1] + [n_out])
    output.set_shape(out_shape)
    return output


@tf.autograph.experimental.do_not_convert
def linear_weight_gradient(spikes: SparseSpikes, d_output: tf.Tensor, kernel, chosen: str) -> tf.Tensor:
    """The kernel's gradient [N_in, N_out] of `linear_product(spikes, kernel, None, chosen)`
    given d_output [M, N_out], for flat spikes [M, K] (no checks): sum over the rows m and
    entries k < count[m] of values[m, k] * d_output[m] into row ids[m, k]. The product need
    not have run: this is its weight gradient alone (for example over many steps at once).
    For a `PackedKernel` the gradient of its packed tensor (packed likewise)."""
    ids, values, count = spikes
    if isinstance(kernel, PackedKernel):
        return event_ops.packed_weight_gradient(ids, values, count, d_output, int(kernel.packed.shape[1]))
    if chosen == "kernel":
        return event_ops.event_weight_gradient(ids, values, count, d_output, kernel)
    k = int(ids.shape[-1])
    rows = _chunk_rows(k, kernel.shape[1])
    single = isinstance(ids.shape[0], int) and ids.shape[0] <= rows
    valid = valid_mask(count, k)
    safe_ids = tf.where(valid, ids, tf.zeros_like(ids))
    masked = tf.where(valid, values, tf.zeros_like(values))
    return _scatter_rows(safe_ids, masked, d_output, tf.shape(kernel)[0], rows, single)


@tf.autograph.experimental.do_not_convert
def linear_values_gradient(spikes: SparseSpikes, d_output: tf.Tensor, kernel) -> tf.Tensor:
    """The values' gradient [M, K] of `linear_product(spikes, kernel, None, "kernel")` given
    d_output [M, N_out], for flat spikes [M, K] (no checks; the C++ ops: `kernel` a tensor
    or a `PackedKernel`): dot(d_output[m], kernel[ids[m, k]]) for k < count[m], else 0."""
    ids, _, count = spikes
    lib = event_ops.load()
    if isinstance(kernel, PackedKernel):
        return lib.dense_snns_sparse_linear_packed_grad_values(ids, count, kernel.packed, d_output)
    return lib.dense_snns_sparse_linear_grad_values(ids, count, kernel, d_output)


# --------------------------------------------------------------------------------------------
# Keras layer
# --------------------------------------------------------------------------------------------


def _spike_shapes(input_shape) -> Tuple[tf.TensorShape, tf.TensorShape, tf.TensorShape]:
    """(ids, values, count) shapes from a SparseSpikes / list of 3 shapes."""
    if isinstance(input_shape, dict):
        input_shape = [input_shape[name] for name in SparseSpikes._fields]
    if (
        isinstance(input_shape, (list, tuple))
        and len(input_shape) == 3
        and not all(isinstance(d, (int, type(None))) for d in input_shape)
    ):
        return tuple(tf.TensorShape(s) for s in input_shape)
    raise ValueError(
        "SparseLinear expects sparse spikes: a SparseSpikes or a list [ids, values, count] "
        f"(ids [..., K], values [..., K], count [...]), got input shape {input_shape}"
    )


@register(package="sparse_snns")
class SparseLinear(keras.layers.Layer):
    """Dense-like layer for sparse spikes: y = sum_{k < count} values[k] * kernel[ids[k], :] + bias.

    Args:
        units: output size N_out (> 0).
        input_dim: input size N_in (> 0), required: ids carry no N, so it cannot be inferred.
        use_bias: add a bias [units]. Default True.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer: as Dense.
        implementation: ``"auto"`` (default), ``"kernel"`` or ``"compiled"``; see `sparse_linear`.

    Input: a `SparseSpikes` or a list ``[ids, values, count]`` (the list form is what Keras
    functional models use: ``keras.Input((K,), dtype="int32")``, ``keras.Input((K,))``,
    ``keras.Input((), dtype="int32")``; leading dims such as [batch, time] are kept).
    Values are cast to the layer's compute dtype. Output: [..., units].
    Weights: ``kernel`` [input_dim, units], ``bias`` [units] (the layout of Dense).
    """

    def __init__(
        self,
        units: int,
        input_dim: Optional[int] = None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        implementation: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_positive_int(units, "units")
        if input_dim is None:
            raise ValueError(
                "`input_dim` (the number of input neurons N_in) is required: sparse spikes carry "
                "only ids, not N_in; e.g. SparseLinear(units, input_dim=700)"
            )
        self.input_dim = _check_positive_int(input_dim, "input_dim")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.implementation = _check_implementation(implementation)
        self.last_invalid = None  # invalid entries per vector of the last call (see `check_spikes`)

    def build(self, input_shape=None):
        if input_shape is not None:
            ids_shape, values_shape, _ = _spike_shapes(input_shape)
            if ids_shape.rank is not None and ids_shape.rank >= 1 and ids_shape[-1] is None:
                raise ValueError(f"{self.name}: the capacity K (last dimension of ids) must be static, got {ids_shape}")
            if not ids_shape.is_compatible_with(values_shape):
                raise ValueError(f"{self.name}: `values` must have the shape of `ids` {ids_shape}, got {values_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            trainable=True,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                trainable=True,
            )
        self.built = True

    def call(self, inputs):
        checked = self.checked_input(inputs)
        self.last_invalid = checked.invalid
        return linear_product(checked.spikes, checked.kernel, checked.bias, checked.chosen)

    def checked_input(self, inputs, with_bias: bool = True):
        """Normalise and check sparse spikes for this layer, once: the `CheckedSpikes` of
        `check_spikes` (values in the compute dtype; bias None if `with_bias` is False)."""
        spikes = as_spikes(inputs)
        values = _as_tensor(spikes.values, "values")
        if not (values.dtype.is_floating or values.dtype.is_integer or values.dtype.is_bool):
            raise TypeError(f"`values` must be numeric, got dtype {values.dtype.name}")
        dtype = self.compute_dtype
        bias = tf.cast(self.bias, dtype) if self.bias is not None and with_bias else None
        return check_spikes(
            SparseSpikes(spikes.ids, tf.cast(values, dtype), spikes.count),
            tf.cast(self.kernel, dtype),
            bias,
            self.implementation,
            f"SparseLinear {self.name!r}",
        )

    def product(self, inputs, with_bias: bool = True) -> tf.Tensor:
        """The layer's computation; ``with_bias=False`` leaves the bias out (for a caller that
        adds it later, e.g. inside a fused time loop)."""
        checked = self.checked_input(inputs, with_bias)
        return linear_product(checked.spikes, checked.kernel, checked.bias, checked.chosen)

    def compute_output_shape(self, input_shape):
        ids_shape, _, _ = _spike_shapes(input_shape)
        shape = tuple(ids_shape.as_list()[:-1]) + (self.units,)
        return output_shape(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "input_dim": self.input_dim,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer
                else None,
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer)
                if self.bias_regularizer
                else None,
                "implementation": self.implementation,
            }
        )
        return config
