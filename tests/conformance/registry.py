"""The conformance registry: every public layer and cell of the three packages, once, as a
small instance with inputs and its reference implementation. `test_conformance.py` runs the
same checks over all of them (config round trip, .keras and .h5 save/load, reference outputs
and gradients in float32 and float64, masks, mixed precision); a test fails when a public
layer or cell is missing here.

A case's `make(dtype)` builds the layer under test (a cell inside ``keras.layers.RNN``);
`inputs(rng, dtype)` its call inputs; `reference(layer, inputs)` returns ``(fn, weights)``: a
function of the same inputs computing the same outputs another way (the reference
implementation), with the same weights as `layer`, and its variables in the order of
``layer.trainable_weights``; `canonical(outputs)` turns the layer's outputs into one dense
tensor (sparse spikes are scattered) that both sides are compared and differentiated on.
"""

from typing import Callable, List, NamedTuple, Optional

import numpy as np
import tensorflow as tf

import dense_snns as ds
import sparse_snns as sp
from dense_snns import keras, neurons
from snns_as_gnn import GraphSNN, GraphSNNCell, SNNGraph

B, T, F, N = 3, 9, 5, 6


class Case(NamedTuple):
    name: str
    cls: type  # the public class this case covers
    make: Callable  # make(dtype) -> layer
    inputs: Callable  # inputs(rng, dtype) -> call inputs
    reference: Callable  # reference(layer, inputs) -> (fn, weights aligned with layer.trainable_weights)
    canonical: Callable = lambda outputs: outputs
    exact: bool = True  # outputs are spikes: equal, not only close
    masks: bool = False  # takes a [batch, time] mask
    float64: bool = True
    mixed: bool = True  # runs under the mixed_float16 policy
    rtol: float = 1e-5  # of the gradients (float32; float64 uses 1e-10)


def raster(rng, dtype, shape=(B, T, F), p=0.4):
    return tf.cast(tf.constant((rng.random(shape) < p).astype(np.float32)), dtype)


def currents(rng, dtype, units=N):
    return tf.constant(rng.normal(0.5, 0.8, (B, T, units)).astype(dtype))


def init(seed, mean=0.3, std=0.6):
    return keras.initializers.RandomNormal(mean, std, seed=seed)


def recurrent_init(seed):
    """A seeded orthogonal recurrent kernel (the layers' default initializer draws a new one
    in every process: each run would check another instance)."""
    return keras.initializers.Orthogonal(seed=seed)


def rnn(cell, dtype):
    return keras.layers.RNN(cell, return_sequences=True, zero_output_for_mask=True, dtype=dtype)


def same_weights(reference, layer, inputs):
    """`reference` (a layer with the layout of `layer`) built on `inputs`, with `layer`'s weights."""
    reference(inputs)
    reference.set_weights(layer.get_weights())
    return reference, reference.trainable_weights


def loop_of_model(model, params_of):
    """The reference of a neuron cell: its model's pure step in a Python loop (plain autodiff)."""

    def reference(layer, inputs):
        cell = layer.cell

        def fn(x):
            state = model.State(*[tf.zeros_like(x[:, 0]) for _ in model.states])
            params = params_of(cell, x.dtype)
            outputs = []
            for t in range(x.shape[1]):
                spikes, state = model.step(x[:, t], state, params)
                outputs.append(spikes)
            return tf.stack(outputs, axis=1)

        return fn, layer.trainable_weights

    return reference


def neuron_cell_cases() -> List[Case]:
    cases = []
    for model in neurons.MODELS.values():
        cls = ds.cell_class(model)
        trained = [p.name for p in model.params if p.trainable][:2]

        def make(dtype, cls=cls, trained=trained):
            kwargs = {"threshold": 0.5} if "threshold" in cls.model.param_specs else {}
            return rnn(cls(N, trainable_params=trained, dtype=dtype, **kwargs), dtype)

        cases.append(
            Case(
                f"cell_{model.name}",
                cls,
                make,
                currents,
                loop_of_model(model, lambda cell, dtype: cell.params(dtype)),
                exact=model.spiking,
                masks=True,
            )
        )
    return cases


def snn_block_reference(layer, inputs):
    block = layer.cell

    def fn(x):
        states = [tf.zeros([x.shape[0], N], x.dtype)] * len(block.state_size)
        outputs = []
        for t in range(x.shape[1]):
            current = tf.matmul(x[:, t], block.kernel) + block.bias
            spikes, states, _ = block.model.block_update(
                current, states, block.neuron.params(x.dtype), block.recurrent_kernel
            )
            outputs.append(spikes)
        return tf.stack(outputs, axis=1)

    return fn, layer.trainable_weights


def readout_cell_reference(layer, inputs):
    cell = layer.cell

    def fn(x):
        v, outputs = tf.zeros([x.shape[0], cell.units], x.dtype), []
        for t in range(x.shape[1]):
            v = cell.neuron.param("beta", x.dtype) * v + tf.matmul(x[:, t], cell.kernel) + cell.bias
            outputs.append(v)
        return tf.stack(outputs, axis=1)

    return fn, layer.trainable_weights


def dense_cases() -> List[Case]:
    def snn_dense(dtype, neuron="cuba_lif", self_recurrent=True, input_sparsity="auto"):
        return ds.SNNDense(
            N,
            neuron={"class_name": neuron, "config": {"threshold": 0.5, "trainable_threshold": True}},
            self_recurrent=self_recurrent,
            kernel_initializer=init(1),
            recurrent_initializer=recurrent_init(21),
            bias_initializer=init(2, 0.0, 0.2),
            input_sparsity=input_sparsity,
            dtype=dtype,
        )

    def leaky_readout(dtype, input_sparsity="auto"):
        return ds.LeakyReadout(
            4, beta=0.8, trainable_decay=True, bias_initializer=init(4), input_sparsity=input_sparsity, dtype=dtype
        )

    def reference_rnn(layer, inputs):
        cell = ds.SNNBlock.from_config(layer.cell.get_config())
        return same_weights(rnn(cell, layer.dtype_policy), layer, inputs)

    def conv_reference(layer, inputs):
        config = dict(layer.get_config(), implementation="reference", name="reference")
        return same_weights(type(layer).from_config(config), layer, inputs)

    def leaky_readout_reference(layer, inputs):
        cell = ds.LeakyReadoutCell.from_config(layer.cell.get_config())
        return same_weights(rnn(cell, layer.dtype_policy), layer, inputs)

    def conv(cls):
        def make(dtype):
            neuron = {"class_name": "lif", "config": {"threshold": 0.4, "trainable_decays": True}}
            return cls(4, 3, padding="same", neuron=neuron, kernel_initializer=init(3), dtype=dtype)

        return make

    return [
        Case("snn_block", ds.SNNBlock, lambda d: rnn(ds.SNNBlock(N, self_recurrent=True, kernel_initializer=init(1),
                                                                  recurrent_initializer=recurrent_init(22),
                                                                  bias_initializer=init(2, 0.0, 0.2), dtype=d), d),
             raster, snn_block_reference, masks=True),
        Case("leaky_readout_cell", ds.LeakyReadoutCell,
             lambda d: rnn(ds.LeakyReadoutCell(4, beta=[0.5, 0.7, 0.8, 0.9], trainable_decay=True, dtype=d), d),
             raster, readout_cell_reference, exact=False, masks=True),
        Case("snn_dense", ds.SNNDense, snn_dense, raster, reference_rnn, masks=True),
        Case("snn_dense_lif_kernel", ds.SNNDense, lambda d: snn_dense(d, "lif", False), raster, reference_rnn,
             masks=True),
        Case("snn_dense_cuba_kernel", ds.SNNDense, lambda d: snn_dense(d, self_recurrent=False), raster,
             reference_rnn, masks=True),
        # The event-driven input product (C++ kernels: float32 and float64, no float16).
        Case("snn_dense_events", ds.SNNDense, lambda d: snn_dense(d, input_sparsity="events"), raster,
             reference_rnn, masks=True, mixed=False),
        Case("snn_conv1d", ds.SNNConv1D, conv(ds.SNNConv1D),
             lambda rng, d: raster(rng, d, (B, T, 8, 2)), conv_reference, masks=True),
        Case("snn_conv2d", ds.SNNConv2D, conv(ds.SNNConv2D),
             lambda rng, d: raster(rng, d, (B, T, 6, 6, 2)), conv_reference, masks=True),
        Case("leaky_readout", ds.LeakyReadout, leaky_readout, raster, leaky_readout_reference, exact=False,
             masks=True),
        Case("leaky_readout_events", ds.LeakyReadout, lambda d: leaky_readout(d, "events"), raster,
             leaky_readout_reference, exact=False, masks=True, mixed=False),
        Case("spike_monitor", ds.SpikeMonitor, lambda d: ds.SpikeMonitor(dtype=d), raster,
             lambda layer, inputs: (lambda x: x, layer.trainable_weights)),
    ]  # fmt: skip


def sparse_spikes(rng, dtype, n=F, k=F, shape=(B, T)):
    values = (rng.random(shape + (n,)) < 0.4) * rng.uniform(0.5, 1.5, shape + (n,))
    return list(sp.from_dense(tf.constant(values.astype(dtype)), k))


def scattered(n):
    return lambda outputs: sp.to_dense(sp.SparseSpikes(*outputs), n)


def sparse_cases() -> List[Case]:
    def sparse_dense_pair(dtype, neuron="lif", self_recurrent=True):
        return sp.SparseSNNDense(
            N,
            input_dim=F,
            capacity=N,
            neuron={"class_name": neuron, "config": {"threshold": 0.5}},
            self_recurrent=self_recurrent,
            kernel_initializer=init(5),
            recurrent_initializer=recurrent_init(23),
            bias_initializer=init(6, 0.0, 0.2),
            dtype=dtype,
        )

    def sparse_dense_reference(layer, inputs):
        neuron = ds.cell_class(layer.neuron.model.name).from_config(layer.neuron.get_config())
        dense = ds.SNNDense(N, neuron=neuron, self_recurrent=layer.self_recurrent, dtype=layer.dtype_policy)
        dense(tf.zeros([1, 2, F], layer.compute_dtype))
        dense.cell.kernel.assign(layer.synapse.kernel)
        dense.cell.bias.assign(layer.synapse.bias)
        by_name = {"kernel": dense.cell.kernel, "bias": dense.cell.bias}
        if layer.self_recurrent:
            dense.cell.recurrent_kernel.assign(layer.recurrent_kernel)
            by_name["recurrent_kernel"] = dense.cell.recurrent_kernel
        weights = [by_name[w.name.split("/")[-1].split(":")[0]] for w in layer.trainable_weights]
        return (lambda inputs: dense(sp.to_dense(sp.SparseSpikes(*inputs), F))), weights

    def sparse_linear_reference(layer, inputs):
        def fn(inputs):
            return tf.tensordot(sp.to_dense(sp.SparseSpikes(*inputs), F), layer.kernel, axes=1) + layer.bias

        return fn, layer.trainable_weights

    def sparse_block_reference(layer, inputs):
        block = layer.cell
        dense = ds.SNNBlock(
            N, neuron=ds.cell_class("lif").from_config(block.neuron.get_config()), dtype=layer.dtype_policy
        )
        reference = rnn(dense, layer.dtype_policy)
        reference(tf.zeros([1, 2, F], layer.compute_dtype))
        dense.kernel.assign(block.synapse.kernel)
        dense.bias.assign(block.synapse.bias)

        def fn(packed):
            return reference(sp.to_dense(sp.unpack_spikes(packed, F), F))

        return fn, [dense.kernel, dense.bias]

    def sparse_readout_reference(layer, inputs):
        config = {key: value for key, value in layer.get_config().items() if key not in ("input_dim", "product")}
        dense = ds.LeakyReadout.from_config(dict(config, name="reference"))
        reference, weights = same_weights(dense, layer, tf.zeros([1, 2, F], layer.compute_dtype))
        return (lambda inputs: reference(sp.to_dense(sp.SparseSpikes(*inputs), F))), weights

    def packed(rng, dtype):
        return sp.pack_spikes(sp.SparseSpikes(*sparse_spikes(rng, dtype)))

    return [
        Case("sparse_linear", sp.SparseLinear, lambda d: sp.SparseLinear(N, input_dim=F, bias_initializer=init(7), dtype=d),
             sparse_spikes, sparse_linear_reference, exact=False),
        Case("sparse_snn_dense", sp.SparseSNNDense, sparse_dense_pair, sparse_spikes, sparse_dense_reference,
             canonical=scattered(N), masks=True),
        # CuBa-LIF without self-recurrence: the selecting C++ kernels (float32 and float64)
        Case("sparse_snn_dense_kernel", sp.SparseSNNDense, lambda d: sparse_dense_pair(d, "cuba_lif", False),
             sparse_spikes, sparse_dense_reference, canonical=scattered(N), masks=True),
        Case("sparse_snn_block", sp.SparseSNNBlock,
             lambda d: rnn(sp.SparseSNNBlock(N, input_dim=F, capacity=N, input_capacity=F, neuron=ds.LIF(N, threshold=0.5, dtype=d),
                                             kernel_initializer=init(8), bias_initializer=init(9, 0.0, 0.2), dtype=d), d),
             packed, sparse_block_reference, canonical=lambda out: sp.to_dense(sp.unpack_spikes(out, N), N), masks=True),
        Case("sparse_to_dense", sp.SparseToDense, lambda d: sp.SparseToDense(F, dtype=d), sparse_spikes,
             lambda layer, inputs: ((lambda x: sp.to_dense(sp.SparseSpikes(*x), F, implementation="compiled")), []),
             exact=False),
        Case("sparse_leaky_readout", sp.SparseLeakyReadout,
             lambda d: sp.SparseLeakyReadout(4, input_dim=F, trainable_decay=True, bias_initializer=init(10), dtype=d),
             sparse_spikes, sparse_readout_reference, exact=False),
    ]  # fmt: skip


def graph(capacity=None):
    return SNNGraph.from_adjacency(
        [[1], [0, 2], [1, 2]],
        units=[4, 3, 5],
        inputs=[0],
        outputs=[2, 1],
        neuron_config={"threshold": 0.4},
        capacity=capacity,
    )


def graph_cases() -> List[Case]:
    def make_graph(dtype):
        return GraphSNN(graph(), kernel_initializer=init(11), bias_initializer=init(12, 0.0, 0.2), dtype=dtype)

    def graph_reference(layer, inputs):
        config = dict(layer.get_config(), implementation="reference", name="reference")
        return same_weights(GraphSNN.from_config(config), layer, inputs)

    def cell_reference(layer, inputs):
        reference = GraphSNN(graph(), implementation="reference", dtype=layer.dtype_policy)
        return same_weights(reference, layer, inputs)

    def make_sparse_graph(dtype):
        # every node sparse, of a capacity as large as the node: every neuron selected (the dense results)
        return GraphSNN(graph([4, 3, 5]), kernel_initializer=init(11), bias_initializer=init(12, 0.0, 0.2), dtype=dtype)

    def dense_graph_reference(layer, inputs):
        dense = graph()
        config = dict(layer.get_config(), graph=dense.to_dict(), implementation="reference", name="reference")
        return same_weights(GraphSNN.from_config(config), layer, inputs)

    return [
        Case("graph_snn", GraphSNN, make_graph, raster, graph_reference, masks=True),
        Case("graph_snn_sparse_nodes", GraphSNN, make_sparse_graph, raster, dense_graph_reference, masks=True),
        Case("graph_snn_cell", GraphSNNCell,
             lambda d: rnn(GraphSNNCell(graph(), kernel_initializer=init(11), bias_initializer=init(12, 0.0, 0.2), dtype=d), d),
             raster, cell_reference, masks=True),
    ]  # fmt: skip


CASES: List[Case] = neuron_cell_cases() + dense_cases() + sparse_cases() + graph_cases()


def case(name: str) -> Optional[Case]:
    return {c.name: c for c in CASES}.get(name)
