"""A GraphSNN split over 2 IPUs (its nodes on the shards of the multi-IPU device) computes
what the unsplit graph computes, and trains."""

import numpy as np
import tensorflow as tf

import dense_snns as ds
from dense_snns import devices, keras
from helpers import labelled_rasters
from snns_as_gnn import GraphSNN, SNNGraph, plan_placement

STEPS, FEATURES, BATCH = 20, 8, 4


def model_with(graph, placement):
    inputs = keras.Input((STEPS, FEATURES), batch_size=BATCH)
    spikes = GraphSNN(graph, placement=placement, name="graph")(inputs)
    return keras.Model(inputs, ds.LeakyReadout(2, name="readout")(spikes))


def test_graph_over_two_ipus_equals_one_ipu_and_trains(ipu_strategy, rng):
    graph = SNNGraph.from_adjacency([[1], [0, 2], [1, 3], [2]], units=16, inputs=[0], outputs=[3], neuron="lif")
    x, y = labelled_rasters(rng, 8 * BATCH, STEPS, FEATURES)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)
    with ipu_strategy.scope():
        split = model_with(graph, plan_placement(graph, devices.ipu_shards(2)))
        whole = model_with(graph, None)
        whole.set_weights(split.get_weights())
        np.testing.assert_allclose(
            split.predict(dataset.map(lambda a, b: a), verbose=0),
            whole.predict(dataset.map(lambda a, b: a), verbose=0),
            rtol=1e-5,
            atol=1e-5,
        )
        split.compile(keras.optimizers.Adam(1e-2), ds.MaxOverTimeCrossEntropy(), steps_per_execution=4)
        history = split.fit(dataset, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
