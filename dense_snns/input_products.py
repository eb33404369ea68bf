"""The feed-forward product x W of the dense layers over the events of their input.

Spike inputs are mostly zeros; x W over the nonzero entries of x only (the C++ event
products of `dense_snns.ops.events`) costs O(events x units) instead of
O(inputs x units) forward and for the kernel gradient, and is exact for any input values
(zeros contribute nothing to a product): the result equals the dense product to float
round-off. The input gradient stays dense (dy W^T), and graph pruning drops it where no one
asks for it (the first layer of a model).

``input_sparsity`` of `SNNDense` and `LeakyReadout`:

- ``"auto"`` (default): the event product when the layer is wide enough for it to pay
  (`min_units`) and the measured activity of the batch (fraction of nonzero inputs, from a
  sample of about 64K entries, one C++ op inside the graph) is at most `activity_threshold(units)`;
  the dense product otherwise, and always under XLA, for float16/bfloat16, with a GPU
  present, with ``implementation="compiled"`` or ``"reference"``, or without the built
  library;
- ``"dense"``: always the dense product;
- ``"events"``: always the event product (an `ImplementationError` saying why where it
  cannot run).

When it pays (forward + kernel gradient, one thread, AVX-512 machine): [3200, 700] x
[700, 256]: 5.9x at 1% activity, 3.5x at 5%, 2.3x at 10%, 1.35x at 20%, break-even near 27%;
[3200, 256] x [256, 20] (a readout): 1.5x at 1%, 1.2x at 5%, break-even near 9%. A whole
training step of ``benchmarks/bench_layers.py --events`` (W1: 700 -> 256 LIF -> 20) gains
less, as the neuron loops and the readout do not change.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from .implementation import ImplementationError
from .ops import events as event_ops

__all__ = ["INPUT_SPARSITY", "activity_threshold", "check_input_sparsity", "feedforward", "min_units"]

INPUT_SPARSITY = ("auto", "dense", "events")

#: Layers narrower than this never take the event product under "auto".
min_units = 128

#: Entries of the input sampled to measure its activity under "auto".
SAMPLE_ENTRIES = 1 << 16


def check_input_sparsity(value) -> str:
    if value not in INPUT_SPARSITY:
        raise ValueError(f"input_sparsity must be one of {list(INPUT_SPARSITY)}, got {value!r}")
    return value


def activity_threshold(units: int) -> Optional[float]:
    """The largest input activity at which "auto" takes the event product for a layer of
    `units` outputs (about 2/3 of the measured break-even), None below `min_units`."""
    if units < min_units:
        return None
    return 0.18 if units < 512 else 0.25


def event_refusal(dtype, implementation: str = "auto") -> Optional[str]:
    """Why the event-driven products cannot run a product of `dtype` here (None if they can)."""
    if implementation in ("compiled", "reference"):
        return f"implementation={implementation!r} runs no C++ kernel"
    if tf.config.list_logical_devices("GPU"):
        return "a GPU is present (the event kernels run on the CPU only)"
    return event_ops.refusal(dtype)


def feedforward(x: tf.Tensor, kernel: tf.Tensor, mode: str, implementation: str, what: str) -> tf.Tensor:
    """x [..., N_in] @ kernel [N_in, units] -> [..., units], by `mode` (an `input_sparsity`)."""
    kernel = tf.cast(kernel, x.dtype)
    units = int(kernel.shape[-1])

    def dense():
        return tf.matmul(x, kernel) if x.shape.rank == 2 else tf.tensordot(x, kernel, axes=1)

    if mode == "dense":
        return dense()
    if mode == "events":
        refusal = event_refusal(x.dtype, implementation)
        if refusal is not None:
            raise ImplementationError(f"input_sparsity='events' cannot run {what}: {refusal}")
    else:
        threshold = activity_threshold(units)
        if threshold is None or event_refusal(x.dtype, implementation) is not None:
            return dense()
    n_in = x.shape[-1]
    flat = tf.reshape(x, [-1, n_in])

    def events():
        output = event_ops.event_matmul(flat, kernel)
        static = x.shape[:-1].concatenate([units])
        if static.is_fully_defined():  # static shapes into the loops (XLA of TF 2.6 needs them)
            return tf.reshape(output, static.as_list())
        output = tf.reshape(output, tf.concat([tf.shape(x)[:-1], [units]], 0))
        output.set_shape(static)
        return output

    if mode == "events":
        return events()
    return tf.cond(event_ops.nonzero_fraction(flat, SAMPLE_ENTRIES) <= threshold, events, dense)
