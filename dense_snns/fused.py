"""Fused recurrence: compiled time loops with a hand-written reverse-time BPTT.

The feed-forward current of all steps is computed outside (one matmul or convolution), so
the matmul and its gradients (dW = x^T dI, dx = dI W^T) stay plain TensorFlow ops. Only the
state recurrence runs here, in a compiled `tf.while_loop`:

- forward: calls the step for t = 0..T-1 and keeps the states entering each step (for a
  one-state LIF block: one [T, batch, units] tensor, beside the spikes it returns), or
  only every k-th of them (`checkpoint_every`);
- backward: walks t = T-1..0, recomputes step t from its stored input state (recomputing
  the states of a segment from its checkpoint first, if checkpointed) and takes the
  vector-Jacobian product of that single step (so the gradient is, by construction, the
  gradient of the same step function, surrogate included), carrying the state gradient.

This avoids autodiff through a whole time loop, which under XLA costs O(T^2) in
TensorFlow. Both loops are compiled with XLA by default. Sequences may be time-major or
batch-major; batch-major ones are sliced in place, so no whole-sequence transpose is made.

`compiled_recurrence` is generic over the step (an SNN block, a graph of blocks);
`fused_recurrence` is its use for one SNN block.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla as _xla

from . import compat
from . import implementation as implementation_choice
from . import neurons
from .ops import in_xla_context
from .ops import lif as lif_ops


def _dynamic_update_slice_gradient(op, grad):
    """Gradient of `XlaDynamicUpdateSlice` (the batch-major loops' per-step writes): the
    written slice's gradient to the update, the rest to the input."""
    update, start = op.inputs[1], op.inputs[2]
    return (
        _xla.dynamic_update_slice(grad, tf.zeros_like(update), start),
        _xla.dynamic_slice(grad, start, tf.shape(update, out_type=start.dtype)),
        None,
    )


# TensorFlow registers no Python gradient for this op; where autodiff meets it (TensorFlow 2.6,
# Graphcore's base, differentiates through the forward loops) it needs one.
try:
    tf.RegisterGradient("XlaDynamicUpdateSlice")(_dynamic_update_slice_gradient)
except KeyError:  # already registered (by TensorFlow or another copy of this module)
    pass


def num_steps(x: tf.Tensor, axis: int):
    """Static length of `axis` if known (keeps output shapes static), else dynamic."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def broadcast_mask(mask_t: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """[batch] bool -> [batch, 1, ..., 1] to broadcast against `like`."""
    return tf.reshape(mask_t, tf.concat([tf.shape(mask_t), tf.ones([like.shape.rank - 1], tf.int32)], 0))


#: The pre-spike value a masked (padded) step reports: far below any threshold, so that
#: no spike is selected there and its surrogate gradient vanishes.
SILENT_PRE_SPIKE = -1.0e4


def masked_block_update(model, current, mask_t, states, params, recurrent_kernel=None):
    """`NeuronModel.block_update`: (spikes, new states, pre-spike value); where `mask_t`
    ([batch] bool) is False the states are kept, the output is zero (a padded step emits no
    spike) and the pre-spike value is `SILENT_PRE_SPIKE`."""
    spikes, new_states, pre_spike = model.block_update(current, states, params, recurrent_kernel)
    if mask_t is None:
        return spikes, new_states, pre_spike
    keep = broadcast_mask(mask_t, spikes)
    new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
    if pre_spike is not None:
        pre_spike = tf.where(
            keep, pre_spike, tf.fill(tf.shape(pre_spike), tf.constant(SILENT_PRE_SPIKE, pre_spike.dtype))
        )
    return tf.where(keep, spikes, tf.zeros_like(spikes)), new_states, pre_spike


def masked_block_step(step_fn, state_type, current, mask_t, states, params, recurrent_kernel):
    """`neurons.block_step` with a mask: (spikes, new states); kept for the step-function form
    (see `masked_block_update`)."""
    spikes, new_states = neurons.block_step(step_fn, state_type, current, states, params, recurrent_kernel)
    if mask_t is None:
        return spikes, new_states
    keep = broadcast_mask(mask_t, spikes)
    new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states)]
    return tf.where(keep, spikes, tf.zeros_like(spikes)), new_states


class _TimeSeries:
    """Reads and writes one step of a sequence tensor along its time axis inside a loop.

    Time-major sequences ([time, batch, ...]) use TensorArrays. Batch-major ones ([batch,
    time, ...]) are read with a dynamic slice and written in place with XLA's
    dynamic-update-slice (only under XLA), so no [batch, time] <-> [time, batch] transpose
    of the whole sequence is ever made.
    """

    def __init__(self, time_axis: int):
        self.time_axis = time_axis

    def read(self, sequence, t):
        return sequence[t] if self.time_axis == 0 else sequence[:, t]

    def new(self, like_step, steps, batch):
        """An empty sequence of `steps` elements shaped like `like_step` ([batch, ...])."""
        if self.time_axis == 0:
            return tf.TensorArray(like_step.dtype, size=steps, element_shape=like_step.shape)
        return tf.zeros(tf.concat([[batch, steps], tf.shape(like_step)[1:]], 0), like_step.dtype)

    def write(self, sequence, t, value):
        if self.time_axis == 0:
            return sequence.write(t, value)
        start = [tf.constant(0), t] + [tf.constant(0)] * (value.shape.rank - 1)
        return _xla.dynamic_update_slice(sequence, tf.expand_dims(value, 1), start)

    def finish(self, sequence, like_step, steps):
        if self.time_axis == 0:
            return sequence.stack()
        if isinstance(steps, int):  # keep the static shape
            sequence = tf.ensure_shape(sequence, [like_step.shape[0], steps] + like_step.shape[1:].as_list())
        return sequence


def _placed(step, attribute: str, count: int) -> List[Optional[str]]:
    """The device of each state (``attribute="state_devices"``) or step tensor
    (``"tensor_devices"``) that a step spread over several devices declares, else Nones.

    The loops keep each stored state, each state's gradient and each tensor's gradient sum on
    that device: otherwise they would sit on the loop's device, and every step would copy the
    other devices' states and weight gradients to it and back."""
    devices = getattr(step, attribute, None)
    return list(devices) if devices else [None] * count


def _on(device):
    return contextlib.nullcontext() if device is None else tf.device(device)


def _moved(tensors, devices):
    """`tensors`, each on its device if it has one (a loop variable then lives there, instead of
    going to the loop's device and back every step)."""
    out = []
    for tensor, device in zip(tensors, devices):
        if device is None:
            out.append(tensor)
        else:
            with tf.device(device):
                out.append(tf.identity(tensor))
    return out


def _deferred(step) -> Tuple[int, ...]:
    """The positions of the step tensors whose gradient the step defers (see
    `_step_vjp`): none unless the step declares `deferred_tensors`, and none on TensorFlow
    before 2.9, whose XLA crashes the process (an abort or a segmentation fault, seen on
    2.6.3 in a Keras training step) on the backward loop that records them."""
    if compat.TF_VERSION < (2, 9):
        return ()
    return tuple(getattr(step, "deferred_tensors", ()))


def _replays(step) -> bool:
    """Whether the backward pass replays the step's products from the forward's outputs (see
    `_step_vjp`): a step with deferred tensors that declares ``replays_products``."""
    return bool(_deferred(step)) and bool(getattr(step, "replays_products", False))


def replayed_product(output: tf.Tensor, source: tf.Tensor, source_gradient) -> tf.Tensor:
    """`output`, a product y = f(x, W) saved by the forward loop, as a function of `source`
    (the differentiable part of x) whose gradient is ``source_gradient(dL/dy)``: what a step
    called with `replay` returns for a product instead of computing it again."""

    @tf.custom_gradient
    def product(source):
        def grad(dy):
            return source_gradient(tf.convert_to_tensor(dy))

        return tf.identity(output), grad

    return product(source)


def _step_vjp(step, current, mask_t, states, tensors, d_output, d_states, replay=None):
    """Recompute one step and return the gradients of its inputs: (d_current, d_states,
    d_tensors, records), given those of its outputs.

    A step that declares `deferred_tensors` (positions in `tensors`) uses each of those
    tensors W only in products y = f(x, W) linear in W, and when called with ``record=[]``
    cuts W's gradient there and appends ``(position, parts of x, y)`` per product: d_tensors
    then holds the other tensors' gradients only, and records the pairs (parts of x, dL/dy),
    from which `step.deferred_gradient` gives W's gradient once for all steps after the loop
    (one large product instead of a [N_in, N_out] gradient and its sum at every step).

    A step that declares ``replays_products`` (`_replays`) takes ``replay``, the outputs y of
    its recorded products at this step as the forward loop computed them (in record order),
    and returns them (`replayed_product`, with the gradient to the product's input) instead of
    computing the products again."""
    deferred = _deferred(step)
    recorded = [] if deferred else None

    def call(current, states, tensors):
        if recorded is None:
            return step(current, mask_t, states, tensors)
        if replay:
            return step(current, mask_t, states, tensors, record=recorded, replay=replay)
        return step(current, mask_t, states, tensors, record=recorded)

    def split(grads):
        n = len(states)
        d_tensors = [g for j, g in enumerate(grads[1 + n : 1 + n + len(tensors)]) if j not in deferred]
        d_products = grads[1 + n + len(tensors) :]
        records = [(parts, dy) for (_, parts, _), dy in zip(recorded or [], d_products)]
        return grads[0], grads[1 : 1 + n], d_tensors, records

    if getattr(step, "state_devices", None):
        # A step over several devices: `tf.gradients` puts each gradient op on the device of
        # its forward op (a tape would put them all on the loop's device). It differentiates
        # with respect to tensors of this graph: identities here (on their devices) of what a
        # nested loop captures from the loops around it.
        devices = [None] + _placed(step, "state_devices", len(states)) + _placed(step, "tensor_devices", len(tensors))
        sources = []
        for tensor, device in zip([current] + list(states) + list(tensors), devices):
            with _on(device):
                sources.append(tf.identity(tensor))
        n = len(states)
        current, states, tensors = sources[0], sources[1 : 1 + n], sources[1 + n :]
        out, new_states = call(current, states, tensors)
        grads = tf.gradients(
            [out] + new_states,
            sources + [y for _, _, y in recorded or []],
            grad_ys=[d_output] + d_states,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return split(grads)
    with tf.GradientTape() as tape:
        tape.watch([current] + states + list(tensors))
        out, new_states = call(current, states, tensors)
    grads = tape.gradient(
        [out] + new_states,
        [current] + states + list(tensors) + [y for _, _, y in recorded or []],
        output_gradients=[d_output] + d_states,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    return split(grads)


def _forward(step, currents, mask, initial_states, tensors, time_axis=0, every=None, save=False):
    """Forward loop. Returns (outputs, stored states, final states, saved products): the
    states entering every step ([T, batch, ...] each) or, with `every` = k, only those
    entering steps 0, k, 2k, ... ([ceil(T/k), batch, ...] each); with `save` (and no
    `every`) the outputs of the step's recorded products at every step ([T, batch, ...]
    each, for the backward pass to replay: `_step_vjp`), else none."""
    series = _TimeSeries(time_axis)
    steps = num_steps(currents, time_axis)
    batch = tf.shape(currents)[1 - time_axis]
    save = save and every is None and _replays(step)
    tensor_devices = _placed(step, "tensor_devices", len(tensors))

    def mask_at(t):
        return None if mask is None else series.read(mask, t)

    def advance(t, states, outputs, records=None):
        """Step t; with `records` (a list) the step records its products there."""
        if records is None:
            out, states = step(series.read(currents, t), mask_at(t), states, tensors)
        else:
            out, states = step(series.read(currents, t), mask_at(t), states, tensors, record=records)
        return t + 1, states, series.write(outputs, t, out)

    # The output's shape and dtype come from one traced step (a graph's output differs from
    # its currents), and so do those of the saved products.
    devices = _placed(step, "state_devices", len(initial_states))
    initial_states = _moved(initial_states, devices)
    tensors = _moved(tensors, tensor_devices)
    probe_records = [] if save else None
    probe_kwargs = {} if probe_records is None else {"record": probe_records}
    probe, _ = step(series.read(currents, 0), mask_at(0), list(initial_states), tensors, **probe_kwargs)
    outputs = series.new(probe, steps, batch)
    saved = []
    for position, _, y in probe_records or []:
        with _on(tensor_devices[position]):
            saved.append(tf.TensorArray(y.dtype, size=steps, element_shape=y.shape))

    def new_arrays(size):
        arrays = []
        for state, device in zip(initial_states, devices):
            with _on(device):
                arrays.append(tf.TensorArray(state.dtype, size=size, element_shape=state.shape))
        return arrays

    def store(stored, t, states):
        written = []
        for array, state, device in zip(stored, states, devices):
            with _on(device):
                written.append(array.write(t, state))
        return written

    if every is None:
        stored = new_arrays(steps)

        def body(t, states, outputs, stored, saved):
            stored = store(stored, t, states)
            if not save:
                return advance(t, states, outputs) + (stored, saved)
            records = []
            advanced = advance(t, states, outputs, records)
            written = []
            for array, (position, _, y) in zip(saved, records):
                with _on(tensor_devices[position]):
                    written.append(array.write(t, y))
            return advanced + (stored, written)

        _, final_states, outputs, stored, saved = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            [tf.constant(0), list(initial_states), outputs, stored, saved],
            maximum_iterations=steps,
        )
    else:
        segments = (steps + every - 1) // every
        stored = new_arrays(segments)

        def segment(i, states, outputs, stored):
            stored = store(stored, i, states)
            end = tf.minimum((i + 1) * every, steps)
            _, states, outputs = tf.while_loop(
                lambda t, *_: t < end, advance, [i * every, states, outputs], maximum_iterations=every
            )
            return i + 1, states, outputs, stored

        _, final_states, outputs, stored = tf.while_loop(
            lambda i, *_: i < segments,
            segment,
            [tf.constant(0), list(initial_states), outputs, stored],
            maximum_iterations=segments,
        )
    stacked = []
    for array, device in zip(stored, devices):
        with _on(device):
            stacked.append(array.stack())
    saved_stacked = []
    for array, (position, _, _) in zip(saved, probe_records or []):
        with _on(tensor_devices[position]):
            saved_stacked.append(array.stack())
    return series.finish(outputs, probe, steps), stacked, final_states, saved_stacked


def _backward(step, currents, mask, stored, tensors, d_outputs, d_final, time_axis=0, every=None, saved=()):
    """Reverse-time loop: the vector-Jacobian product of each step, recomputed from its
    stored input state (with `every` = k, the states of each segment of k steps are first
    recomputed from its stored first state). The gradients of a step's deferred tensors
    (see `_step_vjp`) are computed from the records of all steps after the loop, or with
    `every` from those of each segment after it (records of k steps: memory stays O(k)).
    A step that replays its products (`_replays`) takes them from `saved` (the forward's),
    or with `every` from the recomputation of the segment, instead of computing them again."""
    series = _TimeSeries(time_axis)
    steps = num_steps(currents, time_axis)
    batch = tf.shape(currents)[1 - time_axis]
    current_0 = series.read(currents, 0)
    d_currents = series.new(current_0, steps, batch)

    state_devices = _placed(step, "state_devices", len(stored))
    tensor_devices = _placed(step, "tensor_devices", len(tensors))
    deferred = _deferred(step)
    kept = [j for j in range(len(tensors)) if j not in deferred]

    def mask_at(t):
        return None if mask is None else series.read(mask, t)

    def read(arrays, t):
        """Element t of each stored state, read on the state's device."""
        states = []
        for array, device in zip(arrays, state_devices):
            with _on(device):
                states.append(array[t] if isinstance(array, tf.Tensor) else array.read(t))
        return states

    def reverse(t, states, d_states, d_tensors, d_currents, records, first, replay=None):
        """Step t back; `d_tensors` holds the sums of the kept tensors, `records` are written
        at t - first; `replay`: the step's product outputs at t, if replayed."""
        d_current, new_d_states, d_step_tensors, step_records = _step_vjp(
            step,
            series.read(currents, t),
            mask_at(t),
            states,
            tensors,
            series.read(d_outputs, t),
            list(d_states),
            replay,
        )
        for new, old in zip(new_d_states, d_states):  # keep a static batch size the loop entered with
            new.set_shape(old.shape)
        d_states = new_d_states
        summed = []
        for acc, g, j in zip(d_tensors, d_step_tensors, kept):
            with _on(tensor_devices[j]):
                summed.append(acc + g)
        written = []
        for arrays, (parts, dy), position in zip(records, step_records, record_positions):
            with _on(tensor_devices[position]):
                written.append([array.write(t - first, value) for array, value in zip(arrays, list(parts) + [dy])])
        return t - 1, d_states, summed, series.write(d_currents, t, d_current), written

    d_final = _moved(d_final, state_devices)
    stored = _moved(stored, state_devices)
    tensors = _moved(tensors, tensor_devices)
    # Each record of a step: (position, parts of x, y), shaped after a probe call of the step
    # (not run: nothing uses its results). A TensorArray per part and one for dL/dy.
    record_positions, record_specs = [], []
    if deferred:
        probe = []
        step(current_0, mask_at(0), read(stored, 0), tensors, record=probe)
        for position, parts, y in probe:
            record_positions.append(position)
            record_specs.append([(v.dtype, v.shape) for v in list(parts) + [y]])

    def new_records(size):
        records = []
        for specs, position in zip(record_specs, record_positions):
            with _on(tensor_devices[position]):
                records.append([tf.TensorArray(dtype, size=size, element_shape=shape) for dtype, shape in specs])
        return records

    def add_deferred(sums, records):
        """`sums` (a gradient per deferred position) plus the products over `records`."""
        sums = list(sums)
        for arrays, position in zip(records, record_positions):
            with _on(tensor_devices[position]):
                # [steps, batch, ...] -> [steps * batch, ...]: the rows of all steps in one product
                *parts, dy = [_merge_time_and_batch(a.stack()) for a in arrays]
                k = deferred.index(position)
                sums[k] = sums[k] + step.deferred_gradient(position, parts, dy, tensors[position])
        return sums

    def zeros_at(positions):
        zeros = []
        for j in positions:
            with _on(tensor_devices[j]):
                zeros.append(tf.zeros_like(tensors[j]))
        return zeros

    def saved_at(arrays, t):
        """Element t of each saved product, read on the device of its kernel."""
        values = []
        for array, position in zip(arrays, record_positions):
            with _on(tensor_devices[position]):
                values.append(array[t] if isinstance(array, tf.Tensor) else array.read(t))
        return values

    if every is None:
        saved = list(saved)

        def body(t, d_states, d_tensors, d_currents, records):
            replay = saved_at(saved, t) if saved else None
            return reverse(t, read(stored, t), d_states, d_tensors, d_currents, records, 0, replay)

        _, d_initial, d_kept, d_currents, records = tf.while_loop(
            lambda t, *_: t >= 0,
            body,
            [steps - 1, list(d_final), zeros_at(kept), d_currents, new_records(steps)],
            maximum_iterations=steps,
        )
        d_deferred = add_deferred(zeros_at(deferred), records)
    else:
        segments = (steps + every - 1) // every
        replays = _replays(step)

        def segment(i, d_states, d_tensors, d_deferred, d_currents):
            start, end = i * every, tf.minimum((i + 1) * every, steps)

            def recompute(t, states, kept_states, kept_products):
                written = []
                for array, state, device in zip(kept_states, states, state_devices):
                    with _on(device):
                        written.append(array.write(t - start, state))
                if not replays:
                    _, states = step(series.read(currents, t), mask_at(t), states, tensors)
                    return t + 1, states, written, kept_products
                products = []
                _, states = step(series.read(currents, t), mask_at(t), states, tensors, record=products)
                written_products = []
                for array, (position, _, y) in zip(kept_products, products):
                    with _on(tensor_devices[position]):
                        written_products.append(array.write(t - start, y))
                return t + 1, states, written, written_products

            kept_states = []
            for array, device in zip(stored, state_devices):
                with _on(device):
                    kept_states.append(tf.TensorArray(array.dtype, size=every, element_shape=array.shape[1:]))
            kept_products = []
            for specs, position in zip(record_specs if replays else [], record_positions):
                with _on(tensor_devices[position]):
                    dtype, shape = specs[-1]  # the product's output y
                    kept_products.append(tf.TensorArray(dtype, size=every, element_shape=shape))
            _, _, kept_states, kept_products = tf.while_loop(
                lambda t, *_: t < end,
                recompute,
                [start, read(stored, i), kept_states, kept_products],
                maximum_iterations=every,
            )

            def body(t, d_states, d_tensors, d_currents, records):
                replay = saved_at(kept_products, t - start) if replays else None
                return reverse(t, read(kept_states, t - start), d_states, d_tensors, d_currents, records, start, replay)

            # The last segment may be shorter. XLA needs arrays of a constant size: there the
            # unwritten steps stay zeros (x = 0, dL/dy = 0: they add nothing).
            size = every if in_xla_context() else end - start
            _, d_states, d_tensors, d_currents, records = tf.while_loop(
                lambda t, *_: t >= start,
                body,
                [end - 1, d_states, d_tensors, d_currents, new_records(size)],
                maximum_iterations=every,
            )
            return i - 1, d_states, d_tensors, add_deferred(d_deferred, records), d_currents

        _, d_initial, d_kept, d_deferred, d_currents = tf.while_loop(
            lambda i, *_: i >= 0,
            segment,
            [segments - 1, list(d_final), zeros_at(kept), zeros_at(deferred), d_currents],
            maximum_iterations=segments,
        )
    d_tensors = dict(zip(kept, d_kept))
    d_tensors.update(zip(deferred, d_deferred))
    return series.finish(d_currents, current_0, steps), d_initial, [d_tensors[j] for j in range(len(tensors))]


def _merge_time_and_batch(sequence: tf.Tensor) -> tf.Tensor:
    """[T, batch, ...] -> [T * batch, ...], keeping the static trailing sizes."""
    trailing = sequence.shape[2:]
    if trailing.is_fully_defined():
        return tf.reshape(sequence, [-1] + trailing.as_list())
    return tf.reshape(sequence, tf.concat([[-1], tf.shape(sequence)[2:]], 0))


def check_checkpoint_every(value, allow_auto: bool = False):
    """None or a positive int (the `checkpoint_every` argument); also "auto" if `allow_auto`."""
    if value is None or (allow_auto and value == AUTO):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        expected = 'None, "auto" or a positive integer' if allow_auto else "None or a positive integer"
        raise ValueError(f"checkpoint_every must be {expected}, got checkpoint_every={value!r}")
    return value


#: ``checkpoint_every="auto"``: see `resolve_checkpoint_every`.
AUTO = "auto"
AUTO_MIN_STEPS = 256
AUTO_MIN_SEGMENT = 32


def resolve_checkpoint_every(value, steps) -> Optional[int]:
    """`checkpoint_every` for a sequence of `steps` steps (an int, or None if not static).

    "auto": None (keep every state) below AUTO_MIN_STEPS steps or for a dynamic length;
    above, k = max(32, ceil(sqrt(T))): state memory O(sqrt(T)) instead of O(T). The
    recomputation is then no slower than storing every state (measured on CPU with T = 500
    and 1000: equal or faster, since the states are written once less to main memory and the
    segments being recomputed stay in cache); on short sequences storing is slightly faster.
    """
    if value != AUTO:
        return value
    if not isinstance(steps, int) or steps < AUTO_MIN_STEPS:
        return None
    return max(AUTO_MIN_SEGMENT, math.ceil(math.sqrt(steps)))


def _compiled_loops(step, jit_compile: bool):
    """The forward and backward loops of `step` as tf.functions, kept on the step object
    itself: they live as long as the step (a layer's), and layers with different steps never
    retrace a shared function."""
    try:
        loops = step.__dict__.setdefault("_compiled_loops", {})
    except AttributeError:
        raise TypeError(
            f"compiled_recurrence needs a step that can hold attributes (a function or an object), got {step!r}"
        ) from None
    key = bool(jit_compile)
    if key not in loops:
        loops[key] = (
            tf.function(functools.partial(_forward, step), jit_compile=key),
            tf.function(functools.partial(_backward, step), jit_compile=key),
        )
    return loops[key]


def reference_recurrence(
    step,
    currents: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    tensors: Sequence[tf.Tensor] = (),
    mask: Optional[tf.Tensor] = None,
    time_axis: int = 0,
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """`compiled_recurrence`'s contract in a plain `tf.while_loop` differentiated by
    TensorFlow (no XLA, no hand-written BPTT): the reference the compiled loops are tested
    against. Same arguments and results."""
    if time_axis not in (0, 1):
        raise ValueError(f"time_axis must be 0 or 1, got time_axis={time_axis!r}")
    steps = num_steps(currents, time_axis)

    def at(sequence, t):
        return None if sequence is None else (sequence[t] if time_axis == 0 else sequence[:, t])

    probe, _ = step(at(currents, 0), at(mask, 0), list(initial_states), list(tensors))
    outputs = tf.TensorArray(probe.dtype, size=steps, element_shape=probe.shape)

    def body(t, states, outputs):
        out, states = step(at(currents, t), at(mask, t), states, list(tensors))
        return t + 1, states, outputs.write(t, out)

    _, final_states, outputs = tf.while_loop(
        lambda t, *_: t < steps, body, [tf.constant(0), list(initial_states), outputs]
    )
    outputs = outputs.stack()
    if time_axis == 1:
        outputs = tf.transpose(outputs, [1, 0] + list(range(2, outputs.shape.rank)))
    return outputs, list(final_states)


def compiled_recurrence(
    step,
    currents: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    tensors: Sequence[tf.Tensor] = (),
    mask: Optional[tf.Tensor] = None,
    jit_compile: bool = True,
    time_axis: int = 0,
    checkpoint_every: Union[None, int, str] = None,
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Run ``step`` over time in a compiled loop, with hand-written BPTT.

    Args:
        step: ``step(current_t, mask_t, states, tensors) -> (output_t, new_states)``, a pure
            function of its tensor arguments. Its compiled loops are kept on it (an
            attribute): pass the same object again to reuse them (a module-level function
            or an object kept by the layer). A step spread over several devices declares
            ``state_devices`` and ``tensor_devices`` (a device name per state and per
            tensor): the loops then keep each stored state, loop variable and gradient sum
            on its device, and the backward pass builds each gradient op on the device of
            its forward op.
        currents: inputs [time, batch, ...] (``time_axis=0``) or [batch, time, ...]
            (``time_axis=1``).
        initial_states: list of state tensors [batch, ...].
        tensors: further differentiable inputs of the step (weights, neuron parameters).
        mask: bool [time, batch] or [batch, time] (as `currents`), or None.
        jit_compile: compile both loops with XLA.
        time_axis: 0 or 1, the time axis of `currents`, `mask` and the outputs. Batch-major
            sequences are sliced in place under XLA; without XLA they are transposed to
            time-major and back.
        checkpoint_every: None keeps the states entering every step for the backward pass
            (one [time, batch, ...] tensor per state). An int k keeps only those entering
            steps 0, k, 2k, ... and recomputes the others segment by segment in the backward
            pass: state memory falls by a factor k (plus k steps' worth), for one more
            forward pass of the recurrence (not of the matmuls). ``"auto"``: by the
            sequence length, see `resolve_checkpoint_every`.
    Returns: (outputs with time on `time_axis`, final states list). Gradients flow to
    `currents`, `initial_states` and `tensors`.
    """
    if time_axis not in (0, 1):
        raise ValueError(f"time_axis must be 0 or 1, got time_axis={time_axis!r}")
    checkpoint_every = resolve_checkpoint_every(
        check_checkpoint_every(checkpoint_every, allow_auto=True), currents.shape[time_axis]
    )
    batch = currents.shape[1 - time_axis]
    old_xla_fails = checkpoint_every is not None or mask is not None or batch == 1
    if jit_compile and compat.TF_VERSION < (2, 9) and (old_xla_fails or getattr(step, "crashes_old_xla", False)):
        # XLA of TensorFlow before 2.9 (2.6: Graphcore's base) crashes the process on the
        # nested loops of a checkpointed backward pass and, now and then, on the backward
        # loop of a step that declares `crashes_old_xla` (steps that select spikes), and
        # refuses masked loops and the backward pass over a batch of 1 ("Dynamic degenerated
        # dimension"): there such loops run unjitted.
        jit_compile = False
    return _resolved_recurrence(step, currents, initial_states, tensors, mask, jit_compile, time_axis, checkpoint_every)


def _resolved_recurrence(step, currents, initial_states, tensors, mask, jit_compile, time_axis, checkpoint_every):
    """`compiled_recurrence` once its `checkpoint_every` is resolved."""
    if time_axis == 1 and not jit_compile:
        # TensorFlow has no in-place update of a slice outside XLA: go through time-major.
        swap = [1, 0] + list(range(2, currents.shape.rank))
        outputs, final_states = _resolved_recurrence(
            step,
            tf.transpose(currents, swap),
            initial_states,
            tensors,
            None if mask is None else tf.transpose(mask),
            jit_compile,
            0,
            checkpoint_every,
        )
        return tf.transpose(outputs, [1, 0] + list(range(2, outputs.shape.rank))), final_states
    forward, backward = _compiled_loops(step, jit_compile)
    n_states = len(initial_states)
    # The forward keeps the products' outputs for the backward pass to replay only where a
    # gradient tape records (training); without one (inference) it keeps no more than before.
    save_products = _replays(step) and checkpoint_every is None and compat.tape_recording()

    @tf.custom_gradient
    def run(currents, *args):
        # Inputs cut from any outer tape: the loops' gradient is `grad` below, so TensorFlow
        # must not also build (and store accumulators for) an autodiff of the loops.
        currents = tf.stop_gradient(currents)
        placed = bool(getattr(step, "state_devices", None))
        devices = _placed(step, "state_devices", n_states) + _placed(step, "tensor_devices", len(args) - n_states)
        cut = []
        for a, device in zip(args, devices):
            with _on(device):  # a placed step's tensors stay on their devices (not copied every step)
                cut.append(tf.stop_gradient(a))
        states, step_tensors = cut[:n_states], cut[n_states:]
        with compat.stop_recording():
            outputs, stored, final_states, saved = forward(
                currents, mask, states, step_tensors, time_axis, checkpoint_every, save_products
            )
        output_shape, output_dtype = tf.shape(outputs), outputs.dtype

        def grad(d_outputs, *d_final):
            # Only shapes are kept for the backward pass, not the forward outputs themselves.
            d_outputs = tf.zeros(output_shape, output_dtype) if d_outputs is None else d_outputs
            d_final = [tf.zeros_like(s) if d is None else d for d, s in zip(d_final, states)]
            # TensorFlow builds a gradient colocated with its forward op: for a step over several
            # devices that would pull the whole backward loop onto the loop's device.
            free = tf.compat.v1.colocate_with(None, ignore_existing=True) if placed else contextlib.nullcontext()
            with free:
                d_currents, d_initial, d_tensors = backward(
                    currents, mask, stored, step_tensors, d_outputs, d_final, time_axis, checkpoint_every, saved
                )
            return [d_currents] + list(d_initial) + list(d_tensors)

        return [outputs] + list(final_states), grad

    results = run(currents, *(list(initial_states) + list(tensors)))
    return _with_static_shapes(results[0], results[1:], currents, initial_states)


def _with_static_shapes(outputs, final_states, currents, initial_states):
    """The loop's outputs with the static batch and time sizes of `currents`, and final states
    with those of `initial_states` (a custom gradient or a relaxed trace may lose them, and a
    stateful Keras 2 RNN after this layer needs its batch size)."""
    outputs.set_shape(currents.shape[:2].concatenate(outputs.shape[2:]))
    for state, initial in zip(final_states, initial_states):
        state.set_shape(initial.shape)
    return outputs, list(final_states)


class BlockStep:
    """The step of one SNN block for `compiled_recurrence`: its tensors are the tensor
    fields of the neuron parameters, then the recurrent kernel and the bias (each if any).

    With a bias the step adds it to the feed-forward current x[t] W of its input, so the
    bias add and its gradient (a sum over batch and time) fuse into the compiled loops
    instead of taking passes of their own over [batch, time, units].

    `output`: ``"spikes"`` (the block's output) or ``"pre_spike"`` (the model's pre-spike
    value, from which sparse blocks select their spikes, after the loop or inside it;
    `SILENT_PRE_SPIKE` at masked steps).

    The recurrent kernel R is a deferred tensor (see `_step_vjp`): the backward loop
    records the previous spikes and the gradient of their recurrent current, and R's
    gradient is one matmul over all steps (or each checkpointed segment) after the loop.

    Equal by its static content (model, the non-tensor parameter values and their layout,
    options): equal steps may share compiled loops (`shared_step`).
    """

    OUTPUTS = ("spikes", "pre_spike")

    def __init__(self, model, params, has_recurrent_kernel: bool, has_bias: bool = False, output: str = "spikes"):
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got output={output!r}")
        if output == "pre_spike" and not model.spiking:
            raise ValueError(f"the {model.class_name} model does not spike: it has no pre-spike value")
        self.model = model
        leaves = tf.nest.flatten(params)
        self.tensor_positions = tuple(i for i, leaf in enumerate(leaves) if tf.is_tensor(leaf))
        self.static_leaves = tuple(None if tf.is_tensor(leaf) else leaf for leaf in leaves)
        # The layout only: no tensor of the call that created this step is kept.
        self.structure = tf.nest.pack_sequence_as(params, list(self.static_leaves))
        self.has_recurrent_kernel = bool(has_recurrent_kernel)
        self.has_bias = bool(has_bias)
        self.output = output
        self.deferred_tensors = (len(self.tensor_positions),) if self.has_recurrent_kernel else ()
        self.key = (model, self.static_leaves, self.tensor_positions, self.has_recurrent_kernel, self.has_bias, output)

    def split(self, params, recurrent_kernel, bias=None) -> List[tf.Tensor]:
        leaves = tf.nest.flatten(params)
        return (
            [leaves[i] for i in self.tensor_positions]
            + ([recurrent_kernel] if self.has_recurrent_kernel else [])
            + ([bias] if self.has_bias else [])
        )

    def unpack(self, tensors):
        """`tensors` (as made by `split`) -> (params, recurrent kernel or None, bias or None)."""
        leaves = list(self.static_leaves)
        for position, tensor in zip(self.tensor_positions, tensors):
            leaves[position] = tensor
        params = tf.nest.pack_sequence_as(self.structure, leaves)
        rest = list(tensors[len(self.tensor_positions) :])
        kernel = rest.pop(0) if self.has_recurrent_kernel else None
        bias = rest.pop(0) if self.has_bias else None
        return params, kernel, bias

    def __call__(self, current, mask_t, states, tensors, record=None):
        """(output, new states); with `record` (a list) and a recurrent kernel, the kernel gets
        no gradient here and the recurrent product is recorded (see `_step_vjp`)."""
        params, kernel, bias = self.unpack(tensors)
        if bias is not None:
            current = current + bias
        if kernel is None or record is None:
            spikes, new_states, pre_spike = masked_block_update(self.model, current, mask_t, states, params, kernel)
        else:
            # The model's update with R, its recurrent current written out (the same sum).
            *neuron_states, previous = states
            recurrent = tf.matmul(previous, tf.stop_gradient(kernel))
            record.append((self.deferred_tensors[0], (previous,), recurrent))
            spikes, new_states, pre_spike = masked_block_update(
                self.model, current + recurrent, mask_t, neuron_states, params, None
            )
            # The spikes state: masked steps keep the previous spikes (spikes are 0 there).
            kept = spikes if mask_t is None else tf.where(broadcast_mask(mask_t, spikes), spikes, previous)
            new_states = list(new_states) + [kept]
        return (spikes if self.output == "spikes" else pre_spike), new_states

    def deferred_gradient(self, position: int, parts, d_output: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        """R's gradient [units, units] from the previous spikes [M, units] and the gradient
        of the recurrent current [M, units] of M = steps x batch rows."""
        return tf.matmul(parts[0], d_output, transpose_a=True)

    def __eq__(self, other) -> bool:
        return isinstance(other, BlockStep) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


#: The values of `fused_recurrence`'s `implementation` (those of every layer).
IMPLEMENTATIONS = implementation_choice.IMPLEMENTATIONS

#: How many distinct steps (with their compiled loops) `shared_step` keeps.
SHARED_STEPS = 64
_SHARED: "collections.OrderedDict" = collections.OrderedDict()


def shared_step(step):
    """An equal step (same `key`: a block or graph step of the same static content) that already
    has compiled loops, if one of the last `SHARED_STEPS` used is, else `step`.

    Layers of one configuration so share their traced loops: a model built again, or a second
    equal layer, traces and compiles nothing new. This matters beyond time: TensorFlow keeps
    every XLA compilation of a function for the life of the process, even after the function
    is gone. A step holds no layer or variable (its tensors are arguments), so keeping a
    bounded number of them keeps no model alive.
    """
    existing = _SHARED.get(step.key)
    if existing is None:
        _SHARED[step.key] = existing = step
        while len(_SHARED) > SHARED_STEPS:
            _SHARED.popitem(last=False)
    else:
        _SHARED.move_to_end(step.key)
    return existing


def shared_loops() -> Dict[Tuple[Any, bool], Tuple[Any, Any]]:
    """{(step, jit_compile): (forward, backward) tf.functions} of the steps that
    `shared_step` keeps, for inspection (e.g. of how often they were traced)."""
    return {
        (step, jit): loops
        for step in _SHARED.values()
        for jit, loops in step.__dict__.get("_compiled_loops", {}).items()
    }


class _StepFunctionModel:
    """A step function of the form ``step(current, state, params) -> (spikes, new_state)``
    with its state NamedTuple, used where a `NeuronModel` is expected (no pre-spike value,
    no kernels)."""

    spiking = False
    name = None

    def __init__(self, step_fn, state_type):
        self.step_fn, self.State = step_fn, state_type
        self.class_name = getattr(step_fn, "__name__", "step function")

    def block_update(self, current, states, params, recurrent_kernel=None):
        spikes, new_states = neurons.block_step(self.step_fn, self.State, current, states, params, recurrent_kernel)
        return spikes, new_states, None

    def __eq__(self, other):
        return isinstance(other, _StepFunctionModel) and (self.step_fn, self.State) == (other.step_fn, other.State)

    def __hash__(self):
        return hash((self.step_fn, self.State))


def as_model(model, state_type=None):
    """A `NeuronModel` (or the model whose `step` is the given step function; an adapter for
    another step function with its `state_type`)."""
    if isinstance(model, (neurons.NeuronModel, _StepFunctionModel)):
        return model
    for registered in neurons.MODELS.values():
        if registered.step is model or registered.update_fn is model:
            return registered
    if callable(model) and state_type is not None:
        return _StepFunctionModel(model, state_type)
    raise TypeError(f"expected a dense_snns.neurons.NeuronModel, got {model!r}")


def fused_recurrence(model, *args, **kwargs) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Run an SNN block's recurrence over a whole sequence, with hand-written BPTT.

    ``fused_recurrence(model, currents, initial_states, params, recurrent_kernel=None,
    mask=None, jit_compile=True, time_axis=0, bias=None, checkpoint_every=None,
    implementation="auto", output="spikes")``; the earlier form
    ``fused_recurrence(step_fn, state_type, currents, ...)`` works too.

    Args:
        model: the neuron's `dense_snns.neurons.NeuronModel`.
        currents: feed-forward currents [time, batch, ..., units] (or [batch, time, ...,
            units] with ``time_axis=1``): x W, plus the bias unless `bias` is given.
        initial_states: list of [batch, ..., units] states (block layout: neuron states,
            then the previous spikes if `recurrent_kernel` is given).
        params: the model's `Params`; its tensor fields receive gradients.
        recurrent_kernel: [units, units] or None.
        mask: bool [time, batch] (or [batch, time] with ``time_axis=1``) or None; padded
            steps keep the state and emit no spike.
        jit_compile: compile both time loops with XLA.
        time_axis: 0 (time-major) or 1 (batch-major) sequences; see `compiled_recurrence`.
        bias: [units] or None, added to the currents inside the loop.
        checkpoint_every: see `compiled_recurrence`.
        implementation: see `dense_snns.implementation`. ``"kernel"``: the C++ kernels
            (`dense_snns.ops.lif`), for the models, resets and surrogates of their table,
            batch-major float32/float64 sequences, no mask, no recurrent kernel, not inside
            XLA; ``"compiled"``: `compiled_recurrence`; ``"reference"``:
            `reference_recurrence`; ``"auto"``: the kernels when they can run, else compiled.
        output: ``"spikes"`` or ``"pre_spike"`` (see `BlockStep`; the loops only).
    Returns: (outputs (spikes; a readout's membranes) laid out as `currents`, final states list).
    """
    if args and isinstance(args[0], type):  # the earlier form (step_fn, state_type, currents, ...)
        state_type, *args = args
        model = as_model(model, state_type)
    return _fused_recurrence(as_model(model), *args, **kwargs)


def _fused_recurrence(
    model,
    currents: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    params: Any,
    recurrent_kernel: Optional[tf.Tensor] = None,
    mask: Optional[tf.Tensor] = None,
    jit_compile: bool = True,
    time_axis: int = 0,
    bias: Optional[tf.Tensor] = None,
    checkpoint_every: Union[None, int, str] = None,
    implementation: str = "auto",
    output: str = "spikes",
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    requested = implementation_choice.check(implementation)

    def refusal():
        if output != "spikes":
            return f"the kernels give no output={output!r}"
        return lif_ops.refusal(model, params, currents, time_axis, mask is not None, recurrent_kernel is not None)

    chosen = implementation_choice.resolve(requested, refusal, f"this {model.class_name} recurrence")
    if chosen == "kernel":
        return lif_ops.run(model, currents, initial_states, params, bias)
    step = shared_step(BlockStep(model, params, recurrent_kernel is not None, bias is not None, output))
    tensors = step.split(params, recurrent_kernel, bias)
    if chosen == "reference":
        return reference_recurrence(step, currents, initial_states, tensors, mask, time_axis)
    return compiled_recurrence(step, currents, initial_states, tensors, mask, jit_compile, time_axis, checkpoint_every)
