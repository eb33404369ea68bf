"""Saving and loading a model that uses every layer reproduces its outputs exactly."""

import numpy as np

import dense_snns as ds
from dense_snns import keras

from conftest import compile_kwargs

from helpers import config_round_trip


def every_layer_model(time=20, features=6):
    inputs = keras.Input((time, features))
    h = keras.layers.RNN(
        ds.SNNBlock(
            8,
            neuron=ds.LIFNeuron(
                8,
                trainable_decays=True,
                trainable_threshold=True,
                state2_func="tanh",
                spike_func={"name": "rational", "scale": 5.0},
            ),
            self_recurrent=True,
        ),
        return_sequences=True,
    )(inputs)
    h = ds.SpikeMonitor(regularizer=ds.FiringRateRegularizer(0.1, 0.5), name="mon1")(h)
    h = keras.layers.RNN(ds.SNNBlock(8, neuron=ds.LIF(8, reset="zero", trainable_decays=True)), return_sequences=True)(
        h
    )
    h = keras.layers.RNN(
        [
            ds.SNNBlock(7, neuron=ds.ALIF(7, spike_func="triangle")),
            ds.SNNBlock(6, neuron=ds.CubaLIF(6, spike_func="boxcar")),
        ],
        return_sequences=True,
    )(h)
    h = ds.SpikeMonitor(name="mon2")(h)
    side = keras.layers.RNN(ds.LeakyReadoutCell(3, beta=0.8), return_sequences=True)(h)
    out = ds.LeakyReadout(3, trainable_decay=True)(h)
    return keras.Model(inputs, keras.layers.Add()([out, side]))


def test_save_load_every_layer_reproduces_outputs(tmp_path, rng):
    model = every_layer_model()
    model.compile("adam", ds.MaxOverTimeCrossEntropy(), metrics=[ds.TimeReducedAccuracy("max")], **compile_kwargs())
    x = (rng.random((16, 20, 6)) < 0.5).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # weights away from their initial values
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    # Training goes on from the loaded model with the same loss.
    assert loaded.loss.get_config()["time_reduction"] == "max"
    np.testing.assert_allclose(
        loaded.evaluate(x, y, batch_size=8, verbose=0), model.evaluate(x, y, batch_size=8, verbose=0), rtol=1e-6
    )
    history = loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_loss_metric_regularizer_configs_round_trip():
    for obj in (
        ds.MaxOverTimeCrossEntropy(),
        ds.MeanOverTimeCrossEntropy(from_logits=False),
        ds.SpikeCountCrossEntropy(),
        ds.TimeReducedCrossEntropy("mean"),
    ):
        clone = type(obj).from_config(obj.get_config())
        assert clone.get_config() == obj.get_config()
        assert clone.time_reduction == obj.time_reduction
    metric = ds.TimeReducedAccuracy("sum")
    assert ds.TimeReducedAccuracy.from_config(metric.get_config()).time_reduction == "sum"
    reg = ds.FiringRateRegularizer(0.2, 3.0)
    config_round_trip(reg)
    readout = ds.LeakyReadout(4, beta=0.7)
    config_round_trip(readout)


def test_weights_move_between_compositions_and_models(rng):
    """get_weights/set_weights between two freshly built copies of the model give equal outputs."""
    a = every_layer_model()
    b = every_layer_model()
    b.set_weights(a.get_weights())
    x = (rng.random((4, 20, 6)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
