"""NIR interchange of graph layers: every edge carries a one-step Delay node; export ->
import reproduces the outputs; a graph with delays written with the nir API imports and
spikes as a NumPy simulation of NIR's equations says; unsupported delays are errors."""

import numpy as np
import pytest

import dense_snns as ds
from dense_snns import keras
from snns_as_gnn import GraphSNN, NodeSpec, SNNGraph

nir = pytest.importorskip(
    "nir", reason="nir is not installed (the test extras install it; none for Python 3.8 has v_reset)"
)
from dense_snns import nir as dense_nir  # noqa: E402
from dense_snns.nir import DEFAULT_DT, export_nir, import_nir  # noqa: E402

B, T, F = 3, 30, 6
LIF = {"beta": 0.9, "threshold": 0.5, "reset": "zero"}
CUBA = {"alpha": 0.7, "beta": 0.85, "threshold": 0.4, "reset": "zero"}


def ring_graph(isolated=False):
    """a, b input nodes; a -> b -> c -> a ring, a skip a -> c, a self-loop on c; b, c outputs;
    with `isolated`, a node d driven by its bias alone, with an edge into c."""
    nodes = [
        NodeSpec("a", 5, "lif", LIF),
        NodeSpec("b", 4, "cuba_lif", CUBA),
        NodeSpec("c", 6, "lif", dict(LIF, beta=[0.9, 0.8, 0.95, 0.7, 0.9, 0.85])),
    ]
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "c"), ("c", "c")]
    if isolated:
        nodes.append(NodeSpec("d", 3, "lif", LIF))
        edges.append(("d", "c"))
    return SNNGraph(nodes, edges, inputs=["a", "b"], outputs=["b", "c"])


def graph_layer(isolated=False, name="g"):
    return GraphSNN(
        ring_graph(isolated),
        kernel_initializer=keras.initializers.RandomNormal(0.25, 0.6, seed=3),
        bias_initializer=keras.initializers.RandomNormal(0.05, 0.2, seed=4),
        name=name,
    )


def readout(h):
    return ds.LeakyReadout(3, beta=0.8, bias_initializer=keras.initializers.RandomNormal(seed=5), name="out")(h)


def graph_only(isolated=False):
    x = keras.Input((None, F))
    return keras.Model(x, readout(graph_layer(isolated)(x)))


def dense_graph_dense():
    x = keras.Input((None, F))
    init = keras.initializers.RandomNormal(0.3, 0.6, seed=1)
    h = ds.SNNDense(7, neuron={"class_name": "lif", "config": LIF}, kernel_initializer=init, name="h1")(x)
    h = graph_layer()(h)
    h = ds.SNNDense(5, neuron={"class_name": "lif", "config": LIF}, kernel_initializer=init, name="h2")(h)
    return keras.Model(x, readout(h))


@pytest.mark.parametrize("build", [graph_only, lambda: graph_only(isolated=True), dense_graph_dense])
def test_export_then_import_of_a_graph_layer_gives_the_same_outputs(build, rng, tmp_path):
    model = build()
    graph = export_nir(model)
    layer = model.get_layer("g")
    delays = {name: node for name, node in graph.nodes.items() if type(node).__name__ == "Delay"}
    assert len(delays) == len(layer.graph.edges)
    for source, target in layer.graph.edges:
        delay = delays[f"g.{source}_to_{target}.delay"]
        np.testing.assert_allclose(delay.delay, np.full(layer.graph.node(source).units, DEFAULT_DT))
        assert (f"g.{source}.neuron", f"g.{source}_to_{target}.delay") in graph.edges
    x = (rng.random((B, T, F)) < 0.4).astype(np.float32)
    want = model(x).numpy()
    imported = import_nir(graph)
    np.testing.assert_allclose(imported(x).numpy(), want, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "graph.nir")
    nir.write(path, graph)
    from_file = import_nir(path)
    np.testing.assert_allclose(from_file(x).numpy(), want, rtol=1e-5, atol=1e-5)
    rebuilt = from_file.get_layer("g").graph
    assert set(rebuilt.edges) == set(layer.graph.edges) and set(rebuilt.outputs) == {"b", "c"}


def test_a_graph_with_delays_written_with_the_nir_api_spikes_as_nir_says(rng):
    # input -> Affine -> LIF a; a -> Delay(dt) -> Linear -> LIF b; b -> Delay(dt) -> Linear -> a;
    # b -> Affine -> LI -> output. NIR's LIF: tau dv/dt = (v_leak - v) + r I, forward Euler.
    dt = 1e-3
    n_a, n_b = 4, 3
    w_in, b_in = rng.normal(0.4, 0.5, (n_a, F)), rng.normal(0.05, 0.1, n_a)
    w_ab, w_ba = rng.normal(0.3, 0.6, (n_b, n_a)), rng.normal(0.2, 0.6, (n_a, n_b))
    w_out, b_out = rng.normal(0, 0.5, (2, n_b)), rng.normal(0, 0.1, 2)
    lif_a = nir.LIF(
        tau=np.full(n_a, 0.01),
        r=np.full(n_a, 8.0),
        v_leak=np.full(n_a, 0.05),
        v_threshold=np.full(n_a, 0.5),
        v_reset=np.zeros(n_a),
    )
    lif_b = nir.LIF(
        tau=np.full(n_b, 0.02),
        r=np.full(n_b, 15.0),
        v_leak=np.zeros(n_b),
        v_threshold=np.full(n_b, 0.3),
        v_reset=np.zeros(n_b),
    )
    li = nir.LI(tau=np.full(2, 0.005), r=np.full(2, 5.0), v_leak=np.zeros(2))
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([F])}),
            "in_a": nir.Affine(weight=w_in, bias=b_in),
            "a": lif_a,
            "a_delay": nir.Delay(delay=np.full(n_a, dt)),
            "a_to_b": nir.Linear(weight=w_ab),
            "b": lif_b,
            "b_delay": nir.Delay(delay=np.full(n_b, dt)),
            "b_to_a": nir.Linear(weight=w_ba),
            "b_out": nir.Affine(weight=w_out, bias=b_out),
            "li": li,
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[
            ("input", "in_a"),
            ("in_a", "a"),
            ("a", "a_delay"),
            ("a_delay", "a_to_b"),
            ("a_to_b", "b"),
            ("b", "b_delay"),
            ("b_delay", "b_to_a"),
            ("b_to_a", "a"),
            ("b", "b_out"),
            ("b_out", "li"),
            ("li", "output"),
        ],
    )
    x = (rng.random((B, T, F)) < 0.5).astype(np.float64)
    v_a, v_b, y = np.zeros((B, n_a)), np.zeros((B, n_b)), np.zeros((B, 2))
    z_a, z_b = np.zeros((B, n_a)), np.zeros((B, n_b))
    outputs = []
    for t in range(T):
        i_a = x[:, t] @ w_in.T + b_in + z_b @ w_ba.T  # b's spikes one step late
        i_b = z_a @ w_ab.T  # a's spikes one step late
        v_a = v_a + dt / lif_a.tau * (lif_a.v_leak - v_a + lif_a.r * i_a)
        v_b = v_b + dt / lif_b.tau * (lif_b.v_leak - v_b + lif_b.r * i_b)
        z_a, z_b = (v_a > lif_a.v_threshold).astype(float), (v_b > lif_b.v_threshold).astype(float)
        v_a, v_b = np.where(z_a > 0, 0.0, v_a), np.where(z_b > 0, 0.0, v_b)
        y = y + dt / li.tau * (li.v_leak - y + li.r * (z_b @ w_out.T + b_out))
        outputs.append(y)
    want = np.stack(outputs, 1)
    assert 0 < np.abs(want).sum()
    model = import_nir(graph, dt=dt)
    layer = [layer for layer in model.layers if isinstance(layer, GraphSNN)][0]
    assert set(layer.graph.edges) == {("a", "b"), ("b", "a")} and layer.graph.outputs == ("b",)
    np.testing.assert_allclose(model(x.astype(np.float32)).numpy(), want, rtol=1e-4, atol=1e-5)


def delayed_graph(delay_steps):
    dt = DEFAULT_DT
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "in": nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2)),
            "n": nir.LIF(
                tau=np.full(2, 1e-3),
                r=np.full(2, 10.0),
                v_leak=np.zeros(2),
                v_threshold=np.ones(2),
                v_reset=np.zeros(2),
            ),
            "d": nir.Delay(delay=np.full(2, delay_steps * dt)),
            "loop": nir.Linear(weight=np.eye(2)),
            "ro": nir.Affine(weight=np.ones((1, 2)), bias=np.zeros(1)),
            "li": nir.LI(tau=np.full(1, 1e-3), r=np.full(1, 10.0), v_leak=np.zeros(1)),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[
            ("input", "in"),
            ("in", "n"),
            ("n", "d"),
            ("d", "loop"),
            ("loop", "n"),
            ("n", "ro"),
            ("ro", "li"),
            ("li", "output"),
        ],
    )


def test_a_delay_of_one_step_is_a_self_loop_edge_and_longer_delays_are_errors():
    model = import_nir(delayed_graph(1))
    layer = [layer for layer in model.layers if isinstance(layer, GraphSNN)][0]
    assert layer.graph.edges == (("n", "n"),)
    with pytest.raises(ValueError, match=r"node 'd' \(Delay\): delays of .* only one step"):
        import_nir(delayed_graph(2))


def test_without_the_graph_importer_delays_name_the_package(monkeypatch):
    monkeypatch.setattr(dense_nir, "_GRAPH_IMPORTERS", [])
    with pytest.raises(ValueError, match=r"\['n'\].*GraphSNN; import snns_as_gnn"):
        import_nir(delayed_graph(1))


def test_a_graph_node_with_an_unexported_neuron_is_named():
    graph = SNNGraph([NodeSpec("a", 3, "alif")], [], inputs="a", outputs="a")
    x = keras.Input((None, F))
    model = keras.Model(x, readout(GraphSNN(graph, name="g")(x)))
    with pytest.raises(ValueError, match=r"layer 'g.a': neuron model 'alif' has no NIR node"):
        export_nir(model)
