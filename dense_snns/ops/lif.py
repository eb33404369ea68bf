"""The LIF, CuBa-LIF and leaky-integrator recurrences of a whole sequence as C++ kernels,
with their reverse-time gradients.

What the kernels implement (neuron models, resets, surrogates) is the table of
`kernel_table.h` (`KERNEL_TABLE`), which the kernels are built from too; `refusal` says, before
anything runs, why a recurrence cannot run on them (None if it can), and `run` runs it.

`lif_recurrence` runs `neurons.lif_step` (with the bias added to the current first, as
`fused.BlockStep` does) over a batch-major sequence: one pass over the currents forward, and
one backward pass that recomputes each tile's membranes in cache and walks back in time,
carrying dL/dv. The gradient keeps only the currents (one [B, T, ...] tensor), no state.
`cuba_lif_recurrence` does the same for `neurons.cuba_lif_step` (carrying dL/dv and dL/di),
`leaky_integrator_recurrence` for `neurons.leaky_integrator_step` (the readouts; its
gradient reads the outputs, which are the membranes). `select_recurrence` runs LIF or
CuBa-LIF with each step's spikes selected into a fixed number of slots inside the kernel
(the sparse blocks of `sparse_snns`). `fused.fused_recurrence` uses them when `applicable`;
otherwise, and inside XLA, the compiled TensorFlow loops of `dense_snns.fused` run the same
steps.

The kernels (`lif_ops.cc`) are built at first use (see `OpLibrary`).
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple, Optional, Tuple

import tensorflow as tf

from .. import surrogates
from ..validation import check_positive_int
from ._build import OpLibrary, in_xla_context

__all__ = [
    "KERNEL_TABLE",
    "LIBRARY",
    "OP_DTYPES",
    "KernelTable",
    "Selected",
    "applicable",
    "cuba_lif_recurrence",
    "leaky_integrator_recurrence",
    "lif_recurrence",
    "load",
    "load_error",
    "op_available",
    "read_kernel_table",
    "refusal",
    "run",
    "select_recurrence",
]

_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


class KernelTable(NamedTuple):
    """The neuron models, resets and surrogates the kernels implement."""

    models: Tuple[str, ...]
    resets: Tuple[str, ...]
    surrogates: Tuple[str, ...]


def read_kernel_table(path: str = os.path.join(_DIRECTORY, "kernel_table.h")) -> KernelTable:
    """Parse the ``X(name, ...)`` entries of the DSNN_KERNEL_MODELS, _RESETS and _SURROGATES
    macros of a kernel table header."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lists = {}
    for field in KernelTable._fields:
        # The macro's body: the #define line and its backslash-continued lines.
        match = re.search(r"#define DSNN_KERNEL_%s\(X\)((?:.*\\\n)*.*)" % field.upper(), text)
        if match is None:
            raise ValueError(f"{path}: no DSNN_KERNEL_{field.upper()}(X) list")
        lists[field] = tuple(re.findall(r"X\((\w+)", match.group(1)))
    return KernelTable(**lists)


#: What the kernels implement, read from kernel_table.h.
KERNEL_TABLE = read_kernel_table()

LIBRARY = OpLibrary(
    directory=_DIRECTORY,
    sources=("lif_ops.cc",),
    headers=("kernel_table.h", "simd.h", "spikes_common.h"),
    prefix="dense_snns_lif_ops",
    description="dense_snns: the C++ LIF, CuBa-LIF and leaky-integrator kernels of the fused layers",
    # no fused multiply-adds: the membrane rounds as TensorFlow's separate ops do
    flags=("-ffp-contract=off",),
)

load = LIBRARY.load
op_available = LIBRARY.op_available
load_error = LIBRARY.load_error

#: Dtypes of the kernels (the states of mixed-precision layers are float32).
OP_DTYPES = (tf.float32, tf.float64)


def _gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def applicable(currents: tf.Tensor, time_axis: int, has_mask: bool, has_recurrent_kernel: bool) -> Optional[str]:
    """Why the kernels cannot run this recurrence (None if they can), for a model of the kernel
    table whose spike function is a `surrogates.Surrogate` (see `refusal`): they need batch-major
    float32/float64 sequences of rank >= 3 with a static last dimension, no mask, no
    recurrent kernel, no XLA compilation around them, the CPU (with a GPU present, only
    tensors placed on a CPU device explicitly) and the built library."""
    if time_axis != 1:
        return "the sequence is time-major"
    if currents.shape.rank is None or currents.shape.rank < 3:
        return "the currents have rank < 3"
    if currents.shape[-1] is None:
        return "the last dimension of the currents is not static"
    if currents.dtype not in OP_DTYPES:
        return f"the dtype is {currents.dtype.name}"
    if _gpu_visible() and "CPU" not in (currents.device or "").upper():
        return "a GPU is present (the kernels run on the CPU only)"
    if has_mask:
        return "a mask is given"
    if has_recurrent_kernel:
        return "the block has a recurrent kernel"
    if in_xla_context():
        return "the call is compiled by XLA"
    if not op_available():
        return f"the library is unavailable: {load_error()}"
    return None


def refusal(model, params, currents: tf.Tensor, time_axis: int, has_mask: bool, has_recurrent_kernel: bool):
    """Why the kernels cannot run this recurrence of `model` (a `dense_snns.neurons.NeuronModel`)
    with `params`, or None if they can (which may build the library)."""
    name = getattr(model, "name", None)
    if name not in KERNEL_TABLE.models:
        return f"the kernels implement the models {list(KERNEL_TABLE.models)}, not {name or model!r}"
    if model.spiking:
        spike_fn = params.spike_fn
        if type(spike_fn) is not surrogates.Surrogate:  # a subclass may change the derivative
            return "the spike function is not a dense_snns.surrogates.Surrogate"
        if spike_fn.name not in KERNEL_TABLE.surrogates:
            return f"the kernels have no {spike_fn.name!r} surrogate (they have {list(KERNEL_TABLE.surrogates)})"
        if params.reset not in KERNEL_TABLE.resets:
            return f"the kernels have no reset {params.reset!r} (they have {list(KERNEL_TABLE.resets)})"
    return applicable(currents, time_axis, has_mask, has_recurrent_kernel)


def run(model, currents: tf.Tensor, initial_states, params, bias):
    """(outputs, final states list) of a recurrence that `refusal` accepted."""
    if model.name == "leaky_integrator":
        outputs, final_v = leaky_integrator_recurrence(currents, initial_states[0], params.beta, bias)
        return outputs, [final_v]
    if model.name == "cuba_lif":
        outputs, final_i, final_v = cuba_lif_recurrence(
            currents,
            initial_states[0],
            initial_states[1],
            params.alpha,
            params.beta,
            params.threshold,
            bias,
            params.reset,
            params.stop_reset_grad,
            params.spike_fn,
        )
        return outputs, [final_i, final_v]
    outputs, final_v = lif_recurrence(
        currents,
        initial_states[0],
        params.beta,
        params.threshold,
        bias,
        params.reset,
        params.stop_reset_grad,
        params.spike_fn,
    )
    return outputs, [final_v]


class Selected(NamedTuple):
    """The spikes of a selecting recurrence (see `select_recurrence`)."""

    ids: tf.Tensor  # int32 [B, T, Ke], 0 at unused slots
    values: tf.Tensor  # [B, T, Ke]: the spike function at the selected units, 0 at unused slots
    count: tf.Tensor  # int32 [B, T]: filled slots
    spike_total: tf.Tensor  # int32 [B, T]: spikes (and NaN membranes), also those that did not fit


def select_recurrence(model, currents: tf.Tensor, initial_states, params, bias, capacity: int, second_threshold=None):
    """(`Selected`, final states list) of a LIF or CuBa-LIF recurrence that `refusal` accepted
    (with currents [B, T, N]), each step's spikes selected into Ke = min(`capacity`, N) slots
    inside the kernel, as `sparse_snns.select_spikes` selects from the pre-spike values:
    spikes (and NaN membranes) in increasing index, then the other units (all, or with
    second_threshold: those with membrane - threshold > second_threshold) as gradient-only
    entries. No [B, T, N] tensor is written forward. The gradient of the values is the
    spike function's surrogate at the selected units (the gradient kernel, which recomputes
    the membranes, reads it from the slots); gradients flow to currents, initial states and
    the parameters, as with `run`.
    """
    capacity = check_positive_int(capacity, "capacity")
    library, dtype, channels, beta, bias = _prepare(currents, params.beta, bias)
    if currents.shape.rank != 3:
        raise ValueError(f"a selecting recurrence needs currents [batch, time, units], got shape {currents.shape}")
    cuba = model.name == "cuba_lif"
    threshold = _channel_vector(params.threshold, channels, dtype)
    scale = tf.constant(params.spike_fn.scale, dtype)
    second = "all" if second_threshold is None else "above"
    second_value = tf.constant(0.0 if second_threshold is None else float(second_threshold), dtype)
    attrs = dict(reset=params.reset)
    grad_attrs = dict(reset=params.reset, stop_reset_grad=bool(params.stop_reset_grad), surrogate=params.spike_fn.name)
    states = [tf.cast(s, dtype) for s in initial_states]
    param_list = ([_channel_vector(params.alpha, channels, dtype)] if cuba else []) + [beta, threshold, bias]
    n_states = len(states)

    selection = {}

    @tf.custom_gradient
    def run(currents, *args):
        select = library.dense_snns_cuba_lif_select if cuba else library.dense_snns_lif_select
        ids, values, count, total, *finals = select(
            currents, *args, second_value, capacity=capacity, second=second, **attrs
        )
        selection.update(ids=ids, count=count, spike_total=total)

        def grad(d_values, *d_finals):
            d_values = tf.zeros_like(values) if d_values is None else d_values
            d_finals = [tf.zeros_like(s) if g is None else g for s, g in zip(args[:n_states], d_finals)]
            kernel = library.dense_snns_cuba_lif_select_grad if cuba else library.dense_snns_lif_select_grad
            return kernel(currents, *args, ids, count, d_values, *d_finals, scale, **grad_attrs)

        return (values, *finals), grad

    values, *finals = run(currents, *states, *param_list)
    selected = Selected(selection["ids"], values, selection["count"], selection["spike_total"])
    return selected, list(finals)


def _channel_vector(value, channels: int, dtype) -> tf.Tensor:
    """A scalar or [channels] parameter as a [channels] tensor (gradients flow back through
    the broadcast). A Python number becomes `dtype` directly: `tf.cast` would round it to
    float32 first (0.9 would not be exact in float64)."""
    value = tf.cast(value, dtype) if tf.is_tensor(value) else tf.constant(value, dtype)
    return tf.broadcast_to(value, [channels])


def _prepare(currents: tf.Tensor, beta, bias):
    """(library, dtype, channels, beta [channels], bias [channels] or [0] if None) for a call
    of the kernels on `currents`; RuntimeError if the library is unavailable."""
    library = load()
    if library is None:
        raise RuntimeError(f"the C++ kernels of dense_snns.ops.lif are unavailable: {load_error()}")
    dtype = currents.dtype
    channels = currents.shape[-1]
    bias = tf.zeros([0], dtype) if bias is None else tf.cast(bias, dtype)
    return library, dtype, channels, _channel_vector(beta, channels, dtype), bias


def lif_recurrence(
    currents: tf.Tensor, initial_v: tf.Tensor, beta, threshold, bias, reset: str, stop_reset_grad: bool, surrogate
):
    """Spikes [B, T, ...] and the final membrane [B, ...] of a LIF layer.

    Args:
        currents: x W [batch, time, ..., channels] (without the bias).
        initial_v: membrane entering step 0, [batch, ..., channels].
        beta, threshold: decay and threshold, scalars or [channels] (tensors get gradients).
        bias: [channels] or None, added to every step's current.
        reset: "subtract" | "zero" | "none"; stop_reset_grad: as `neurons.lif_step`.
        surrogate: the `surrogates.Surrogate` of the spike function (its name and scale).
    Gradients flow to currents, initial_v, beta, threshold and bias.
    """
    library, dtype, channels, beta, bias = _prepare(currents, beta, bias)
    threshold = _channel_vector(threshold, channels, dtype)
    attrs = dict(reset=reset)
    grad_attrs = dict(reset=reset, stop_reset_grad=bool(stop_reset_grad), surrogate=surrogate.name)
    scale = tf.constant(surrogate.scale, dtype)

    @tf.custom_gradient
    def run(currents, initial_v, beta, threshold, bias):
        spikes, final_v = library.dense_snns_lif_forward(currents, initial_v, beta, threshold, bias, **attrs)

        def grad(d_spikes, d_final_v):
            d_spikes = tf.zeros_like(currents) if d_spikes is None else d_spikes
            d_final_v = tf.zeros_like(initial_v) if d_final_v is None else d_final_v
            return library.dense_snns_lif_grad(
                currents, initial_v, beta, threshold, bias, d_spikes, d_final_v, scale, **grad_attrs
            )

        return (spikes, final_v), grad

    spikes, final_v = run(currents, tf.cast(initial_v, dtype), beta, threshold, bias)
    return spikes, final_v


def cuba_lif_recurrence(
    currents: tf.Tensor,
    initial_i: tf.Tensor,
    initial_v: tf.Tensor,
    alpha,
    beta,
    threshold,
    bias,
    reset: str,
    stop_reset_grad: bool,
    surrogate,
):
    """Spikes [B, T, ...], the final synaptic current and the final membrane [B, ...] of a
    CuBa-LIF layer (`neurons.cuba_lif_step`: i = alpha i + (I + bias), v = beta v + i).

    Args as `lif_recurrence`, plus initial_i (the synaptic current entering step 0) and
    alpha (its decay, a scalar or [channels]). Gradients flow to currents, both initial
    states, alpha, beta, threshold and bias.
    """
    library, dtype, channels, beta, bias = _prepare(currents, beta, bias)
    alpha = _channel_vector(alpha, channels, dtype)
    threshold = _channel_vector(threshold, channels, dtype)
    grad_attrs = dict(reset=reset, stop_reset_grad=bool(stop_reset_grad), surrogate=surrogate.name)
    scale = tf.constant(surrogate.scale, dtype)

    @tf.custom_gradient
    def run(currents, initial_i, initial_v, alpha, beta, threshold, bias):
        args = (currents, initial_i, initial_v, alpha, beta, threshold, bias)
        spikes, final_i, final_v = library.dense_snns_cuba_lif_forward(*args, reset=reset)

        def grad(d_spikes, d_final_i, d_final_v):
            d_spikes = tf.zeros_like(currents) if d_spikes is None else d_spikes
            d_final_i = tf.zeros_like(initial_i) if d_final_i is None else d_final_i
            d_final_v = tf.zeros_like(initial_v) if d_final_v is None else d_final_v
            return library.dense_snns_cuba_lif_grad(*args, d_spikes, d_final_i, d_final_v, scale, **grad_attrs)

        return (spikes, final_i, final_v), grad

    return run(currents, tf.cast(initial_i, dtype), tf.cast(initial_v, dtype), alpha, beta, threshold, bias)


def leaky_integrator_recurrence(currents: tf.Tensor, initial_v: tf.Tensor, beta, bias):
    """Membranes [B, T, ...] (the outputs) and the final membrane [B, ...] of a leaky
    integrator, v = beta v + (I + bias).

    Args:
        currents: x W [batch, time, ..., channels] (without the bias).
        initial_v: membrane entering step 0, [batch, ..., channels].
        beta: decay, scalar or [channels] (a tensor gets a gradient).
        bias: [channels] or None.
    Gradients flow to currents, initial_v, beta and bias; the gradient keeps the outputs.
    """
    has_bias = bias is not None
    library, dtype, channels, beta, bias = _prepare(currents, beta, bias)

    @tf.custom_gradient
    def run(currents, initial_v, beta, bias):
        outputs, final_v = library.dense_snns_leaky_forward(currents, initial_v, beta, bias)

        def grad(d_outputs, d_final_v):
            d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
            d_final_v = tf.zeros_like(initial_v) if d_final_v is None else d_final_v
            d_currents, d_initial, d_beta, d_bias = library.dense_snns_leaky_grad(
                outputs, initial_v, beta, d_outputs, d_final_v
            )
            return d_currents, d_initial, d_beta, (d_bias if has_bias else tf.zeros_like(bias))

        return (outputs, final_v), grad

    return run(currents, tf.cast(initial_v, dtype), beta, bias)
