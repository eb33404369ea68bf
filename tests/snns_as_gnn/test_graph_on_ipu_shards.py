"""A GraphSNN split over the IPUs of a multi-IPU device: its nodes' ops are built under
Graphcore's shard scopes (a stand-in records them here) and compute what the unplaced graph
computes; wrong shard placements are errors naming the node."""

import numpy as np
import pytest
import tensorflow as tf

from dense_snns import devices, keras
from snns_as_gnn import GraphSNN, SNNGraph, plan_placement

SEED_GRAPH = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]


def graph():
    return SNNGraph.from_adjacency(
        SEED_GRAPH, units=6, inputs=[0], outputs=[4], neuron="lif", neuron_config={"threshold": 0.3}
    )


def outputs_and_gradients(layer, x):
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_sum(y * np.linspace(0.5, 1.5, 6).astype(np.float32))
    return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)]


def test_nodes_on_ipu_shards_compute_what_the_unplaced_graph_computes(stand_in_ipu, rng):
    g = graph()
    devices.configure_ipus(2)
    plan = plan_placement(g, devices.ipu_shards(2))
    assert sorted(set(plan.values())) == ["ipu_shard:0", "ipu_shard:1"]
    x = tf.constant((rng.random((3, 9, 5)) < 0.5).astype(np.float32))
    init = keras.initializers.RandomNormal(0.2, 0.5, seed=1)
    sharded = GraphSNN(g, placement=plan, kernel_initializer=init)
    plain = GraphSNN(g, kernel_initializer=init)
    results = [outputs_and_gradients(layer, x) for layer in (sharded, plain)]
    assert {call for call in stand_in_ipu if call[0] == "shard"} == {("shard", 0), ("shard", 1)}
    assert results[0][0].sum() > 0
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert GraphSNN.from_config(sharded.get_config()).cell.placement == dict(plan)


def test_wrong_shard_placements_are_errors_naming_the_node(stand_in_ipu):
    g = graph()
    devices.configure_ipus(2)
    names = g.node_names
    with pytest.raises(ValueError, match=f"node {names[1]!r} is placed on IPU shard 'ipu_shard:2', but configure_ipus"):
        GraphSNN(g, placement={name: f"ipu_shard:{2 if i == 1 else 0}" for i, name in enumerate(names)})
    with pytest.raises(ValueError, match=r"puts nodes .* on IPU shards and nodes .* on other devices"):
        GraphSNN(g, placement={name: "ipu_shard:0" if i else "/CPU:0" for i, name in enumerate(names)})


@pytest.mark.skipif(devices.ipu_available(), reason="Graphcore's TensorFlow is installed here")
def test_shards_without_graphcore_tensorflow_say_what_is_missing():
    g = graph()
    with pytest.raises(
        devices.IPUUnavailableError, match=r"node '.*' is placed on IPU shard 'ipu_shard:0'.*Poplar SDK"
    ):
        GraphSNN(g, placement=plan_placement(g, devices.ipu_shards(2)))
