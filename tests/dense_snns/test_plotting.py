"""record_traces against keras.layers.RNN and a NumPy LIF membrane; the raster plot writes a PNG.

record_traces names each state trace after the cell's `state_names` (e.g. "v", "a", "spikes")."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras
from dense_snns.plotting import plot_raster_and_membrane, record_traces

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def spikes_input(rng, batch=3, time=12, features=4, p=0.5):
    return (rng.random((batch, time, features)) < p).astype(np.float32)


def np_lif_block(x, w, b, beta, threshold, r=None):
    """Spikes and post-reset membranes of an SNNBlock of LIF neurons (subtract reset)."""
    batch, time, _ = x.shape
    units = w.shape[1]
    v = np.zeros((batch, units))
    s = np.zeros((batch, units))
    spikes, membrane = np.zeros((batch, time, units)), np.zeros((batch, time, units))
    for t in range(time):
        v = beta * v + x[:, t] @ w + b + (s @ r if r is not None else 0.0)
        s = (v > threshold).astype(np.float64)
        v = v - threshold * s
        spikes[:, t], membrane[:, t] = s, v
    return spikes, membrane


@pytest.mark.parametrize("self_recurrent", [False, True])
def test_record_traces_matches_rnn_and_numpy_membrane(rng, self_recurrent):
    block = ds.SNNBlock(
        5,
        neuron=ds.LIF(5, beta=0.85, threshold=0.6),
        self_recurrent=self_recurrent,
        kernel_initializer=keras.initializers.RandomNormal(0.2, 0.5, seed=1),
        recurrent_initializer=keras.initializers.RandomNormal(0.0, 0.3, seed=2),
        bias_initializer=keras.initializers.Constant(0.05),
    )
    x = spikes_input(rng)
    record = record_traces(block, x)  # builds the block
    rnn_out = keras.layers.RNN(block, return_sequences=True)(x).numpy()  # same cell, same weights

    expected_keys = {"outputs", "v"} | ({"spikes"} if self_recurrent else set())
    assert set(record) == expected_keys
    assert all(isinstance(v, np.ndarray) and v.shape == (3, 12, 5) for v in record.values())
    np.testing.assert_array_equal(record["outputs"], rnn_out)

    r = block.recurrent_kernel.numpy() if self_recurrent else None
    spikes, membrane = np_lif_block(x, block.kernel.numpy(), block.bias.numpy(), 0.85, 0.6, r)
    assert 0 < spikes.sum() < spikes.size
    np.testing.assert_array_equal(record["outputs"], spikes)
    np.testing.assert_allclose(record["v"], membrane, rtol=1e-5, atol=1e-5)
    if self_recurrent:  # the last state of a self-recurrent block is the previous spikes
        np.testing.assert_array_equal(record["spikes"], record["outputs"])


def test_record_traces_uses_the_given_initial_state(rng):
    cell = ds.LIF(3, beta=0.5, threshold=10.0)  # no spikes: the membrane only decays and integrates
    currents = rng.normal(size=(2, 4, 3)).astype(np.float32)
    v0 = rng.normal(size=(2, 3)).astype(np.float32)
    record = record_traces(cell, currents, initial_state=[tf.constant(v0)])
    v = v0.astype(np.float64)
    for t in range(4):
        v = 0.5 * v + currents[:, t]
        np.testing.assert_allclose(record["v"][:, t], v, rtol=1e-5, atol=1e-6)
    assert not record["outputs"].any()


def test_record_traces_of_two_state_neuron_and_readout(rng):
    x = spikes_input(rng, features=3)
    cell = ds.SNNBlock(
        4, neuron=ds.ALIF(4, threshold=0.5), kernel_initializer=keras.initializers.RandomNormal(0.3, 0.5, seed=3)
    )
    record = record_traces(cell, x)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    out, v_last, a_last = rnn(x)
    assert set(record) == {"outputs", "v", "a"}
    assert record["outputs"].any() and record["a"].any()  # spikes, so the adaptation moved
    np.testing.assert_array_equal(record["outputs"], out.numpy())
    np.testing.assert_allclose(record["v"][:, -1], v_last.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(record["a"][:, -1], a_last.numpy(), rtol=1e-6, atol=1e-6)

    readout = ds.LeakyReadoutCell(2, beta=0.8)
    record = record_traces(readout, x)
    np.testing.assert_allclose(
        record["outputs"], keras.layers.RNN(readout, return_sequences=True)(x).numpy(), rtol=1e-6, atol=1e-6
    )
    assert set(record) == {"outputs", "v"}
    np.testing.assert_array_equal(record["v"], record["outputs"])  # the readout outputs its membrane


def test_record_traces_rejects_wrong_rank():
    with pytest.raises(ValueError, match="inputs.*rank 3"):
        record_traces(ds.LIF(2), np.zeros((2, 2), np.float32))


def test_plot_raster_and_membrane_writes_png(rng, tmp_path):
    rasters = [spikes_input(rng, batch=1, time=20, features=6)[0], spikes_input(rng, batch=1, time=20, features=3)[0]]
    membrane = rng.normal(size=(20, 3))
    path = tmp_path / "raster.png"
    returned = plot_raster_and_membrane(rasters, membrane, str(path), titles=["in", "hidden"], threshold=0.5)
    assert returned == str(path)
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_SIGNATURE


def test_plot_with_one_layer_and_defaults(rng, tmp_path):
    path = tmp_path / "one.png"
    plot_raster_and_membrane([np.zeros((10, 4))], np.zeros((10, 1)), str(path))  # an empty raster is fine
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_without_matplotlib_plots_name_their_extra(monkeypatch, tmp_path):
    import sys

    from dense_snns.plotting import plot_rasters

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"plots need matplotlib: pip install \.\[plots\]"):
        plot_rasters([np.zeros((3, 2))], str(tmp_path / "r.png"))


def test_rasters_alone_make_a_png(tmp_path):
    from dense_snns.plotting import plot_rasters

    raster = (np.random.default_rng(0).random((20, 5)) < 0.3).astype(np.float32)
    path = plot_rasters([raster, raster[:, :3]], str(tmp_path / "r.png"), titles=["a", "b"])
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
