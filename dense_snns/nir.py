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
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from .compat import keras
from .layers import SNNDense
from .readouts import LeakyReadout

__all__ = ["DEFAULT_DT", "export_nir", "import_nir", "write_nir"]

#: Seconds per step of the discrete model (snnTorch's NIR convention).
DEFAULT_DT = 1e-4

#: Neuron models exported, by the library's name.
_EXPORTED = ("lif", "cuba_lif")


def _nir():
    try:
        import nir
    except ImportError:
        raise ImportError("NIR interchange needs the nir package: pip install .[nir] (or pip install nir)") from None
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
    Reshape that flattens its maps, first), then the final readout; spike monitors and
    sparse-to-dense conversions, which do not change spikes, are skipped."""
    chain = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer) or kind in ("SpikeMonitor", "SparseToDense"):
            continue
        flatten = kind == "Reshape" and chain and type(chain[-1]).__name__ == "SNNConv2D"
        if kind not in _SPIKING + _READOUTS + ("SNNConv2D",) and not flatten:
            raise ValueError(
                f"layer {layer.name!r} ({kind}): export_nir takes chains of SNNConv2D (then a Reshape that "
                "flattens), SNNDense or SparseSNNDense layers and a final LeakyReadout or SparseLeakyReadout"
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


def export_nir(model, dt: float = DEFAULT_DT):
    """The `nir.NIRGraph` of `model` (input [batch, time, features] -> SNNDense ... ->
    LeakyReadout; or [batch, time, H, W, C] -> SNNConv2D ... -> Reshape -> SNNDense ... ->
    LeakyReadout; sparse layers written as their dense equivalents), its parameters mapped
    with step `dt` seconds (see the module docstring)."""
    nir = _nir()
    if not dt > 0:
        raise ValueError(f"dt must be a positive number of seconds, got dt={dt!r}")
    chain = _chain(model)
    edges: List[Tuple[str, str]] = []
    if type(chain[0]).__name__ == "SNNConv2D":
        h, w, c = (int(d) for d in chain[0].input.shape[2:])
        maps = (h, w, c)  # the current [H, W, C] of the spikes, until flattened
        input_type = np.array([c, h, w])
    else:
        maps, input_type = None, np.array([int(_parts(chain[0])[0].shape[0])])
    nodes: Dict[str, object] = {"input": nir.Input(input_type={"input": input_type})}
    previous, order = "input", None
    for layer in chain:
        kind = type(layer).__name__
        synapse, neuron = f"{layer.name}.synapse", f"{layer.name}.neuron"
        if kind == "Reshape":
            h, w, c = maps
            nodes[f"{layer.name}.flatten"] = nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0)
            edges.append((previous, f"{layer.name}.flatten"))
            previous, order, maps = f"{layer.name}.flatten", _chw_order(h, w, c), None
            continue
        if kind == "SNNConv2D":
            conv = layer.conv
            h, w, _ = maps
            out_h, out_w, filters = (int(d) for d in layer.output.shape[2:])
            kernel = np.asarray(conv.kernel, np.float32).transpose(3, 2, 0, 1)  # [out, in, kh, kw]
            bias = np.asarray(conv.bias, np.float32) if conv.use_bias else np.zeros(filters, np.float32)
            nodes[synapse] = nir.Conv2d(
                input_shape=(h, w),
                weight=kernel,
                stride=tuple(conv.strides),
                padding=_conv_padding(layer, (h, w)),
                dilation=tuple(conv.dilation_rate),
                groups=1,
                bias=bias,
            )
            nodes[neuron] = _neuron_nodes(nir, layer.name, layer.neuron, False, dt, spatial=(out_h, out_w))
            edges += [(previous, synapse), (synapse, neuron)]
            previous, maps = neuron, (out_h, out_w, filters)
            continue
        kernel, bias, recurrent_kernel, neuron_cell, readout = _parts(layer)
        weight = np.asarray(kernel).T.astype(np.float32)  # NIR: [out, in]
        if order is not None:  # the first dense layer after a flatten: NIR flattens [C, H, W]
            weight, order = weight[:, order], None
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32)
        nodes[synapse] = nir.Affine(weight=weight, bias=bias)
        nodes[neuron] = _neuron_nodes(nir, layer.name, neuron_cell, readout, dt)
        edges += [(previous, synapse), (synapse, neuron)]
        if recurrent_kernel is not None:
            recurrent = f"{layer.name}.recurrent"
            nodes[recurrent] = nir.Linear(weight=np.asarray(recurrent_kernel).T.astype(np.float32))
            edges += [(neuron, recurrent), (recurrent, neuron)]
        previous = neuron
    nodes["output"] = nir.Output(output_type={"output": np.array([int(chain[-1].units)])})
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "source": "dense_snns"})


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


def _synapse(nodes, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """(weight [in, out], bias [out]) of an Affine or Linear node."""
    node = nodes[name]
    if _kind(node) not in ("Affine", "Linear"):
        raise ValueError(f"node {name!r} ({_kind(node)}): import_nir expects an Affine or Linear synapse here")
    weight = np.asarray(node.weight, np.float32)
    if weight.ndim != 2:
        raise ValueError(f"node {name!r}: weight must be [out, in], got shape {weight.shape}")
    bias = np.asarray(getattr(node, "bias", np.zeros(weight.shape[0])), np.float32)
    return weight.T.copy(), np.broadcast_to(bias, (weight.shape[0],)).copy()


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
        "(supported: Affine/Linear, Conv2d, Flatten, LIF, CubaLIF, LI)"
    )


def _import_conv(nodes, synapse: str, neuron: str, x, maps, dt: float):
    """(output, SNNConv2D layer, output maps [H', W', C']) of a Conv2d -> LIF/CubaLIF pair."""
    from .layers import SNNConv2D

    conv = nodes[synapse]
    weight = np.asarray(conv.weight, np.float32)  # [out, in, kh, kw]
    if int(conv.groups) != 1:
        raise ValueError(f"node {synapse!r} (Conv2d): groups={conv.groups} is not supported (only 1)")
    kind, config, gain, leak = _neuron_config(neuron, nodes[neuron], dt)
    if kind == "readout":
        raise ValueError(f"node {neuron!r} (LI): a convolutional readout is not supported")
    h, w, _ = maps
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
    name = neuron[: -len(".neuron")] if neuron.endswith(".neuron") else None
    layer = SNNConv2D(
        weight.shape[0],
        tuple(kernel_size),
        strides=strides,
        padding=padding,
        neuron={"class_name": kind, "config": config},
        name=name,
    )
    x = layer(x)
    layer.conv.kernel.assign(weight.transpose(2, 3, 1, 0) * gain[None, None, None, :].astype(np.float32))
    bias = np.asarray(conv.bias, np.float32) if getattr(conv, "bias", None) is not None else np.zeros(weight.shape[0])
    layer.conv.bias.assign((np.broadcast_to(bias, (weight.shape[0],)) * gain + leak).astype(np.float32))
    out_h, out_w, filters = (int(d) for d in x.shape[2:])
    return x, layer, (out_h, out_w, filters)


def import_nir(graph, dt: float = None):
    """A Keras model (input [batch, time, features] -> SNNDense ... -> LeakyReadout, or
    [batch, time, H, W, C] -> SNNConv2D ... -> Reshape -> SNNDense ... -> LeakyReadout) from
    a `nir.NIRGraph` (or a path to a NIR file) laid out as `export_nir` writes it; `dt`
    defaults to the graph's ``metadata["dt"]``, else `DEFAULT_DT`."""
    nir = _nir()
    if isinstance(graph, (str, bytes)) or hasattr(graph, "__fspath__"):
        graph = nir.read(graph)
    if dt is None:
        dt = float(graph.metadata.get("dt", DEFAULT_DT)) if getattr(graph, "metadata", None) else DEFAULT_DT
    nodes = dict(graph.nodes)
    successors: Dict[str, List[str]] = {n: [] for n in nodes}
    predecessors: Dict[str, List[str]] = {n: [] for n in nodes}
    for source, target in graph.edges:
        for end in (source, target):
            if end not in nodes:
                raise ValueError(f"edge ({source!r}, {target!r}) names the node {end!r}, which the graph lacks")
        successors[source].append(target)
        predecessors[target].append(source)
    inputs = [n for n, node in nodes.items() if _kind(node) == "Input"]
    start = _single(inputs, "Input node", "graph")
    input_type = [int(d) for d in np.asarray(nodes[start].input_type["input"]).ravel()]
    maps = None  # [H, W, C] of the spikes while they are maps
    if len(input_type) == 3:
        c, h, w = input_type
        maps = (h, w, c)
        x_in = keras.Input((None, h, w, c), name="frames")
    else:
        x_in = keras.Input((None, int(np.prod(input_type))), name="spikes")
    x, current, layers, loop, order = x_in, start, [], None, None
    while True:
        synapse = _single([s for s in successors[current] if s != loop], "successor synapse", current)
        if _kind(nodes[synapse]) == "Output":
            break
        if _kind(nodes[synapse]) == "Flatten":
            if maps is None:
                raise ValueError(f"node {synapse!r} (Flatten): nothing to flatten, the spikes are already vectors")
            h, w, c = maps
            x = keras.layers.Reshape((-1, h * w * c), name=synapse.replace(".", "_"))(x)
            current, loop, order, maps = synapse, None, _chw_order(h, w, c), None
            continue
        if _kind(nodes[synapse]) == "Conv2d":
            if maps is None:
                raise ValueError(f"node {synapse!r} (Conv2d): its input must be maps [C, H, W], not vectors")
            neuron = _single(successors[synapse], "neuron after the synapse", synapse)
            x, layer, maps = _import_conv(nodes, synapse, neuron, x, maps, dt)
            layers.append(layer)
            current, loop = neuron, None
            continue
        weight, bias = _synapse(nodes, synapse)
        if order is not None:  # NIR flattened [C, H, W]; the Reshape flattens [H, W, C]
            reordered = np.empty_like(weight)
            reordered[order] = weight
            weight, order = reordered, None
        neuron = _single(successors[synapse], "neuron after the synapse", synapse)
        kind, config, gain, leak = _neuron_config(neuron, nodes[neuron], dt)
        loops = [p for p in predecessors[neuron] if p != synapse]
        recurrent = None
        if loops:
            recurrent = _single(loops, "recurrent synapse", neuron)
            if predecessors[recurrent] != [neuron]:
                raise ValueError(f"node {recurrent!r}: a recurrent synapse must take the spikes of {neuron!r} only")
        units = weight.shape[1]
        name = neuron[: -len(".neuron")] if neuron.endswith(".neuron") else None
        if kind == "readout":
            if recurrent is not None:
                raise ValueError(f"node {neuron!r} (LI): a recurrent readout is not supported")
            layer = LeakyReadout(units, beta=config["beta"], name=name)
        else:
            layer = SNNDense(
                units, neuron={"class_name": kind, "config": config}, self_recurrent=recurrent is not None, name=name
            )
        x = layer(x)
        layer.cell.kernel.assign(weight * gain[None, :].astype(np.float32))
        layer.cell.bias.assign((bias * gain + leak).astype(np.float32))
        if recurrent is not None:
            recurrent_weight, recurrent_bias = _synapse(nodes, recurrent)
            if np.any(recurrent_bias != 0):
                raise ValueError(f"node {recurrent!r}: a recurrent synapse with a bias is not supported")
            layer.cell.recurrent_kernel.assign(recurrent_weight * gain[None, :].astype(np.float32))
        layers.append(layer)
        rest = [s for s in successors[neuron] if s != recurrent]
        current, loop = neuron, recurrent
        if kind == "readout":
            _single(rest, "Output after the readout", neuron)
            if _kind(nodes[rest[0]]) != "Output":
                raise ValueError(f"node {neuron!r} (LI): import_nir expects the readout to be the last node")
            break
    if not layers or not isinstance(layers[-1], LeakyReadout):
        raise ValueError("import_nir needs a graph that ends with Affine -> LI (a leaky readout) -> Output")
    return keras.Model(x_in, x, name="nir_snn")
