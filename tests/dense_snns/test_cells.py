"""Neuron cells and SNNBlock: equivalence with the step functions, both compositions,
configs, trainable parameters and every bad-input error."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import keras, neurons

from helpers import config_round_trip, spiking_model_cases

ALL_NEURONS = spiking_model_cases()


def make_neuron(name, units, **kwargs):
    return ds.NEURON_MODELS[name](units, **kwargs)


def spikes_input(rng, batch=3, time=12, features=6, p=0.3):
    return (rng.random((batch, time, features)) < p).astype(np.float32)


def test_neuron_cell_is_the_step_function(rng):
    cell = ds.LIF(4, beta=0.8, threshold=0.7, reset="zero")
    currents = rng.normal(0.5, 1.0, size=(2, 9, 4)).astype(np.float32)
    outputs = keras.layers.RNN(cell, return_sequences=True)(currents)
    state = neurons.LIFState(tf.zeros([2, 4]))
    params = neurons.LIFParams(0.8, 0.7, "zero", True, ds.Surrogate())
    for t in range(9):
        s, state = neurons.lif_step(tf.constant(currents[:, t]), state, params)
        np.testing.assert_array_equal(outputs[:, t].numpy(), s.numpy())


@pytest.mark.parametrize("self_recurrent", [False, True])
def test_snn_block_matches_numpy(rng, self_recurrent):
    block = ds.SNNBlock(
        5,
        neuron=ds.LIF(5, beta=0.9, threshold=0.5),
        self_recurrent=self_recurrent,
        bias_initializer=keras.initializers.Constant(0.1),
    )
    x = spikes_input(rng, features=4, time=15, p=0.5)
    out = keras.layers.RNN(block, return_sequences=True)(x).numpy()
    w = block.kernel.numpy()
    b = block.bias.numpy()
    r = block.recurrent_kernel.numpy() if self_recurrent else np.zeros((5, 5))
    v = np.zeros((3, 5))
    s = np.zeros((3, 5))
    for t in range(15):
        v = 0.9 * v + x[:, t] @ w + s @ r + b
        s = (v > 0.5).astype(np.float64)
        v = v - 0.5 * s
        np.testing.assert_array_equal(out[:, t], s)
    assert 0 < out.sum() < out.size


@pytest.mark.parametrize("name,kwargs", ALL_NEURONS)
def test_neuron_config_round_trip(name, kwargs):
    cell = make_neuron(
        name,
        3,
        spike_func={"name": "triangle", "scale": 2.0},
        stop_reset_grad=False,
        trainable_decays=True,
        trainable_threshold=True,
        **kwargs,
    )
    assert config_round_trip(cell).spike_func == ds.Surrogate("triangle", 2.0)


def test_block_config_round_trip_and_weight_layout():
    block = ds.SNNBlock(
        4,
        neuron=ds.ALIF(4, rho=0.9, trainable_decays=True),
        self_recurrent=True,
        kernel_regularizer=keras.regularizers.L2(0.01),
    )
    block.build((None, 3))
    clone = ds.SNNBlock.from_config(block.get_config())
    clone.build((None, 3))
    assert clone.get_config() == block.get_config()
    assert isinstance(clone.neuron, ds.ALIF) and clone.neuron.rho == 0.9
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in block.get_weights()]
    names = [w.name.split("/")[-1].split(":")[0] for w in block.weights]
    assert names[:3] == ["kernel", "recurrent_kernel", "bias"]
    assert block.state_size == [4, 4, 4]


def test_readout_cell_config_round_trip():
    cell = ds.LeakyReadoutCell(3, beta=0.7, trainable_decay=True)
    config_round_trip(cell)


def test_trainable_decays_stay_in_unit_interval_and_learn(rng):
    cell = ds.LIFNeuron(3, alpha=0.9, beta=0.8, trainable_decays=True, trainable_threshold=True)
    layer = keras.layers.RNN(cell, return_sequences=True)
    currents = tf.constant(rng.normal(1.0, 1.0, size=(2, 10, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(currents))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(layer.trainable_weights) == 3  # alpha, beta logits and u_thresh
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
    np.testing.assert_allclose(cell.param("alpha").numpy(), 0.9, rtol=1e-6)
    # Whatever the logit, the decay stays inside (0, 1).
    cell._param_weights["alpha"].assign([-50.0, 0.0, 50.0])
    alpha = cell.param("alpha").numpy()
    assert np.all((alpha >= 0) & (alpha <= 1)) and alpha[1] == pytest.approx(0.5)


def test_per_neuron_fixed_decays(rng):
    cell = ds.LIF(3, beta=[0.5, 0.6, 0.7])
    assert cell.get_config()["beta"] == [0.5, 0.6, 0.7]
    out = keras.layers.RNN(cell, return_sequences=True)(np.ones((1, 4, 3), np.float32)).numpy()
    assert out.shape == (1, 4, 3)


def test_reset_val_defaults_to_u_thresh():
    cell = ds.LIFNeuron(2, u_thresh=0.3)
    assert cell.params().reset_val == 0.3
    assert ds.LIFNeuron(2, u_thresh=0.3, reset_val=0.1).params().reset_val == 0.1


def test_state2_func_is_used_and_serialised():
    cell = ds.LIFNeuron(2, state2_func="relu", u_thresh=5.0)
    assert cell.get_config()["state2_func"] == "relu"
    # f = relu clips a negative V out of the U update.
    state = [tf.zeros([1, 2]), tf.fill([1, 2], -1.0)]
    _, (u, _) = cell(tf.zeros([1, 2]), state)
    np.testing.assert_allclose(u.numpy(), 0.0)
    _, (u_id, _) = ds.LIFNeuron(2, u_thresh=5.0)(tf.zeros([1, 2]), state)
    np.testing.assert_allclose(u_id.numpy(), -0.1, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.int64, np.float64])
def test_bool_and_integer_spikes_are_cast(rng, dtype):
    x = spikes_input(rng, features=4)
    block = ds.SNNBlock(3, neuron="lif")
    layer = keras.layers.RNN(block, return_sequences=True)
    reference = layer(x).numpy()
    out = layer(x.astype(dtype))
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), reference)


def test_get_initial_state_on_both_signatures():
    block = ds.SNNBlock(3, neuron="cuba_lif", self_recurrent=True)
    states = block.get_initial_state(batch_size=2)
    assert len(states) == 3 and all(s.shape == (2, 3) for s in states)
    # Keras 2 passes the dtype of the RNN's inputs; the states are in the cell's compute dtype,
    # which its step adds them to (float64 states beside float32 currents would fail there)
    states = block.get_initial_state(inputs=tf.zeros([4, 5]), batch_size=None, dtype=tf.float64)
    assert all(s.shape == (4, 3) and s.dtype == tf.float32 for s in states)
    wide = ds.SNNBlock(3, neuron="cuba_lif", dtype="float64")
    assert all(s.dtype == tf.float64 for s in wide.get_initial_state(inputs=tf.zeros([4, 5]), dtype=tf.float32))


@pytest.mark.parametrize("kind", ["neuron", "block", "sparse_block"])
def test_mixed_precision_cell_inside_an_rnn_of_the_default_policy(rng, kind):
    """The RNN passes float32 inputs (and, on Keras 2, asks for float32 states): the cell
    computes in float16 all the same and trains."""
    import sparse_snns as sp

    x = tf.constant((rng.random((2, 6, 5)) < 0.5).astype(np.float32))
    if kind == "neuron":
        cell, inputs = ds.LIF(5, threshold=0.3, dtype="mixed_float16"), x
    elif kind == "block":
        cell, inputs = ds.SNNBlock(4, neuron="lif", self_recurrent=True, dtype="mixed_float16"), x
    else:
        cell = sp.SparseSNNBlock(
            4, input_dim=5, capacity=2, input_capacity=5, self_recurrent=True, dtype="mixed_float16"
        )
        inputs = sp.pack_spikes(sp.from_dense(x, 5))
    rnn = keras.layers.RNN(cell, return_sequences=True)
    assert all(s.dtype == tf.float16 for s in cell.get_initial_state(inputs=x[:, 0], batch_size=2, dtype=tf.float32))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = rnn(inputs)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32))
    assert outputs.shape[:2] == (2, 6) and np.all(np.isfinite(outputs.numpy()))
    grads = tape.gradient(loss, rnn.trainable_weights + [inputs])
    assert all(g is not None and np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("units", [0, -3, 2.5, "8", True])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        ds.LIF(units)
    with pytest.raises(ValueError, match="units"):
        ds.SNNBlock(units)


@pytest.mark.parametrize(
    "name,arg",
    [("lif_neuron", "alpha"), ("lif_neuron", "beta"), ("lif", "beta"), ("alif", "rho"), ("cuba_lif", "alpha")],
)
@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.2])
def test_decays_outside_unit_interval(name, arg, value):
    with pytest.raises(ValueError, match=arg):
        make_neuron(name, 3, **{arg: value})


def test_per_neuron_decay_length_mismatch():
    with pytest.raises(ValueError, match="beta"):
        ds.LIF(3, beta=[0.5, 0.5])


def test_unknown_surrogate_and_reset_and_model():
    with pytest.raises(ValueError, match="name='nope'"):
        ds.LIF(3, spike_func="nope")
    with pytest.raises(ValueError, match="reset"):
        ds.LIF(3, reset="soft")
    with pytest.raises(ValueError, match="neuron"):
        ds.SNNBlock(3, neuron="hodgkin_huxley")
    with pytest.raises(ValueError, match="units"):
        ds.SNNBlock(3, neuron=ds.LIF(4))


def test_wrong_input_rank():
    block = ds.SNNBlock(3)
    with pytest.raises(ValueError, match="inputs.*rank 2"):
        block(tf.zeros([2, 5, 4]), block.get_initial_state(batch_size=2))
    with pytest.raises(ValueError, match="rank 3"):
        ds.LeakyReadout(2)(tf.zeros([2, 4]))


def test_feature_size_mismatch():
    block = ds.SNNBlock(3)
    block(tf.zeros([2, 4]), block.get_initial_state(batch_size=2))
    with pytest.raises(ValueError, match="inputs.*5 features.*4"):
        block(tf.zeros([2, 5]), block.get_initial_state(batch_size=2))
    cell = ds.LIF(3)
    with pytest.raises(ValueError, match="inputs.*4 features.*3"):
        cell(tf.zeros([2, 4]), cell.get_initial_state(batch_size=2))


def test_non_numeric_input():
    block = ds.SNNBlock(3)
    with pytest.raises(TypeError, match="inputs.*numeric"):
        block(tf.constant([["a", "b"]]), block.get_initial_state(batch_size=1))
