"""Fused recurrence: compiled time loops with a hand-written reverse-time BPTT.

The feed-forward current of all steps is computed outside (one matmul or convolution), so
the matmul and its gradients (dW = x^T dI, dx = dI W^T) stay plain TensorFlow ops. Only the
state recurrence runs here, in a compiled `tf.while_loop`:

- forward: calls the step for t = 0..T-1 and keeps the states entering each step (for a
  one-state LIF block: one [T, batch, units] tensor, beside the spikes it returns);
- backward: walks t = T-1..0, recomputes step t from its stored input state and takes the
  vector-Jacobian product of that single step (so the gradient is, by construction, the
  gradient of the same step function, surrogate included), carrying the state gradient.

This avoids autodiff through a whole time loop, which under XLA costs O(T^2) in
TensorFlow. Both loops are compiled with XLA by default.

`compiled_recurrence` is generic over the step (an SNN block, a graph of blocks);
`fused_recurrence` is its use for one SNN block.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import tensorflow as tf

from . import neurons


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


def _forward(step, currents, mask, initial_states, tensors):
    steps = num_steps(currents, 0)
    outputs = None
    stored = [tf.TensorArray(s.dtype, size=steps, element_shape=s.shape) for s in initial_states]

    def body(t, states, outputs, stored):
        stored = [array.write(t, state) for array, state in zip(stored, states)]
        out, states = step(currents[t], None if mask is None else mask[t], states, tensors)
        return t + 1, states, outputs.write(t, out), stored

    # The output's shape and dtype come from one traced step (a graph's output differs from
    # its currents).
    probe, _ = step(currents[0], None if mask is None else mask[0], list(initial_states), tensors)
    outputs = tf.TensorArray(probe.dtype, size=steps, element_shape=probe.shape)
    _, final_states, outputs, stored = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        [tf.constant(0), list(initial_states), outputs, stored],
        maximum_iterations=steps,
    )
    return outputs.stack(), [array.stack() for array in stored], final_states


def _backward(step, currents, mask, stored, tensors, d_outputs, d_final):
    steps = num_steps(currents, 0)
    d_currents = tf.TensorArray(currents.dtype, size=steps, element_shape=currents.shape[1:])

    def body(t, d_states, d_tensors, d_currents):
        current = currents[t]
        states = [array[t] for array in stored]
        with tf.GradientTape() as tape:
            tape.watch([current] + states + list(tensors))
            out, new_states = step(current, None if mask is None else mask[t], states, tensors)
        grads = tape.gradient(
            [out] + new_states,
            [current] + states + list(tensors),
            output_gradients=[d_outputs[t]] + d_states,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        n = len(states)
        d_tensors = [acc + g for acc, g in zip(d_tensors, grads[1 + n:])]
        return t - 1, grads[1:1 + n], d_tensors, d_currents.write(t, grads[0])

    _, d_initial, d_tensors, d_currents = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        [steps - 1, list(d_final), [tf.zeros_like(e) for e in tensors], d_currents],
        maximum_iterations=steps,
    )
    return d_currents.stack(), d_initial, d_tensors


_COMPILED = {
    True: (tf.function(_forward, jit_compile=True), tf.function(_backward, jit_compile=True)),
    False: (tf.function(_forward), tf.function(_backward)),
}


def compiled_recurrence(
    step,
    currents: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    tensors: Sequence[tf.Tensor] = (),
    mask: Optional[tf.Tensor] = None,
    jit_compile: bool = True,
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Run ``step`` over time in a compiled loop, with hand-written BPTT.

    Args:
        step: ``step(current_t, mask_t, states, tensors) -> (output_t, new_states)``, a pure
            function of its tensor arguments. It must be hashable and stay the same object
            between calls (it keys the compiled loops): a module-level function or an object
            kept by the layer.
        currents: time-major inputs [time, batch, ...].
        initial_states: list of state tensors.
        tensors: further differentiable inputs of the step (weights, neuron parameters).
        mask: [time, batch] bool or None.
        jit_compile: compile both loops with XLA.
    Returns: (outputs [time, ...], final states list). Gradients flow to `currents`,
    `initial_states` and `tensors`.
    """
    forward, backward = _COMPILED[bool(jit_compile)]
    n_states = len(initial_states)

    @tf.custom_gradient
    def run(currents, *args):
        # Inputs cut from any outer tape: the loops' gradient is `grad` below, so TensorFlow
        # must not also build (and store accumulators for) an autodiff of the loops.
        currents = tf.stop_gradient(currents)
        args = [tf.stop_gradient(a) for a in args]
        states, step_tensors = args[:n_states], args[n_states:]
        outputs, stored, final_states = forward(step, currents, mask, states, step_tensors)
        output_shape, output_dtype = tf.shape(outputs), outputs.dtype

        def grad(d_outputs, *d_final):
            # Only shapes are kept for the backward pass, not the forward outputs themselves.
            d_outputs = tf.zeros(output_shape, output_dtype) if d_outputs is None else d_outputs
            d_final = [tf.zeros_like(s) if d is None else d for d, s in zip(d_final, states)]
            d_currents, d_initial, d_tensors = backward(step, currents, mask, stored, step_tensors, d_outputs, d_final)
            return [d_currents] + list(d_initial) + list(d_tensors)

        return [outputs] + list(final_states), grad

    results = run(currents, *(list(initial_states) + list(tensors)))
    return results[0], list(results[1:])


class BlockStep:
    """The step of one SNN block for `compiled_recurrence`: its tensors are the tensor
    fields of the neuron parameters, then the recurrent kernel (if any).

    Hashable by its static content (step function, state type, the non-tensor parameter
    values and their layout), so equal blocks share compiled loops.
    """

    def __init__(self, step_fn, state_type, params, has_recurrent_kernel: bool):
        self.step_fn = step_fn
        self.state_type = state_type
        leaves = tf.nest.flatten(params)
        self.tensor_positions = tuple(i for i, leaf in enumerate(leaves) if tf.is_tensor(leaf))
        self.static_leaves = tuple(None if tf.is_tensor(leaf) else leaf for leaf in leaves)
        # The layout only: no tensor of the call that created this step is kept.
        self.structure = tf.nest.pack_sequence_as(params, list(self.static_leaves))
        self.has_recurrent_kernel = bool(has_recurrent_kernel)
        self._key = (step_fn, state_type, self.static_leaves, self.tensor_positions, self.has_recurrent_kernel)

    def split(self, params, recurrent_kernel) -> List[tf.Tensor]:
        leaves = tf.nest.flatten(params)
        return [leaves[i] for i in self.tensor_positions] + ([recurrent_kernel] if self.has_recurrent_kernel else [])

    def __call__(self, current, mask_t, states, tensors):
        leaves = list(self.static_leaves)
        for position, tensor in zip(self.tensor_positions, tensors):
            leaves[position] = tensor
        params = tf.nest.pack_sequence_as(self.structure, leaves)
        kernel = tensors[len(self.tensor_positions)] if self.has_recurrent_kernel else None
        return masked_block_step(self.step_fn, self.state_type, current, mask_t, states, params, kernel)

    def __eq__(self, other) -> bool:
        return isinstance(other, BlockStep) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)


_BLOCK_STEPS = {}


def fused_recurrence(
    step_fn,
    state_type,
    currents: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    params: Any,
    recurrent_kernel: Optional[tf.Tensor] = None,
    mask: Optional[tf.Tensor] = None,
    jit_compile: bool = True,
) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Run an SNN block's recurrence over a whole sequence, with hand-written BPTT.

    Args:
        step_fn, state_type: a neuron step function of `dense_snns.neurons` and its state type.
        currents: feed-forward currents, time-major [time, batch, ..., units].
        initial_states: list of [batch, ..., units] states (block layout: neuron states,
            then the previous spikes if `recurrent_kernel` is given).
        params: the neuron's parameter NamedTuple; its tensor fields receive gradients.
        recurrent_kernel: [units, units] or None.
        mask: [time, batch] bool or None; padded steps keep the state and emit no spike.
        jit_compile: compile both time loops with XLA.
    Returns: (spikes [time, batch, ..., units], final states list).
    """
    step = BlockStep(step_fn, state_type, params, recurrent_kernel is not None)
    # tf.function keys its traces on the identity of such objects: one instance per key.
    step = _BLOCK_STEPS.setdefault(step._key, step)
    return compiled_recurrence(step, currents, initial_states, step.split(params, recurrent_kernel), mask, jit_compile)
