"""Fused SNN sequence layers: the SNN analogue of the fused LSTM layers.

`SNNDense`, `SNNConv1D` and `SNNConv2D` take a whole sequence [batch, time, ...] and run
one SNN block over it:

1. the feed-forward synaptic current of all steps is ONE matmul (or one convolution over
   [batch*time, ...]);
2. the state recurrence runs over the whole sequence with a hand-written reverse-time
   BPTT (`dense_snns.fused.fused_recurrence`): in C++ kernels (`dense_snns.ops.lif`) for
   `LIF` neurons without self-recurrence or mask, else in compiled loops that store only
   the states entering each step (or every k-th);
3. weight and input gradients come from the autodiff of that single matmul/convolution.

`implementation` (the vocabulary of `dense_snns.implementation`):
- ``"auto"`` (default): the C++ kernels where they apply (and could be built), else the
  compiled loops; covers every option of these layers;
- ``"kernel"``: the C++ kernels, an `ImplementationError` saying why if they cannot run this
  layer;
- ``"compiled"``: the compiled loops (XLA by default), never the C++ library (e.g. for a
  SavedModel to be loaded where the library is not);
- ``"reference"``: the block step by step in a `tf.while_loop` with plain autodiff, the
  same computation as ``keras.layers.RNN(SNNBlock(...))``; the reference the others are
  tested against.
"""

from __future__ import annotations

from typing import List, Optional, Union

import tensorflow as tf

from . import fused, input_products
from . import implementation as implementation_choice
from .cells import SNNBlock, get_neuron, serialize_neuron
from .compat import convolution, keras, register
from .implementation import IMPLEMENTATIONS
from .ops import lif as lif_ops
from .stateful import StatefulLayer
from .validation import as_numeric_tensor, check_mask, check_sequence, check_states, check_steps, check_units

__all__ = ["IMPLEMENTATIONS", "DenseSequenceLayer", "SNNConv1D", "SNNConv2D", "SNNDense", "SNNSequenceLayer"]


class SNNSequenceLayer(StatefulLayer, keras.layers.Layer):
    """Base of the fused sequence layers: time loop, states, masking, statefulness.

    Subclasses provide the synapse (`_build_synapse`, `_feedforward`,
    `_feedforward_step`), the neuron (`self.neuron`), the per-sample state shape and an
    optional recurrent kernel.
    """

    input_rank: int = 3
    layout: str = "[batch, time, features]"

    def __init__(
        self,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        implementation: str = "auto",
        jit_compile: bool = True,
        checkpoint_every: Union[None, int, str] = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.checkpoint_every = fused.check_checkpoint_every(checkpoint_every, allow_auto=True)
        implementation = implementation_choice.check(implementation)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.stateful = bool(stateful)
        self.implementation = implementation
        self.jit_compile = bool(jit_compile)
        self.supports_masking = True
        self.state_variables: List = []

    # -- to be provided by subclasses -------------------------------------------------------
    def _build_synapse(self, input_shape):
        raise NotImplementedError

    def _feedforward(self, inputs):
        """[batch, time, ...] -> currents [batch, time, ..., units], without the bias of
        `_loop_bias` (the fused loop adds that one)."""
        raise NotImplementedError

    def _loop_bias(self, dtype):
        """A [units] bias for the fused loop to add, or None if `_feedforward` includes it."""
        return None

    def _feedforward_step(self, inputs_t):
        """[batch, ...] -> currents [batch, ..., units] of one step."""
        raise NotImplementedError

    def _state_shape(self, input_shape) -> List[Optional[int]]:
        """Per-sample shape of each state tensor, e.g. [units]."""
        raise NotImplementedError

    def _recurrent_kernel(self, dtype):
        return None

    @property
    def _self_recurrent(self) -> bool:
        return False

    # -- shared machinery -------------------------------------------------------------------
    @property
    def model(self):
        """The neuron's `dense_snns.neurons.NeuronModel`."""
        return self.neuron.model

    @property
    def num_states(self) -> int:
        return len(self.neuron.state_size) + (1 if self._self_recurrent else 0)

    def _check_input_shape(self, input_shape):
        return check_sequence(self._what, input_shape, self.input_rank, self.layout)

    def build(self, input_shape):
        shape = self._check_input_shape(input_shape)
        self._build_synapse(shape)
        if not self.neuron.built:
            self.neuron.build((None, self.neuron.units))
        self._input_features = shape[2:]
        self._build_states(shape[0], [self._state_shape(shape)] * self.num_states)
        self.built = True

    def _recurrence_dtype(self):
        # Mixed precision: float16 matmuls, float32 neuron states.
        compute = tf.as_dtype(self.compute_dtype)
        return tf.float32 if compute in (tf.float16, tf.bfloat16) else compute

    def _initial_states(self, currents, initial_state, dtype):
        if initial_state is not None:
            states = [tf.cast(s, dtype) for s in tf.nest.flatten(initial_state)]
            shape = currents.shape[:1].concatenate(currents.shape[2:])  # [batch, ...] of one step
            return check_states(self._what, states, [shape] * self.num_states)
        if self.stateful:
            return self._carried_states(currents.shape[0], dtype)
        zeros = tf.zeros_like(currents[:, 0], dtype=dtype)
        return [zeros for _ in range(self.num_states)]

    def call(self, inputs, mask=None, training=None, initial_state=None):
        x = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_sequence(self._what, x.shape, self.input_rank, self.layout, self._input_features, "the layer (as built)")
        x = check_steps(self._what, x)
        if self.stateful:
            self._carried_states(x.shape[0], x.dtype, x.shape)  # the batch size, checked before anything runs
        dtype = self._recurrence_dtype()
        if mask is not None:
            mask = check_mask(self._what, mask, x)
        if self.implementation == "reference":
            outputs, final_states = self._loop(x, mask, initial_state, dtype)
        else:
            outputs, final_states = self._fused(x, mask, initial_state, dtype, training)
        if self.stateful:
            self._carry_states(final_states)
        outputs = tf.cast(outputs, self.compute_dtype)
        result = outputs if self.return_sequences else outputs[:, -1]
        if self.return_state:
            return [result] + list(final_states)
        return result

    def _fused(self, x, mask, initial_state, dtype, training=None):
        currents = tf.cast(self._feedforward(x), dtype)  # one matmul / conv over all steps
        states = self._initial_states(currents, initial_state, dtype)
        steps = currents.shape[1]
        checkpoint_every = fused.resolve_checkpoint_every(self.checkpoint_every, steps)
        if training is False and isinstance(steps, int):
            # Inference keeps no per-step state; a gradient, if one is still asked for, then
            # recomputes the states from the initial ones.
            checkpoint_every = steps
        params = self.neuron.params(dtype)
        kernel = self._recurrent_kernel(dtype)
        chosen = implementation_choice.resolve(
            self.implementation,
            lambda: lif_ops.refusal(self.model, params, currents, 1, mask is not None, kernel is not None),
            f"{type(self).__name__} {self.name!r}",
        )
        return fused.fused_recurrence(
            self.model,
            currents,
            states,
            params,
            kernel,
            mask=mask,
            jit_compile=self.jit_compile,
            time_axis=1,
            bias=self._loop_bias(dtype),
            checkpoint_every=checkpoint_every,
            implementation=chosen,
        )

    def _loop(self, x, mask, initial_state, dtype):
        """The reference: the block step by step, its synapse inside the loop."""
        steps = fused.num_steps(x, 1)
        first = tf.cast(self._feedforward_step(x[:, 0]), dtype)
        states = self._initial_states(first[:, None], initial_state, dtype)
        outputs = tf.TensorArray(dtype, size=steps, element_shape=first.shape)
        params = self.neuron.params(dtype)
        kernel = self._recurrent_kernel(dtype)

        def body(t, states, outputs):
            mask_t = None if mask is None else mask[:, t]
            spikes, states = self._step(x[:, t], mask_t, states, params, kernel, dtype)
            return t + 1, states, outputs.write(t, spikes)

        _, final_states, outputs = tf.while_loop(lambda t, *_: t < steps, body, [tf.constant(0), states, outputs])
        outputs = outputs.stack()
        rank = outputs.shape.rank
        return tf.transpose(outputs, [1, 0] + list(range(2, rank))), final_states

    def _step(self, x_t, mask_t, states, params, kernel, dtype):
        current = tf.cast(self._feedforward_step(x_t), dtype)
        spikes, states, _ = fused.masked_block_update(self.model, current, mask_t, states, params, kernel)
        return spikes, states

    def step(self, inputs_t, states):
        """One time step: (output [batch, ...], new states) from the input of the step
        [batch, ...] and the states (as `state_variables`): the per-step form of `call`."""
        dtype = self._recurrence_dtype()
        x_t = as_numeric_tensor(inputs_t, "inputs", self.compute_dtype)
        outputs, new_states = self._step(
            x_t, None, list(states), self.neuron.params(dtype), self._recurrent_kernel(dtype), dtype
        )
        return tf.cast(outputs, self.compute_dtype), new_states

    def compute_mask(self, inputs, mask=None):
        if mask is None or not self.return_sequences:
            return None
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "stateful": self.stateful,
                "implementation": self.implementation,
                "jit_compile": self.jit_compile,
                "checkpoint_every": self.checkpoint_every,
            }
        )
        return config


class DenseSequenceLayer(SNNSequenceLayer):
    """A sequence layer of a dense-synapse block: its weights are those of an `SNNBlock`
    (``layer.cell``), whose constructor arguments `CELL_ARGUMENTS` are the layer's too. Base
    of `SNNDense` and `LeakyReadout`."""

    CELL_ARGUMENTS = ()

    def _set_cell(self, cell: SNNBlock):
        self.cell = cell
        self.units = cell.units
        self.neuron = cell.neuron

    def _build_synapse(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"the feature dimension of `inputs` must be known, got shape {input_shape}")
        if not self.cell.built:
            self.cell.build((None, input_shape[-1]))

    def _set_input_sparsity(self, input_sparsity: str) -> None:
        self.input_sparsity = input_products.check_input_sparsity(input_sparsity)
        if input_sparsity == "events" and self.implementation in ("compiled", "reference"):
            raise ValueError(
                f"input_sparsity='events' runs the C++ event kernels, which implementation="
                f"{self.implementation!r} excludes: use implementation='auto' or 'kernel'"
            )

    def _feedforward(self, inputs):
        return input_products.feedforward(
            inputs, self.cell.kernel, self.input_sparsity, self.implementation, self._what
        )

    def _loop_bias(self, dtype):
        return None if self.cell.bias is None else tf.cast(self.cell.bias, dtype)

    def _feedforward_step(self, inputs_t):
        return self.cell.synaptic_current(inputs_t)

    def _state_shape(self, input_shape):
        return [self.units]

    def _recurrent_kernel(self, dtype):
        return self.cell.recurrent_kernel_as(dtype)

    @property
    def _self_recurrent(self) -> bool:
        return self.cell.self_recurrent

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[0], input_shape[1]
        out = (batch, time, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, self.units)] * self.num_states
        return out

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell.get_config()
        for key in self.CELL_ARGUMENTS:
            config[key] = cell_config[key]
        config["input_sparsity"] = self.input_sparsity
        return config


@register()
class SNNDense(DenseSequenceLayer):
    """Fused SNN layer: dense synapses + a neuron model over [batch, time, features].

    Computes the same spikes as ``keras.layers.RNN(SNNBlock(units, neuron, ...))`` and shares
    its weight layout (``kernel``, ``recurrent_kernel``, ``bias``, then the neuron's own
    weights), so weights move between the two with ``set_weights(get_weights())``.

    Args:
        units: number of neurons (> 0).
        neuron: the neuron model: a name of `dense_snns.neurons` (default ``"cuba_lif"``),
            a neuron cell with the same units, or its config dict.
        self_recurrent: recurrent weights from the layer's spikes of the previous step.
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer: as `SNNBlock`.
        return_sequences: return spikes of every step [batch, time, units] (default True)
            or only of the last step [batch, units].
        return_state: also return the final states (list of [batch, units]).
        stateful: carry the final states of a call into the next call (needs a fixed
            batch size); `reset_states()` zeroes them.
        implementation: ``"auto"`` | ``"kernel"`` | ``"compiled"`` | ``"reference"`` (see the
            module docstring).
        jit_compile: compile the fused time loops with XLA. Default True. (The C++ kernels
            are compiled code already.)
        checkpoint_every: which neuron states the fused loops keep for the backward pass
            (the C++ kernels keep none: their gradient recomputes the states).
            None: those of every step. An int k: every k-th; the others are recomputed in
            the backward pass (k-fold less state memory, one more pass of the recurrence,
            not of the matmuls). ``"auto"`` (default): by the sequence length, the rule of
            `dense_snns.fused.resolve_checkpoint_every`.
        input_sparsity: the feed-forward product over the nonzero inputs only (exact, for
            spike inputs of low activity): ``"auto"`` (default: by the measured activity of
            each batch and the layer's width), ``"dense"`` or ``"events"``; see
            `dense_snns.input_products`.

    Call arguments: inputs [batch, time, features] (float, int or bool), `mask` [batch, time]
    (padded steps keep the state and emit no spike), `initial_state` (list of tensors).
    """

    CELL_ARGUMENTS = (
        "units",
        "neuron",
        "self_recurrent",
        "use_bias",
        "kernel_initializer",
        "recurrent_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "recurrent_regularizer",
        "bias_regularizer",
    )

    def __init__(
        self,
        units: int,
        neuron=None,
        self_recurrent: bool = False,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        implementation: str = "auto",
        jit_compile: bool = True,
        checkpoint_every: Union[None, int, str] = "auto",
        input_sparsity: str = "auto",
        **kwargs,
    ):
        super().__init__(
            return_sequences, return_state, stateful, implementation, jit_compile, checkpoint_every, **kwargs
        )
        self._set_input_sparsity(input_sparsity)
        self._set_cell(
            SNNBlock(
                units,
                neuron=neuron,
                self_recurrent=self_recurrent,
                use_bias=use_bias,
                kernel_initializer=kernel_initializer,
                recurrent_initializer=recurrent_initializer,
                bias_initializer=bias_initializer,
                kernel_regularizer=kernel_regularizer,
                recurrent_regularizer=recurrent_regularizer,
                bias_regularizer=bias_regularizer,
                dtype=self.dtype_policy,
                name="cell",
            )
        )


class _SNNConv(SNNSequenceLayer):
    """Convolutional synapses + a neuron model; per-channel neuron parameters."""

    conv_class = None
    spatial_rank = 0

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        neuron=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        return_sequences: bool = True,
        return_state: bool = False,
        stateful: bool = False,
        implementation: str = "auto",
        jit_compile: bool = True,
        checkpoint_every: Union[None, int, str] = "auto",
        **kwargs,
    ):
        super().__init__(
            return_sequences, return_state, stateful, implementation, jit_compile, checkpoint_every, **kwargs
        )
        self.filters = check_units(filters, "filters")
        self.conv = self.conv_class(
            self.filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            dtype=self.dtype_policy,
            name="conv",
        )
        self.neuron = get_neuron(neuron, self.filters, dtype=self.dtype_policy)

    def _build_synapse(self, input_shape):
        if any(d is None for d in input_shape[2:]):
            raise ValueError(f"the spatial and channel dimensions of `inputs` must be known, got shape {input_shape}")
        if not self.conv.built:
            self.conv.build((None,) + tuple(input_shape[2:]))

    def _splits_bias(self) -> bool:
        # Keras pads causal convolutions in `call`, before `convolution_op`.
        return self.conv.use_bias and self.conv.padding != "causal"

    def _loop_bias(self, dtype):
        return tf.cast(self.conv.bias, dtype) if self._splits_bias() else None

    def _feedforward(self, inputs):
        frames = tf.reshape(inputs, [-1] + inputs.shape[2:].as_list())  # [batch*time, ...]: one conv call
        if self._splits_bias():
            currents = convolution(self.conv, frames)
        else:
            currents = self.conv(frames)
        dynamic = tf.shape(inputs)
        batch_time = [dynamic[i] if inputs.shape[i] is None else inputs.shape[i] for i in (0, 1)]
        return tf.reshape(currents, batch_time + currents.shape[1:].as_list())

    def _feedforward_step(self, inputs_t):
        return self.conv(inputs_t)

    def _state_shape(self, input_shape):
        try:
            out = self.conv.compute_output_shape((None,) + tuple(input_shape[2:]))
            sizes = list(out[1:])
        except ValueError as err:  # Keras 2.6 fails on a negative size itself
            sizes, reason = None, str(err)
        if sizes is None or any(d is not None and int(d) <= 0 for d in sizes):
            raise ValueError(
                f"{self._what}: `inputs` of spatial shape {list(input_shape[2:-1])} are smaller than "
                f"kernel_size={self.conv.kernel_size} with padding={self.conv.padding!r} and "
                f"strides={self.conv.strides}" + (f" ({reason})" if sizes is None else "")
            )
        return sizes

    def compute_output_shape(self, input_shape):
        batch, time = input_shape[0], input_shape[1]
        state = tuple(self._state_shape(tf.TensorShape(input_shape)))
        out = (batch, time) + state if self.return_sequences else (batch,) + state
        if self.return_state:
            return [out] + [(batch,) + state] * self.num_states
        return out

    def get_config(self):
        config = super().get_config()
        conv_config = self.conv.get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": conv_config["kernel_size"],
                "strides": conv_config["strides"],
                "padding": conv_config["padding"],
                "neuron": serialize_neuron(self.neuron),
                "use_bias": conv_config["use_bias"],
                "kernel_initializer": conv_config["kernel_initializer"],
                "bias_initializer": conv_config["bias_initializer"],
                "kernel_regularizer": conv_config["kernel_regularizer"],
                "bias_regularizer": conv_config["bias_regularizer"],
            }
        )
        return config


@register()
class SNNConv2D(_SNNConv):
    """Fused convolutional SNN layer over event frames [batch, time, height, width, channels].

    The convolution of all frames is one call over [batch*time, H, W, C]; the neuron state
    is [batch, H', W', filters] with per-channel (per-filter) neuron parameters.

    Args:
        filters: output channels = neurons per position (> 0).
        kernel_size, strides, padding: as `keras.layers.Conv2D`.
        neuron, use_bias, initializers, regularizers, return_sequences, return_state,
        stateful, implementation, jit_compile, checkpoint_every: as `SNNDense` (no
        self-recurrence).

    Output: spikes [batch, time, H', W', filters] (or the last step's if not
    `return_sequences`).
    """

    conv_class = keras.layers.Conv2D
    input_rank = 5
    layout = "[batch, time, height, width, channels]"


@register()
class SNNConv1D(_SNNConv):
    """Fused 1-D convolutional SNN layer over [batch, time, length, channels].

    As `SNNConv2D` with `keras.layers.Conv1D` synapses; state [batch, L', filters].
    """

    conv_class = keras.layers.Conv1D
    input_rank = 4
    layout = "[batch, time, length, channels]"
