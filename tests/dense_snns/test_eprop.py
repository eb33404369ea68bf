"""e-prop: eligibility traces and updates of a tiny network against a NumPy implementation of
the paper's equations, exactness against BPTT where e-prop is exact (one layer, no
recurrence), its agreement with BPTT with recurrence, chunks of a stream, training, saving."""

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import eprop, keras

from helpers import config_round_trip, save_and_load

B, T, F, N, C = 2, 12, 3, 4, 2
KAPPA = 0.8


def tiny(neuron, self_recurrent=True, feedback="symmetric", hidden=(N,), **kwargs):
    layers = [
        ds.SNNDense(n, neuron=neuron, self_recurrent=self_recurrent, kernel_initializer=keras.initializers.RandomNormal(0.5, 0.5, seed=i),
                    recurrent_initializer=keras.initializers.RandomNormal(0.0, 0.5, seed=10 + i),
                    bias_initializer=keras.initializers.RandomNormal(0.1, 0.2, seed=20 + i))
        for i, n in enumerate(hidden)
    ]  # fmt: skip
    readout = ds.LeakyReadout(
        C,
        beta=KAPPA,
        kernel_initializer=keras.initializers.RandomNormal(0.0, 0.5, seed=4),
        bias_initializer=keras.initializers.RandomNormal(seed=3),
    )
    model = eprop.EProp(layers, readout, feedback=feedback, seed=7, **kwargs)
    model.build((B, None, F))
    return model


def data(rng, steps=T):
    x = (rng.random((B, steps, F)) < 0.5).astype(np.float32)
    return x, np.array([0, 1], np.int32)


ALIF = {"class_name": "alif", "config": {"beta": 0.9, "rho": 0.95, "threshold": 0.5, "adaptation": 0.3}}
LIF = {"class_name": "lif", "config": {"beta": 0.85, "threshold": 0.5}}


def psi(x, scale=10.0):
    """The pseudo-derivative of the SuperSpike surrogate (the default spike function)."""
    return 1.0 / (scale * np.abs(x) + 1.0) ** 2


def numpy_eprop(x, labels, w_in, w_rec, b, w_out, b_out, beta, threshold, rho=None, adaptation=0.0):
    """e-prop of one recurrent (A)LIF layer and a leaky readout, from Bellec et al. 2020.

    Neuron (reset by subtraction, its gradient stopped, spike at step t from the membrane of
    step t): v[t] = beta v[t-1] + I[t] - threshold z[t], z[t] = H(beta v[t-1] + I[t] -
    threshold - adaptation a[t-1]), a[t] = rho a[t-1] + (1 - rho) z[t]. The paper's
    eligibility traces (its eqs. for LIF and ALIF), in this timing:
        zbar_i[t] = beta zbar_i[t-1] + p_i[t]                (low-pass presynaptic trace)
        e_ji[t] = psi_j[t] (zbar_i[t] - adaptation epsa_ji[t-1])
        epsa_ji[t] = (1 - rho) psi_j[t] zbar_i[t] + (rho - (1 - rho) adaptation psi_j[t]) epsa_ji[t-1]
    with p = [x[t], z[t-1], 1]; the learning signal L_j[t] = sum_k W_out_jk (pi_k[t] - y*_k)
    (symmetric feedback), the traces filtered by the readout decay kappa, and
    dE/dW_ji = sum_t L_j[t] ebar_ji[t]; the readout's gradient sum_t zbar_out[t] (pi[t] - y*).
    Returns (traces [B, T, P, N], gradients as EProp.trained_variables).
    """
    batch, steps, _ = x.shape
    n = w_in.shape[1]
    v, a, z = np.zeros((batch, n)), np.zeros((batch, n)), np.zeros((batch, n))
    y = np.zeros((batch, w_out.shape[1]))
    size = x.shape[2] + n + 1
    zbar, epsa, ebar = np.zeros((batch, size)), np.zeros((batch, size, n)), np.zeros((batch, size, n))
    out_bar = np.zeros((batch, n + 1))
    grad, grad_out = np.zeros((size, n)), np.zeros((n + 1, w_out.shape[1]))
    traces = np.zeros((batch, steps, size, n))
    onehot = np.eye(w_out.shape[1])[labels]
    for t in range(steps):
        p = np.concatenate([x[:, t], z, np.ones((batch, 1))], axis=1)
        current = p @ np.concatenate([w_in, w_rec, b[None]], axis=0)
        pre = beta * v + current - threshold - adaptation * a
        z = (pre > 0).astype(float)
        h = psi(pre)
        v = beta * v + current - threshold * z
        zbar = beta * zbar + p
        e = h[:, None, :] * (zbar[:, :, None] - adaptation * epsa)
        if rho is not None:
            epsa = (1 - rho) * h[:, None, :] * zbar[:, :, None] + (rho - (1 - rho) * adaptation * h[:, None, :]) * epsa
            a = rho * a + (1 - rho) * z
        traces[:, t] = e
        ebar = KAPPA * ebar + e
        y = KAPPA * y + z @ w_out + b_out
        pi = np.exp(y - y.max(axis=1, keepdims=True))
        pi /= pi.sum(axis=1, keepdims=True)
        delta = (pi - onehot) / (batch * steps)
        grad += np.einsum("bpn,bn->pn", ebar, delta @ w_out.T)
        out_bar = KAPPA * out_bar + np.concatenate([z, np.ones((batch, 1))], axis=1)
        grad_out += out_bar.T @ delta
    f = x.shape[2]
    return traces, [grad[:f], grad[f : f + n], grad[-1], grad_out[:n], grad_out[-1]]


@pytest.mark.parametrize("neuron", [LIF, ALIF], ids=["lif", "alif"])
def test_traces_and_updates_equal_the_papers_equations(neuron, rng):
    model = tiny(neuron)
    x, labels = data(rng)
    layer, readout = model.hidden[0], model.readout
    w_in, w_rec, b = (
        v.numpy().astype(np.float64) for v in (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias)
    )
    w_out, b_out = readout.cell.kernel.numpy().astype(np.float64), readout.cell.bias.numpy().astype(np.float64)
    c = neuron["config"]
    traces, grads = numpy_eprop(x.astype(np.float64), labels, w_in, w_rec, b, w_out, b_out, c["beta"], c["threshold"],
                                c.get("rho"), c.get("adaptation", 0.0))  # fmt: skip
    got_traces = model.eligibility_traces(x)[0].numpy()
    spikes = model.hidden[0](x).numpy()
    assert 0 < spikes.mean() < 0.8  # the case exercises spiking and silence
    np.testing.assert_allclose(got_traces, traces, rtol=1e-4, atol=1e-5)
    got = model.gradients(x, labels)
    assert len(got) == len(grads) == len(model.trained_variables)
    for g, want in zip(got, grads):
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-4, atol=1e-6)


def bptt_gradients(model, x, labels):
    variables = model.trained_variables
    with tf.GradientTape() as tape:
        loss = eprop.per_step_cross_entropy(model(x), labels)
    return tape.gradient(loss, variables)


@pytest.mark.parametrize("neuron", ["cuba_lif", "lif_neuron", ALIF])
def test_one_layer_without_recurrence_is_exactly_bptt(neuron, rng):
    model = tiny(neuron, self_recurrent=False)
    x, labels = data(rng, steps=20)
    for g, want in zip(model.gradients(x, labels), bptt_gradients(model, x, labels)):
        np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-4, atol=1e-7)


def cosine(a, b):
    a = np.concatenate([g.numpy().ravel() for g in a])
    b = np.concatenate([g.numpy().ravel() for g in b])
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_with_recurrence_eprop_points_where_bptt_does(rng):
    model = tiny(ALIF, hidden=(16,))
    x, labels = data(rng, steps=30)
    # the hidden layer's kernel, recurrent kernel and bias (the readout's gradient is exact)
    hidden = slice(0, 3)
    similarity = cosine(model.gradients(x, labels)[hidden], bptt_gradients(model, x, labels)[hidden])
    assert 0.5 < similarity < 1.0 - 1e-4  # an approximation, and a good one
    model = tiny(ALIF, hidden=(16,), feedback="random")
    assert cosine(model.gradients(x, labels)[hidden], bptt_gradients(model, x, labels)[hidden]) < similarity


def test_a_stream_in_chunks_gives_the_gradient_of_the_whole_sequence(rng):
    whole = tiny(ALIF)
    chunked = tiny(ALIF, stateful=True)
    for target, source in zip(chunked.trained_variables, whole.trained_variables):
        target.assign(source)
    x, labels = data(rng, steps=12)
    want = whole.gradients(x, labels)
    first = chunked.gradients(x[:, :5], labels)
    second = chunked.gradients(x[:, 5:], labels)
    for w, g1, g2 in zip(want, first, second):  # each chunk's loss is its own mean over steps
        np.testing.assert_allclose((5 * g1.numpy() + 7 * g2.numpy()) / 12, w.numpy(), rtol=1e-4, atol=1e-7)
    chunked.reset_states()
    np.testing.assert_allclose(chunked.gradients(x[:, :5], labels)[0].numpy(), first[0].numpy(), rtol=1e-6)


def test_fit_trains_a_tiny_task(rng):
    """Two classes of input told apart by which half of the inputs fires."""
    x = np.zeros((64, 20, 8), np.float32)
    labels = np.arange(64) % 2
    for i, label in enumerate(labels):
        x[i, :, 4 * label : 4 * label + 4] = rng.random((20, 4)) < 0.3
    model = eprop.EProp([ds.SNNDense(16, neuron="lif", self_recurrent=True)], ds.LeakyReadout(2), seed=1)
    model.compile(keras.optimizers.Adam(0.02))
    history = model.fit(x, labels, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert model.evaluate(x, labels, verbose=0, return_dict=True)["acc"] > 0.95


def test_config_and_save_round_trip(rng, tmp_path):
    model = tiny(ALIF, hidden=(5, 4), feedback="random")
    x, labels = data(rng)
    clone = config_round_trip(model)
    assert [type(layer) for layer in clone.hidden] == [ds.SNNDense, ds.SNNDense]
    model(x)  # a subclassed model's SavedModel (Keras 2.6) needs the input shapes of a call
    loaded = save_and_load(model, tmp_path / "eprop.keras")
    for g, want in zip(loaded.gradients(x, labels), model.gradients(x, labels)):
        np.testing.assert_array_equal(g.numpy(), want.numpy())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="hidden must hold at least one SNNDense layer"):
        eprop.EProp([], ds.LeakyReadout(2))
    with pytest.raises(ValueError, match="hidden layers must be SNNDense layers, got Dense"):
        eprop.EProp([keras.layers.Dense(3)], ds.LeakyReadout(2))
    with pytest.raises(ValueError, match="readout must be a LeakyReadout, got SNNDense"):
        eprop.EProp([ds.SNNDense(3)], ds.SNNDense(2))
    with pytest.raises(ValueError, match=r"`feedback` must be one of \('symmetric', 'random'\)"):
        eprop.EProp([ds.SNNDense(3)], ds.LeakyReadout(2), feedback="mirror")
    with pytest.raises(ValueError, match="does not spike"):
        eprop.EProp([ds.SNNDense(3, neuron="leaky_integrator")], ds.LeakyReadout(2))
    model = eprop.EProp([ds.SNNDense(3)], ds.LeakyReadout(2, beta=[0.8, 0.9]))
    with pytest.raises(ValueError, match=r"one decay for all units, got beta=\[0.8"):
        model.build((1, None, 2))


def test_bad_inputs_and_labels_name_both_shapes(rng):
    model = tiny(LIF)
    x, labels = data(rng)
    with pytest.raises(ValueError, match=r"features \[2\], but the model \(as built\) has \[3\]"):
        model.gradients(x[:, :, :2], labels)
    with pytest.raises(
        ValueError, match=r"`labels` must be \[batch\] or \[batch, time\] of `inputs` \(2, 12, 3\), got shape \(3,\)"
    ):
        model.gradients(x, np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"got shape \(2, 4\)"):
        model.gradients(x, np.zeros((2, 4), np.int32))
    assert len(model.gradients(x, np.zeros((B, T), np.int32))) == len(model.trained_variables)  # one label per step
