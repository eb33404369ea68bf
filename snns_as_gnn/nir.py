"""NIR interchange of `GraphSNN` layers (registered with `dense_snns.nir`, so
`dense_snns.nir.export_nir` / `import_nir` handle models with graph layers).

A graph layer `g` is written as NIR nodes named after it:

    g.<node>.neuron                    the node's neurons (LIF | CubaLIF)
    g.<node>.input                     Affine: external input -> an input node (x W_in + b)
    g.<s>_to_<t>.delay                 Delay(dt): the one-step delay of the edge s -> t
    g.<s>_to_<t>                       Linear (Affine when it carries t's bias) -> g.<t>.neuron

so every edge, self-loops included, states its delay as a `Delay` node of one step (dt
seconds), while the external input and the layers before and after act within the step (no
Delay), as `GraphSNN` computes. A node's bias goes on its input synapse, else on its first
incoming edge, else (a node with neither) on a zero-weight Affine from the layer's input.
The next layer takes the output nodes' spikes through one synapse per output node
(``<next>.synapse.<k>``), which NIR sums. Imported, the neurons reached from the layer's
input through Delay edges form one `GraphSNN`; its outputs are the nodes that feed the next
layer.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from dense_snns import nir as dense_nir

from .layer import GraphSNN
from .spec import NodeSpec, SNNGraph

__all__ = ["export_graph", "import_graph"]


def export_graph(export: "dense_nir.NIRExport", layer: GraphSNN, frontier):
    """Write the GraphSNN `layer` into `export` (a `dense_snns.nir.NIRExport`) from the
    frontier (the (node name, shape) list of its input); the output nodes' frontier."""
    nir, cell, graph, prefix = export.nir, layer.cell, layer.graph, layer.name
    neuron = {name: f"{prefix}.{name}.neuron" for name in graph.node_names}
    for node in graph.nodes:
        export.add(neuron[node.name], export.neuron(f"{prefix}.{node.name}", cell.neurons[node.name]))

    def bias_of(name):
        return np.asarray(cell.biases[name], np.float32) if cell.use_bias else None

    for name in graph.node_names:
        bias = bias_of(name)
        if graph.is_input(name):
            export.project(frontier, cell.input_kernels[name], bias, f"{prefix}.{name}.input", neuron[name])
            bias = None
        for source in graph.sources(name):
            edge = f"{prefix}.{source}_to_{name}"
            units = graph.node(source).units
            delay = export.add(f"{edge}.delay", nir.Delay(delay=np.full(units, export.dt, np.float32)), neuron[source])
            weight = np.asarray(cell.edge_kernels[graph.edges.index((source, name))], np.float32).T.copy()
            if bias is None:
                export.add(edge, nir.Linear(weight=weight), delay)
            else:
                export.add(edge, nir.Affine(weight=weight, bias=bias), delay)
                bias = None
            export.edges.append((edge, neuron[name]))
        if bias is not None and np.any(bias != 0):  # driven by its bias alone
            inputs = sum(int(np.prod(shape)) for _, shape in frontier)
            zeros = np.zeros((inputs, graph.node(name).units), np.float32)
            export.project(frontier, zeros, bias, f"{prefix}.{name}.bias", neuron[name])
    return [(neuron[name], (graph.node(name).units,)) for name in graph.outputs]


def _node_name(neuron: str, prefix: str) -> str:
    name = neuron[len(prefix) + 1 :] if prefix and neuron.startswith(prefix + ".") else neuron
    return name[: -len(".neuron")] if name.endswith(".neuron") else name


def _common_prefix(neurons: List[str]):
    """The layer name shared by neuron nodes named ``<layer>.<node>.neuron``, or None."""
    heads = {name.split(".", 1)[0] for name in neurons}
    if len(heads) == 1 and all(name.count(".") >= 2 and name.endswith(".neuron") for name in neurons):
        return heads.pop()
    return None


def import_graph(reader: "dense_nir.NIRImport", frontier, x, entries: List[str]):
    """Build the GraphSNN whose input synapses lead from the frontier into the neuron nodes
    `entries` (a `dense_snns.nir.NIRImport`); (its output, the layer, its output frontier)."""
    frontier_names = {name for name, _ in frontier}
    # The graph's neurons: those linked to the entries by Delay edges, either way.
    members, queue = [], list(entries)
    while queue:
        name = queue.pop(0)
        if name in members:
            continue
        members.append(name)
        for source, delay, _ in reader.delayed(name):
            reader.check_one_step(delay)
            queue.append(source)
        for delay in reader.successors[name]:
            if reader.kind(delay) == "Delay":
                for synapse in reader.successors[delay]:
                    queue.append(_single_target(reader, synapse))
    order = {name: i for i, name in enumerate(reader.nodes)}
    members.sort(key=order.get)
    prefix = _common_prefix(members)
    names = {m: _node_name(m, prefix) for m in members}

    specs, configs, edges, synapses = [], {}, [], {}
    inputs, outputs = [], []
    for member in members:
        kind, config, gain, leak = reader.neuron(member)
        if kind == "readout":
            raise ValueError(f"node {member!r} (LI): a leaky readout cannot be a node of a graph layer")
        configs[member] = (gain, leak)
        specs.append(NodeSpec(names[member], len(gain), neuron=kind, neuron_config=config))
        delayed = reader.delayed(member)
        through_delay = {synapse for _, _, synapse in delayed}
        direct = [p for p in reader.predecessors[member] if p not in through_delay]
        for synapse in direct:
            source = reader.predecessors[synapse]
            if reader.kind(synapse) not in ("Affine", "Linear") or len(source) != 1 or source[0] not in frontier_names:
                raise ValueError(
                    f"node {synapse!r}: an input of the graph neuron {member!r} must be a synapse from the layer "
                    "before, or pass a Delay node (a graph edge)"
                )
        if direct:
            inputs.append(member)
            synapses[member] = direct
        for source, _, synapse in delayed:
            edges.append((names[source], names[member]))
            synapses[(names[source], names[member])] = synapse
        leaving = [s for s in reader.successors[member] if reader.kind(s) != "Delay"]
        if leaving:
            outputs.append(member)
    if not inputs:
        raise ValueError(f"nodes {members}: a graph layer needs a synapse from the layer before into one of them")
    if not outputs:
        raise ValueError(f"nodes {members}: no node of the graph layer feeds a next layer")
    input_size = sum(int(np.prod(shape)) for _, shape in frontier)
    graph = SNNGraph(specs, edges, [names[m] for m in inputs], [names[m] for m in outputs], input_size=input_size)
    layer = GraphSNN(graph, name=prefix)
    x = layer(x)
    cell = layer.cell
    biases: Dict[str, np.ndarray] = {names[m]: np.zeros(len(configs[m][0]), np.float32) for m in members}
    for member in inputs:
        gain = configs[member][0].astype(np.float32)
        kernel, bias = reader.projection(frontier, synapses[member], member)
        cell.input_kernels[names[member]].assign(kernel * gain[None, :])
        biases[names[member]] += bias
    for k, (source, target) in enumerate(graph.edges):
        member = next(m for m in members if names[m] == target)
        weight, bias = reader.synapse(synapses[(source, target)])
        cell.edge_kernels[k].assign(weight * configs[member][0][None, :].astype(np.float32))
        biases[target] += bias
    for member in members:
        gain, leak = configs[member]
        cell.biases[names[member]].assign((biases[names[member]] * gain + leak).astype(np.float32))
    return x, layer, [(m, (graph.node(names[m]).units,)) for m in outputs]


def _single_target(reader, synapse: str) -> str:
    targets = reader.successors[synapse]
    if len(targets) != 1:
        raise ValueError(f"node {synapse!r}: expected one neuron after the synapse, found {sorted(targets)}")
    return targets[0]


dense_nir.register_exporter("GraphSNN", export_graph)
dense_nir.register_graph_importer(import_graph)
