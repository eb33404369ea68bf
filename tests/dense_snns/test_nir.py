"""NIR interchange: export -> import reproduces the outputs; a graph written the way
snnTorch writes one (its LIF conventions) imports and spikes as a NumPy simulation of NIR's
equations says; files round-trip; unsupported nodes and parameters are errors naming them."""

import numpy as np
import pytest

import dense_snns as ds
from dense_snns import keras

nir = pytest.importorskip(
    "nir", reason="nir is not installed (the test extras install it; none for Python 3.8 has v_reset)"
)
from dense_snns.nir import DEFAULT_DT, export_nir, import_nir  # noqa: E402

B, T, F = 3, 25, 6


def chain_model(neuron, self_recurrent=False):
    x = keras.Input((None, F))
    init = keras.initializers.RandomNormal(0.3, 0.6, seed=1)
    h = ds.SNNDense(7, neuron=neuron, self_recurrent=self_recurrent, kernel_initializer=init, name="h1")(x)
    h = ds.SpikeMonitor()(h)
    h = ds.SNNDense(5, neuron=neuron, kernel_initializer=keras.initializers.RandomNormal(0.2, 0.6, seed=2), name="h2")(
        h
    )
    y = ds.LeakyReadout(4, beta=0.8, bias_initializer=keras.initializers.RandomNormal(seed=3), name="out")(h)
    return keras.Model(x, y)


LIF = {"class_name": "lif", "config": {"beta": 0.9, "threshold": 0.5, "reset": "zero"}}
LIF_PER_NEURON = {"class_name": "lif", "config": dict(LIF["config"], beta=[0.9, 0.8, 0.85, 0.9, 0.7, 0.95, 0.9])}
CUBA = {"class_name": "cuba_lif", "config": {"alpha": 0.7, "beta": 0.9, "threshold": 0.5, "reset": "zero"}}


@pytest.mark.parametrize("neuron, recurrent", [(LIF, False), (LIF, True), (CUBA, False), (CUBA, True)])
def test_export_then_import_gives_the_same_outputs(neuron, recurrent, rng, tmp_path):
    model = chain_model(neuron, recurrent)
    graph = export_nir(model)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["h1.synapse"] == "Affine" and kinds["out.neuron"] == "LI"
    assert kinds["h1.neuron"] == ("LIF" if neuron["class_name"] == "lif" else "CubaLIF")
    assert ("h1.recurrent" in kinds) == recurrent
    x = (rng.random((B, T, F)) < 0.4).astype(np.float32)
    want = model(x).numpy()
    np.testing.assert_allclose(import_nir(graph)(x).numpy(), want, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "model.nir")
    nir.write(path, graph)
    np.testing.assert_allclose(import_nir(path)(x).numpy(), want, rtol=1e-5, atol=1e-5)


def test_per_neuron_decays_survive_the_round_trip(rng):
    x = keras.Input((None, F))
    h = ds.SNNDense(7, neuron=LIF_PER_NEURON, kernel_initializer=keras.initializers.RandomNormal(0.3, 0.6, seed=1))(x)
    model = keras.Model(x, ds.LeakyReadout(2)(h))
    graph = export_nir(model)
    lif = [node for node in graph.nodes.values() if type(node).__name__ == "LIF"][0]
    np.testing.assert_allclose(1 - DEFAULT_DT / lif.tau, LIF_PER_NEURON["config"]["beta"], rtol=1e-5)
    inputs = (rng.random((B, T, F)) < 0.4).astype(np.float32)
    np.testing.assert_allclose(import_nir(graph)(inputs).numpy(), model(inputs).numpy(), rtol=1e-5, atol=1e-5)


def simulate_nir(graph_parts, x, dt):
    """NumPy forward Euler of NIR's equations: Affine -> LIF -> Affine -> LI."""
    (w1, b1, lif), (w2, b2, li) = graph_parts
    batch, steps, _ = x.shape
    v = np.zeros((batch, w1.shape[0]))
    y = np.zeros((batch, w2.shape[0]))
    spikes, outputs = [], []
    for t in range(steps):
        current = x[:, t] @ w1.T + b1
        v = v + dt / lif.tau * (lif.v_leak - v + lif.r * current)
        z = (v > lif.v_threshold).astype(np.float64)
        v = np.where(z > 0, lif.v_reset, v)
        y = y + dt / li.tau * (li.v_leak - y + li.r * (z @ w2.T + b2))
        spikes.append(z)
        outputs.append(y)
    return np.stack(spikes, 1), np.stack(outputs, 1)


def test_a_graph_written_with_snntorch_conventions_imports_and_spikes_as_nir_says(rng):
    # snnTorch's export of Leaky(beta): tau = dt / (1 - beta), r = tau / dt, v_leak = 0; here
    # with an input gain (r) and a leak (v_leak) of its own to test the folding into weights.
    dt, units, classes = 1e-3, 8, 3
    beta = np.linspace(0.8, 0.95, units)
    tau = dt / (1 - beta)
    w1 = rng.normal(0.4, 0.5, (units, F)).astype(np.float32)
    b1 = rng.normal(0.0, 0.1, units).astype(np.float32)
    w2 = rng.normal(0.0, 0.5, (classes, units)).astype(np.float32)
    b2 = np.zeros(classes, np.float32)
    lif = nir.LIF(
        tau=tau.astype(np.float32),
        r=(1.5 * tau / dt).astype(np.float32),
        v_leak=np.full(units, 0.05, np.float32),
        v_threshold=np.full(units, 1.0, np.float32),
        v_reset=np.zeros(units, np.float32),
    )
    li = nir.LI(
        tau=np.full(classes, dt / 0.2, np.float32),
        r=np.full(classes, 5.0, np.float32),
        v_leak=np.zeros(classes, np.float32),
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([F])}),
            "fc1": nir.Affine(weight=w1, bias=b1),
            "lif1": lif,
            "fc2": nir.Affine(weight=w2, bias=b2),
            "li": li,
            "output": nir.Output(output_type={"output": np.array([classes])}),
        },
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "li"), ("li", "output")],
    )
    x = (rng.random((B, 40, F)) < 0.5).astype(np.float32)
    spikes, outputs = simulate_nir([(w1, b1, lif), (w2, b2, li)], x.astype(np.float64), dt)
    assert 0 < spikes.mean() < 1  # the test means something: some spikes, not all
    model = import_nir(graph, dt=dt)
    hidden = keras.Model(model.input, model.layers[1].output)(x).numpy()
    np.testing.assert_array_equal(hidden, spikes)
    np.testing.assert_allclose(model(x).numpy(), outputs, rtol=1e-4, atol=1e-4)


def test_unsupported_layers_and_parameters_are_errors_naming_them():
    x = keras.Input((None, F))
    subtract = keras.Model(x, ds.LeakyReadout(2)(ds.SNNDense(3, neuron="lif", name="h")(x)))
    with pytest.raises(ValueError, match=r"layer 'h': reset='subtract' has no NIR equivalent"):
        export_nir(subtract)
    alif = keras.Model(x, ds.LeakyReadout(2)(ds.SNNDense(3, neuron="alif", name="a")(x)))
    with pytest.raises(ValueError, match=r"layer 'a': neuron model 'alif' has no NIR node"):
        export_nir(alif)
    dense = keras.Model(x, ds.LeakyReadout(2)(keras.layers.Dense(3, name="plain")(x)))
    with pytest.raises(ValueError, match=r"layer 'plain' \(Dense\): export_nir takes chains"):
        export_nir(dense)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([F])}),
            "conv": nir.Linear(weight=np.ones((2, F), np.float32)),
            "if": nir.IF(r=np.ones(2, np.float32), v_threshold=np.ones(2, np.float32)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "conv"), ("conv", "if"), ("if", "output")],
    )
    with pytest.raises(ValueError, match=r"node 'if' \(IF\): not supported by import_nir"):
        import_nir(graph)


def test_sparse_layers_export_as_their_dense_equivalents(rng):
    import sparse_snns as sp

    n_in = 6
    ids, values = keras.Input((T, n_in), dtype="int32"), keras.Input((T, n_in))
    count = keras.Input((T,), dtype="int32")
    init = keras.initializers.RandomNormal(0.4, 0.5, seed=1)
    s = sp.SparseSNNDense(
        5, input_dim=n_in, capacity=5, neuron=CUBA, self_recurrent=True, kernel_initializer=init, name="s1"
    )([ids, values, count])
    y = sp.SparseLeakyReadout(3, input_dim=5, beta=0.85, name="out")(s)
    model = keras.Model([ids, values, count], y)
    raster = (rng.random((B, T, n_in)) < 0.4).astype(np.float32)
    sparse_input = [t.numpy() for t in sp.from_dense(raster, n_in)]
    imported = import_nir(export_nir(model))
    assert [type(layer).__name__ for layer in imported.layers[1:]] == ["SNNDense", "LeakyReadout"]
    np.testing.assert_allclose(imported(raster).numpy(), model(sparse_input).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding, strides", [("valid", 1), ("same", 1), ("same", 2)])
def test_a_convolutional_network_round_trips(padding, strides, rng):
    h, w, c, steps = 7, 7, 2, 12
    x = keras.Input((steps, h, w, c))
    init = keras.initializers.RandomNormal(0.3, 0.5, seed=1)
    conv = ds.SNNConv2D(4, 3, strides=strides, padding=padding, neuron=CUBA, kernel_initializer=init, name="c1")(x)
    flat = keras.layers.Reshape((steps, -1))(conv)
    h1 = ds.SNNDense(6, neuron=LIF, kernel_initializer=keras.initializers.RandomNormal(0.1, 0.3, seed=2))(flat)
    model = keras.Model(x, ds.LeakyReadout(3, name="out")(h1))
    graph = export_nir(model)
    kinds = [type(node).__name__ for node in graph.nodes.values()]
    assert kinds.count("Conv2d") == 1 and kinds.count("Flatten") == 1 and kinds.count("CubaLIF") == 1
    frames = (rng.random((B, steps, h, w, c)) < 0.4).astype(np.float32)
    imported = import_nir(graph)
    np.testing.assert_allclose(imported(frames).numpy(), model(frames).numpy(), rtol=1e-5, atol=1e-5)


def test_asymmetric_same_padding_is_refused():
    x = keras.Input((5, 8, 8, 1))
    conv = ds.SNNConv2D(2, 3, strides=2, padding="same", neuron=LIF, name="c")(x)
    model = keras.Model(x, ds.LeakyReadout(2)(ds.SNNDense(3, neuron=LIF)(keras.layers.Reshape((5, -1))(conv))))
    with pytest.raises(ValueError, match=r"layer 'c': padding='same' pads one side more"):
        export_nir(model)
