"""Sparse SNN blocks: SparseLinear synapses + a neuron model, spikes out as `SparseSpikes`.

`SparseSNNDense` is the fused sequence layer: the synaptic current of all steps is one
`sparse_linear` over [batch*time] rows (cost O(active inputs)), and the spikes of every step
are selected into K = `capacity` slots (spikes first, then gradient-only entries near
threshold). For LIF and CuBa-LIF the neuron recurrence runs in the C++ kernels with the
selection inside each step (`dense_snns.ops.lif.select_recurrence`); otherwise in the
compiled loop of `dense_snns.fused` (hand-written BPTT), followed by `select_spikes`. A
self-recurrent layer selects inside its loop (`SelectionStep`) and feeds its selection back
through a sparse product, O(K) per row. The backward pass reaches only the selected neurons:
sparse BPTT.
"""

from __future__ import annotations

import warnings
from typing import Tuple

import tensorflow as tf

from dense_snns import fused
from dense_snns.cells import get_neuron, serialize_neuron, zero_states
from dense_snns.compat import add_layer_metric, declare_layer_metric, keras, output_shape, register
from dense_snns.ops import lif as lif_ops
from dense_snns.stateful import StatefulLayer
from dense_snns.validation import check_mask, check_positive_int, check_sequence, check_units

from ._checks import batch_of, check_implementation, resolve
from .format import SparseSpikes, as_spikes, finish_selection, from_dense, swap_batch_time, to_dense
from .linear import (
    SparseLinear,
    linear_product,
    linear_values_gradient,
    linear_weight_gradient,
    loop_kernel,
    stepped_kernel,
)
from .selection import select_spikes


class SparseBlockStep(fused.BlockStep):
    """Deprecated: ``dense_snns.fused.BlockStep(model, params, ..., output="pre_spike")``, the
    block step whose output is the model's pre-spike value."""

    def __init__(self, step_fn, state_type, params, has_recurrent_kernel: bool, has_bias: bool = False):
        warnings.warn(
            'SparseBlockStep is deprecated; use dense_snns.fused.BlockStep(model, ..., output="pre_spike")',
            DeprecationWarning,
            stacklevel=2,
        )
        model = fused.as_model(step_fn, state_type)
        super().__init__(model, params, has_recurrent_kernel, has_bias, output="pre_spike")


class SelectionStep:
    """One step of a sparse block that selects its spikes inside the loop, for
    `dense_snns.fused.compiled_recurrence`: the previous step's selection through the
    recurrent kernel (`linear_product`, O(K) per row forward and backward; if any), the
    neuron's pre-spike value (`dense_snns.fused.BlockStep`), then `select_spikes` into K slots.

    States: the neuron's states [batch, units] each, then (with a recurrent kernel) the
    previous selection packed (`pack_spikes`) [batch, 2K + 1], kept over masked steps.
    Output: the selection packed, then the spikes of the step that did not fit,
    [batch, 2K + 2] (`unpack_output`). Tensors (`tensors`): the neuron parameters of the
    `BlockStep`, the bias (if any; added before the recurrent current, as the cell
    `SparseSNNBlock` adds it), then the recurrent kernel [units, units].

    `implementation` (``"kernel"`` or ``"compiled"``) runs the selection and the product in
    the C++ ops or in pure TensorFlow (inside XLA). Equal by static content (`key`).

    The recurrent kernel is a deferred tensor of the fused loops (`dense_snns.fused._step_vjp`):
    its gradient is one sparse weight gradient over the recorded selections of all steps (or
    of each checkpointed segment) after the backward loop.
    """

    def __init__(
        self,
        model,
        params,
        capacity: int,
        second_threshold,
        has_recurrent_kernel: bool,
        has_bias: bool,
        implementation: str,
    ):
        self.block = fused.BlockStep(model, params, False, False, output="pre_spike")
        self.has_bias = bool(has_bias)
        self.capacity = capacity
        self.second_threshold = second_threshold
        self.has_recurrent_kernel = bool(has_recurrent_kernel)
        self.implementation = implementation
        self.spike_fn = params.spike_fn  # static: part of the block step's key
        # The recurrent kernel's position in `tensors`: after the neuron parameters and the bias.
        position = len(self.block.tensor_positions) + int(self.has_bias)
        self.deferred_tensors = (position,) if self.has_recurrent_kernel else ()
        # With the C++ product the backward pass replays the forward's recurrent currents.
        self.replays_products = self.has_recurrent_kernel and implementation == "kernel"
        # XLA of TensorFlow 2.6 crashes now and then in the backward loop of a step that
        # selects (as a graph's sparse nodes): `fused` then runs it unjitted.
        self.crashes_old_xla = True
        self.key = (
            "selection",
            self.block.key,
            self.has_bias,
            capacity,
            second_threshold,
            self.has_recurrent_kernel,
            implementation,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, SelectionStep) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def tensors(self, params, bias=None, recurrent_kernel=None, loop: bool = False) -> list:
        """The step's tensors; for a `loop` over many steps the recurrent kernel of the C++
        product is packed once (`sparse_snns.linear.loop_kernel`)."""
        if self.has_recurrent_kernel and loop:
            recurrent_kernel = loop_kernel(recurrent_kernel, self.implementation)
        return (
            self.block.split(params, None)
            + ([bias] if self.has_bias else [])
            + ([recurrent_kernel] if self.has_recurrent_kernel else [])
        )

    def __call__(self, current, mask_t, states, tensors, record=None, replay=None):
        """(output, new states); with `record` (a list) the recurrent kernel gets no gradient
        here and its product is recorded, and with `replay` ([its output as the forward loop
        computed it]) not computed again (see `dense_snns.fused._step_vjp`)."""
        neuron_states, tensors = list(states), list(tensors)
        recurrent_kernel = tensors.pop() if self.has_recurrent_kernel else None
        if self.has_bias:
            current = current + tensors.pop()
        if self.has_recurrent_kernel:
            previous = neuron_states.pop()
            fed_back = unpack_spikes(previous, self.capacity)
            kernel = recurrent_kernel if record is None else tf.stop_gradient(recurrent_kernel)
            argument = stepped_kernel(kernel, current.shape[-1])
            if replay is not None:
                recurrent = fused.replayed_product(
                    replay[0], fed_back.values, lambda dy: linear_values_gradient(fed_back, dy, argument)
                )
            else:
                recurrent = linear_product(fed_back, argument, None, self.implementation)
            if record is not None:
                record.append((self.deferred_tensors[0], tuple(fed_back), recurrent))
            current = current + recurrent
        x, new_states = self.block(current, mask_t, neuron_states, tensors)  # silent at masked steps
        selected, dropped = select_spikes(
            x, self.capacity, self.second_threshold, self.spike_fn, implementation=self.implementation
        )
        packed = pack_spikes(selected)
        if self.has_recurrent_kernel:
            kept = packed if mask_t is None else tf.where(fused.broadcast_mask(mask_t, packed), packed, previous)
            new_states = list(new_states) + [kept]
        dropped = tf.stop_gradient(tf.cast(dropped, packed.dtype))[..., None]
        return tf.concat([packed, dropped], axis=-1), list(new_states)

    def deferred_gradient(self, position: int, parts, d_output: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        """The recurrent kernel's gradient [units, units] from the fed-back selections (ids,
        values, count of M = steps x batch rows) and the gradient of their current [M, units]."""
        kernel = stepped_kernel(kernel, d_output.shape[-1])
        return linear_weight_gradient(SparseSpikes(*parts), d_output, kernel, self.implementation)

    def unpack_output(self, outputs) -> Tuple[SparseSpikes, tf.Tensor]:
        """(SparseSpikes [..., K], dropped int32 [...]) from outputs [..., 2K + 2]."""
        packed, dropped = tf.split(outputs, [2 * self.capacity + 1, 1], axis=-1)
        return unpack_spikes(packed, self.capacity), tf.cast(tf.round(dropped[..., 0]), tf.int32)


@register(package="sparse_snns")
class SparseSNNDense(StatefulLayer, keras.layers.Layer):
    """Fused sparse SNN layer: SparseLinear synapses, a neuron model, sparse spikes out.

    Args:
        units: number of neurons N (> 0).
        input_dim: number of input neurons N_in (> 0).
        capacity: K, slots per step for the output spikes (> 0); see
            `sparse_snns.default_capacity`.
        second_threshold: None (free slots take non-spiking neurons in index order, so with
            K >= N the gradient is exactly the dense one) or a number <= 0 in
            membrane-minus-threshold units restricting the gradient-only entries.
        neuron: neuron model (name, neuron cell or config), default ``"cuba_lif"``.
        self_recurrent: recurrent weights [units, units] from the previous step's selected
            spikes (a sparse product inside the loop, O(K) per row; its gradient reaches the
            selected neurons only, as the output's: with K >= units and no second threshold
            exactly the dense block's). The loop then selects each step's spikes inside it
            and carries the selection packed (ids as floats of the compute dtype: in float16
            at most 2048 units, in bfloat16 256; larger layers are refused there).
        strict: raise when spikes do not fit K (eager: ValueError; graph: assertion; compiled
            out under XLA).
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer: as `SNNDense`.
        implementation: of the sparse product, the spike selection and the conversion of a
            dense-raster input: ``"auto"``, ``"kernel"`` (C++ ops) or ``"compiled"`` (pure
            TensorFlow: no custom op is built, used or needed by a saved model). With the C++
            ops, a LIF or CuBa-LIF neuron (a `Surrogate` spike function, a reset of the kernel
            table) without mask or self-recurrence runs in the C++ kernels with the selection
            fused into each step; a self-recurrent layer's loop selects and feeds back with
            the C++ ops, without XLA; other neurons run the compiled loop, or with
            ``"reference"`` the plain loop.
        jit_compile: compile the neuron loop with XLA, where it runs as a loop of pure
            TensorFlow (not the loop of a self-recurrent layer that runs the C++ ops).
            Default True.
        stateful: carry the neuron states, [batch, units] each (and the previous selection of
            a self-recurrent layer, packed: [batch, 2K + 1], see `pack_spikes`), from the end
            of a call to the start of the next (needs a fixed batch size; see
            `dense_snns.stateful`).

    Input: sparse spikes ``[ids [B, T, K_in], values [B, T, K_in], count [B, T]]`` (a list or
    a `SparseSpikes`) or a dense raster [B, T, input_dim] (converted exactly). Output:
    ``[ids [B, T, K], values [B, T, K], count [B, T]]``. The number of spikes that did not fit
    is reported as the metric ``<name>_dropped`` (spikes per sample and step, batch mean) and
    kept in `last_dropped`. Invalid input spikes (ids out of range, a count outside [0, K])
    are an error, except under XLA, which compiles checks out: there they contribute nothing
    and are reported as ``<name>_invalid`` (entries per sample and step, batch mean).
    """

    def __init__(
        self,
        units: int,
        input_dim: int,
        capacity: int,
        second_threshold=None,
        neuron=None,
        self_recurrent: bool = False,
        strict: bool = False,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        implementation: str = "auto",
        jit_compile: bool = True,
        stateful: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_units(units)
        capacity = check_positive_int(capacity, "capacity")
        if second_threshold is not None and not float(second_threshold) <= 0.0:
            raise ValueError(f"second_threshold must be <= 0, got second_threshold={second_threshold!r}")
        self.capacity = capacity
        self.second_threshold = None if second_threshold is None else float(second_threshold)
        self.self_recurrent = bool(self_recurrent)
        self.strict = bool(strict)
        self.jit_compile = bool(jit_compile)
        self.stateful = bool(stateful)
        self.state_variables = []
        self.synapse = SparseLinear(
            units,
            input_dim=input_dim,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            implementation=implementation,
            dtype=self.dtype_policy,
            name="synapse",
        )
        self.input_dim = self.synapse.input_dim
        self.neuron = get_neuron(neuron, self.units, dtype=self.dtype_policy)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.metric_name = f"{self.name}_dropped"
        declare_layer_metric(self, self.metric_name)
        self.invalid_metric_name = f"{self.name}_invalid"
        declare_layer_metric(self, self.invalid_metric_name)
        self.last_dropped = None
        self.supports_masking = True  # uses the mask, passes none on (see `compute_mask`)

    def build(self, input_shape=None):
        if not self.synapse.built:
            self.synapse.build()
        self.recurrent_kernel = None
        if self.self_recurrent:
            self.recurrent_kernel = self.add_weight(
                name="recurrent_kernel", shape=(self.units, self.units), initializer=self.recurrent_initializer
            )
        if not self.neuron.built:
            self.neuron.build((None, self.units))
        self._build_states(batch_of(input_shape), self.state_shapes)
        self.built = True

    @property
    def num_states(self) -> int:
        """The neuron's states, then the previous selection if self-recurrent."""
        return len(self.state_shapes)

    @property
    def state_shapes(self):
        """Shapes (without batch) of the states: the neuron's [units] each, then (if
        self-recurrent) the previous step's selection packed (`pack_spikes`), [2K + 1]."""
        return [(self.units,)] * len(self.neuron.state_size) + (
            [(2 * self.capacity + 1,)] if self.self_recurrent else []
        )

    def _checked_input(self, inputs):
        """The input as checked sparse spikes [B, T, K_in] (a dense raster is converted, exactly),
        the synapse's kernel in the compute dtype and the implementation of the sparse ops."""
        if isinstance(inputs, (list, tuple, SparseSpikes)) and len(inputs) == 3:
            checked = self.synapse.checked_input(inputs, with_bias=False)
            spikes, kernel, chosen, invalid = checked.spikes, checked.kernel, checked.chosen, checked.invalid
        else:
            dense = tf.convert_to_tensor(inputs)
            if dense.shape.rank != 3:
                raise ValueError(
                    f"`inputs` must be sparse spikes [ids, values, count] or a dense raster "
                    f"[batch, time, input_dim], got shape {dense.shape}"
                )
            if dense.shape[-1] is not None and int(dense.shape[-1]) != self.input_dim:
                raise ValueError(f"`inputs` has {int(dense.shape[-1])} features but input_dim is {self.input_dim}")
            dtype = self.compute_dtype
            chosen = resolve(self.synapse.implementation, tf.as_dtype(dtype), f"{type(self).__name__} {self.name!r}")
            # valid by construction: no checks
            spikes = from_dense(dense, self.input_dim, dtype=dtype, implementation=chosen)
            kernel = tf.cast(self.synapse.kernel, dtype)
            invalid = tf.zeros_like(spikes.count)
        check_sequence(f"{type(self).__name__} {self.name!r}", spikes.ids.shape, 3, "ids [batch, time, K]")
        return spikes, kernel, chosen, invalid

    def call(self, inputs, mask=None, training=None):
        if isinstance(mask, (list, tuple)):  # Keras gives one mask per input tensor
            mask = mask[0]
        spikes, kernel, chosen, invalid = self._checked_input(inputs)
        carried = self._carried_states(spikes.ids.shape[0], kernel.dtype, spikes.ids.shape) if self.stateful else None
        add_layer_metric(self, self.invalid_metric_name, tf.reduce_mean(tf.cast(invalid, tf.float32)))
        if mask is not None:
            mask = check_mask(f"{type(self).__name__} {self.name!r}", mask, spikes.ids)
        params = self.neuron.params(kernel.dtype)
        fused_selection = self._selects_in_kernel(chosen, mask, params, kernel.dtype)
        # The kernels and the XLA loop read and write batch-major [B, T, N] sequences: no
        # transposes. Without XLA the loop is time-major, and transposing the small
        # [B, T, K] spikes (in and out) is cheaper than transposing the [B, T, N] currents.
        # A self-recurrent layer selects inside its loop: with the C++ ops (faster on CPU than
        # XLA's scatters of the pure-TF selection), which do not run inside XLA; with a GPU
        # present (they run on the CPU only) in pure TensorFlow, as the other kernels decide.
        loop_ops = chosen
        if self.self_recurrent and chosen == "kernel" and tf.config.list_logical_devices("GPU"):
            loop_ops = "compiled"
        jit = self.jit_compile and not (self.self_recurrent and loop_ops == "kernel")
        time_axis = 1 if jit or fused_selection else 0
        if time_axis == 0:
            spikes = swap_batch_time(spikes)
        currents = linear_product(spikes, kernel, None, chosen)  # all steps at once; the loop adds the bias
        dtype = currents.dtype
        recurrent_kernel = None
        if self.self_recurrent:
            check_packable(self.units, dtype, self._what)  # its selection is fed back packed
            recurrent_kernel = tf.cast(self.recurrent_kernel, dtype)
        bias = None if self.synapse.bias is None else tf.cast(self.synapse.bias, dtype)
        if self.stateful:
            states = carried
        else:
            zeros = tf.zeros_like(currents[0] if time_axis == 0 else currents[:, 0])
            states = [zeros] * len(self.neuron.state_size)
            if self.self_recurrent:
                states.append(tf.zeros([tf.shape(zeros)[0], 2 * self.capacity + 1], dtype))
        if mask is not None and time_axis == 0:
            mask = tf.transpose(mask)
        if fused_selection:  # the neuron loop in the C++ kernels, each step's spikes selected inside it
            selected, final_states = self._kernel_recurrence(currents, states, params, bias)
        elif self.self_recurrent:  # selection inside the loop: the selection is fed back
            selected, final_states = self._selection_recurrence(
                currents, states, params, bias, recurrent_kernel, mask, time_axis, loop_ops, jit
            )
        else:
            # x: the neuron's pre-spike value (membrane minus threshold), laid out as the currents
            x, final_states = fused.fused_recurrence(
                self.neuron.model,
                currents,
                states,
                params,
                mask=mask,
                jit_compile=jit,
                time_axis=time_axis,
                bias=bias,
                checkpoint_every=fused.AUTO,
                implementation="reference" if self.synapse.implementation == "reference" else "compiled",
                output="pre_spike",
            )
            selected = select_spikes(
                x, self.capacity, self.second_threshold, self.neuron.spike_func, strict=False, implementation=chosen
            )
        selected, dropped = selected
        if self.strict:
            selected, dropped = finish_selection(
                selected.ids, selected.values, selected.count, dropped, self.capacity, strict=True
            )
        if time_axis == 0:
            selected = swap_batch_time(selected)
            dropped = tf.transpose(dropped)
        if self.stateful:
            self._carry_states(final_states)
        self.last_dropped = dropped
        add_layer_metric(self, self.metric_name, tf.reduce_mean(tf.cast(dropped, tf.float32)))
        return [selected.ids, selected.values, selected.count]

    def _selects_in_kernel(self, chosen: str, mask, params, dtype) -> bool:
        """Whether the neuron loop runs in the C++ kernels with the selection fused: the sparse
        ops run as kernels, a spiking model the kernels accept (`lif_ops.refusal`, asked about
        an empty stand-in of the batch-major [B, T, N] currents), no mask, no self-recurrence."""
        if chosen != "kernel" or self.synapse.implementation == "reference" or mask is not None:
            return False
        if self.self_recurrent or not self.neuron.model.spiking:
            return False
        stand_in = tf.zeros([0, 0, self.units], dtype)
        return lif_ops.refusal(self.neuron.model, params, stand_in, 1, False, False) is None

    def _selection_step(self, params, has_bias: bool, implementation: str) -> SelectionStep:
        """The layer's `SelectionStep` (an equal one with compiled loops, if any: `fused.shared_step`)."""
        step = SelectionStep(
            self.neuron.model,
            params,
            self.capacity,
            self.second_threshold,
            self.self_recurrent,
            has_bias,
            implementation,
        )
        return fused.shared_step(step)

    def _selection_recurrence(self, currents, states, params, bias, recurrent_kernel, mask, time_axis, chosen, jit):
        """((SparseSpikes, dropped), final states) from the loop that selects each step's
        spikes inside it (`SelectionStep`): a self-recurrent layer feeds back its selection.
        `chosen`: the C++ ops (`jit` is then False) or pure TensorFlow."""
        step = self._selection_step(params, bias is not None, chosen)
        tensors = step.tensors(params, bias, recurrent_kernel, loop=True)
        if self.synapse.implementation == "reference":
            outputs, final_states = fused.reference_recurrence(step, currents, states, tensors, mask, time_axis)
        else:
            outputs, final_states = fused.compiled_recurrence(
                step, currents, states, tensors, mask, jit, time_axis, checkpoint_every=fused.AUTO
            )
        return step.unpack_output(outputs), final_states

    def _kernel_recurrence(self, currents, states, params, bias):
        """((SparseSpikes [B, T, K], dropped [B, T]), final states) from the kernels'
        selecting recurrence (`dense_snns.ops.lif.select_recurrence`)."""
        selected, final_states = lif_ops.select_recurrence(
            self.neuron.model, currents, states, params, bias, self.capacity, self.second_threshold
        )
        dropped = tf.maximum(selected.spike_total - min(self.capacity, self.units), 0)
        spikes, _ = finish_selection(selected.ids, selected.values, selected.count, dropped, self.capacity, False)
        return (spikes, dropped), final_states

    def step(self, inputs_t, states):
        """One time step: (``[ids [B, K], values [B, K], count [B]]``, new states) from the
        input spikes of the step (sparse [B, K_in] or a dense [B, input_dim] vector) and the
        states (as `state_variables`): the per-step form of `call`."""
        if isinstance(inputs_t, (list, tuple, SparseSpikes)) and len(inputs_t) == 3:
            checked = self.synapse.checked_input(inputs_t)
            current = linear_product(checked.spikes, checked.kernel, checked.bias, checked.chosen)
            chosen = checked.chosen
        else:
            dense = tf.cast(tf.convert_to_tensor(inputs_t), self.compute_dtype)
            current = tf.matmul(dense, tf.cast(self.synapse.kernel, dense.dtype))
            if self.synapse.bias is not None:
                current = tf.nn.bias_add(current, tf.cast(self.synapse.bias, dense.dtype))
            chosen = resolve(self.synapse.implementation, current.dtype, self._what)
        dtype = current.dtype
        params = self.neuron.params(dtype)
        given = list(states)
        states = self._step_states(given, dtype)
        if self.self_recurrent:  # the loop's step: the selection is fed back packed
            check_packable(self.units, dtype, self._what)
            step = self._selection_step(params, False, chosen)
            tensors = step.tensors(params, None, tf.cast(self.recurrent_kernel, dtype))
            output, new_states = step(current, None, states, tensors)
            selected, _ = step.unpack_output(output)
        else:
            _, new_states, x = self.neuron.model.block_update(current, states, params)
            selected, _ = select_spikes(
                x, self.capacity, self.second_threshold, self.neuron.spike_func, implementation=chosen
            )
        return [selected.ids, selected.values, selected.count], self._in_given_dtypes(new_states, given)

    def compute_mask(self, inputs, mask=None):
        # The mask is consumed: masked steps carry no spike (every value is 0), so a sparse
        # readout adds nothing at those steps without being told.
        return None

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
            batch_time = tuple(input_shape[0])[:2]  # [ids, values, count] shapes
        else:
            batch_time = tuple(input_shape)[:2]
        shapes = [batch_time + (self.capacity,), batch_time + (self.capacity,), batch_time]
        return output_shape(shapes)

    def compute_output_spec(self, inputs, mask=None, training=None):
        # Keras 3 functional models: the three outputs have different dtypes.
        shapes = self.compute_output_shape(tf.nest.map_structure(lambda t: tuple(t.shape), inputs))
        dtypes = ["int32", self.compute_dtype, "int32"]
        return [keras.KerasTensor(shape, dtype=dtype) for shape, dtype in zip(shapes, dtypes)]

    def get_config(self):
        config = super().get_config()
        synapse = self.synapse.get_config()
        config.update(
            {
                "units": self.units,
                "input_dim": self.input_dim,
                "capacity": self.capacity,
                "second_threshold": self.second_threshold,
                "neuron": serialize_neuron(self.neuron),
                "self_recurrent": self.self_recurrent,
                "strict": self.strict,
                "use_bias": synapse["use_bias"],
                "kernel_initializer": synapse["kernel_initializer"],
                "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
                "bias_initializer": synapse["bias_initializer"],
                "implementation": synapse["implementation"],
                "jit_compile": self.jit_compile,
                "stateful": self.stateful,
            }
        )
        return config


@register(package="sparse_snns")
class SparseToDense(keras.layers.Layer):
    """``[ids, values, count]`` sparse spikes [..., K] -> dense spikes [..., num_neurons].

    For a readout or any dense layer after a sparse block; gradients flow to `values`.
    `implementation`: of the scatter (`sparse_snns.to_dense`): ``"auto"``, ``"kernel"`` (C++)
    or ``"compiled"`` (pure TensorFlow: a saved model then needs no custom op library).
    """

    def __init__(self, num_neurons: int, implementation: str = "auto", **kwargs):
        super().__init__(**kwargs)
        self.num_neurons = check_units(num_neurons, "num_neurons")
        self.implementation = check_implementation(implementation)

    def call(self, inputs):
        spikes = as_spikes(inputs)
        values = tf.cast(spikes.values, self.compute_dtype)
        return to_dense(
            SparseSpikes(spikes.ids, values, spikes.count), self.num_neurons, implementation=self.implementation
        )

    def compute_output_shape(self, input_shape):
        ids_shape = input_shape[0] if isinstance(input_shape[0], (list, tuple, tf.TensorShape)) else input_shape
        shape = tuple(ids_shape)[:-1] + (self.num_neurons,)
        return output_shape(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"num_neurons": self.num_neurons, "implementation": self.implementation})
        return config


# The largest integer up to which a dtype holds every integer: `pack_spikes` stores neuron
# ids as floats of the compute dtype.
_EXACT_INTEGERS = {"float16": 2**11, "bfloat16": 2**8, "float32": 2**24, "float64": 2**53}


def check_packable(num_neurons: int, dtype, what: str) -> None:
    """A ValueError naming `what` when packed spikes of `dtype` cannot hold the ids of
    `num_neurons` neurons exactly (half precision: above 2048 or 256 neurons)."""
    dtype = tf.as_dtype(dtype)
    exact = _EXACT_INTEGERS.get(dtype.name)
    if exact is not None and num_neurons > exact:
        raise ValueError(
            f"{what}: packed sparse spikes of {num_neurons} neurons need a dtype that holds their ids "
            f"exactly (up to {exact} in {dtype.name}); use float32"
        )


def pack_spikes(spikes: SparseSpikes) -> tf.Tensor:
    """SparseSpikes [..., K] -> one float tensor [..., 2K + 1]: ids | values | count.

    The one-dense-output form that `keras.layers.RNN` carries on Keras 3 (ids and count are
    exact in float32 up to 2**24). Gradients flow through the values part only.
    """
    values = spikes.values
    ids = tf.stop_gradient(tf.cast(spikes.ids, values.dtype))
    count = tf.stop_gradient(tf.cast(spikes.count, values.dtype))
    return tf.concat([ids, values, count[..., None]], axis=-1)


def unpack_spikes(packed: tf.Tensor, capacity: int) -> SparseSpikes:
    """Inverse of `pack_spikes`: [..., 2K + 1] -> SparseSpikes with K = `capacity`."""
    if packed.shape[-1] is not None and int(packed.shape[-1]) != 2 * capacity + 1:
        raise ValueError(
            f"packed sparse spikes must have 2 * capacity + 1 = {2 * capacity + 1} features, got shape {packed.shape}"
        )
    # A split, not slices: its gradient is one concat (a slice's, on CPU, a slow pad each).
    ids, values, count = tf.split(packed, [capacity, capacity, 1], axis=-1)
    ids = tf.cast(tf.round(ids), tf.int32)
    count = tf.cast(tf.round(count[..., 0]), tf.int32)
    return SparseSpikes(ids, values, count)


@register(package="sparse_snns")
class SparseSNNBlock(keras.layers.Layer):
    """The sparse SNN block as a Keras RNN cell, sparse in and out (packed, see `pack_spikes`).

    Per step: I = SparseLinear(input spikes), then `SelectionStep` (the step of a
    self-recurrent `SparseSNNDense`'s loop): + the previous selection through R if
    self-recurrent, the neuron step, then `select_spikes` into K slots.

    Args:
        units, input_dim, capacity, second_threshold, neuron, self_recurrent, use_bias,
        kernel_initializer, recurrent_initializer, bias_initializer, implementation: as
        `SparseSNNDense`.
        input_capacity: K_in of the packed input spikes (> 0).

    Input: packed spikes [batch, 2 K_in + 1]. Output: packed spikes [batch, 2 K + 1].
    State: the neuron's states [batch, units], then (if self-recurrent) the packed previous
    spikes [batch, 2 K + 1]: the recurrent state is sparse too.
    """

    def __init__(
        self,
        units: int,
        input_dim: int,
        capacity: int,
        input_capacity: int,
        second_threshold=None,
        neuron=None,
        self_recurrent: bool = False,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        implementation: str = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_units(units)
        capacity = check_positive_int(capacity, "capacity")
        input_capacity = check_positive_int(input_capacity, "input_capacity")
        if second_threshold is not None and not float(second_threshold) <= 0.0:
            raise ValueError(f"second_threshold must be <= 0, got second_threshold={second_threshold!r}")
        self.capacity = capacity
        self.input_capacity = input_capacity
        self.second_threshold = None if second_threshold is None else float(second_threshold)
        self.self_recurrent = bool(self_recurrent)
        self.synapse = SparseLinear(
            units,
            input_dim=input_dim,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            implementation=implementation,
            dtype=self.dtype_policy,
            name="synapse",
        )
        self.recurrent = None
        if self.self_recurrent:
            self.recurrent = SparseLinear(
                units,
                input_dim=units,
                use_bias=False,
                kernel_initializer=recurrent_initializer,
                implementation=implementation,
                dtype=self.dtype_policy,
                name="recurrent",
            )
        self.input_dim = self.synapse.input_dim
        self.neuron = get_neuron(neuron, self.units, dtype=self.dtype_policy)

    @property
    def state_size(self):
        return list(self.neuron.state_size) + ([2 * self.capacity + 1] if self.self_recurrent else [])

    @property
    def output_size(self) -> int:
        return 2 * self.capacity + 1

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        return zero_states(self, inputs, batch_size, dtype)

    def build(self, input_shape=None):
        if (
            input_shape is not None
            and input_shape[-1] is not None
            and int(input_shape[-1]) != 2 * self.input_capacity + 1
        ):
            raise ValueError(
                f"`inputs` must be packed sparse spikes of 2 * input_capacity + 1 = "
                f"{2 * self.input_capacity + 1} features, got shape {input_shape}"
            )
        for layer in (self.synapse, self.recurrent):
            if layer is not None and not layer.built:
                layer.build()
        if not self.neuron.built:
            self.neuron.build((None, self.units))
        self.built = True

    def call(self, inputs, states, training=None):
        states = tf.nest.flatten(states)
        what = f"{type(self).__name__} {self.name!r}"
        check_packable(self.input_dim, self.compute_dtype, f"{what}: the input")
        check_packable(self.units, self.compute_dtype, f"{what}: the output")
        packed = tf.cast(inputs, self.compute_dtype)
        current = self.synapse(unpack_spikes(packed, self.input_capacity))  # with the bias
        dtype = current.dtype
        params = self.neuron.params(dtype)
        # The step of the fused SparseSNNDense's loop: one implementation of the per-step rule.
        chosen = resolve(self.synapse.implementation, dtype, what)
        step = SelectionStep(
            self.neuron.model, params, self.capacity, self.second_threshold, self.self_recurrent, False, chosen
        )
        recurrent_kernel = tf.cast(self.recurrent.kernel, dtype) if self.self_recurrent else None
        output, new_states = step(current, None, states, step.tensors(params, None, recurrent_kernel))
        selection, _ = tf.split(output, [2 * self.capacity + 1, 1], axis=-1)  # without the dropped count
        return selection, new_states

    def get_config(self):
        config = super().get_config()
        synapse = self.synapse.get_config()
        config.update(
            {
                "units": self.units,
                "input_dim": self.input_dim,
                "capacity": self.capacity,
                "input_capacity": self.input_capacity,
                "second_threshold": self.second_threshold,
                "neuron": serialize_neuron(self.neuron),
                "self_recurrent": self.self_recurrent,
                "use_bias": synapse["use_bias"],
                "kernel_initializer": synapse["kernel_initializer"],
                "recurrent_initializer": self.recurrent.get_config()["kernel_initializer"]
                if self.recurrent
                else "orthogonal",
                "bias_initializer": synapse["bias_initializer"],
                "implementation": synapse["implementation"],
            }
        )
        return config
