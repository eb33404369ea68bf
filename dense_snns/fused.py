"""Fused recurrence: the time loop of an SNN block with a hand-written reverse-time BPTT.

The feed-forward current of all steps is computed outside (one matmul or convolution), so
the matmul and its gradients (dW = x^T dI, dx = dI W^T) stay plain TensorFlow ops. Only the
state recurrence runs here, in a compiled `tf.while_loop`:

- forward: calls `neurons.block_step` for t = 0..T-1 and keeps the states entering each
  step (for a one-state LIF: one [T, batch, units] tensor, beside the spikes it returns);
- backward: walks t = T-1..0, recomputes step t from its stored input state and takes the
  vector-Jacobian product of that single step (so the gradient is, by construction, the
  gradient of the same step function, surrogate included), carrying the state gradient.

This avoids autodiff through a whole time loop, which under XLA costs O(T^2) in
TensorFlow. Both loops are compiled with XLA by default.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import tensorflow as tf

from . import neurons


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


def num_steps(x: tf.Tensor, axis: int):
    """Static length of `axis` if known (keeps output shapes static), else dynamic."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _forward(step_fn, state_type, currents, mask, initial_states, params, recurrent_kernel):
    steps = num_steps(currents, 0)
    outputs = tf.TensorArray(currents.dtype, size=steps, element_shape=currents.shape[1:])
    stored = [tf.TensorArray(s.dtype, size=steps, element_shape=s.shape) for s in initial_states]

    def body(t, states, outputs, stored):
        stored = [array.write(t, state) for array, state in zip(stored, states)]
        mask_t = None if mask is None else mask[t]
        spikes, states = masked_block_step(step_fn, state_type, currents[t], mask_t, states, params, recurrent_kernel)
        return t + 1, states, outputs.write(t, spikes), stored

    _, final_states, outputs, stored = tf.while_loop(
        lambda t, *_: t < steps, body, [tf.constant(0), list(initial_states), outputs, stored], maximum_iterations=steps
    )
    return outputs.stack(), [array.stack() for array in stored], final_states


def _backward(step_fn, state_type, currents, mask, stored, params, recurrent_kernel, d_outputs, d_final):
    steps = num_steps(currents, 0)
    param_tensors = [leaf for leaf in tf.nest.flatten(params) if tf.is_tensor(leaf)]
    extra = param_tensors + ([recurrent_kernel] if recurrent_kernel is not None else [])
    d_currents = tf.TensorArray(currents.dtype, size=steps, element_shape=currents.shape[1:])

    def body(t, d_states, d_extra, d_currents):
        current = currents[t]
        states = [array[t] for array in stored]
        mask_t = None if mask is None else mask[t]
        with tf.GradientTape() as tape:
            tape.watch([current] + states + extra)
            spikes, new_states = masked_block_step(step_fn, state_type, current, mask_t, states, params, recurrent_kernel)
        grads = tape.gradient(
            [spikes] + new_states,
            [current] + states + extra,
            output_gradients=[d_outputs[t]] + d_states,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        n = len(states)
        d_extra = [acc + g for acc, g in zip(d_extra, grads[1 + n:])]
        return t - 1, grads[1:1 + n], d_extra, d_currents.write(t, grads[0])

    _, d_initial, d_extra, d_currents = tf.while_loop(
        lambda t, *_: t >= 0,
        body,
        [steps - 1, list(d_final), [tf.zeros_like(e) for e in extra], d_currents],
        maximum_iterations=steps,
    )
    return d_currents.stack(), d_initial, d_extra


_COMPILED = {
    True: (tf.function(_forward, jit_compile=True), tf.function(_backward, jit_compile=True)),
    False: (tf.function(_forward), tf.function(_backward)),
}


def fused_recurrence(
    step_fn,
    state_type,
    currents: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    params,
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
    forward, backward = _COMPILED[bool(jit_compile)]
    leaves = tf.nest.flatten(params)
    tensor_positions = [i for i, leaf in enumerate(leaves) if tf.is_tensor(leaf)]
    n_states = len(initial_states)
    n_params = len(tensor_positions)
    has_recurrence = recurrent_kernel is not None

    def unpack(args):
        states = list(args[:n_states])
        new_leaves = list(leaves)
        for position, tensor in zip(tensor_positions, args[n_states:n_states + n_params]):
            new_leaves[position] = tensor
        kernel = args[n_states + n_params] if has_recurrence else None
        return states, tf.nest.pack_sequence_as(params, new_leaves), kernel

    @tf.custom_gradient
    def run(currents, *args):
        # Inputs cut from any outer tape: the loops' gradient is `grad` below, so TensorFlow
        # must not also build (and store accumulators for) an autodiff of the loops.
        currents = tf.stop_gradient(currents)
        states, step_params, kernel = unpack([tf.stop_gradient(a) for a in args])
        outputs, stored, final_states = forward(step_fn, state_type, currents, mask, states, step_params, kernel)

        def grad(d_outputs, *d_final):
            # Only shapes are taken from the inputs here: the closure must not keep the
            # forward outputs alive until the backward pass.
            d_outputs = tf.zeros_like(currents) if d_outputs is None else d_outputs
            d_final = [tf.zeros_like(s) if d is None else d for d, s in zip(d_final, states)]
            d_currents, d_initial, d_extra = backward(
                step_fn, state_type, currents, mask, stored, step_params, kernel, d_outputs, d_final
            )
            return [d_currents] + list(d_initial) + list(d_extra)

        return [outputs] + list(final_states), grad

    extra = [leaves[i] for i in tensor_positions] + ([recurrent_kernel] if has_recurrence else [])
    results = run(currents, *(list(initial_states) + extra))
    return results[0], list(results[1:])
