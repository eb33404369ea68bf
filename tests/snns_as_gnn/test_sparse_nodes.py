"""Sparse graph nodes: a node with a `capacity` sends its spikes along its edges as events into
event-driven products. The results equal the dense graph's (spikes identical, gradients to
round-off, the input's included) over random graphs, masks and neuron models; where the C++
kernels cannot run (XLA, float16, implementation="compiled"/"reference") the dense products run."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dense_snns import keras
from dense_snns.ops import events as event_ops
from helpers import assert_same_spikes_and_close_gradients, outputs_and_gradients
from snns_as_gnn import GraphSNN, GraphSNNCell, SNNGraph

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
def event_calls(monkeypatch):
    """The number of event-driven products run (graph construction time, one per sparse node)."""
    calls = []
    original = event_ops.event_matmul

    def counted(x, kernel):
        calls.append(tuple(kernel.shape))
        return original(x, kernel)

    monkeypatch.setattr(event_ops, "event_matmul", counted)
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
    assert sparse_layer.cell.uses_events(tf.float64) == any(c is not None for c in capacity)
    assert_same_spikes_and_close_gradients(
        outputs_and_gradients(sparse_layer, x, mask=mask), outputs_and_gradients(dense_layer, x, mask=mask)
    )


def test_each_sparse_node_runs_one_event_product_per_step_into_all_its_targets(event_calls, rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=[4, 5, 6, 7, 8], inputs=[0], outputs=[4], neuron="lif")
    sparse_layer, dense_layer = pair(graph, [None, 5, None, 7, 8])
    x = tf.constant((rng.random((2, 6, 3)) < 0.5).astype(np.float32))
    assert_same_spikes_and_close_gradients(
        outputs_and_gradients(sparse_layer, x), outputs_and_gradients(dense_layer, x)
    )
    # node1 feeds nodes 0, 2, 3 (4 + 6 + 7 units); node3 feeds 1, 3, 4; node4 itself.
    assert sorted(set(event_calls)) == [(5, 17), (7, 20), (8, 8)]


@pytest.mark.parametrize("implementation", ["compiled", "reference"])
def test_without_the_kernels_the_dense_products_run(event_calls, implementation, rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=4, inputs=[0], outputs=[4], neuron="lif")
    sparse_layer, dense_layer = pair(graph, 4, implementation=implementation)
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    assert not sparse_layer.cell.uses_events(tf.float32, implementation)
    assert_same_spikes_and_close_gradients(
        outputs_and_gradients(sparse_layer, x), outputs_and_gradients(dense_layer, x)
    )
    assert event_calls == []


def test_under_xla_and_in_float16_the_dense_products_run(event_calls, rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=4, inputs=[0], outputs=[4], neuron="lif")
    sparse_layer, dense_layer = pair(graph, 4)
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    want = dense_layer(x).numpy()
    got = tf.function(sparse_layer, jit_compile=True)(x).numpy()
    np.testing.assert_array_equal(got, want)
    assert event_calls == [] and not sparse_layer.cell.uses_events(tf.float16)


def test_the_cell_steps_like_the_layer(rng):
    graph = SNNGraph.from_adjacency(SEED_GRAPH, units=4, inputs=[0], outputs=[4], neuron="lif", capacity=4)
    layer = GraphSNN(graph, kernel_initializer=keras.initializers.RandomNormal(0.1, 0.6, seed=3))
    x = tf.constant((rng.random((2, 5, 3)) < 0.5).astype(np.float32))
    want = layer(x).numpy()
    rnn = keras.layers.RNN(GraphSNNCell.from_config(layer.cell.get_config()), return_sequences=True)
    rnn(x)
    rnn.set_weights(layer.get_weights())
    np.testing.assert_array_equal(rnn(x).numpy(), want)
