"""Tests of the SNN graph specification (snns_as_gnn.spec)."""

import json
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snns_as_gnn import GraphSpecError, NodeSpec, SNNGraph, chain, known_neuron_models

SEED_CONNECTIVITY = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]


@pytest.fixture
def seed_graph():
    return SNNGraph.from_adjacency(SEED_CONNECTIVITY, 16, inputs=[0], outputs=[4], input_size=7)


def small_nodes(*names, units=4):
    return [NodeSpec(name, units) for name in names]


# -- the seed's 5-node example ------------------------------------------------------------


def test_seed_example_structure(seed_graph):
    g = seed_graph
    assert g.node_names == ("node0", "node1", "node2", "node3", "node4")
    assert g.adjacency() == SEED_CONNECTIVITY
    assert g.sources("node1") == ["node0", "node2", "node3"]
    assert g.targets("node1") == ["node0", "node2", "node3"]
    assert g.sources("node4") == ["node3", "node4"]
    assert g.targets("node4") == ["node4"]
    assert g.targets("node0") == ["node1"]
    assert g.inputs == ("node0",) and g.outputs == ("node4",)
    assert len(g.edges) == sum(len(s) for s in SEED_CONNECTIVITY)
    assert g.is_input("node0") and not g.is_input("node1")
    assert g.is_output("node4") and not g.is_output("node0")
    assert g.reachable_from_inputs() == list(g.node_names)
    assert len(g) == 5 and g.total_units == 80


def test_seed_example_fan_in(seed_graph):
    assert seed_graph.fan_in("node0") == 16 + 7  # node1 + external input
    assert seed_graph.fan_in("node1") == 3 * 16
    assert seed_graph.fan_in("node4") == 2 * 16
    no_size = SNNGraph.from_adjacency(SEED_CONNECTIVITY, 16, [0], [4])
    assert no_size.fan_in("node0") == 16


def test_adjacency_matrix(seed_graph):
    matrix = seed_graph.adjacency_matrix()
    assert matrix.shape == (5, 5) and matrix.dtype == bool
    for target, sources in enumerate(SEED_CONNECTIVITY):
        for source in range(5):
            assert matrix[source, target] == (source in sources)


def test_defaults_and_node_lookup(seed_graph):
    node = seed_graph.node("node2")
    assert node == NodeSpec("node2", 16)
    assert node.neuron == "cuba_lif" and node.neuron_config == {} and node.capacity is None
    assert seed_graph.index("node3") == 3
    assert "node3" in seed_graph and "nope" not in seed_graph
    with pytest.raises(GraphSpecError, match="unknown node 'nope'"):
        seed_graph.sources("nope")


# -- serialisation ------------------------------------------------------------------------


def test_json_round_trip(seed_graph):
    data = seed_graph.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert SNNGraph.from_dict(data).to_dict() == data
    again = SNNGraph.from_json(seed_graph.to_json())
    assert again == seed_graph
    assert again.to_dict() == data
    assert again.to_json() == seed_graph.to_json()
    assert SNNGraph.from_json(seed_graph.to_json(indent=2)) == seed_graph


def test_round_trip_with_configs_and_numpy_values():
    nodes = [
        NodeSpec("in", 10, "alif", {"beta": np.float32(0.5), "threshold": np.array([1.0, 2.0])}, capacity=np.int64(3)),
        NodeSpec("hid", 20, "cuba_lif", {"alpha": 0.7, "spike_func": {"name": "fast_sigmoid", "scale": 10}}),
        NodeSpec("out", 5, "lif", capacity=5),
    ]
    g = SNNGraph(nodes, [("in", "hid"), ("hid", "hid"), ("hid", "out")], ["in"], ["out"], input_size=np.int32(4))
    assert g.node("in").neuron_config == {"beta": 0.5, "threshold": [1.0, 2.0]}
    assert type(g.node("in").capacity) is int and type(g.input_size) is int
    text = g.to_json()
    back = SNNGraph.from_json(text)
    assert back == g and back.to_json() == text and back.to_dict() == g.to_dict()
    assert hash(back) == hash(g)
    assert hash(back.node("hid")) == hash(g.node("hid"))


def test_edge_order_is_canonical():
    nodes = small_nodes("a", "b", "c")
    e1 = [("b", "c"), ("a", "b"), ("c", "a")]
    g1 = SNNGraph(nodes, e1, ["a"], ["c"])
    g2 = SNNGraph(nodes, list(reversed(e1)), ["a"], ["c"])
    assert g1 == g2
    assert g1.edges == (("a", "b"), ("b", "c"), ("c", "a"))


def test_from_dict_errors(seed_graph):
    data = seed_graph.to_dict()
    with pytest.raises(GraphSpecError, match="missing key 'edges'"):
        SNNGraph.from_dict({k: v for k, v in data.items() if k != "edges"})
    with pytest.raises(GraphSpecError, match="unknown keys \\['extra'\\]"):
        SNNGraph.from_dict(dict(data, extra=1))
    bad = json.loads(json.dumps(data))
    bad["nodes"][2]["colour"] = "red"
    with pytest.raises(GraphSpecError, match="node 'node2': unknown keys \\['colour'\\]"):
        SNNGraph.from_dict(bad)
    bad = json.loads(json.dumps(data))
    del bad["nodes"][1]["units"]
    with pytest.raises(GraphSpecError, match="node 'node1': missing key 'units'"):
        SNNGraph.from_dict(bad)
    with pytest.raises(GraphSpecError, match="not valid JSON"):
        SNNGraph.from_json("{nodes: ")


# -- validation errors --------------------------------------------------------------------


def test_empty_graph():
    with pytest.raises(GraphSpecError, match="empty graph"):
        SNNGraph([], [], [], [])
    with pytest.raises(GraphSpecError, match="empty graph"):
        SNNGraph.from_adjacency([], 4, [], [])
    with pytest.raises(GraphSpecError, match="empty graph"):
        chain([])


def test_duplicate_node_name():
    with pytest.raises(GraphSpecError, match="duplicate node name 'b'"):
        SNNGraph(small_nodes("a", "b", "b"), [("a", "b")], ["a"], ["b"])


def test_duplicate_edge():
    with pytest.raises(GraphSpecError, match="duplicate edge \\('a', 'b'\\)"):
        SNNGraph(small_nodes("a", "b"), [("a", "b"), ["a", "b"]], ["a"], ["b"])
    with pytest.raises(GraphSpecError, match="duplicate edge \\('node0', 'node1'\\)"):
        SNNGraph.from_adjacency([[], [0, 0]], 4, [0], [1])


@pytest.mark.parametrize(
    "edges, match",
    [
        ([("a", "zz")], "edge \\('a', 'zz'\\): unknown target node 'zz'"),
        ([("yy", "b")], "edge \\('yy', 'b'\\): unknown source node 'yy'"),
        ([("a",)], "edge \\('a',\\) must be a \\(source, target\\) pair"),
        ([("a", "b", "c")], "must be a \\(source, target\\) pair"),
        ([("a", 1)], "edge \\('a', 1\\) must be a \\(source, target\\) pair"),
        (["ab"], "edge 'ab' must be a \\(source, target\\) pair"),
    ],
)
def test_bad_edges(edges, match):
    with pytest.raises(GraphSpecError, match=match):
        SNNGraph(small_nodes("a", "b"), edges, ["a"], ["b"])


def test_unknown_input_and_output():
    nodes = small_nodes("a", "b")
    with pytest.raises(GraphSpecError, match="inputs: unknown node 'x'"):
        SNNGraph(nodes, [("a", "b")], ["x"], ["b"])
    with pytest.raises(GraphSpecError, match="outputs: unknown node 'y'"):
        SNNGraph(nodes, [("a", "b")], ["a"], ["y"])
    with pytest.raises(GraphSpecError, match="inputs: node 'a' listed twice"):
        SNNGraph(nodes, [("a", "b")], ["a", "a"], ["b"])


def test_at_least_one_input_and_output():
    nodes = small_nodes("a", "b")
    with pytest.raises(GraphSpecError, match="inputs must name at least one node"):
        SNNGraph(nodes, [("a", "b")], [], ["b"])
    with pytest.raises(GraphSpecError, match="outputs must name at least one node"):
        SNNGraph(nodes, [("a", "b")], ["a"], [])


def test_single_name_string_for_inputs_outputs():
    g = SNNGraph(small_nodes("a", "b"), [("a", "b")], "a", "b")
    assert g.inputs == ("a",) and g.outputs == ("b",)


def test_unreachable_output():
    nodes = small_nodes("a", "b", "c", "d")
    # c <-> d form a cycle that no input reaches
    edges = [("a", "b"), ("c", "d"), ("d", "c")]
    with pytest.raises(GraphSpecError, match="output node 'd' is not reachable from any input"):
        SNNGraph(nodes, edges, ["a"], ["b", "d"])
    # edge direction matters: b -> a does not make b reachable from a
    with pytest.raises(GraphSpecError, match="output node 'b' is not reachable"):
        SNNGraph(small_nodes("a", "b"), [("b", "a")], ["a"], ["b"])
    with pytest.raises(GraphSpecError, match="output node 'node4' is not reachable"):
        SNNGraph.from_adjacency([[1], [0], [1], [2], [4]], 4, [0], [4])


def test_input_node_is_its_own_output():
    g = SNNGraph(small_nodes("a"), [], ["a"], ["a"])
    assert g.adjacency() == [[]] and g.sources("a") == [] and g.targets("a") == []


def test_unknown_neuron_model():
    with pytest.raises(GraphSpecError, match="node 'h': unknown neuron model neuron='izhikevich'"):
        SNNGraph([NodeSpec("a", 3), {"name": "h", "units": 3, "neuron": "izhikevich"}], [("a", "h")], ["a"], ["h"])
    with pytest.raises(GraphSpecError, match="node 'node1': unknown neuron model neuron='nope'"):
        SNNGraph.from_adjacency([[], [0]], 4, [0], [1], neuron=["lif", "nope"])


def test_neuron_models_are_those_of_dense_snns():
    from dense_snns.cells import NEURON_MODELS

    assert set(known_neuron_models()) == set(NEURON_MODELS)
    for name in NEURON_MODELS:
        NodeSpec("n", 2, name)
    with pytest.raises(GraphSpecError, match="node 'q': unknown neuron model neuron='foo'"):
        NodeSpec("q", 2, "foo")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "", "units": 3}, "node name must be a non-empty string"),
        ({"name": 5, "units": 3}, "node name must be a non-empty string"),
        ({"name": "x", "units": 0}, "node 'x': units must be a positive integer, got 0"),
        ({"name": "x", "units": 2.5}, "node 'x': units must be a positive integer"),
        ({"name": "x", "units": True}, "node 'x': units must be a positive integer"),
        ({"name": "x", "units": 4, "capacity": 5}, "node 'x': capacity=5 exceeds units=4"),
        ({"name": "x", "units": 4, "capacity": 0}, "node 'x': capacity must be a positive integer"),
        ({"name": "x", "units": 4, "neuron": 3}, "node 'x': neuron must be a model name"),
        ({"name": "x", "units": 4, "neuron_config": [1]}, "node 'x': neuron_config must be a dict"),
        ({"name": "x", "units": 4, "neuron_config": {"units": 4}}, "node 'x': neuron_config must not set 'units'"),
        ({"name": "x", "units": 4, "neuron_config": {1: 2}}, "node 'x': neuron_config keys must be strings"),
        ({"name": "x", "units": 4, "neuron_config": {"f": object()}}, "node 'x': neuron_config\\['f'\\] must be JSON"),
        (
            {"name": "x", "units": 4, "neuron_config": {"b": float("nan")}},
            "node 'x': neuron_config\\['b'\\] must be finite",
        ),
    ],
)
def test_bad_node(kwargs, match):
    with pytest.raises(GraphSpecError, match=match):
        NodeSpec(**kwargs)


def test_bad_input_size():
    with pytest.raises(GraphSpecError, match="input_size must be a positive integer"):
        SNNGraph(small_nodes("a"), [], ["a"], ["a"], input_size=0)


def test_graph_spec_error_is_value_error():
    assert issubclass(GraphSpecError, ValueError)


# -- from_adjacency / chain -----------------------------------------------------------------


def test_units_list_and_per_node_options():
    g = SNNGraph.from_adjacency(
        SEED_CONNECTIVITY,
        [1, 2, 3, 4, 5],
        inputs=[0],
        outputs=[3, 4],
        neuron=["lif_neuron", "lif", "alif", "cuba_lif", "lif"],
        neuron_config=[None, {"beta": 0.8}, None, None, {"threshold": 0.5}],
        names=["a", "b", "c", "d", "e"],
        capacity=[None, 2, None, 1, 5],
    )
    assert [node.units for node in g.nodes] == [1, 2, 3, 4, 5]
    assert g.node("b").neuron == "lif" and g.node("b").neuron_config == {"beta": 0.8}
    assert g.node("e").capacity == 5 and g.node("a").capacity is None
    assert g.fan_in("b") == 1 + 3 + 4
    assert g.sources("b") == ["a", "c", "d"]
    assert g.outputs == ("d", "e")


def test_from_adjacency_errors():
    with pytest.raises(GraphSpecError, match="units has 3 entries but inp_connectivity has 5 nodes"):
        SNNGraph.from_adjacency(SEED_CONNECTIVITY, [4, 4, 4], [0], [4])
    with pytest.raises(GraphSpecError, match="node 'node2': units must be a positive integer, got -1"):
        SNNGraph.from_adjacency(SEED_CONNECTIVITY, [4, 4, -1, 4, 4], [0], [4])
    with pytest.raises(GraphSpecError, match="neuron has 2 entries"):
        SNNGraph.from_adjacency(SEED_CONNECTIVITY, 4, [0], [4], neuron=["lif", "lif"])
    with pytest.raises(GraphSpecError, match="names has 2 entries"):
        SNNGraph.from_adjacency(SEED_CONNECTIVITY, 4, [0], [4], names=["a", "b"])
    with pytest.raises(GraphSpecError, match="node 2 \\('node2'\\): bad source 7"):
        SNNGraph.from_adjacency([[1], [0], [1, 7]], 4, [0], [2])
    with pytest.raises(GraphSpecError, match="node 1 \\('node1'\\): bad source -1"):
        SNNGraph.from_adjacency([[1], [0, -1]], 4, [0], [1])
    with pytest.raises(GraphSpecError, match="node 1 \\('node1'\\): bad source 'x'"):
        SNNGraph.from_adjacency([[], ["x"]], 4, [0], [1])
    with pytest.raises(GraphSpecError, match="node 0 \\('node0'\\): sources must be a list"):
        SNNGraph.from_adjacency([3, [0]], 4, [0], [1])
    with pytest.raises(GraphSpecError, match="inputs: bad node index 9"):
        SNNGraph.from_adjacency([[], [0]], 4, [9], [1])
    with pytest.raises(GraphSpecError, match="outputs: bad node index -2"):
        SNNGraph.from_adjacency([[], [0]], 4, [0], [-2])


def test_from_adjacency_accepts_single_indices():
    g = SNNGraph.from_adjacency([[], [0]], 4, 0, 1)
    assert g.inputs == ("node0",) and g.outputs == ("node1",)


def test_self_loop_and_cycle_allowed():
    g = SNNGraph(small_nodes("a", "b", "c"), [("a", "a"), ("a", "b"), ("b", "c"), ("c", "a")], ["a"], ["c"])
    assert g.sources("a") == ["a", "c"]
    assert g.targets("a") == ["a", "b"]
    assert g.fan_in("a") == 8
    assert g.adjacency() == [[0, 2], [0], [1]]


def test_chain():
    g = chain([3, 5, 2], neuron="alif", input_size=6)
    assert g.node_names == ("node0", "node1", "node2")
    assert g.adjacency() == [[], [0], [1]]
    assert g.inputs == ("node0",) and g.outputs == ("node2",)
    assert g.fan_in("node0") == 6 and g.fan_in("node2") == 5
    assert all(node.neuron == "alif" for node in g.nodes)
    rec = chain([4, 4], self_recurrent=True, names=["x", "y"], capacity=2)
    assert rec.adjacency() == [[0], [0, 1]]
    assert rec.sources("y") == ["x", "y"] and rec.node("y").capacity == 2
    assert chain([7]).adjacency() == [[]]
    with pytest.raises(GraphSpecError, match="units_list must be a list"):
        chain(5)


# -- property: random graphs --------------------------------------------------------------


def _reachable(conn, inputs):
    targets = [[] for _ in conn]
    for target, sources in enumerate(conn):
        for source in sources:
            targets[source].append(target)
    seen = set(inputs)
    queue = deque(inputs)
    while queue:
        i = queue.popleft()
        for j in targets[i]:
            if j not in seen:
                seen.add(j)
                queue.append(j)
    return seen


@st.composite
def connected_graphs(draw):
    """Random source lists with inputs, and outputs chosen among the reachable nodes."""
    n = draw(st.integers(1, 8))
    conn = [sorted(draw(st.sets(st.integers(0, n - 1), max_size=n))) for _ in range(n)]
    inputs = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n)))
    reachable = sorted(_reachable(conn, inputs))
    outputs = draw(st.lists(st.sampled_from(reachable), min_size=1, max_size=len(reachable), unique=True))
    units = draw(st.one_of(st.integers(1, 64), st.lists(st.integers(1, 64), min_size=n, max_size=n)))
    return conn, units, inputs, outputs


@settings(max_examples=100, deadline=None)
@given(connected_graphs())
def test_property_from_adjacency_round_trip(case):
    conn, units, inputs, outputs = case
    g = SNNGraph.from_adjacency(conn, units, inputs, outputs)
    assert g.adjacency() == conn
    back = SNNGraph.from_json(g.to_json())
    assert back == g and back.to_dict() == g.to_dict() and back.adjacency() == conn
    rebuilt = SNNGraph.from_adjacency(back.adjacency(), [node.units for node in back.nodes], inputs, outputs)
    assert rebuilt == g
    for i, name in enumerate(g.node_names):
        assert [g.index(s) for s in g.sources(name)] == conn[i]
        assert [g.index(t) for t in g.targets(name)] == [j for j in range(len(conn)) if i in conn[j]]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_property_reachability_validation(data):
    n = data.draw(st.integers(1, 7))
    conn = [sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=3))) for _ in range(n)]
    inputs = [data.draw(st.integers(0, n - 1))]
    output = data.draw(st.integers(0, n - 1))
    if output in _reachable(conn, inputs):
        g = SNNGraph.from_adjacency(conn, 3, inputs, [output])
        assert f"node{output}" in g.reachable_from_inputs()
    else:
        with pytest.raises(GraphSpecError, match=f"output node 'node{output}' is not reachable"):
            SNNGraph.from_adjacency(conn, 3, inputs, [output])
