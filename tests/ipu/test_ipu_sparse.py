"""A sparse SNN (SparseSNNDense -> SparseLeakyReadout, spikes as ids/values/count) trains on
an IPU: the layers take their pure-TensorFlow paths inside the compiled program."""

import numpy as np
import tensorflow as tf

import dense_snns as ds
import sparse_snns as sp
from dense_snns import keras
from helpers import labelled_rasters

STEPS, FEATURES, CAPACITY, BATCH = 20, 32, 16, 4


def test_sparse_snn_trains(ipu_strategy, rng):
    raster, y = labelled_rasters(rng, 8 * BATCH, STEPS, FEATURES)
    ids, values, count = (t.numpy() for t in sp.to_sparse_inputs(tf.constant(raster), CAPACITY))
    dataset = tf.data.Dataset.from_tensor_slices(((ids, values, count), y)).batch(BATCH, drop_remainder=True)
    with ipu_strategy.scope():
        inputs = [
            keras.Input((STEPS, CAPACITY), batch_size=BATCH, dtype="int32"),
            keras.Input((STEPS, CAPACITY), batch_size=BATCH),
            keras.Input((STEPS,), batch_size=BATCH, dtype="int32"),
        ]
        spikes = sp.SparseSNNDense(32, input_dim=FEATURES, capacity=8, neuron="lif")(inputs)
        model = keras.Model(inputs, sp.SparseLeakyReadout(2, input_dim=32)(spikes))
        model.compile(keras.optimizers.Adam(1e-2), ds.MaxOverTimeCrossEntropy(), steps_per_execution=4)
        history = model.fit(dataset, epochs=4, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
