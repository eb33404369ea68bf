"""Running an `SNNGraph`: an RNN cell (one step) and a fused sequence layer.

Semantics of a step t (one-step delay on every edge, external input without delay):

    I_i[t] = x[t] W_in_i (input nodes only) + sum_{s in sources(i)} S_s[t-1] W_si + b_i
    S_i[t], state_i[t] = neuron_step_i(I_i[t], state_i[t-1])

Within a step every node depends only on the previous step, so the node updates are
independent ops: TensorFlow may run them concurrently and each can be placed on its own
device (`placement`). A chain graph equals a stack of `SNNBlock`s in which every layer after
the first sees its input one step late (layer k lags the input by k-1 steps).
"""

from __future__ import annotations

from typing import Dict, List, Mapping

import tensorflow as tf

from dense_snns import devices as device_names
from dense_snns import fused
from dense_snns import implementation as implementation_choice
from dense_snns.cells import get_neuron, zero_states
from dense_snns.compat import add_layer_metric, declare_layer_metric, keras, register
from dense_snns.implementation import IMPLEMENTATIONS
from dense_snns.input_products import event_refusal
from dense_snns.stateful import StatefulLayer
from dense_snns.validation import as_numeric_tensor, check_features, check_mask, check_rank, check_sequence, check_steps

from sparse_snns.blocks import check_packable, pack_spikes, unpack_spikes
from sparse_snns.format import SparseSpikes
from sparse_snns.linear import (
    linear_product,
    linear_values_gradient,
    linear_weight_gradient,
    loop_kernel,
    stepped_kernel,
)
from sparse_snns.rowops import scatter
from sparse_snns.selection import select_spikes

from .spec import SNNGraph

__all__ = ["IMPLEMENTATIONS", "GraphSNN", "GraphSNNCell", "GraphStep"]


def _as_graph(graph) -> SNNGraph:
    if isinstance(graph, SNNGraph):
        return graph
    if isinstance(graph, Mapping):
        return SNNGraph.from_dict(graph)
    if isinstance(graph, str):
        return SNNGraph.from_json(graph)
    raise ValueError(f"graph must be an SNNGraph, its dict or its JSON, got {type(graph).__name__}")


def _as_placement(placement, graph: SNNGraph) -> Dict[str, str]:
    """Node name -> device string (empty dict: no placement)."""
    if placement is None:
        return {}
    if hasattr(placement, "device_of"):
        placement = {name: placement.device_of(name) for name in graph.node_names}
    if not isinstance(placement, Mapping):
        raise ValueError(f"placement must map node names to devices, got {type(placement).__name__}")
    unknown = sorted(set(placement) - set(graph.node_names))
    if unknown:
        raise ValueError(f"placement names unknown nodes {unknown}")
    missing = [name for name in graph.node_names if name not in placement]
    if missing:
        raise ValueError(f"placement does not place nodes {missing}")
    placement = {name: str(placement[name]) for name in graph.node_names}
    shards = [name for name, device in placement.items() if device_names.ipu_shard_index(device) is not None]
    if shards and len(shards) < len(placement):
        others = sorted(set(placement) - set(shards), key=graph.node_names.index)
        raise ValueError(
            f"placement puts nodes {shards} on IPU shards and nodes {others} on other devices: "
            "a graph runs either on the shards of one IPU device or on TensorFlow devices"
        )
    for name, device in placement.items():
        if shards:
            device_names.check_ipu_shard(device, f"node {name!r}")
        else:
            _check_device_exists(name, device)
    return placement


def _devices_used(placement: Mapping[str, str]) -> int:
    """How many TensorFlow devices a placement uses (IPU shards are one device)."""
    return len({"ipu" if device_names.ipu_shard_index(d) is not None else d for d in placement.values()})


def _check_device_exists(node: str, device: str) -> None:
    """A ValueError when `device` names a device that does not exist (TensorFlow would run the
    node elsewhere without a word): a device of this process, or of a cluster this process
    is connected to (``tf.config.experimental_connect_to_cluster``). A job no connected
    cluster has is not checked (a model may be built before it connects)."""
    try:
        spec = tf.DeviceSpec.from_string(device)
    except ValueError as err:
        raise ValueError(f"placement of node {node!r}: {device!r} is not a device name ({err})") from None
    if spec.job is not None:
        known = [tf.DeviceSpec.from_string(d.name) for d in tf.config.list_logical_devices()]
        of_job = [d for d in known if d.job == spec.job]
        if of_job and not any(_matches(spec, d) for d in of_job):
            names = [d.to_string() for d in of_job]
            raise ValueError(
                f"placement of node {node!r}: device {device!r} is not in the cluster; its devices are {names}"
            )
        return
    if spec.device_type is None:
        return
    devices = tf.config.list_logical_devices(spec.device_type)
    indices = {tf.DeviceSpec.from_string(d.name).device_index for d in devices}
    if not devices or (spec.device_index is not None and spec.device_index not in indices):
        available = [d.name for d in tf.config.list_logical_devices()]
        raise ValueError(f"placement of node {node!r}: device {device!r} does not exist; the devices are {available}")


def _matches(wanted: tf.DeviceSpec, device: tf.DeviceSpec) -> bool:
    """`device` satisfies every field `wanted` sets (device types compared case-blind)."""
    for field in ("job", "replica", "task", "device_index"):
        value = getattr(wanted, field)
        if value is not None and value != getattr(device, field):
            return False
    return wanted.device_type is None or wanted.device_type.upper() == (device.device_type or "").upper()


class GraphStep:
    """One step of the whole graph, as a pure function of (external current, states, tensors).

    A node with a `capacity` K (a sparse node) selects its spikes into K slots each step
    (`sparse_snns.select_spikes` on the neuron's pre-spike value: spikes first, then
    gradient-only entries, overflow counted) and sends them along its edges as
    ``(ids, values, count)``: on each device that holds targets of it, one product
    (`sparse_snns.linear.linear_product`, O(K) per row forward and backward) with the
    kernels of its out-edges into that device side by side. Only the selected entries
    cross devices and only they receive gradient (sparse BPTT); with K >= units every neuron
    is selected and the node equals a dense one. Its state "previous output" is the packed
    selection ``[ids | values | count | dropped]`` (`sparse_snns.pack_spikes` plus the spikes
    dropped so far), [batch, 2K + 2]; a dense node's is its spikes [batch, units].

    `kernels` runs the selections and products in the C++ kernels (not under XLA),
    otherwise in pure TensorFlow. The tensors are, in order: the kernels of the edges out of
    dense nodes (in `graph.edges` order), the kernels side by side of each (sparse node,
    target device) group (`event_groups`), the biases (in node order, if any) and the
    tensor-valued neuron parameters of every node. In a loop the side-by-side kernels of the
    C++ products are packed (`sparse_snns.linear.loop_kernel`).

    The edge kernels are `deferred_tensors` of the fused loops: in the backward loop each
    step records its products' inputs (spikes, or selections) and the gradients of their
    outputs, and each kernel's gradient is one product over all steps after the loop
    (`deferred_gradient`), instead of a [N_in, N_out] gradient summed at every step.

    It keeps no reference to the cell, only the cell's static content, which is its `key`:
    equal graph layers share one step and its compiled loops (`dense_snns.fused.shared_step`).
    """

    def __init__(self, cell: "GraphSNNCell", dtype, kernels: bool = False):
        graph = cell.graph
        self.graph = graph
        self.devices = [cell.placement.get(name) for name in graph.node_names]
        neurons = [cell.neurons[name] for name in graph.node_names]
        self.capacities = [node.capacity for node in graph.nodes]
        # No reference to the cell or its neurons is kept: only their static content.
        self.node_steps = [
            fused.BlockStep(n.model, n.params(dtype), False, output="spikes" if k is None else "pre_spike")
            for n, k in zip(neurons, self.capacities)
        ]
        self.spike_fns = [n.spike_func if k is not None else None for n, k in zip(neurons, self.capacities)]
        self.chosen = "kernel" if kernels else "compiled"
        # XLA of TensorFlow 2.6 (seen on 2.6.3, not on 2.21) crashes now and then (a
        # segmentation fault) in the backward loop of such a step: `fused` then runs it unjitted.
        self.crashes_old_xla = any(k is not None for k in self.capacities)
        self.dtype = dtype
        self.units = [node.units for node in graph.nodes]
        self.sources = [[graph.index(s) for s in graph.sources(name)] for name in graph.node_names]
        self.edge_index = {(graph.index(s), graph.index(t)): k for k, (s, t) in enumerate(graph.edges)}
        self.input_nodes = [graph.index(name) for name in graph.inputs]
        self.output_nodes = [graph.index(name) for name in graph.outputs]
        self.state_counts = [len(n.state_size) for n in neurons]
        self.use_bias = cell.use_bias
        target = [graph.index(t) for _, t in graph.edges]
        # (sparse node, device, its out-edges into that device): one product each per step.
        self.event_groups = []
        for i, capacity in enumerate(self.capacities):
            if capacity is None:
                continue
            by_device = {}
            for k, (s, _) in enumerate(graph.edges):
                if graph.index(s) == i:
                    by_device.setdefault(self.devices[target[k]], []).append(k)
            self.event_groups.extend((i, device, edges) for device, edges in by_device.items())
        self.dense_edges = [k for k, (s, _) in enumerate(graph.edges) if self.capacities[graph.index(s)] is None]
        self.deferred_tensors = tuple(range(len(self.dense_edges) + len(self.event_groups)))
        # With the C++ products the backward pass replays the forward's product outputs
        # (`fused._step_vjp`) instead of computing them again.
        self.replays_products = self.chosen == "kernel"
        # Over several TensorFlow devices the compiled loops keep each node's stored states and
        # weight gradients on the node's device (`dense_snns.fused`); IPU shards are one device.
        self.state_devices = self.tensor_devices = None
        if _devices_used(cell.placement) > 1:
            self.state_devices = [
                self.devices[i] for i, count in enumerate(self.state_counts) for _ in range(count + 1)
            ]
            self.tensor_devices = (
                [self.devices[target[k]] for k in self.dense_edges]
                + [device for _, device, _ in self.event_groups]
                + (list(self.devices) if self.use_bias else [])
                + [self.devices[i] for i, step in enumerate(self.node_steps) for _ in step.tensor_positions]
            )
        self.key = (
            graph.to_json(),
            tuple(self.devices),
            self.use_bias,
            tf.as_dtype(dtype).name,
            tuple(step.key for step in self.node_steps),
            self.chosen,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, GraphStep) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def tensors(self, cell: "GraphSNNCell", dtype, loop: bool = False) -> List[tf.Tensor]:
        """The step's tensors (order in the class docstring), each made on the device that uses
        it: a copy per call, not per step. For a `loop` over many steps the side-by-side
        kernels of the C++ products are packed once (`sparse_snns.linear.loop_kernel`)."""
        graph = self.graph
        kernels = []
        for k in self.dense_edges:
            with self._device(graph.index(graph.edges[k][1])):
                kernels.append(tf.cast(cell.edge_kernels[k], dtype))
        # Side by side once per call (not per step); gradients flow back through the concat.
        for _, device, edges in self.event_groups:
            with device_names.device_scope(device):
                side_by_side = tf.concat([tf.cast(cell.edge_kernels[k], dtype) for k in edges], axis=1)
                kernels.append(loop_kernel(side_by_side, self.chosen) if loop else side_by_side)
        biases, params = [], []
        for i, name in enumerate(graph.node_names):
            with self._device(i):
                if self.use_bias:
                    biases.append(tf.cast(cell.biases[name], dtype))
                params += self.node_steps[i].split(cell.neurons[name].params(dtype), None)
        return kernels + biases + params

    def _device(self, i):
        return device_names.device_scope(self.devices[i])

    def _select(self, i, x, previous):
        """(SparseSpikes [batch, K], packed [batch, 2K + 2]): node i's selection from its
        pre-spike value x [batch, units], and packed with the running count of dropped spikes
        (that of the previous packed selection plus this step's)."""
        selected, dropped = select_spikes(x, self.capacities[i], None, self.spike_fns[i], implementation=self.chosen)
        total = previous[..., -1:] + tf.stop_gradient(tf.cast(dropped, x.dtype))[..., None]
        return selected, tf.concat([pack_spikes(selected), total], axis=-1)

    def deferred_gradient(self, position: int, parts, d_output: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        """The gradient [N_in, N_out] of the kernel at `position` of the step's tensors from
        the records of all steps: its input rows `parts` (spikes [M, N_in], or a selection's
        ids, values, count [M, K], [M]) and d_output [M, N_out] (M = steps x batch)."""
        if position < len(self.dense_edges):
            return tf.matmul(parts[0], d_output, transpose_a=True)
        kernel = stepped_kernel(kernel, d_output.shape[-1])
        return linear_weight_gradient(SparseSpikes(*parts), d_output, kernel, self.chosen)

    def __call__(self, current, mask_t, states, tensors, record=None, replay=None):
        """(output, new states) of one step. With `record` (a list), the edge kernels get no
        gradient here and each product appends (position, input parts, output) to it; with
        `replay` too (the outputs of the products in record order, as the forward loop
        computed them), the products are not computed again (see
        `dense_snns.fused._step_vjp`)."""
        cut = tf.stop_gradient if record is not None else lambda kernel: kernel  # on the device using it
        kernels = dict(zip(self.dense_edges, tensors))
        offset = len(self.dense_edges)
        side_by_side = tensors[offset : offset + len(self.event_groups)]
        offset += len(self.event_groups)
        biases = tensors[offset : offset + len(self.units)] if self.use_bias else [None] * len(self.units)
        offset += len(self.units) if self.use_bias else 0
        # Per node: neuron states then previous output (spikes, or the packed selection).
        node_states, position = [], 0
        for count in self.state_counts:
            node_states.append(states[position : position + count + 1])
            position += count + 1
        external = {}
        if self.input_nodes:
            splits = tf.split(current, [self.units[i] for i in self.input_nodes], axis=-1)
            external = dict(zip(self.input_nodes, splits))
        # The sparse nodes' selections of the previous step, into their targets' currents: the
        # product runs on the targets' device, so only (ids, values, count) cross devices.
        selections = {}
        for i, capacity in enumerate(self.capacities):
            if capacity is not None:
                with self._device(i):
                    selections[i] = unpack_spikes(node_states[i][-1][..., :-1], capacity)
        sent = {}
        for g, ((i, device, edges), kernel) in enumerate(zip(self.event_groups, side_by_side)):
            with device_names.device_scope(device):
                widths = [self.units[self.graph.index(self.graph.edges[k][1])] for k in edges]
                argument = stepped_kernel(cut(kernel), sum(widths))
                if replay is not None:
                    selection = selections[i]
                    currents = fused.replayed_product(
                        replay[len(record)],
                        selection.values,
                        lambda dy, s=selection, k=argument: linear_values_gradient(s, dy, k),
                    )
                else:
                    currents = linear_product(selections[i], argument, None, self.chosen)
                if record is not None:
                    record.append((len(self.dense_edges) + g, tuple(selections[i]), currents))
                sent.update(zip(edges, tf.split(currents, widths, axis=-1)))
        new_states, spikes_out = [], {}
        for i, step in enumerate(self.node_steps):
            count = len(step.tensor_positions)
            params = tensors[offset : offset + count]
            offset += count
            with self._device(i):
                node_current = external.get(i)
                for s in self.sources[i]:
                    k = self.edge_index[(s, i)]
                    if k in sent:
                        contribution = sent[k]
                    elif replay is not None:
                        contribution = fused.replayed_product(
                            replay[len(record)],
                            node_states[s][-1],
                            lambda dy, w=kernels[k]: tf.matmul(dy, w, transpose_b=True),
                        )
                        record.append((self.dense_edges.index(k), (node_states[s][-1],), contribution))
                    else:
                        contribution = tf.matmul(node_states[s][-1], cut(kernels[k]))
                        if record is not None:
                            record.append((self.dense_edges.index(k), (node_states[s][-1],), contribution))
                    node_current = contribution if node_current is None else node_current + contribution
                if node_current is None:  # a node without sources or input stays silent
                    node_current = tf.zeros([tf.shape(node_states[i][-1])[0], self.units[i]], self.dtype)
                if biases[i] is not None:
                    node_current = node_current + biases[i]
                out, states_i = step(node_current, mask_t, list(node_states[i][:-1]), params)
                if self.capacities[i] is None:
                    output = spikes = out
                else:  # out: the pre-spike value (silent at masked steps: nothing selected)
                    selected, output = self._select(i, out, node_states[i][-1])
                    if i in self.output_nodes:
                        spikes = scatter(selected.ids, selected.count, selected.values, self.units[i], self.chosen)
                if mask_t is not None:
                    keep = fused.broadcast_mask(mask_t, output)
                    output = tf.where(keep, output, node_states[i][-1])
            if i in self.output_nodes:
                spikes_out[i] = spikes
            new_states.extend(states_i + [output])
        output = tf.concat([spikes_out[i] for i in self.output_nodes], axis=-1)
        return output, new_states


@register(package="snns_as_gnn")
class GraphSNNCell(keras.layers.Layer):
    """An `SNNGraph` as a Keras RNN cell: one time step of all nodes.

    Args:
        graph: an `SNNGraph` (or its dict / JSON).
        placement: optional mapping node name -> device (e.g. from `plan_placement`); each
            node's ops are placed there with `tf.device`, or, for the shard names of
            `dense_snns.devices.ipu_shards`, on that IPU of a multi-IPU device.
        use_bias: a bias per node. Default True.
        kernel_initializer: initializer of the input and edge kernels.
        bias_initializer: initializer of the biases.

    Input: [batch, input_size]. Output: spikes of the output nodes concatenated
    [batch, sum of output units]. State: per node (in node order) its neuron states, then its
    output of the previous step: spikes [batch, units], or for a sparse node (a `capacity` K)
    its packed selection [batch, 2K + 2] (`GraphStep`).
    """

    def __init__(
        self,
        graph,
        placement=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.graph = _as_graph(graph)
        self.placement = _as_placement(placement, self.graph)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.neurons = {}
        for node in self.graph.nodes:
            neuron = get_neuron(
                {"class_name": node.neuron, "config": dict(node.neuron_config)}, node.units, dtype=self.dtype_policy
            )
            if node.capacity is not None and not neuron.model.spiking:
                raise ValueError(
                    f"node {node.name!r}: a capacity selects spikes, but the {node.neuron} model does not spike"
                )
            self.neurons[node.name] = neuron
        # Tracked as a list so Keras 2 and 3 both save the neurons' weights.
        self.neuron_list = [self.neurons[name] for name in self.graph.node_names]
        self._steps = {}

    @property
    def state_size(self) -> List[int]:
        sizes = []
        for node in self.graph.nodes:
            previous = node.units if node.capacity is None else 2 * node.capacity + 2
            sizes.extend(list(self.neurons[node.name].state_size) + [previous])
        return sizes

    @property
    def output_size(self) -> int:
        return sum(self.graph.node(name).units for name in self.graph.outputs)

    def get_initial_state(self, inputs=None, batch_size=None, dtype=None):
        return zero_states(self, inputs, batch_size, dtype)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"the feature dimension of `inputs` must be known, got shape {input_shape}")
        if self.graph.input_size is not None and int(features) != self.graph.input_size:
            raise ValueError(
                f"`inputs` has {int(features)} features but the graph's input_size is {self.graph.input_size}"
            )
        self.input_kernels = {}
        for i, name in enumerate(self.graph.inputs):
            self.input_kernels[name] = self.add_weight(
                name=f"input_to_{name}",
                shape=(int(features), self.graph.node(name).units),
                initializer=self._kernel_initializer(i),
            )
        offset = len(self.graph.inputs)
        self.edge_kernels = [
            self.add_weight(
                name=f"{s}_to_{t}",
                shape=(self.graph.node(s).units, self.graph.node(t).units),
                initializer=self._kernel_initializer(offset + k),
            )
            for k, (s, t) in enumerate(self.graph.edges)
        ]
        self.biases = {}
        if self.use_bias:
            for node in self.graph.nodes:
                self.biases[node.name] = self.add_weight(
                    name=f"bias_{node.name}", shape=(node.units,), initializer=self.bias_initializer
                )
        for neuron in self.neuron_list:
            if not neuron.built:
                # each neuron's weights under its own (unique) name: Keras 2.6's HDF5 files
                # keep weights by name and refuse two "beta"s
                with tf.name_scope(neuron.name):
                    neuron.build((None, neuron.units))
        self.input_features = int(features)
        self.built = True

    def _kernel_initializer(self, index: int):
        """A distinct initializer per kernel: one (seeded) initializer object reused for every
        kernel would give kernels of equal shape equal values."""
        init = self.kernel_initializer
        if not hasattr(init, "get_config"):
            return init
        config = dict(init.get_config())
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + index
        return type(init).from_config(config)

    def graph_step(self, dtype, kernels: bool = False) -> GraphStep:
        """The `GraphStep` of this cell for `dtype`, with the sparse nodes' selections and
        products in the C++ kernels or in pure TensorFlow (shared with equal cells)."""
        dtype = tf.as_dtype(dtype)
        key = (dtype.name, bool(kernels))
        if key not in self._steps:
            for node in self.graph.nodes:
                if node.capacity is not None:  # its state holds its packed selection
                    check_packable(node.units, dtype, f"node {node.name!r}")
            self._steps[key] = fused.shared_step(GraphStep(self, dtype, kernels))
        return self._steps[key]

    @property
    def sparse_nodes(self) -> List[str]:
        """Names of the nodes with a capacity, in node order."""
        return [node.name for node in self.graph.nodes if node.capacity is not None]

    def uses_kernels(self, dtype, implementation: str = "auto") -> bool:
        """Whether a call of `dtype` runs the sparse nodes' selections and products in the C++
        kernels: some node has a capacity and the kernels can run here (not under XLA, not
        float16, no GPU, not ``implementation="compiled"``/``"reference"``)."""
        return bool(self.sparse_nodes) and event_refusal(dtype, implementation) is None

    def external_current(self, inputs: tf.Tensor) -> tf.Tensor:
        """x W_in of every input node, concatenated: [..., features] -> [..., sum input units].

        One matmul with the input kernels side by side (over all steps for a sequence)."""
        kernel = tf.concat([tf.cast(self.input_kernels[name], inputs.dtype) for name in self.graph.inputs], axis=1)
        if inputs.shape.rank == 2:
            return tf.matmul(inputs, kernel)
        return tf.tensordot(inputs, kernel, axes=1)

    def call(self, inputs, states, training=None):
        x = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        check_rank(x, 2, "inputs", "[batch, features]")
        check_features(x.shape, self.input_features, "inputs", what="the graph's input size")
        step = self.graph_step(x.dtype, self.uses_kernels(x.dtype))
        output, new_states = step(self.external_current(x), None, tf.nest.flatten(states), step.tensors(self, x.dtype))
        return output, new_states

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "graph": self.graph.to_dict(),
                "placement": dict(self.placement) or None,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


@register(package="snns_as_gnn")
class GraphSNN(StatefulLayer, keras.layers.Layer):
    """Runs an `SNNGraph` over a sequence [batch, time, features].

    The input projection of all steps is one matmul; the steps run in a compiled loop with
    hand-written BPTT (`dense_snns.fused.compiled_recurrence`). With a placement over several
    devices the loop is not XLA-compiled, so that TensorFlow places each node's ops on its
    device. Logical CPU devices share one set of thread pools: on a CPU, placement changes
    where ops run but not how fast (`benchmarks/bench_graph.py`); the parallelism of the
    nodes of a step comes from TensorFlow's inter-op threads, which run independent nodes
    concurrently when the loop is not XLA-compiled (XLA runs them one after another). A
    placement on IPU shards (`dense_snns.devices.ipu_shards`) stays one compiled program in
    which each IPU computes its nodes of a step in parallel with the others.

    Args:
        graph, placement, use_bias, kernel_initializer, bias_initializer: as `GraphSNNCell`.
        return_sequences: spikes of the output nodes at every step [batch, time, outputs]
            (default) or at the last step only.
        implementation: ``"auto"`` / ``"compiled"`` (compiled loop, hand-written BPTT) or
            ``"reference"`` (plain `tf.while_loop` with autodiff); the graph's loop has no C++
            kernel, so ``"kernel"`` is an `ImplementationError` (sparse nodes take the C++
            kernels of their selections and products where they can, `cell.uses_kernels`).
        jit_compile: compile the fused loops with XLA when all nodes are on one device
            (fewer, fused ops per step; without it, independent nodes can run in parallel:
            which is faster depends on the node sizes and the thread settings). Not with
            sparse nodes on TensorFlow < 2.9, whose XLA crashes in their backward loop
            (`GraphStep.crashes_old_xla`).
        stateful: carry the states of every node (as `GraphSNNCell`'s, in node order) from
            the end of a call to the start of the next (needs a fixed batch size; see
            `dense_snns.stateful`).

    Sparse nodes (a node with a `capacity` K) send their spikes selected into K slots and
    receive gradient at those only (`GraphStep`); spikes beyond K are dropped and reported: the
    metric ``<name>_dropped`` (spikes per sample and step, summed over the sparse nodes,
    batch mean) and `last_dropped` (node name -> int32 [batch], spikes dropped in the call).
    Their selections and products run in the C++ kernels, so the loop is then not
    XLA-compiled (`cell.uses_kernels`); under XLA, in float16 or with ``"compiled"`` /
    ``"reference"`` the same in pure TensorFlow.

    Weights: `cell.input_kernels`, `cell.edge_kernels` (graph edge order), `cell.biases`, and
    the neurons' own weights; the same as `keras.layers.RNN(layer.cell)`.
    """

    def __init__(
        self,
        graph,
        placement=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        return_sequences: bool = True,
        implementation: str = "auto",
        jit_compile: bool = True,
        stateful: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.stateful = bool(stateful)
        self.state_variables = []
        implementation = implementation_choice.check(implementation)
        implementation_choice.resolve(implementation, "the graph's loop has no C++ kernel", f"GraphSNN {self.name!r}")
        self.cell = GraphSNNCell(
            graph, placement, use_bias, kernel_initializer, bias_initializer, dtype=self.dtype_policy, name="cell"
        )
        self.graph = self.cell.graph
        self.return_sequences = bool(return_sequences)
        self.implementation = implementation
        self.jit_compile = bool(jit_compile)
        self.supports_masking = True
        self.last_dropped = None
        self.metric_name = f"{self.name}_dropped"
        if self.cell.sparse_nodes:
            declare_layer_metric(self, self.metric_name)

    def build(self, input_shape):
        shape = check_sequence(f"GraphSNN {self.name!r}", input_shape, 3, "[batch, time, features]")
        if not self.cell.built:
            self.cell.build((None, shape[-1]))
        self._build_states(shape[0], [(int(size),) for size in self.cell.state_size])
        self.built = True

    def call(self, inputs, mask=None, training=None):
        x = as_numeric_tensor(inputs, "inputs", self.compute_dtype)
        what = f"GraphSNN {self.name!r}"
        check_sequence(what, x.shape, 3, "[batch, time, features]", [self.cell.input_features], "the graph's input")
        x = check_steps(what, x)
        dtype = x.dtype
        kernels = self.cell.uses_kernels(dtype, self.implementation)
        step = self.cell.graph_step(dtype, kernels)
        currents = self.cell.external_current(x)  # [batch, time, ...], one matmul
        if self.stateful:
            states = self._carried_states(x.shape[0], dtype, x.shape)
        else:
            states = self.cell.get_initial_state(batch_size=tf.shape(x)[0], dtype=dtype)
        tensors = step.tensors(self.cell, dtype, loop=True)
        mask = None if mask is None else check_mask(what, mask, x)
        if self.implementation == "reference":
            outputs, final_states = fused.reference_recurrence(step, currents, states, tensors, mask, time_axis=1)
        else:
            single_device = _devices_used(self.cell.placement) <= 1
            outputs, final_states = fused.compiled_recurrence(
                step,
                currents,
                states,
                tensors,
                mask,
                jit_compile=self.jit_compile and single_device and not kernels,  # C++ ops: no XLA
                time_axis=1,
                checkpoint_every=fused.AUTO,
            )
        if self.stateful:
            self._carry_states(final_states)
        if self.cell.sparse_nodes:
            self._report_dropped(states, final_states, tf.shape(x)[1])
        return outputs if self.return_sequences else outputs[:, -1]

    def _report_dropped(self, states, final_states, steps):
        """`last_dropped` and the metric from the running counts of dropped spikes in the
        sparse nodes' packed selections (the last entry), before and after the call."""
        previous = {}
        position = 0
        for node in self.graph.nodes:
            position += len(self.cell.neurons[node.name].state_size)
            previous[node.name] = position
            position += 1
        self.last_dropped = {
            name: tf.cast(tf.round(final_states[previous[name]][:, -1] - states[previous[name]][:, -1]), tf.int32)
            for name in self.cell.sparse_nodes
        }
        total = tf.add_n([tf.cast(d, tf.float32) for d in self.last_dropped.values()])
        add_layer_metric(self, self.metric_name, tf.reduce_mean(total) / tf.cast(steps, tf.float32))

    def step(self, inputs_t, states):
        """One time step: (spikes of the output nodes [batch, outputs], new states) from the
        input of the step [batch, features] and the states (as `state_variables`): the
        per-step form of `call`."""
        return self.cell(inputs_t, list(states))

    def compute_mask(self, inputs, mask=None):
        return mask if self.return_sequences else None

    def compute_output_shape(self, input_shape):
        if self.return_sequences:
            return (input_shape[0], input_shape[1], self.cell.output_size)
        return (input_shape[0], self.cell.output_size)

    def get_config(self):
        config = super().get_config()
        cell_config = self.cell.get_config()
        for key in ("graph", "placement", "use_bias", "kernel_initializer", "bias_initializer"):
            config[key] = cell_config[key]
        config.update(
            {
                "return_sequences": self.return_sequences,
                "implementation": self.implementation,
                "jit_compile": self.jit_compile,
                "stateful": self.stateful,
            }
        )
        return config
