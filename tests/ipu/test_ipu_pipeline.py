"""A 2-block SNN pipelined over 2 IPUs, one stage per block: the stages reach Graphcore's
Keras pipeline API and the model trains."""

import numpy as np
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from dense_snns.pipelining import apply_stages, manual_stages
from helpers import labelled_rasters

STEPS, FEATURES, CLASSES, BATCH = 20, 16, 3, 4


def data(rng, samples=48):
    x, y = labelled_rasters(rng, samples, STEPS, FEATURES, CLASSES)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)


def test_two_block_snn_trains_with_one_stage_per_block(ipu_strategy, rng):
    with ipu_strategy.scope():
        inputs = keras.Input((STEPS, FEATURES), batch_size=BATCH)
        x = ds.SNNDense(32, neuron="lif", name="block0")(inputs)
        x = ds.SNNDense(32, neuron="lif", name="block1")(x)
        model = keras.Model(inputs, ds.LeakyReadout(CLASSES, name="readout")(x))
        plan = manual_stages(model, {"block0": 0, "block1": 1, "readout": 1})
        assert apply_stages(model, plan) is model
        assert [a.pipeline_stage for a in model.get_pipeline_stage_assignment()] == [0, 1, 1]
        model.compile(
            keras.optimizers.Adam(1e-2), ds.MaxOverTimeCrossEntropy(), **plan.compile_kwargs(plan.gradient_accumulation)
        )
        before = [w.numpy().copy() for w in model.trainable_weights]
        history = model.fit(data(rng), epochs=4, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
