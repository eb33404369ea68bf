"""GraphSNN and GraphSNNCell: one-step-delay semantics, equivalences, placement, save/load."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from snns_as_gnn import SNNGraph, chain
from snns_as_gnn.layer import GraphSNN, GraphSNNCell

from conftest import compile_kwargs

from helpers import config_round_trip, save_and_load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_GRAPH = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]


def spikes(rng, shape, p=0.4):
    return tf.constant((rng.random(shape) < p).astype(np.float32))


def cyclic_graph():
    # a (input) -> b -> c -> a, and a self-loop on b.
    return SNNGraph(
        nodes=[
            {"name": "a", "units": 3, "neuron": "lif", "neuron_config": {"beta": 0.8, "threshold": 0.5}},
            {"name": "b", "units": 4, "neuron": "lif", "neuron_config": {"beta": 0.7, "threshold": 0.6}},
            {
                "name": "c",
                "units": 2,
                "neuron": "lif",
                "neuron_config": {"beta": 0.9, "threshold": 0.4, "reset": "zero"},
            },
        ],
        edges=[("a", "b"), ("b", "b"), ("b", "c"), ("c", "a")],
        inputs=["a"],
        outputs=["c", "b"],
    )


def test_cyclic_graph_with_self_loop_matches_numpy(rng):
    graph = cyclic_graph()
    layer = GraphSNN(graph)
    x = spikes(rng, (2, 14, 5), p=0.5)
    layer(x)
    w_in = rng.normal(0.4, 0.5, (5, 3)).astype(np.float32)
    w = {
        edge: rng.normal(0.3, 0.6, (graph.node(edge[0]).units, graph.node(edge[1]).units)).astype(np.float32)
        for edge in graph.edges
    }
    bias = {name: rng.normal(0.0, 0.1, graph.node(name).units).astype(np.float32) for name in graph.node_names}
    layer.cell.input_kernels["a"].assign(w_in)
    for k, edge in enumerate(graph.edges):
        layer.cell.edge_kernels[k].assign(w[edge])
    for name in graph.node_names:
        layer.cell.biases[name].assign(bias[name])
    out = layer(x).numpy()

    params = {"a": (0.8, 0.5, "subtract"), "b": (0.7, 0.6, "subtract"), "c": (0.9, 0.4, "zero")}
    v = {name: np.zeros((2, graph.node(name).units)) for name in graph.node_names}
    s = {name: np.zeros((2, graph.node(name).units)) for name in graph.node_names}
    xs = x.numpy()
    for t in range(14):
        current = {
            "a": xs[:, t] @ w_in + s["c"] @ w[("c", "a")] + bias["a"],
            "b": s["a"] @ w[("a", "b")] + s["b"] @ w[("b", "b")] + bias["b"],
            "c": s["b"] @ w[("b", "c")] + bias["c"],
        }
        new_s = {}
        for name, (beta, thr, reset) in params.items():
            v[name] = beta * v[name] + current[name]
            new_s[name] = (v[name] > thr).astype(np.float64)
            v[name] = v[name] - thr * new_s[name] if reset == "subtract" else np.where(new_s[name] > 0, 0.0, v[name])
        s = new_s  # every node saw only the previous step's spikes
        np.testing.assert_array_equal(out[:, t], np.concatenate([s["c"], s["b"]], axis=1))
    assert 0 < out.sum() < out.size


@pytest.mark.parametrize("implementation", ["compiled", "reference"])
def test_layer_cell_and_implementations_agree(rng, implementation):
    graph = SNNGraph.from_adjacency(
        SEED_GRAPH,
        units=[6, 5, 4, 5, 3],
        inputs=[0],
        outputs=[4],
        neuron=["lif", "alif", "cuba_lif", "lif_neuron", "resonate_and_fire"],
        neuron_config=[
            {"threshold": 0.3},
            {"threshold": 0.3},
            {"threshold": 0.3},
            {"u_thresh": 0.1},
            {"threshold": 0.3},
        ],
    )
    init = keras.initializers.RandomNormal(0.2, 0.5, seed=4)
    layer = GraphSNN(graph, implementation=implementation, kernel_initializer=init)
    reference = keras.layers.RNN(GraphSNNCell(graph), return_sequences=True)
    x = spikes(rng, (3, 12, 7))
    layer(x)
    reference(x)
    reference.set_weights(layer.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = layer(x), reference(x)
        weights = np.linspace(0.5, 1.5, 3).astype(np.float32)
        la, lb = tf.reduce_sum(a * weights), tf.reduce_sum(b * weights)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() < a.numpy().size
    for g, g_ref in zip(
        tape.gradient(la, [x] + layer.trainable_weights), tape.gradient(lb, [x] + reference.trainable_weights)
    ):
        np.testing.assert_allclose(
            g.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-5 * (np.abs(g_ref.numpy()).max() + 1e-12)
        )


def test_long_sequence_is_checkpointed_and_agrees_with_the_cell(rng, checkpoint_choices):
    """T = 300: the graph's compiled loop keeps every 32nd state ("auto") and agrees with
    keras.layers.RNN(GraphSNNCell)."""
    graph = cyclic_graph()
    layer = GraphSNN(graph, kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=4))
    reference = keras.layers.RNN(GraphSNNCell(graph), return_sequences=True)
    x = spikes(rng, (2, 300, 3), p=0.3)
    layer(x[:, :2])
    reference(x[:, :2])
    reference.set_weights(layer.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        a, b = layer(x), reference(x)
        la, lb = (
            tf.reduce_sum(a * np.linspace(0.5, 1.5, a.shape[-1])),
            tf.reduce_sum(b * np.linspace(0.5, 1.5, b.shape[-1])),
        )
    assert 32 in checkpoint_choices
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert 0 < a.numpy().sum() < a.numpy().size
    for g, g_ref in zip(tape.gradient(la, layer.trainable_weights), tape.gradient(lb, reference.trainable_weights)):
        np.testing.assert_allclose(
            g.numpy(), g_ref.numpy(), rtol=1e-5, atol=1e-5 * (np.abs(g_ref.numpy()).max() + 1e-12)
        )


def test_chain_graph_is_a_block_stack_with_one_step_delays(rng):
    graph = chain([5, 4], neuron="lif", neuron_config={"threshold": 0.4})
    layer = GraphSNN(graph, kernel_initializer=keras.initializers.RandomNormal(0.3, 0.5, seed=2))
    x = spikes(rng, (2, 10, 6))
    layer(x)
    first = keras.layers.RNN(ds.SNNBlock(5, neuron=ds.LIF(5, threshold=0.4)), return_sequences=True)
    second = keras.layers.RNN(ds.SNNBlock(4, neuron=ds.LIF(4, threshold=0.4)), return_sequences=True)
    first(x)
    second(tf.zeros([2, 10, 5]))
    cell = layer.cell
    first.set_weights([cell.input_kernels["node0"].numpy(), cell.biases["node0"].numpy()])
    second.set_weights([cell.edge_kernels[0].numpy(), cell.biases["node1"].numpy()])
    hidden = first(x)
    delayed = tf.concat([tf.zeros_like(hidden[:, :1]), hidden[:, :-1]], axis=1)  # the edge's one-step delay
    np.testing.assert_array_equal(layer(x).numpy(), second(delayed).numpy())


def test_mask_keeps_state_and_silences_padded_steps(rng):
    graph = cyclic_graph()
    layer = GraphSNN(graph, kernel_initializer=keras.initializers.RandomNormal(0.4, 0.5, seed=5))
    x = spikes(rng, (2, 10, 5), p=0.6)
    mask = tf.constant(np.arange(10)[None, :] < np.array([[10], [6]]))
    full = layer(x).numpy()
    masked = layer(x, mask=mask).numpy()
    np.testing.assert_array_equal(masked[0], full[0])
    np.testing.assert_array_equal(masked[1, :6], full[1, :6])
    assert not masked[1, 6:].any()


def test_fit_and_save_load(tmp_path, rng):
    graph = SNNGraph.from_adjacency(
        SEED_GRAPH,
        units=8,
        inputs=[0],
        outputs=[4],
        neuron="lif",
        neuron_config={"threshold": 0.3, "trainable_decays": True},
    )
    inputs = keras.Input((10, 6))
    model = keras.Model(inputs, ds.LeakyReadout(2)(GraphSNN(graph)(inputs)))
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), **compile_kwargs())
    x = spikes(rng, (8, 10, 6)).numpy()
    model.fit(x, rng.integers(0, 2, 8), epochs=1, batch_size=4, verbose=0)
    loaded = save_and_load(model, tmp_path / "graph.keras")
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    layer = model.layers[1]
    config_round_trip(layer)


def test_errors_name_the_argument(rng):
    graph = cyclic_graph()
    with pytest.raises(ValueError, match="unknown nodes.*zz"):
        GraphSNN(graph, placement={"a": "/CPU:0", "b": "/CPU:0", "c": "/CPU:0", "zz": "/CPU:0"})
    with pytest.raises(ValueError, match="does not place.*c"):
        GraphSNN(graph, placement={"a": "/CPU:0", "b": "/CPU:0"})
    with pytest.raises(ValueError, match="implementation"):
        GraphSNN(graph, implementation="fast")
    with pytest.raises(ValueError, match="graph must be"):
        GraphSNN(42)
    layer = GraphSNN(graph)
    with pytest.raises(ValueError, match="rank 3"):
        layer(tf.zeros([2, 5]))
    layer(tf.zeros([2, 4, 5]))
    with pytest.raises(
        ValueError, match=r"`inputs` of shape \(2, 4, 6\) have features \[6\], but the graph.s input has \[5\]"
    ):
        layer(tf.zeros([2, 4, 6]))


PLACEMENT_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 4)
    from snns_as_gnn import SNNGraph
    from snns_as_gnn.layer import GraphSNN
    from dense_snns import keras
    graph = SNNGraph.from_adjacency({adjacency}, units=6, inputs=[0], outputs=[4], neuron="lif",
                                    neuron_config={{"threshold": 0.3}})
    from dense_snns import fused
    devices = ["/CPU:0", "/CPU:1", "/CPU:2", "/CPU:3"]
    placement = {{name: devices[i % 4] for i, name in enumerate(graph.node_names)}}
    # 9 steps: every state stored; 300 steps: checkpointed (stored every 32 steps, recomputed)
    for steps, every in ((9, None), (300, 32)):
        assert fused.resolve_checkpoint_every("auto", steps) == every
        x = tf.constant((np.random.default_rng(0).random((3, steps, 5)) < 0.5).astype(np.float32))
        results = []
        for plan in (None, placement):
            init = keras.initializers.RandomNormal(0.2, 0.5, seed=1)
            layer = GraphSNN(graph, placement=plan, kernel_initializer=init)
            with tf.GradientTape() as tape:
                y = layer(x)
                loss = tf.reduce_sum(y * np.linspace(0.5, 1.5, 6).astype(np.float32))
            results.append([y.numpy()] + [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)])
        assert results[0][0].sum() > 0
        np.testing.assert_array_equal(results[0][0], results[1][0])
        for a, b in zip(results[0][1:], results[1][1:]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert len(tf.config.list_logical_devices("CPU")) == 4
    print("same on 1 and 4 devices")
""")


def test_same_outputs_and_gradients_on_one_and_four_devices():
    script = PLACEMENT_SCRIPT.format(adjacency=SEED_GRAPH)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "same on 1 and 4 devices" in result.stdout


@pytest.mark.parametrize("initializer", ["glorot_uniform", keras.initializers.RandomNormal(0.0, 1.0, seed=3)])
def test_kernels_of_equal_shape_start_different(initializer):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=4, inputs=[0], outputs=[4])
    layer = GraphSNN(graph, kernel_initializer=initializer)
    layer(tf.zeros([1, 2, 3]))
    kernels = [k.numpy() for k in layer.cell.edge_kernels]
    for i in range(len(kernels)):
        for j in range(i + 1, len(kernels)):
            assert not np.array_equal(kernels[i], kernels[j])


def test_the_seed_graph_with_all_defaults_spikes_at_its_output(rng):
    """The first graph a newcomer builds: the seed's 5-node graph, all defaults, on inputs with
    30% spikes of height 3."""
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=64, inputs=[0], outputs=[4])
    x = tf.constant((rng.random((4, 50, 20)) < 0.3).astype(np.float32) * 3.0)
    outputs = GraphSNN(graph)(x).numpy()
    assert 0 < outputs.mean() < 1
