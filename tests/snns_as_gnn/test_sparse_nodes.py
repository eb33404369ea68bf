"""Sparse graph nodes: a node with a `capacity` K selects its spikes into K slots each step and
sends them along its edges as (ids, values, count) into sparse products; only the selected
entries receive gradient. With K = units every neuron is selected and the results equal the
dense graph's (spikes identical, gradients to round-off, the input's included) over random
graphs, masks and neuron models; with a smaller K a node equals a sparse block
(`SparseSNNDense`) followed by the one-step delay of its edges, and overflow is counted. The
C++ kernels and pure TensorFlow (XLA, float16, implementation="compiled"/"reference") agree."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dense_snns import keras
from dense_snns.compat import TF_VERSION
from dense_snns.layers import SNNDense
from helpers import assert_close_to_scale, assert_same_spikes_and_close_gradients, outputs_and_gradients, ramp_loss
from snns_as_gnn import GraphSNN, GraphSNNCell, SNNGraph
from snns_as_gnn import layer as graph_layer
from sparse_snns import SparseSNNDense, SparseSpikes, to_dense
from sparse_snns.linear import PackedKernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_GRAPH = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]


def same_graph(graph, capacity):
    """`graph` with every node's capacity replaced (a list per node, or one value)."""
    spec = graph.to_dict()
    for i, node in enumerate(spec["nodes"]):
        node["capacity"] = capacity[i] if isinstance(capacity, list) else capacity
    return SNNGraph.from_dict(spec)


def pair(graph, capacity, **kwargs):
    """(sparse layer, dense layer) of `graph` with the same weights."""
    init = keras.initializers.RandomNormal(0.1, 0.6, seed=3)
    sparse = GraphSNN(same_graph(graph, capacity), kernel_initializer=init, bias_initializer=init, **kwargs)
    dense = GraphSNN(same_graph(graph, None), kernel_initializer=init, bias_initializer=init, **kwargs)
    return sparse, dense


@pytest.fixture
def products(monkeypatch):
    """The sparse products built (kernel shape [N_in, N_out], implementation, the kernel
    packed once per call), one per sparse node, device and step function built."""
    calls = []
    original = graph_layer.linear_product

    def counted(spikes, kernel, bias, chosen):
        packed = isinstance(kernel, PackedKernel)
        shape = (int(kernel.packed.shape[1]), kernel.n_out) if packed else tuple(kernel.shape)
        calls.append((shape, chosen, packed))
        return original(spikes, kernel, bias, chosen)

    monkeypatch.setattr(graph_layer, "linear_product", counted)
    return calls


@settings(max_examples=10, deadline=None, database=None)
@given(
    nodes=st.integers(2, 4),
    edges=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=8),
    units=st.integers(1, 6),
    sparse=st.lists(st.booleans(), min_size=4, max_size=4),
    neuron=st.sampled_from(["lif", "cuba_lif"]),
    batch=st.integers(1, 3),
    steps=st.integers(1, 6),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
@example(
    nodes=2,
    edges=[(0, 0)],
    units=1,
    sparse=[False, True, False, False],
    neuron="cuba_lif",
    batch=1,
    steps=5,
    masked=False,
    seed=2443,
)
def test_sparse_nodes_equal_dense_nodes(nodes, edges, units, sparse, neuron, batch, steps, masked, seed):
    # In float64: over random graphs a gradient can be a sum of terms ~1e-3 that cancel to ~1e-5,
    # where float32 round-off of the terms (~1e-10) is no longer small against the result (the
    # dense graph runs under XLA, the sparse one does not: another summation order). The fixed
    # cases below compare float32.
    # a path 0 -> 1 -> ... reaches the output; the drawn edges add cycles, skips and self-loops
    adjacency = [
        sorted({s % nodes for s, t in edges if t % nodes == i} | ({i - 1} if i else set())) for i in range(nodes)
    ]
    graph = SNNGraph.from_adjacency(
        adjacency, units=units, inputs=[0], outputs=[nodes - 1], neuron=neuron, neuron_config={"threshold": 0.4}
    )
    capacity = [units if sparse[i] else None for i in range(nodes)]
    rng = np.random.default_rng(seed)
    x = tf.constant((rng.random((batch, steps, 3)) < 0.5).astype(np.float64))
    mask = tf.constant(rng.random((batch, steps)) < 0.8) if masked else None
    sparse_layer, dense_layer = pair(graph, capacity, dtype="float64")
    assert sparse_layer.cell.uses_kernels(tf.float64) == any(c is not None for c in capacity)
    assert_same_spikes_and_close_gradients(
        outputs_and_gradients(sparse_layer, x, mask=mask), outputs_and_gradients(dense_layer, x, mask=mask)
    )


def test_each_sparse_node_runs_one_sparse_product_per_step_into_all_its_targets(products, rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=[4, 5, 6, 7, 8], inputs=[0], outputs=[4], neuron="lif")
    sparse_layer, dense_layer = pair(graph, [None, 5, None, 7, 8])
    x = tf.constant((rng.random((2, 6, 3)) < 0.5).astype(np.float32))
    assert_same_spikes_and_close_gradients(
        outputs_and_gradients(sparse_layer, x), outputs_and_gradients(dense_layer, x)
    )
    # node1 feeds nodes 0, 2, 3 (4 + 6 + 7 units); node3 feeds 1, 3, 4; node4 itself.
    assert sorted(set(products)) == [((5, 17), "kernel", True), ((7, 20), "kernel", True), ((8, 8), "kernel", True)]


@pytest.mark.parametrize("implementation", ["compiled", "reference"])
def test_without_the_kernels_pure_tensorflow_runs_the_same(products, implementation, rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=4, inputs=[0], outputs=[4], neuron="lif")
    sparse_layer, dense_layer = pair(graph, 4, implementation=implementation)
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    assert not sparse_layer.cell.uses_kernels(tf.float32, implementation)
    assert_same_spikes_and_close_gradients(
        outputs_and_gradients(sparse_layer, x), outputs_and_gradients(dense_layer, x)
    )
    assert products and {(chosen, packed) for _, chosen, packed in products} == {("compiled", False)}


@pytest.mark.skipif(
    TF_VERSION < (2, 9), reason="XLA of TensorFlow 2.6 crashes now and then on a step with sparse nodes"
)
def test_under_xla_pure_tensorflow_runs(products, rng):
    # 5 units: a graph no other test compiles (equal graphs share their compiled loops)
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=5, inputs=[0], outputs=[4], neuron="lif")
    sparse_layer, dense_layer = pair(graph, 5)
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    want = dense_layer(x).numpy()
    got = tf.function(sparse_layer, jit_compile=True)(x).numpy()
    np.testing.assert_array_equal(got, want)
    assert {(chosen, packed) for _, chosen, packed in products} == {("compiled", False)}


def test_in_float16_pure_tensorflow_runs(rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=5, inputs=[0], outputs=[4], neuron="lif", capacity=5)
    half = GraphSNN(graph, dtype="mixed_float16")
    assert not half.cell.uses_kernels(tf.float16)
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    assert half(x).dtype == tf.float16


def test_the_cell_steps_like_the_layer(rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=4, inputs=[0], outputs=[4], neuron="lif", capacity=2)
    layer = GraphSNN(graph, kernel_initializer=keras.initializers.RandomNormal(0.1, 0.6, seed=3))
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    want = layer(x).numpy()
    rnn = keras.layers.RNN(GraphSNNCell.from_config(layer.cell.get_config()), return_sequences=True)
    rnn(x)
    rnn.set_weights(layer.get_weights())
    np.testing.assert_array_equal(rnn(x).numpy(), want)
    # node0..node4: LIF (one state) then the previous output: spikes, or the packed selection
    assert layer.cell.state_size == [4, 6] * 5


def chain_and_blocks(capacity, dtype="float32"):
    """A graph a -> b (a: 10 LIF units of `capacity`, b: 6 dense LIF units), and the sparse
    block and dense block it equals once they hold its weights (a's spikes reach b one step
    late)."""
    config = {"threshold": 0.4}
    graph = SNNGraph.from_adjacency(
        [[], [0]], units=[10, 6], inputs=[0], outputs=[1], neuron="lif", neuron_config=config, capacity=[capacity, None]
    )
    init = keras.initializers.RandomNormal(0.3, 0.6, seed=5)
    layer = GraphSNN(graph, kernel_initializer=init, bias_initializer=init, dtype=dtype)
    neuron = {"class_name": "lif", "config": config}
    block_a = SparseSNNDense(10, 5, capacity, neuron=neuron, dtype=dtype)
    block_b = SNNDense(6, neuron=neuron, dtype=dtype)
    return layer, block_a, block_b


def test_a_node_of_small_capacity_is_a_sparse_block_with_a_delay(rng):
    layer, block_a, block_b = chain_and_blocks(capacity=3)
    x = tf.constant((rng.random((3, 9, 5)) < 0.5).astype(np.float32))
    layer(x)
    block_a(x)
    block_b(tf.zeros([3, 9, 10]))
    cell = layer.cell
    block_a.synapse.kernel.assign(cell.input_kernels["node0"])
    block_a.synapse.bias.assign(cell.biases["node0"])
    block_b.cell.kernel.assign(cell.edge_kernels[0])
    block_b.cell.bias.assign(cell.biases["node1"])

    def blocks(x):
        ids, values, count = block_a(x)
        a = to_dense(SparseSpikes(ids, values, count), 10)
        return block_b(tf.pad(a[:, :-1], [[0, 0], [1, 0], [0, 0]]))  # one step late

    weights = [cell.input_kernels["node0"], cell.edge_kernels[0], cell.biases["node0"], cell.biases["node1"]]
    block_weights = [block_a.synapse.kernel, block_b.cell.kernel, block_a.synapse.bias, block_b.cell.bias]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got, want = layer(x), blocks(x)
        got_loss, want_loss = ramp_loss(got), ramp_loss(want)
    np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert got.numpy().sum() > 0
    got_grads = tape.gradient(got_loss, [x] + weights)
    want_grads = tape.gradient(want_loss, [x] + block_weights)
    for g, w in zip(got_grads[1:], want_grads[1:]):
        assert_close_to_scale(g.numpy(), w.numpy(), 1e-5)
    # the input: the sparse block takes it as events (gradient at its spikes only), the graph
    # projects it densely (x W_in): equal at the spikes
    spikes = x.numpy() != 0
    assert_close_to_scale(got_grads[0].numpy()[spikes], want_grads[0].numpy()[spikes], 1e-5)
    # overflow: the spikes that did not fit, counted per sample over the call
    dropped = tf.reduce_sum(block_a.last_dropped, axis=1).numpy()
    assert dropped.sum() > 0
    np.testing.assert_array_equal(layer.last_dropped["node0"].numpy(), dropped)
    assert list(layer.last_dropped) == ["node0"]


def test_overflow_is_a_metric_and_the_kernels_equal_pure_tensorflow(rng):
    x = tf.constant((rng.random((3, 9, 5)) < 0.5).astype(np.float32))
    results = []
    for implementation in ("auto", "compiled"):
        layer, _, _ = chain_and_blocks(capacity=3)
        layer.implementation = implementation
        results.append(outputs_and_gradients(layer, x) + [layer.last_dropped["node0"]])
        assert layer.cell.uses_kernels(tf.float32, implementation) == (implementation == "auto")
    assert_same_spikes_and_close_gradients(results[0][:-1], results[1][:-1])
    np.testing.assert_array_equal(results[0][-1].numpy(), results[1][-1].numpy())

    layer, _, _ = chain_and_blocks(capacity=3)
    layer(x)
    per_step = tf.reduce_mean(tf.cast(layer.last_dropped["node0"], tf.float32)).numpy() / 9
    assert per_step > 0
    model = keras.Sequential([keras.Input((9, 5)), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    logs = model.fit(x, tf.zeros([3, 9, 6]), epochs=1, verbose=0).history
    np.testing.assert_allclose(logs[f"{layer.name}_dropped"][0], per_step, rtol=1e-6)


def test_stateful_sparse_nodes_carry_their_selection(rng):
    layer, _, _ = chain_and_blocks(capacity=3)
    x = tf.constant((rng.random((2, 8, 5)) < 0.5).astype(np.float32))
    whole = layer(x).numpy()
    config = dict(layer.get_config(), stateful=True, name="stateful")
    stateful = GraphSNN.from_config(config)
    stateful(x[:, :4])
    for target, source in zip(stateful.trainable_weights, layer.trainable_weights):
        target.assign(source)
    stateful.reset_states()
    halves = np.concatenate([stateful(x[:, :4]).numpy(), stateful(x[:, 4:]).numpy()], axis=1)
    np.testing.assert_array_equal(halves, whole)


def test_sparse_node_errors_name_the_node():
    with pytest.raises(ValueError, match="node 'node0': a capacity selects spikes, but the leaky_integrator"):
        GraphSNN(
            SNNGraph.from_adjacency(
                [[], [0]], units=4, inputs=[0], outputs=[1], neuron=["leaky_integrator", "lif"], capacity=[2, None]
            )
        )
    graph = SNNGraph.from_adjacency(
        [[], [0]], units=[3000, 4], inputs=[0], outputs=[1], neuron="lif", capacity=[10, None]
    )
    layer = GraphSNN(graph, dtype="mixed_float16")
    with pytest.raises(
        ValueError, match=r"node 'node0': packed sparse spikes of 3000 neurons .*\(up to 2048 in float16\)"
    ):
        layer(tf.zeros([1, 2, 3]))


PLACED_SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from dense_snns import keras
    from snns_as_gnn import GraphSNN, SNNGraph
    graph = SNNGraph.from_adjacency([[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]], units=8, inputs=[0], outputs=[4],
                                    neuron="lif", neuron_config={"threshold": 0.3}, capacity=[3, 4, None, 2, 8])
    placement = {name: "/CPU:%d" % (i % 2) for i, name in enumerate(graph.node_names)}
    x = tf.constant((np.random.default_rng(0).random((3, 7, 5)) < 0.5).astype(np.float32))
    results = []
    for plan in (None, placement):
        layer = GraphSNN(graph, placement=plan, kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=1))
        call = tf.function(lambda: (layer(x), tf.add_n(list(layer.last_dropped.values()))))
        with tf.GradientTape() as tape:
            y, dropped = call()
            loss = tf.reduce_sum(y * np.linspace(0.5, 1.5, 8).astype(np.float32))
        results.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)])
        results[-1].append(dropped.numpy().sum())
    assert results[0][0].sum() > 0 and results[0][-1] > 0
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # Every sparse product runs on the device of its targets (what crosses is the selection).
    library = call.get_concrete_function().graph.as_graph_def().library
    devices = sorted(tf.DeviceSpec.from_string(node.device).device_index for f in library.function
                     for node in f.node_def if node.op == "DenseSnnsSparseLinear")
    # node0 -> node1 (CPU:1); node1 -> 0, 2 (CPU:0) and 3 (CPU:1); node3 -> 1, 3 (CPU:1) and 4 (CPU:0);
    # node4 -> 4 (CPU:0): 6 products per step function
    assert devices.count(0) == devices.count(1) == 3 * len(devices) // 6 and len(devices) % 6 == 0, devices
    print("same on 1 and 2 devices")
""")


def test_sparse_nodes_on_two_devices_equal_one_device():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", PLACED_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same on 1 and 2 devices" in result.stdout
