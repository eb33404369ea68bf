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

import functools
import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla as _xla

from . import neurons, surrogates
from .ops import lif as lif_ops


def num_steps(x: tf.Tensor, axis: int):
    """Static length of `axis` if known (keeps output shapes static), else dynamic."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _broadcast_mask(mask_t: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """[batch] bool -> [batch, 1, ..., 1] to broadcast against `like`."""
    return tf.reshape(mask_t, tf.concat([tf.shape(mask_t), tf.ones([like.shape.rank - 1], tf.int32)], 0))


def masked_block_step(step_fn, state_type, current, mask_t, states, params, recurrent_kernel):
    """`neurons.block_step`; where `mask_t` ([batch] bool) is False the states are kept and
    the output is zero (a padded step emits no spike)."""
    spikes, new_states = neurons.block_step(step_fn, state_type, current, states, params, recurrent_kernel)
    if mask_t is None:
        return spikes, new_states
    keep = _broadcast_mask(mask_t, spikes)
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


def _step_vjp(step, current, mask_t, states, tensors, d_output, d_states):
    """Recompute one step and return the gradients of its inputs: (d_current, d_states,
    d_tensors), given those of its outputs."""
    with tf.GradientTape() as tape:
        tape.watch([current] + states + list(tensors))
        out, new_states = step(current, mask_t, states, tensors)
    grads = tape.gradient(
        [out] + new_states,
        [current] + states + list(tensors),
        output_gradients=[d_output] + d_states,
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    n = len(states)
    return grads[0], grads[1 : 1 + n], grads[1 + n :]


def _forward(step, currents, mask, initial_states, tensors, time_axis=0, every=None):
    """Forward loop. Returns (outputs, stored states, final states): the states entering
    every step ([T, batch, ...] each) or, with `every` = k, only those entering steps 0, k,
    2k, ... ([ceil(T/k), batch, ...] each)."""
    series = _TimeSeries(time_axis)
    steps = num_steps(currents, time_axis)
    batch = tf.shape(currents)[1 - time_axis]

    def mask_at(t):
        return None if mask is None else series.read(mask, t)

    def advance(t, states, outputs):
        out, states = step(series.read(currents, t), mask_at(t), states, tensors)
        return t + 1, states, series.write(outputs, t, out)

    # The output's shape and dtype come from one traced step (a graph's output differs from
    # its currents).
    probe, _ = step(series.read(currents, 0), mask_at(0), list(initial_states), tensors)
    outputs = series.new(probe, steps, batch)
    if every is None:
        stored = [tf.TensorArray(s.dtype, size=steps, element_shape=s.shape) for s in initial_states]

        def body(t, states, outputs, stored):
            stored = [array.write(t, state) for array, state in zip(stored, states)]
            return advance(t, states, outputs) + (stored,)

        _, final_states, outputs, stored = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            [tf.constant(0), list(initial_states), outputs, stored],
            maximum_iterations=steps,
        )
    else:
        segments = (steps + every - 1) // every
        stored = [tf.TensorArray(s.dtype, size=segments, element_shape=s.shape) for s in initial_states]

        def segment(i, states, outputs, stored):
            stored = [array.write(i, state) for array, state in zip(stored, states)]
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
    return series.finish(outputs, probe, steps), [array.stack() for array in stored], final_states


def _backward(step, currents, mask, stored, tensors, d_outputs, d_final, time_axis=0, every=None):
    """Reverse-time loop: the vector-Jacobian product of each step, recomputed from its
    stored input state (with `every` = k, the states of each segment of k steps are first
    recomputed from its stored first state)."""
    series = _TimeSeries(time_axis)
    steps = num_steps(currents, time_axis)
    batch = tf.shape(currents)[1 - time_axis]
    current_0 = series.read(currents, 0)
    d_currents = series.new(current_0, steps, batch)

    def mask_at(t):
        return None if mask is None else series.read(mask, t)

    def reverse(t, states, d_states, d_tensors, d_currents):
        d_current, d_states, d_step_tensors = _step_vjp(
            step, series.read(currents, t), mask_at(t), states, tensors, series.read(d_outputs, t), list(d_states)
        )
        d_tensors = [acc + g for acc, g in zip(d_tensors, d_step_tensors)]
        return t - 1, d_states, d_tensors, series.write(d_currents, t, d_current)

    zeros = [tf.zeros_like(e) for e in tensors]
    if every is None:

        def body(t, d_states, d_tensors, d_currents):
            return reverse(t, [array[t] for array in stored], d_states, d_tensors, d_currents)

        _, d_initial, d_tensors, d_currents = tf.while_loop(
            lambda t, *_: t >= 0,
            body,
            [steps - 1, list(d_final), zeros, d_currents],
            maximum_iterations=steps,
        )
    else:
        segments = (steps + every - 1) // every

        def segment(i, d_states, d_tensors, d_currents):
            start, end = i * every, tf.minimum((i + 1) * every, steps)

            def recompute(t, states, kept):
                kept = [array.write(t - start, state) for array, state in zip(kept, states)]
                _, states = step(series.read(currents, t), mask_at(t), states, tensors)
                return t + 1, states, kept

            kept = [tf.TensorArray(s.dtype, size=every, element_shape=s.shape[1:]) for s in stored]
            _, _, kept = tf.while_loop(
                lambda t, *_: t < end,
                recompute,
                [start, [array[i] for array in stored], kept],
                maximum_iterations=every,
            )

            def body(t, d_states, d_tensors, d_currents):
                return reverse(t, [array.read(t - start) for array in kept], d_states, d_tensors, d_currents)

            _, d_states, d_tensors, d_currents = tf.while_loop(
                lambda t, *_: t >= start, body, [end - 1, d_states, d_tensors, d_currents], maximum_iterations=every
            )
            return i - 1, d_states, d_tensors, d_currents

        _, d_initial, d_tensors, d_currents = tf.while_loop(
            lambda i, *_: i >= 0,
            segment,
            [segments - 1, list(d_final), zeros, d_currents],
            maximum_iterations=segments,
        )
    return series.finish(d_currents, current_0, steps), d_initial, d_tensors


def check_checkpoint_every(value, allow_auto: bool = False):
    """None or a positive int (the `checkpoint_every` argument); also "auto" if `allow_auto`."""
    if value is None or (allow_auto and value == AUTO):
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        expected = 'None, "auto" or a positive integer' if allow_auto else "None or a positive integer"
        raise ValueError(f"checkpoint_every must be {expected}, got checkpoint_every={value!r}")
    return value


#: ``checkpoint_every="auto"`` of the sequence layers: sequences of at least this many
#: (static) steps keep every k-th state, k = max(AUTO_MIN_SEGMENT, ceil(sqrt(T))).
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


_COMPILED = {}


def _compiled_loops(step, jit_compile: bool):
    """The forward and backward loops of `step` as tf.functions: one pair per step object,
    so that layers with different steps do not retrace one shared function."""
    key = (step, bool(jit_compile))
    if key not in _COMPILED:
        _COMPILED[key] = (
            tf.function(functools.partial(_forward, step), jit_compile=bool(jit_compile)),
            tf.function(functools.partial(_backward, step), jit_compile=bool(jit_compile)),
        )
    return _COMPILED[key]


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
            function of its tensor arguments. It must be hashable and stay the same object
            between calls (it keys the compiled loops): a module-level function or an object
            kept by the layer.
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
    if time_axis == 1 and not jit_compile:
        # TensorFlow has no in-place update of a slice outside XLA: go through time-major.
        swap = [1, 0] + list(range(2, currents.shape.rank))
        outputs, final_states = compiled_recurrence(
            step,
            tf.transpose(currents, swap),
            initial_states,
            tensors,
            None if mask is None else tf.transpose(mask),
            jit_compile,
            time_axis=0,
            checkpoint_every=checkpoint_every,
        )
        return tf.transpose(outputs, [1, 0] + list(range(2, outputs.shape.rank))), final_states
    forward, backward = _compiled_loops(step, jit_compile)
    n_states = len(initial_states)

    @tf.custom_gradient
    def run(currents, *args):
        # Inputs cut from any outer tape: the loops' gradient is `grad` below, so TensorFlow
        # must not also build (and store accumulators for) an autodiff of the loops.
        currents = tf.stop_gradient(currents)
        args = [tf.stop_gradient(a) for a in args]
        states, step_tensors = args[:n_states], args[n_states:]
        outputs, stored, final_states = forward(currents, mask, states, step_tensors, time_axis, checkpoint_every)
        output_shape, output_dtype = tf.shape(outputs), outputs.dtype

        def grad(d_outputs, *d_final):
            # Only shapes are kept for the backward pass, not the forward outputs themselves.
            d_outputs = tf.zeros(output_shape, output_dtype) if d_outputs is None else d_outputs
            d_final = [tf.zeros_like(s) if d is None else d for d, s in zip(d_final, states)]
            d_currents, d_initial, d_tensors = backward(
                currents, mask, stored, step_tensors, d_outputs, d_final, time_axis, checkpoint_every
            )
            return [d_currents] + list(d_initial) + list(d_tensors)

        return [outputs] + list(final_states), grad

    results = run(currents, *(list(initial_states) + list(tensors)))
    return results[0], list(results[1:])


class BlockStep:
    """The step of one SNN block for `compiled_recurrence`: its tensors are the tensor
    fields of the neuron parameters, then the recurrent kernel and the bias (each if any).

    With a bias the step adds it to the feed-forward current x[t] W of its input, so the
    bias add and its gradient (a sum over batch and time) fuse into the compiled loops
    instead of taking passes of their own over [batch, time, units].

    Hashable by its static content (step function, state type, the non-tensor parameter
    values and their layout), so equal blocks share compiled loops.
    """

    def __init__(self, step_fn, state_type, params, has_recurrent_kernel: bool, has_bias: bool = False):
        self.step_fn = step_fn
        self.state_type = state_type
        leaves = tf.nest.flatten(params)
        self.tensor_positions = tuple(i for i, leaf in enumerate(leaves) if tf.is_tensor(leaf))
        self.static_leaves = tuple(None if tf.is_tensor(leaf) else leaf for leaf in leaves)
        # The layout only: no tensor of the call that created this step is kept.
        self.structure = tf.nest.pack_sequence_as(params, list(self.static_leaves))
        self.has_recurrent_kernel = bool(has_recurrent_kernel)
        self.has_bias = bool(has_bias)
        self._key = (
            step_fn,
            state_type,
            self.static_leaves,
            self.tensor_positions,
            self.has_recurrent_kernel,
            self.has_bias,
        )

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

    def __call__(self, current, mask_t, states, tensors):
        params, kernel, bias = self.unpack(tensors)
        if bias is not None:
            current = current + bias
        return masked_block_step(self.step_fn, self.state_type, current, mask_t, states, params, kernel)

    def __eq__(self, other) -> bool:
        return isinstance(other, BlockStep) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


_BLOCK_STEPS = {}

#: Values of `fused_recurrence`'s `implementation`.
IMPLEMENTATIONS = ("auto", "op", "tf")


def _kernel_refusal(step_fn, params, currents, time_axis, mask, recurrent_kernel) -> Optional[str]:
    """Why the C++ kernels (`dense_snns.ops.lif`) cannot run this recurrence, or None if they can."""
    if step_fn is neurons.lif_step:
        if type(params.spike_fn) is not surrogates.Surrogate:  # a subclass may change the derivative
            return "the spike function is not a dense_snns.surrogates.Surrogate"
    elif step_fn is not neurons.leaky_integrator_step:
        return (
            f"there is no kernel for the step {getattr(step_fn, '__name__', step_fn)!r} (only lif_step and "
            "leaky_integrator_step)"
        )
    return lif_ops.applicable(currents, time_axis, mask is not None, recurrent_kernel is not None)


def fused_recurrence(
    step_fn,
    state_type,
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
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Run an SNN block's recurrence over a whole sequence, with hand-written BPTT.

    Args:
        step_fn, state_type: a neuron step function of `dense_snns.neurons` and its state type.
        currents: feed-forward currents [time, batch, ..., units] (or [batch, time, ...,
            units] with ``time_axis=1``): x W, plus the bias unless `bias` is given.
        initial_states: list of [batch, ..., units] states (block layout: neuron states,
            then the previous spikes if `recurrent_kernel` is given).
        params: the neuron's parameter NamedTuple; its tensor fields receive gradients.
        recurrent_kernel: [units, units] or None.
        mask: bool [time, batch] (or [batch, time] with ``time_axis=1``) or None; padded
            steps keep the state and emit no spike.
        jit_compile: compile both time loops with XLA.
        time_axis: 0 (time-major) or 1 (batch-major) sequences; see `compiled_recurrence`.
        bias: [units] or None, added to the currents inside the loop.
        checkpoint_every: see `compiled_recurrence`.
        implementation: ``"op"`` runs the C++ kernels (`dense_snns.ops.lif`): `LIF`
            neurons with a `Surrogate` spike function or the leaky integrator, batch-major
            float32/float64 sequences, no mask, no recurrent kernel, not inside XLA
            (ValueError otherwise).
            ``"tf"`` runs the compiled TensorFlow loops (`compiled_recurrence`); ``"auto"``
            the kernels whenever they apply and are built, else the loops.
    Returns: (outputs (spikes; a readout's membranes) laid out as `currents`, final states list).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got implementation={implementation!r}")
    if implementation != "tf":
        refusal = _kernel_refusal(step_fn, params, currents, time_axis, mask, recurrent_kernel)
        if refusal is None:
            if step_fn is neurons.leaky_integrator_step:
                outputs, final_v = lif_ops.leaky_integrator_recurrence(currents, initial_states[0], params.beta, bias)
            else:
                outputs, final_v = lif_ops.lif_recurrence(
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
        if implementation == "op":
            raise ValueError(f"implementation='op' cannot run this recurrence: {refusal}")
    step = BlockStep(step_fn, state_type, params, recurrent_kernel is not None, bias is not None)
    # tf.function keys its traces on the identity of such objects: one instance per key.
    step = _BLOCK_STEPS.setdefault(step._key, step)
    return compiled_recurrence(
        step,
        currents,
        initial_states,
        step.split(params, recurrent_kernel, bias),
        mask,
        jit_compile,
        time_axis,
        checkpoint_every,
    )
