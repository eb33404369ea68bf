"""Tests of the device placement plan (snns_as_gnn.placement); pure Python, no TensorFlow."""

import itertools
import json
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snns_as_gnn import (
    DEFAULT_CUT_WEIGHT,
    PlacementError,
    PlacementPlan,
    SNNGraph,
    chain,
    manual_placement,
    node_work,
    plan_placement,
)

SEED_CONNECTIVITY = [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]
SEED_UNITS = [16, 32, 8, 16, 4]
METHODS = ["auto", "heuristic", "exhaustive"]


def devs(count, kind="CPU"):
    return [f"/device:{kind}:{i}" for i in range(count)]


@pytest.fixture
def seed_graph():
    return SNNGraph.from_adjacency(SEED_CONNECTIVITY, units=SEED_UNITS, inputs=[0], outputs=[4], input_size=10)


def round_robin(graph, devices):
    return manual_placement(
        graph, {name: devices[i % len(devices)] for i, name in enumerate(graph.node_names)}, devices
    )


def brute_force_best(graph, devices, cut_weight=DEFAULT_CUT_WEIGHT):
    """Smallest objective over every assignment that leaves no device empty."""
    names = graph.node_names
    best = float("inf")
    for combo in itertools.product(devices, repeat=len(names)):
        if len(names) >= len(devices) and len(set(combo)) < len(devices):
            continue
        best = min(best, manual_placement(graph, dict(zip(names, combo)), devices).objective(cut_weight))
    return best


def two_chains(interleaved=False, units=8):
    """Two independent 4-node chains A0->A1->A2->A3 and B0->...->B3."""
    names = [f"A{i}" for i in range(4)] + [f"B{i}" for i in range(4)]
    if interleaved:
        names = [n for pair in zip(names[:4], names[4:]) for n in pair]
    pos = {name: i for i, name in enumerate(names)}
    conn = []
    for name in names:
        k = int(name[1])
        conn.append([] if k == 0 else [pos[f"{name[0]}{k - 1}"]])
    return SNNGraph.from_adjacency(
        conn, units, inputs=[pos["A0"], pos["B0"]], outputs=[pos["A3"], pos["B3"]], names=names
    )


# -- node work -------------------------------------------------------------------------


def test_node_work_seed_graph(seed_graph):
    # units * (source units [+ input_size for the input node]) + units
    assert node_work(seed_graph, "node0") == 16 * (32 + 10) + 16
    assert node_work(seed_graph, "node1") == 32 * (16 + 8 + 16) + 32
    assert node_work(seed_graph, "node2") == 8 * (32 + 8) + 8
    assert node_work(seed_graph, "node3") == 16 * (32 + 8 + 16) + 16
    assert node_work(seed_graph, "node4") == 4 * (16 + 4) + 4


def test_node_work_unknown_input_size_uses_units():
    g = SNNGraph.from_adjacency(SEED_CONNECTIVITY, units=SEED_UNITS, inputs=[0], outputs=[4])
    assert node_work(g, "node0") == 16 * (32 + 16) + 16
    assert node_work(chain([5]), "node0") == 5 * 5 + 5  # an isolated input node
    g2 = SNNGraph.from_adjacency([[], [0]], units=[3, 7], inputs=[0], outputs=[1])
    assert node_work(g2, "node0") == 3 * 3 + 3
    assert node_work(g2, "node1") == 7 * 3 + 7


def test_node_work_errors(seed_graph):
    with pytest.raises(ValueError, match="nodeX"):
        node_work(seed_graph, "nodeX")
    with pytest.raises(PlacementError, match="graph must be an SNNGraph"):
        node_work({"nodes": []}, "node0")


# -- the seed's 5-node graph -----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_seed_graph_one_device(seed_graph, method):
    plan = plan_placement(seed_graph, ["/CPU:0"], method=method)
    assert dict(plan) == {name: "/CPU:0" for name in seed_graph.node_names}
    assert plan.devices == ("/CPU:0",)
    assert plan.stages() == [list(seed_graph.node_names)]
    assert plan.balance() == 1.0
    assert plan.cut_edges() == [] and plan.cut_traffic() == 0
    assert plan.load("/CPU:0") == plan.total_work() == sum(node_work(seed_graph, n) for n in seed_graph.node_names)
    assert plan.objective() == 1.0


@pytest.mark.parametrize("count", [2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_seed_graph_is_optimal(seed_graph, count, method):
    devices = devs(count, "IPU")
    plan = plan_placement(seed_graph, devices, method=method)
    assert set(plan.devices) == set(devices) and plan.devices == tuple(devices)
    assert sorted(plan) == sorted(seed_graph.node_names)
    assert all(plan.nodes_on(device) for device in devices)  # no empty device
    assert plan.objective() == pytest.approx(brute_force_best(seed_graph, devices), abs=1e-12)
    assert plan.objective() <= round_robin(seed_graph, devices).objective() + 1e-12
    # canonical labels: the first device holds the first node
    assert plan.device_of("node0") == devices[0]


def test_seed_graph_two_devices_plan(seed_graph):
    plan = plan_placement(seed_graph, ["/CPU:0", "/CPU:1"])
    # work: node0 688, node1 1312, node2 328, node3 912, node4 84 (total 3324)
    assert plan.stages() == [["node0", "node3", "node4"], ["node1", "node2"]]
    assert plan.load("/CPU:0") == 688 + 912 + 84 and plan.load("/CPU:1") == 1312 + 328
    assert plan.balance() == pytest.approx(1684 * 2 / 3324)
    assert plan.cut_edges() == [
        ("node0", "node1"),
        ("node1", "node0"),
        ("node1", "node3"),
        ("node2", "node3"),
        ("node3", "node1"),
    ]
    assert plan.cut_traffic() == 16 + 32 + 32 + 8 + 16


def test_plan_queries_on_manual_plan(seed_graph):
    devices = ["/CPU:0", "/CPU:1", "/CPU:2"]
    mapping = {"node0": "/CPU:1", "node1": "/CPU:1", "node2": "/CPU:0", "node3": "/CPU:0", "node4": "/CPU:0"}
    plan = manual_placement(seed_graph, mapping, devices)
    assert plan.device_of("node2") == "/CPU:0" and plan["node0"] == "/CPU:1"
    assert list(plan) == list(seed_graph.node_names) and len(plan) == 5
    assert plan.nodes_on("/CPU:0") == ["node2", "node3", "node4"]
    assert plan.nodes_on("/CPU:2") == []
    assert plan.stages() == [["node2", "node3", "node4"], ["node0", "node1"], []]
    assert plan.loads() == {"/CPU:0": 328 + 912 + 84, "/CPU:1": 688 + 1312, "/CPU:2": 0}
    assert plan.load("/CPU:2") == 0
    assert plan.balance() == pytest.approx(2000 * 3 / 3324)
    # edges node1 -> node2, node1 -> node3, node2 -> node1, node3 -> node1 cross devices
    assert plan.cut_edges() == [("node1", "node2"), ("node1", "node3"), ("node2", "node1"), ("node3", "node1")]
    assert plan.cut_traffic() == 32 + 32 + 8 + 16
    # all edges but the self-loops node2, node3, node4 can be cut
    assert plan.total_traffic() == 16 + 32 * 3 + 8 * 2 + 16 * 2
    assert plan.cut_fraction() == pytest.approx(88 / 160)
    assert plan.objective(0.5) == pytest.approx(plan.balance() + 0.5 * 88 / 160)
    assert plan.work("node1") == 1312
    # devices default to those used, in node order
    assert manual_placement(seed_graph, mapping).devices == ("/CPU:1", "/CPU:0")


def test_plan_is_immutable(seed_graph):
    plan = plan_placement(seed_graph, ["a", "b"])
    with pytest.raises(TypeError):
        plan["node0"] = "b"
    with pytest.raises(AttributeError):
        plan._devices = ("x",)
    with pytest.raises(TypeError):
        plan.assignment["node0"] = "b"
    mapping = {name: "a" for name in seed_graph.node_names}
    frozen = manual_placement(seed_graph, mapping, ["a", "b"])
    mapping["node0"] = "b"  # the plan keeps its own copy
    assert frozen["node0"] == "a"
    assert hash(frozen) == hash(manual_placement(seed_graph, {n: "a" for n in seed_graph.node_names}, ["a", "b"]))


# -- balance and cut on designed graphs ------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_two_independent_chains_split_perfectly(method):
    g = two_chains()
    plan = plan_placement(g, ["/CPU:0", "/CPU:1"], method=method)
    assert plan.balance() == 1.0
    assert plan.cut_edges() == [] and plan.cut_traffic() == 0
    assert plan.stages() == [["A0", "A1", "A2", "A3"], ["B0", "B1", "B2", "B3"]]
    assert plan.objective() == 1.0


@pytest.mark.parametrize("method", ["auto", "exhaustive"])
def test_two_independent_chains_interleaved_order(method):
    g = two_chains(interleaved=True)
    plan = plan_placement(g, ["/GPU:0", "/GPU:1"], method=method)
    assert plan.balance() == 1.0 and plan.cut_traffic() == 0
    assert plan.stages() == [["A0", "A1", "A2", "A3"], ["B0", "B1", "B2", "B3"]]


def test_chain_on_pipeline_stages_cuts_once_per_boundary():
    g = chain([8] * 6)
    plan = plan_placement(g, devs(3, "IPU"), method="heuristic")
    assert plan.balance() == 1.0
    assert plan.stages() == [["node0", "node1"], ["node2", "node3"], ["node4", "node5"]]
    assert plan.cut_edges() == [("node1", "node2"), ("node3", "node4")]


@pytest.mark.parametrize("cut_weight", [0.0, DEFAULT_CUT_WEIGHT])
@pytest.mark.parametrize("method", METHODS)
def test_one_huge_node_is_isolated(cut_weight, method):
    # a chain of five small nodes feeding one huge sink: the sink alone outweighs the rest
    g = chain([4, 4, 4, 4, 4, 1000])
    huge = node_work(g, "node5")
    total = sum(node_work(g, n) for n in g.node_names)
    assert huge > total - huge
    devices = ["a", "b", "c"]
    plan = plan_placement(g, devices, cut_weight=cut_weight, method=method)
    huge_device = plan.device_of("node5")
    assert plan.nodes_on(huge_device) == ["node5"]
    assert max(plan.loads().values()) == huge
    # the best possible balance: no device can carry less than the huge node
    assert plan.balance() == pytest.approx(huge * len(devices) / total)
    assert all(plan.nodes_on(d) for d in devices)
    assert plan.objective(cut_weight) == pytest.approx(brute_force_best(g, devices, cut_weight), abs=1e-12)


def test_cut_weight_zero_balances_only():
    g = two_chains(units=[8, 8, 8, 8, 8, 8, 8, 8])
    plan = plan_placement(g, ["x", "y", "z", "w"], cut_weight=0.0)
    assert plan.balance() == 1.0
    assert all(len(nodes) == 2 for nodes in plan.stages())


def test_fewer_nodes_than_devices_leaves_last_devices_empty():
    g = SNNGraph.from_adjacency([[], [0], [0]], units=[10, 10, 10], inputs=[0], outputs=[1, 2])
    devices = devs(5)
    plan = plan_placement(g, devices)
    assert sorted(plan) == ["node0", "node1", "node2"]
    used = [d for d in devices if plan.nodes_on(d)]
    assert used == devices[: len(used)]  # empty devices come last
    assert plan.objective() == pytest.approx(brute_force_best(g, devices), abs=1e-12)


# -- determinism and serialisation -----------------------------------------------------


def _random_graph(n, seed):
    import random

    r = random.Random(seed)
    conn = [sorted({r.randrange(n) for _ in range(3)}) for _ in range(n)]
    return SNNGraph.from_adjacency(conn, [r.randint(1, 64) for _ in range(n)], inputs=list(range(n)), outputs=[0])


def test_determinism():
    g = _random_graph(40, 7)
    devices = devs(4)
    first = plan_placement(g, devices, seed=3)
    assert plan_placement(g, devices, seed=3) == first
    assert plan_placement(g, devices, seed=3).to_dict() == first.to_dict()
    other = plan_placement(g, devices, seed=4)
    assert sorted(other) == sorted(g.node_names)
    assert all(other.nodes_on(d) for d in devices)
    small = _random_graph(8, 1)
    assert plan_placement(small, devices, seed=0) == plan_placement(small, devices, seed=0)


def test_heuristic_matches_exhaustive_on_small_graphs():
    for seed in range(10):
        g = _random_graph(7, seed)
        for count in (2, 3):
            exact = plan_placement(g, devs(count), method="exhaustive").objective()
            heuristic = plan_placement(g, devs(count), method="heuristic", seed=seed).objective()
            assert exact <= heuristic + 1e-12
            assert heuristic <= round_robin(g, devs(count)).objective() + 1e-12


def test_json_round_trip(seed_graph):
    plan = plan_placement(seed_graph, devs(2, "IPU"))
    text = plan.to_json()
    data = json.loads(text)
    assert data["devices"] == devs(2, "IPU")
    assert data["assignment"] == dict(plan)
    assert PlacementPlan.from_json(text) == plan
    assert PlacementPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    # without the stored graph, pass it
    del data["graph"]
    restored = PlacementPlan.from_dict(data, seed_graph)
    assert restored == plan and restored.stages() == plan.stages()
    assert PlacementPlan.from_dict(plan.to_dict(), seed_graph) == plan


def test_equality(seed_graph):
    a = plan_placement(seed_graph, ["a", "b"])
    b = manual_placement(seed_graph, dict(a), ["a", "b"])
    assert a == b
    assert a != manual_placement(seed_graph, dict(a), ["b", "a"])
    assert a != plan_placement(seed_graph, ["a", "c"])


# -- invariants over random graphs -----------------------------------------------------


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 14))
    units = draw(st.lists(st.integers(1, 64), min_size=n, max_size=n))
    conn = [sorted(draw(st.sets(st.integers(0, n - 1), max_size=3))) for _ in range(n)]
    inputs = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=2)))
    targets = [[] for _ in range(n)]
    for target, sources in enumerate(conn):
        for source in sources:
            targets[source].append(target)
    seen, queue = set(inputs), deque(inputs)
    while queue:
        for j in targets[queue.popleft()]:
            if j not in seen:
                seen.add(j)
                queue.append(j)
    output = draw(st.sampled_from(sorted(seen)))
    input_size = draw(st.none() | st.integers(1, 32))
    return SNNGraph.from_adjacency(conn, units, inputs=inputs, outputs=[output], input_size=input_size)


@settings(max_examples=120, deadline=None)
@given(
    graph=graphs(),
    count=st.integers(1, 6),
    seed=st.integers(0, 2**31),
    method=st.sampled_from(["auto", "heuristic"]),
    cut_weight=st.sampled_from([0.0, 0.25, DEFAULT_CUT_WEIGHT, 4.0]),
)
def test_invariants(graph, count, seed, method, cut_weight):
    devices = devs(count)
    plan = plan_placement(graph, devices, seed=seed, method=method, cut_weight=cut_weight)
    names = graph.node_names
    # every node placed exactly once, on one of the devices
    assert list(plan) == list(names)
    assert all(plan.device_of(name) in devices for name in names)
    stages = plan.stages()
    assert len(stages) == count
    assert sorted(n for stage in stages for n in stage) == sorted(names)
    # loads sum to the total work
    total = sum(node_work(graph, name) for name in names)
    assert sum(plan.load(d) for d in devices) == plan.total_work() == total
    assert 1.0 - 1e-12 <= plan.balance() <= count + 1e-12
    # no empty device when there are enough nodes
    if len(names) >= count:
        assert all(plan.nodes_on(d) for d in devices)
    # cut traffic is consistent with the cut edges
    assert plan.cut_traffic() == sum(graph.node(s).units for s, t in plan.cut_edges())
    assert all(plan[s] != plan[t] for s, t in plan.cut_edges())
    # never worse than round-robin
    assert plan.objective(cut_weight) <= round_robin(graph, devices).objective(cut_weight) + 1e-9
    # deterministic for a seed, and serialisable
    assert plan_placement(graph, devices, seed=seed, method=method, cut_weight=cut_weight) == plan
    assert PlacementPlan.from_json(plan.to_json()) == plan


# -- errors ----------------------------------------------------------------------------


def test_plan_placement_errors(seed_graph):
    with pytest.raises(PlacementError, match="devices must not be empty"):
        plan_placement(seed_graph, [])
    with pytest.raises(PlacementError, match="duplicate device '/CPU:0'"):
        plan_placement(seed_graph, ["/CPU:0", "/CPU:1", "/CPU:0"])
    with pytest.raises(PlacementError, match="devices must contain non-empty device strings.*0"):
        plan_placement(seed_graph, ["/CPU:0", 0])
    with pytest.raises(PlacementError, match="devices must contain non-empty device strings"):
        plan_placement(seed_graph, [""])
    with pytest.raises(PlacementError, match="devices must be a list of device strings"):
        plan_placement(seed_graph, "/CPU:0")
    with pytest.raises(PlacementError, match="devices must be a list of device strings"):
        plan_placement(seed_graph, None)
    with pytest.raises(PlacementError, match="graph must be an SNNGraph"):
        plan_placement(seed_graph.to_dict(), ["/CPU:0"])
    with pytest.raises(PlacementError, match="seed must be an integer"):
        plan_placement(seed_graph, ["/CPU:0"], seed=1.5)
    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(PlacementError, match="cut_weight"):
            plan_placement(seed_graph, ["/CPU:0"], cut_weight=bad)
    with pytest.raises(PlacementError, match="method must be"):
        plan_placement(seed_graph, ["/CPU:0"], method="greedy")
    with pytest.raises(PlacementError, match="method='exhaustive'.*exceed"):
        plan_placement(_random_graph(30, 0), devs(4), method="exhaustive")


def test_manual_placement_errors(seed_graph):
    full = {name: "/CPU:0" for name in seed_graph.node_names}
    with pytest.raises(PlacementError, match=r"unknown node names \['nodeX', 'nodeY'\]"):
        manual_placement(seed_graph, dict(full, nodeX="/CPU:0", nodeY="/CPU:0"))
    partial = dict(full)
    del partial["node2"], partial["node4"]
    with pytest.raises(PlacementError, match=r"not placed.*\['node2', 'node4'\]"):
        manual_placement(seed_graph, partial)
    with pytest.raises(PlacementError, match=r"unknown devices \['/GPU:7'\].*node3"):
        manual_placement(seed_graph, dict(full, node3="/GPU:7"), ["/CPU:0", "/CPU:1"])
    with pytest.raises(PlacementError, match="node 'node1' must map to a non-empty device string"):
        manual_placement(seed_graph, dict(full, node1=3))
    with pytest.raises(PlacementError, match="mapping must be a dict"):
        manual_placement(seed_graph, [("node0", "/CPU:0")])
    with pytest.raises(PlacementError, match="duplicate device"):
        manual_placement(seed_graph, full, ["/CPU:0", "/CPU:0"])
    with pytest.raises(PlacementError, match="devices must not be empty"):
        manual_placement(seed_graph, full, [])
    with pytest.raises(PlacementError, match="graph must be an SNNGraph"):
        manual_placement("graph", full)


def test_query_errors(seed_graph):
    plan = plan_placement(seed_graph, ["a", "b"])
    with pytest.raises(PlacementError, match="unknown node 'nodeX'"):
        plan.device_of("nodeX")
    with pytest.raises(PlacementError, match="unknown node 'nodeX'"):
        plan.work("nodeX")
    with pytest.raises(PlacementError, match="unknown device 'c'"):
        plan.nodes_on("c")
    with pytest.raises(PlacementError, match="unknown device 'c'"):
        plan.load("c")
    with pytest.raises(KeyError):
        plan["nodeX"]
    assert "nodeX" not in plan and plan.get("nodeX") is None


def test_from_dict_errors(seed_graph):
    data = plan_placement(seed_graph, ["a", "b"]).to_dict()
    with pytest.raises(PlacementError, match="data must be a dict"):
        PlacementPlan.from_dict([1, 2])
    with pytest.raises(PlacementError, match=r"unknown keys \['extra'\]"):
        PlacementPlan.from_dict(dict(data, extra=1))
    missing = dict(data)
    del missing["devices"]
    with pytest.raises(PlacementError, match="missing key 'devices'"):
        PlacementPlan.from_dict(missing)
    no_graph = dict(data)
    del no_graph["graph"]
    with pytest.raises(PlacementError, match="pass the graph argument"):
        PlacementPlan.from_dict(no_graph)
    with pytest.raises(PlacementError, match="graph: differs"):
        PlacementPlan.from_dict(data, chain([4, 4]))
    with pytest.raises(PlacementError, match="not valid JSON"):
        PlacementPlan.from_json("{not json")
    with pytest.raises(PlacementError, match="unknown devices"):
        PlacementPlan.from_dict(dict(data, devices=["a"]))
