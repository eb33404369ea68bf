"""NIR interchange (Neuromorphic Intermediate Representation, the `nir` package:
``pip install .[nir]``) for chains of SNN layers.

`export_nir(model)` writes a model of `SNNDense` layers (LIF or current-based LIF neurons,
with or without self-recurrence) and a final `LeakyReadout` as a `nir.NIRGraph`, and the
same of `SparseSNNDense` / `SparseLeakyReadout` (sparse_snns) as their dense equivalents;
`import_nir(graph)` builds such a Keras model from a graph, with its weights.

Time: NIR's neurons are continuous; the library's are their forward-Euler steps of `dt`
seconds (default 1e-4 s, the convention of snnTorch's NIR export):

    NIR LIF      tau dv/dt = (v_leak - v) + r I          library  v[t] = beta v[t-1] + I[t]
    NIR CubaLIF  tau_syn di/dt = -i + w_in I                      i[t] = alpha i[t-1] + I[t]
                 tau_mem dv/dt = (v_leak - v) + r i               v[t] = beta v[t-1] + i[t]
    NIR LI       tau dv/dt = (v_leak - v) + r I                   y[t] = beta y[t-1] + I[t]

so beta = 1 - dt / tau and alpha = 1 - dt / tau_syn. Exported: tau = dt / (1 - beta),
r = tau / dt (the input gain dt r / tau is then 1), v_leak = 0, w_in = tau_syn / dt.
Imported: the input gains (dt r / tau, and dt w_in / tau_syn for CubaLIF) multiply the
weights and bias of the synapse before the neuron, and a LIF's or LI's leak v_leak adds
(1 - beta) v_leak to its bias: exact. NIR resets the membrane to v_reset after a spike: the
library's ``reset="zero"`` with v_reset = 0. Spikes: v > v_threshold, as in the library.

Graph layout: ``input -> <layer>.synapse (Affine) -> <layer>.neuron (LIF | CubaLIF) -> ...
-> readout.synapse (Affine) -> readout.neuron (LI) -> output``; convolutional layers first
(``SNNConv2D``: ``Conv2d`` -> LIF | CubaLIF over [channels, H, W], then a ``Flatten`` for the
``Reshape`` that flattens the maps; NIR is channels-first, the weights are reordered, and
only symmetric padding exists there); a self-recurrent layer adds
``<layer>.neuron -> <layer>.recurrent (Linear) -> <layer>.neuron``, whose spikes arrive one
step later (the library's convention: I[t] = W x[t] + U z[t-1] + b). Anything else (other
node types, reset by subtraction, a non-zero v_reset, a CubaLIF leak, dilation, grouped or
asymmetrically padded convolutions) is an error naming the node and what is missing.

Layers of other packages plug in with `register_exporter` and `register_graph_importer`
(snns_as_gnn's GraphSNN: every edge a one-step Delay node, see `snns_as_gnn.nir`). A layer
whose input is the spikes of several nodes (a graph's outputs) takes one synapse per node,
``<layer>.synapse.<k>`` in the order of concatenation, which NIR sums at the neuron.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .compat import keras
from .layers import SNNDense
from .readouts import LeakyReadout

__all__ = [
    "DEFAULT_DT",
    "NIRExport",
    "NIRImport",
    "export_nir",
    "import_nir",
    "register_exporter",
    "register_graph_importer",
    "write_nir",
]

#: Seconds per step of the discrete model (snnTorch's NIR convention).
DEFAULT_DT = 1e-4

#: Neuron models exported, by the library's name.
_EXPORTED = ("lif", "cuba_lif")


def _nir():
    try:
        import nir
    except ImportError:
        raise ImportError("NIR interchange needs the nir package: pip install .[nir] (or pip install nir)") from None
    if "v_reset" not in getattr(nir.LIF, "__dataclass_fields__", {}):
        raise ImportError(
            "NIR interchange needs a nir release whose LIF nodes have v_reset (1.0.3 or newer; Python >= 3.9): "
            "pip install -U nir"
        )
    return nir


def _values(value, units: int, spatial=None) -> np.ndarray:
    """A parameter per neuron, [units] (or per channel broadcast to [units, H, W])."""
    channel = np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (units,)).astype(np.float32)
    if spatial is None:
        return channel.copy()
    return np.broadcast_to(channel[:, None, None], (units,) + tuple(spatial)).copy()


def _neuron_nodes(nir, name: str, neuron, readout: bool, dt: float, spatial=None):
    """The NIR neuron node of a layer's neurons; `spatial` (H, W): a conv layer's, whose
    per-channel parameters NIR holds per neuron, [channels, H, W]."""
    model, units = neuron.model.name, int(neuron.units)
    p = neuron.params(tf.float32)

    def per_neuron(value):
        return _values(value, units, spatial)

    beta = per_neuron(p.beta)
    if np.any(beta >= 1.0):
        raise ValueError(f"layer {name!r}: beta = 1 (no leak) has no NIR time constant")
    tau = dt / (1.0 - beta)
    zeros = np.zeros_like(beta)
    if readout:
        return nir.LI(tau=tau, r=tau / dt, v_leak=zeros)
    if model not in _EXPORTED:
        raise ValueError(f"layer {name!r}: neuron model {model!r} has no NIR node (exported: {_EXPORTED})")
    if p.reset != "zero":
        raise ValueError(
            f"layer {name!r}: reset={p.reset!r} has no NIR equivalent (NIR resets the membrane to v_reset): "
            "use reset='zero'"
        )
    threshold = per_neuron(p.threshold)
    if model == "lif":
        return nir.LIF(tau=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, v_reset=zeros)
    alpha = per_neuron(p.alpha)
    if np.any(alpha >= 1.0):
        raise ValueError(f"layer {name!r}: alpha = 1 (no synaptic decay) has no NIR time constant")
    tau_syn = dt / (1.0 - alpha)
    return nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau, r=tau / dt, v_leak=zeros, v_threshold=threshold, v_reset=zeros, w_in=tau_syn / dt
    )


#: Layers exported, by class name: the sparse ones (sparse_snns) as their dense equivalents.
_SPIKING = ("SNNDense", "SparseSNNDense")
_READOUTS = ("LeakyReadout", "SparseLeakyReadout")

#: Exporters of layers defined outside this package, by class name (`register_exporter`).
_EXPORTERS: Dict[str, Callable] = {}
#: The importer of synapses that carry Delay nodes (`register_graph_importer`).
_GRAPH_IMPORTERS: List[Callable] = []


def register_exporter(class_name: str, exporter: Callable) -> None:
    """Let `export_nir` write layers of class `class_name` (e.g. snns_as_gnn's GraphSNN):
    ``exporter(export: NIRExport, layer, frontier) -> frontier`` adds the layer's nodes."""
    _EXPORTERS[class_name] = exporter


def register_graph_importer(importer: Callable) -> None:
    """Let `import_nir` read neurons whose synapses carry Delay nodes (snns_as_gnn's graphs):
    ``importer(reader: NIRImport, frontier, x, entries) -> (x, layer, frontier)`` builds the
    layer whose input synapses lead from `frontier` into the neurons `entries`."""
    _GRAPH_IMPORTERS[:] = [importer]


def _parts(layer):
    """(kernel [in, out], bias or None, recurrent kernel or None, neuron cell, is a readout)."""
    if type(layer).__name__ == "SparseSNNDense":
        synapse = layer.synapse
        bias = synapse.bias if synapse.use_bias else None
        return synapse.kernel, bias, layer.recurrent_kernel, layer.neuron, False
    cell = layer.cell  # SNNDense: SNNBlock; readouts: LeakyReadoutCell
    bias = cell.bias if cell.use_bias else None
    if isinstance(layer, SNNDense):
        return cell.kernel, bias, cell.recurrent_kernel if cell.self_recurrent else None, layer.neuron, False
    return cell.kernel, bias, None, cell.neuron, True


def _chain(model) -> List:
    """The layers of a chain model that become NIR nodes: spiking layers (SNNConv2D, and a
    Reshape that flattens its maps, first; registered layers such as GraphSNN), then the
    final readout; spike monitors and sparse-to-dense conversions, which do not change
    spikes, are skipped."""
    chain = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer) or kind in ("SpikeMonitor", "SparseToDense"):
            continue
        flatten = kind == "Reshape" and chain and type(chain[-1]).__name__ == "SNNConv2D"
        if kind not in _SPIKING + _READOUTS + ("SNNConv2D",) + tuple(_EXPORTERS) and not flatten:
            raise ValueError(
                f"layer {layer.name!r} ({kind}): export_nir takes chains of SNNConv2D (then a Reshape that "
                "flattens), SNNDense, SparseSNNDense or GraphSNN layers and a final LeakyReadout or "
                "SparseLeakyReadout"
            )
        chain.append(layer)
    readouts = [type(layer).__name__ in _READOUTS for layer in chain]
    if not chain or not readouts[-1] or any(readouts[:-1]):
        raise ValueError("export_nir needs spiking layers followed by one readout, the last layer")
    return chain


def _conv_padding(layer, in_hw) -> Tuple[int, int]:
    """The symmetric padding (rows, columns) of a conv layer, as NIR states it; an error when
    TensorFlow pads one side more ("same" with a stride that does not divide evenly)."""
    conv = layer.conv
    if conv.padding == "valid":
        return (0, 0)
    pads = []
    for size, k, s, d in zip(in_hw, conv.kernel_size, conv.strides, conv.dilation_rate):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        if total % 2:
            raise ValueError(
                f"layer {layer.name!r}: padding='same' pads one side more than the other here (input {size}, "
                f"kernel {k}, stride {s}); NIR's padding is symmetric: use padding='valid' or another size"
            )
        pads.append(total // 2)
    return tuple(pads)


def _chw_order(h: int, w: int, c: int) -> np.ndarray:
    """For each position of a [c, h, w] flattening (NIR's), its index in an [h, w, c] one."""
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()


def _flatten_order(node) -> Optional[np.ndarray]:
    """`_chw_order` of the maps a NIR Flatten node flattens; None for any other node."""
    if _kind(node) != "Flatten":
        return None
    c, h, w = (int(d) for d in np.asarray(node.input_type["input"]).ravel())
    return _chw_order(h, w, c)


class NIRExport:
    """A NIR graph being written: `nodes` (name -> node), `edges`, the step `dt` (seconds)
    and the `nir` module.

    Layers are written one after another. Each takes the *frontier*, the list of
    (node name, output shape) whose outputs, concatenated, are the layer's input (one node
    for a chain; the output nodes of a graph layer), and returns its own frontier.
    """

    def __init__(self, nir, dt: float):
        self.nir, self.dt = nir, float(dt)
        self.nodes: Dict[str, object] = {}
        self.edges: List[Tuple[str, str]] = []

    def add(self, name: str, node, *sources: str) -> str:
        """Add `node` as `name`, with an edge from each of `sources`."""
        if name in self.nodes:
            raise ValueError(f"two NIR nodes would be named {name!r}: rename one of the layers or graph nodes")
        self.nodes[name] = node
        self.edges += [(source, name) for source in sources]
        return name

    def neuron(self, name: str, neuron, readout: bool = False, spatial=None):
        """The NIR node (LIF, CubaLIF; LI for a readout) of the neuron layer `neuron` of
        `name`; `spatial` (H, W) for a conv layer's, whose nodes are [channels, H, W]."""
        return _neuron_nodes(self.nir, name, neuron, readout, self.dt, spatial)

    def project(self, frontier, kernel, bias, name: str, target: str) -> None:
        """The synapse x W + b from the frontier into the node `target`: `kernel`
        [sum of the frontier sizes, out] in the library's layout (a flattened map's rows in
        [H, W, C] order), `bias` [out] or None. One Affine `name` from one frontier node;
        from several, one per node, ``name.<k>`` (the first an Affine with the bias, the
        others Linear), which NIR sums at the target."""
        kernel = np.asarray(kernel, np.float32)
        sizes = [int(np.prod(shape)) for _, shape in frontier]
        if kernel.ndim != 2 or kernel.shape[0] != sum(sizes):
            raise ValueError(f"{name!r}: a kernel of shape {kernel.shape} does not take {sum(sizes)} inputs")
        bias = np.zeros(kernel.shape[1], np.float32) if bias is None else np.asarray(bias, np.float32)
        offset = 0
        for k, ((source, _), size) in enumerate(zip(frontier, sizes)):
            rows, offset = kernel[offset : offset + size], offset + size
            order = _flatten_order(self.nodes[source])
            if order is not None:  # NIR flattens [C, H, W]
                rows = rows[order]
            synapse = name if len(frontier) == 1 else f"{name}.{k}"
            if k == 0:
                node = self.nir.Affine(weight=rows.T.copy(), bias=bias)
            else:
                node = self.nir.Linear(weight=rows.T.copy())
            self.add(synapse, node, source)
            self.edges.append((synapse, target))


def _export_layer(export: NIRExport, layer, frontier):
    """Write one of this package's layers (or a sparse one); its frontier."""
    nir, kind = export.nir, type(layer).__name__
    if kind == "Reshape":  # flattens the maps of the conv layer before
        (source, (c, h, w)) = _single_map(layer, frontier)
        flatten = export.add(
            f"{layer.name}.flatten", nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0), source
        )
        return [(flatten, (c * h * w,))]
    synapse, neuron = f"{layer.name}.synapse", f"{layer.name}.neuron"
    if kind == "SNNConv2D":
        (source, (_, h, w)) = _single_map(layer, frontier)
        conv = layer.conv
        out_h, out_w, filters = (int(d) for d in layer.output.shape[2:])
        bias = np.asarray(conv.bias, np.float32) if conv.use_bias else np.zeros(filters, np.float32)
        export.add(
            synapse,
            nir.Conv2d(
                input_shape=(h, w),
                weight=np.asarray(conv.kernel, np.float32).transpose(3, 2, 0, 1),  # [out, in, kh, kw]
                stride=tuple(conv.strides),
                padding=_conv_padding(layer, (h, w)),
                dilation=tuple(conv.dilation_rate),
                groups=1,
                bias=bias,
            ),
            source,
        )
        export.add(neuron, export.neuron(layer.name, layer.neuron, spatial=(out_h, out_w)), synapse)
        return [(neuron, (filters, out_h, out_w))]
    kernel, bias, recurrent_kernel, neuron_cell, readout = _parts(layer)
    export.add(neuron, export.neuron(layer.name, neuron_cell, readout))
    export.project(frontier, kernel, bias, synapse, neuron)
    if recurrent_kernel is not None:
        recurrent = f"{layer.name}.recurrent"
        export.add(recurrent, nir.Linear(weight=np.asarray(recurrent_kernel).T.astype(np.float32)), neuron)
        export.edges.append((recurrent, neuron))
    return [(neuron, (int(layer.units),))]


def _single_map(layer, frontier):
    if len(frontier) != 1 or len(frontier[0][1]) != 3:
        raise ValueError(f"layer {layer.name!r}: its input must be the maps [H, W, C] of one layer")
    return frontier[0]


def export_nir(model, dt: float = DEFAULT_DT):
    """The `nir.NIRGraph` of `model` (input [batch, time, features] -> SNNDense ... ->
    LeakyReadout; or [batch, time, H, W, C] -> SNNConv2D ... -> Reshape -> SNNDense ... ->
    LeakyReadout; sparse layers written as their dense equivalents; snns_as_gnn's GraphSNN
    anywhere before the readout), its parameters mapped with step `dt` seconds (see the
    module docstring)."""
    nir = _nir()
    if not dt > 0:
        raise ValueError(f"dt must be a positive number of seconds, got dt={dt!r}")
    chain = _chain(model)
    if type(chain[0]).__name__ == "SNNConv2D":
        h, w, c = (int(d) for d in chain[0].input.shape[2:])
        input_shape = (c, h, w)
    elif type(chain[0]).__name__ in _EXPORTERS:
        input_shape = (int(chain[0].input.shape[-1]),)
    else:  # a sparse layer's input is a list of tensors: the kernel says the size
        input_shape = (int(_parts(chain[0])[0].shape[0]),)
    export = NIRExport(nir, dt)
    export.add("input", nir.Input(input_type={"input": np.array(input_shape)}))
    frontier = [("input", input_shape)]
    for layer in chain:
        frontier = _EXPORTERS.get(type(layer).__name__, _export_layer)(export, layer, frontier)
    export.add("output", nir.Output(output_type={"output": np.array([int(chain[-1].units)])}), frontier[0][0])
    return nir.NIRGraph(nodes=export.nodes, edges=export.edges, metadata={"dt": dt, "source": "dense_snns"})


def write_nir(path, graph) -> None:
    """Write `graph` (from `export_nir`) to the NIR file `path` (HDF5; `import_nir` reads it)."""
    _nir().write(path, graph)


# -- import ---------------------------------------------------------------------------------


def _kind(node) -> str:
    return type(node).__name__


def _single(items, what: str, name: str):
    if len(items) != 1:
        raise ValueError(f"node {name!r}: expected one {what}, found {len(items)} ({sorted(items)})")
    return items[0]


def _neuron_config(name: str, node, dt: float):
    """(layer kind, neuron config, gain of the synaptic input, bias from the leak)."""
    kind = _kind(node)

    def array(field):
        values = np.asarray(getattr(node, field), np.float64)
        if values.ndim == 3:  # a conv layer's neurons [C, H, W]: one value per channel
            flat = values.reshape(values.shape[0], -1)
            if np.any(flat != flat[:, :1]):
                raise ValueError(
                    f"node {name!r} ({kind}): {field} varies within a channel; the library's is per channel"
                )
            return flat[:, 0]
        return values.ravel()

    def zero_reset():
        v_reset = getattr(node, "v_reset", None)
        if v_reset is not None and np.any(np.asarray(v_reset) != 0):
            raise ValueError(f"node {name!r} ({kind}): v_reset != 0 is not supported (the library resets to zero)")

    if kind in ("LIF", "LI"):
        tau, r, v_leak = array("tau"), array("r"), array("v_leak")
        beta = 1.0 - dt / tau
        gain, leak = dt * r / tau, (1.0 - beta) * v_leak
        if kind == "LI":
            return "readout", {"beta": beta.tolist()}, gain, leak
        zero_reset()
        config = {"beta": beta.tolist(), "threshold": array("v_threshold").tolist(), "reset": "zero"}
        return "lif", config, gain, leak
    if kind == "CubaLIF":
        zero_reset()
        if np.any(array("v_leak") != 0):
            raise ValueError(f"node {name!r} (CubaLIF): a non-zero v_leak has no equivalent in the library's CubaLIF")
        tau_syn, tau_mem = array("tau_syn"), array("tau_mem")
        w_in = np.broadcast_to(array("w_in") if np.ndim(node.w_in) else float(node.w_in), tau_mem.shape)
        alpha, beta = 1.0 - dt / tau_syn, 1.0 - dt / tau_mem
        gain = (dt * w_in / tau_syn) * (dt * array("r") / tau_mem)
        config = {"alpha": alpha.tolist(), "beta": beta.tolist(), "threshold": array("v_threshold").tolist()}
        config["reset"] = "zero"
        return "cuba_lif", config, gain, np.zeros_like(gain)
    raise ValueError(
        f"node {name!r} ({kind}): not supported by import_nir "
        "(supported: Affine/Linear, Conv2d, Flatten, Delay, LIF, CubaLIF, LI)"
    )


class NIRImport:
    """A NIR graph being read: `nodes` (name -> node), `successors` and `predecessors`
    (name -> names) and the step `dt` (seconds).

    Layers are read one after another from the *frontier*, the list of (node name, output
    shape) whose outputs, concatenated, are the next layer's input.
    """

    def __init__(self, graph, dt: float):
        self.dt = float(dt)
        self.nodes = dict(graph.nodes)
        self.successors: Dict[str, List[str]] = {n: [] for n in self.nodes}
        self.predecessors: Dict[str, List[str]] = {n: [] for n in self.nodes}
        for source, target in graph.edges:
            for end in (source, target):
                if end not in self.nodes:
                    raise ValueError(f"edge ({source!r}, {target!r}) names the node {end!r}, which the graph lacks")
            self.successors[source].append(target)
            self.predecessors[target].append(source)

    def kind(self, name: str) -> str:
        return _kind(self.nodes[name])

    def neuron(self, name: str):
        """(layer kind: "lif" | "cuba_lif" | "readout", neuron config, gain [units], leak
        [units]) of a neuron node: its input weights and biases times the gain, plus the
        leak, are the library's (module docstring)."""
        return _neuron_config(name, self.nodes[name], self.dt)

    def synapse(self, name: str) -> Tuple[np.ndarray, np.ndarray]:
        """(weight [in, out], bias [out]) of an Affine or Linear node."""
        node = self.nodes[name]
        if _kind(node) not in ("Affine", "Linear"):
            raise ValueError(f"node {name!r} ({_kind(node)}): import_nir expects an Affine or Linear synapse here")
        weight = np.asarray(node.weight, np.float32)
        if weight.ndim != 2:
            raise ValueError(f"node {name!r}: weight must be [out, in], got shape {weight.shape}")
        bias = np.asarray(getattr(node, "bias", np.zeros(weight.shape[0])), np.float32)
        return weight.T.copy(), np.broadcast_to(bias, (weight.shape[0],)).copy()

    def delayed(self, neuron: str) -> List[Tuple[str, str, str]]:
        """(source neuron, Delay node, synapse) of every input of `neuron` that passes a
        Delay node: the one-step-delayed edges of a graph layer."""
        found = []
        for synapse in self.predecessors[neuron]:
            delays = [p for p in self.predecessors[synapse] if self.kind(p) == "Delay"]
            if not delays:
                continue
            delay = _single(self.predecessors[synapse], "input (a Delay node)", synapse)
            source = _single(self.predecessors[delay], "input", delay)
            found.append((source, delay, synapse))
        return found

    def check_one_step(self, delay: str) -> None:
        """An error unless the Delay node `delay` delays by one step (`dt`)."""
        values = np.asarray(self.nodes[delay].delay, np.float64)
        if not np.allclose(values, self.dt, rtol=1e-5):
            raise ValueError(
                f"node {delay!r} (Delay): delays of {sorted(set(values.ravel().tolist()))} s are not supported; "
                f"only one step (dt = {self.dt} s)"
            )

    def projection(self, frontier, synapses: Sequence[str], target: str) -> Tuple[np.ndarray, np.ndarray]:
        """(kernel [sum of the frontier sizes, out], bias [out]) of the synapses `synapses`
        into `target`, each from one frontier node, in the library's layout; the biases sum."""
        offsets, offset = {}, 0
        for name, shape in frontier:
            offsets[name], offset = (offset, int(np.prod(shape))), offset + int(np.prod(shape))
        kernel, bias = None, None
        for synapse in synapses:
            source = _single(self.predecessors[synapse], "input", synapse)
            if source not in offsets:
                raise ValueError(
                    f"node {synapse!r}: its input {source!r} is not an output of the layer before {target!r}"
                )
            weight, b = self.synapse(synapse)
            start, size = offsets[source]
            if weight.shape[0] != size:
                raise ValueError(f"node {synapse!r}: weight takes {weight.shape[0]} inputs, {source!r} gives {size}")
            order = _flatten_order(self.nodes[source])
            if order is not None:  # NIR flattened [C, H, W]; the Reshape flattens [H, W, C]
                reordered = np.empty_like(weight)
                reordered[order] = weight
                weight = reordered
            if kernel is None:
                kernel, bias = np.zeros((offset, weight.shape[1]), np.float32), np.zeros(weight.shape[1], np.float32)
            kernel[start : start + size] += weight
            bias += b
        return kernel, bias

    def next_nodes(self, frontier) -> List[str]:
        """The nodes the frontier feeds, without Delay nodes (a graph layer's own edges) and
        self-recurrent synapses (whose only input and output is the same neuron)."""
        found = []
        for name, _ in frontier:
            for node in self.successors[name]:
                loop = self.predecessors[node] == [name] and self.successors[node] == [name]
                if self.kind(node) != "Delay" and not loop and node not in found:
                    found.append(node)
        return found


def _layer_name(neuron: str):
    return neuron[: -len(".neuron")] if neuron.endswith(".neuron") else None


def _import_conv(reader: NIRImport, synapse: str, neuron: str, x, frontier):
    """(output, SNNConv2D layer, frontier) of a Conv2d -> LIF/CubaLIF pair."""
    from .layers import SNNConv2D

    conv = reader.nodes[synapse]
    weight = np.asarray(conv.weight, np.float32)  # [out, in, kh, kw]
    if int(conv.groups) != 1:
        raise ValueError(f"node {synapse!r} (Conv2d): groups={conv.groups} is not supported (only 1)")
    kind, config, gain, leak = reader.neuron(neuron)
    if kind == "readout":
        raise ValueError(f"node {neuron!r} (LI): a convolutional readout is not supported")
    if len(frontier) != 1 or len(frontier[0][1]) != 3:
        raise ValueError(f"node {synapse!r} (Conv2d): its input must be maps [C, H, W], not vectors")
    _, h, w = frontier[0][1]
    strides = tuple(int(v) for v in np.broadcast_to(conv.stride, (2,)))
    dilation = tuple(int(v) for v in np.broadcast_to(conv.dilation, (2,)))
    if dilation != (1, 1):
        raise ValueError(f"node {synapse!r} (Conv2d): dilation={dilation} is not supported (SNNConv2D has none)")
    kernel_size = weight.shape[2:]
    padding = conv.padding
    if not isinstance(padding, str):
        pads = tuple(int(v) for v in np.broadcast_to(padding, (2,)))
        if pads == (0, 0):
            padding = "valid"
        else:
            same = []
            for size, k, s, d in zip((h, w), kernel_size, strides, dilation):
                out = -(-size // s)
                same.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
            if [2 * p for p in pads] != same:
                raise ValueError(
                    f"node {synapse!r} (Conv2d): padding {pads} is neither 'valid' nor the symmetric 'same' of "
                    f"Keras for input {h} x {w}"
                )
            padding = "same"
    layer = SNNConv2D(
        weight.shape[0],
        tuple(kernel_size),
        strides=strides,
        padding=padding,
        neuron={"class_name": kind, "config": config},
        name=_layer_name(neuron),
    )
    x = layer(x)
    layer.conv.kernel.assign(weight.transpose(2, 3, 1, 0) * gain[None, None, None, :].astype(np.float32))
    bias = np.asarray(conv.bias, np.float32) if getattr(conv, "bias", None) is not None else np.zeros(weight.shape[0])
    layer.conv.bias.assign((np.broadcast_to(bias, (weight.shape[0],)) * gain + leak).astype(np.float32))
    out_h, out_w, filters = (int(d) for d in x.shape[2:])
    return x, layer, [(neuron, (filters, out_h, out_w))]


def _import_dense(reader: NIRImport, synapses: List[str], neuron: str, x, frontier):
    """(output, SNNDense or LeakyReadout layer, frontier) of the synapses from the frontier
    into `neuron` (and its self-recurrent synapse, if any)."""
    kind, config, gain, leak = reader.neuron(neuron)
    kernel, bias = reader.projection(frontier, synapses, neuron)
    others = [p for p in reader.predecessors[neuron] if p not in synapses]
    recurrent = None
    if others:
        recurrent = _single(others, "recurrent synapse", neuron)
        if reader.predecessors[recurrent] != [neuron]:
            raise ValueError(f"node {recurrent!r}: a recurrent synapse must take the spikes of {neuron!r} only")
    units = kernel.shape[1]
    if kind == "readout":
        if recurrent is not None:
            raise ValueError(f"node {neuron!r} (LI): a recurrent readout is not supported")
        layer = LeakyReadout(units, beta=config["beta"], name=_layer_name(neuron))
    else:
        layer = SNNDense(
            units,
            neuron={"class_name": kind, "config": config},
            self_recurrent=recurrent is not None,
            name=_layer_name(neuron),
        )
    x = layer(x)
    layer.cell.kernel.assign(kernel * gain[None, :].astype(np.float32))
    if recurrent is not None:
        recurrent_weight, recurrent_bias = reader.synapse(recurrent)
        bias = bias + recurrent_bias
        layer.cell.recurrent_kernel.assign(recurrent_weight * gain[None, :].astype(np.float32))
    layer.cell.bias.assign((bias * gain + leak).astype(np.float32))
    return x, layer, [(neuron, (units,))]


def import_nir(graph, dt: float = None):
    """A Keras model (input [batch, time, features] -> SNNDense ... -> LeakyReadout, or
    [batch, time, H, W, C] -> SNNConv2D ... -> Reshape -> SNNDense ... -> LeakyReadout;
    neurons with Delay synapses become a GraphSNN, with snns_as_gnn imported) from a
    `nir.NIRGraph` (or a path to a NIR file) laid out as `export_nir` writes it; `dt`
    defaults to the graph's ``metadata["dt"]``, else `DEFAULT_DT`."""
    nir = _nir()
    if isinstance(graph, (str, bytes)) or hasattr(graph, "__fspath__"):
        graph = nir.read(graph)
    if dt is None:
        dt = float(graph.metadata.get("dt", DEFAULT_DT)) if getattr(graph, "metadata", None) else DEFAULT_DT
    reader = NIRImport(graph, dt)
    inputs = [n for n in reader.nodes if reader.kind(n) == "Input"]
    start = _single(inputs, "Input node", "graph")
    input_shape = tuple(int(d) for d in np.asarray(reader.nodes[start].input_type["input"]).ravel())
    if len(input_shape) == 3:
        c, h, w = input_shape
        x_in = keras.Input((None, h, w, c), name="frames")
    else:
        input_shape = (int(np.prod(input_shape)),)
        x_in = keras.Input((None, input_shape[0]), name="spikes")
    x, frontier, layers = x_in, [(start, input_shape)], []
    while True:
        following = reader.next_nodes(frontier)
        kinds = [reader.kind(n) for n in following]
        if layers and isinstance(layers[-1], LeakyReadout):
            if kinds != ["Output"]:
                raise ValueError(f"node {frontier[0][0]!r} (LI): import_nir expects the readout to be the last node")
            break
        if not following or "Output" in kinds:
            raise ValueError("import_nir needs a graph that ends with Affine -> LI (a leaky readout) -> Output")
        if kinds == ["Flatten"]:
            (source, shape) = frontier[0]
            if len(frontier) != 1 or len(shape) != 3:
                raise ValueError(f"node {following[0]!r} (Flatten): nothing to flatten, the spikes are already vectors")
            x = keras.layers.Reshape((-1, int(np.prod(shape))), name=following[0].replace(".", "_"))(x)
            frontier = [(following[0], (int(np.prod(shape)),))]
            continue
        if kinds == ["Conv2d"]:
            neuron = _single(reader.successors[following[0]], "neuron after the synapse", following[0])
            x, layer, frontier = _import_conv(reader, following[0], neuron, x, frontier)
            layers.append(layer)
            continue
        targets = []
        for synapse, kind in zip(following, kinds):
            if kind not in ("Affine", "Linear"):
                raise ValueError(
                    f"node {synapse!r} ({kind}): not supported by import_nir here "
                    "(supported: Affine/Linear, Conv2d, Flatten, Delay, LIF, CubaLIF, LI)"
                )
            target = _single(reader.successors[synapse], "neuron after the synapse", synapse)
            if target not in targets:
                targets.append(target)
        if len(targets) == 1 and not reader.delayed(targets[0]):
            x, layer, frontier = _import_dense(reader, following, targets[0], x, frontier)
        else:
            if not _GRAPH_IMPORTERS:
                raise ValueError(
                    f"nodes {targets}: a layer of several neurons or with Delay synapses is a GraphSNN; "
                    "import snns_as_gnn first"
                )
            x, layer, frontier = _GRAPH_IMPORTERS[0](reader, frontier, x, targets)
        layers.append(layer)
    return keras.Model(x_in, x, name="nir_snn")
