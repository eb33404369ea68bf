"""SpikeTensorBoard writes event files that TensorBoard's own reader loads, with the expected
tags and values, for dense, RNN, sparse and graph layers."""

import io

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
import snns_as_gnn
import sparse_snns as sp
from dense_snns import keras
from dense_snns.tensorboard import SpikeTensorBoard, spiking_layers

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="the test extras install tensorboard"
)

B, T, F = 4, 12, 6


def read_events(log_dir):
    reader = event_accumulator.EventAccumulator(str(log_dir / "spikes"), size_guidance={"tensors": 0})
    reader.Reload()
    return reader


def model_with_every_kind():
    x = keras.Input((T, F))
    init = keras.initializers.RandomNormal(0.5, 0.5, seed=1)
    h = ds.SNNDense(8, kernel_initializer=init, name="dense")(x)
    h = keras.layers.RNN(ds.SNNBlock(7, kernel_initializer=init), return_sequences=True, name="rnn")(h)
    graph = snns_as_gnn.SNNGraph.from_adjacency([[1], [0]], units=5, inputs=[0], outputs=[1])
    h = snns_as_gnn.GraphSNN(graph, name="graph")(h)
    s = sp.SparseSNNDense(6, input_dim=5, capacity=2, kernel_initializer=init, name="sparse")(h)
    y = sp.SparseLeakyReadout(3, input_dim=6, name="readout")(s)
    model = keras.Model(x, y)
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), **({"jit_compile": False} if ds.KERAS_3 else {}))
    return model


def test_tags_values_and_raster_images(tmp_path, rng):
    model = model_with_every_kind()
    assert [layer.name for layer in spiking_layers(model)] == ["dense", "rnn", "graph", "sparse"]
    x = (rng.random((B, T, F)) < 0.5).astype(np.float32)
    y = np.arange(B) % 3
    model.fit(x, y, epochs=2, verbose=0, callbacks=[SpikeTensorBoard(tmp_path, sample=x)])
    reader = read_events(tmp_path)
    tags = set(reader.Tags()["tensors"])
    for name in ("dense", "rnn", "graph", "sparse"):
        for tag in ("firing_rate", "silent_fraction", "saturated_fraction", "raster"):
            assert f"{name}/{tag}" in tags
    assert "sparse/dropped" in tags and "dense/dropped" not in tags and not any(t.startswith("readout") for t in tags)
    # values: the dense layer's statistics of the last epoch, recomputed here
    spikes = keras.Model(model.input, model.get_layer("dense").output)(x).numpy()
    rates = spikes.mean(axis=(0, 1))
    events = reader.Tensors("dense/silent_fraction")
    assert [e.step for e in events] == [0, 1]
    assert float(tf.make_ndarray(events[-1].tensor_proto)) == pytest.approx(np.mean(rates == 0))
    histogram = tf.make_ndarray(reader.Tensors("dense/firing_rate")[-1].tensor_proto)
    assert histogram[:, 2].sum() == 8  # one count per neuron
    # the raster image: a PNG [neurons, time], white where sample 0 spikes
    from PIL import Image

    encoded = tf.make_ndarray(reader.Tensors("dense/raster")[-1].tensor_proto)
    width, height = int(encoded[0]), int(encoded[1])
    image = np.asarray(Image.open(io.BytesIO(encoded[2])))
    assert (width, height) == (T, 8) and image.shape == (8, T)
    np.testing.assert_array_equal(image > 127, spikes[0].T > 0)  # one grey channel


def test_a_model_whose_only_spiking_layer_is_sparse(tmp_path, rng):
    ids = keras.Input((T, 3), dtype="int32")
    values = keras.Input((T, 3))
    count = keras.Input((T,), dtype="int32")
    init = keras.initializers.RandomNormal(1.0, 0.5, seed=1)
    s = sp.SparseSNNDense(6, input_dim=F, capacity=3, kernel_initializer=init, name="sparse")([ids, values, count])
    model = keras.Model([ids, values, count], sp.SparseLeakyReadout(2, input_dim=6)(s))
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), **({"jit_compile": False} if ds.KERAS_3 else {}))
    x = [
        rng.integers(0, F, (B, T, 3)).astype(np.int32),
        np.ones((B, T, 3), np.float32),
        np.full((B, T), 2, np.int32),
    ]
    model.fit(x, np.arange(B) % 2, epochs=1, verbose=0, callbacks=[SpikeTensorBoard(tmp_path, sample=x)])
    tags = set(read_events(tmp_path).Tags()["tensors"])
    assert {"sparse/firing_rate", "sparse/raster", "sparse/dropped"} <= tags


def test_bad_arguments_and_models(tmp_path):
    with pytest.raises(ValueError, match="`every` must be a positive integer"):
        SpikeTensorBoard(tmp_path, sample=None, every=0)
    with pytest.raises(ValueError, match=r"`saturated` must be in \(0, 1\]"):
        SpikeTensorBoard(tmp_path, sample=None, saturated=1.5)
    x = keras.Input((T, F))
    no_spikes = keras.Model(x, ds.LeakyReadout(3)(x))
    callback = SpikeTensorBoard(tmp_path, sample=np.zeros((B, T, F), np.float32))
    callback.set_model(no_spikes)
    with pytest.raises(ValueError, match="has no spiking layer to log"):
        callback.on_train_begin()
