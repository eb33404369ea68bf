"""Device placement of an SNN graph: which device computes which node.

Pure Python (no TensorFlow). Spikes cross every edge with a one-step delay, so within a time
step all nodes are independent: each device computes its nodes' step t+1 from the spikes of
step t, and devices exchange the spikes of the cut edges once per step. A placement therefore
trades two costs:

* compute balance: the step takes as long as the most loaded device;
  ``balance = max load / mean load`` (1 is perfect, ``len(devices)`` is everything on one
  device), where a node's load is `node_work` (synapses plus neuron updates per step);
* communication: ``cut_traffic`` = the spikes per step (upper bound: every neuron spikes)
  that cross devices, as a fraction of all traffic that could cross (all non-self-loop edges).

`plan_placement` minimises ``objective = balance + cut_weight * cut_traffic / total_traffic``
(see `PlacementPlan.objective`). Devices are treated as identical, so the objective does not
depend on which device gets which group of nodes; plans are labelled canonically (device 0
gets the group holding the first node in graph order, and so on).

The plan feeds `tf.device` placement on CPU/GPU logical devices and IPU shards / pipeline
stages (`PlacementPlan.stages`). Results of a graph layer must not depend on the placement.
"""

from __future__ import annotations

import collections.abc as abc
import json
import math
import numbers
import random
from types import MappingProxyType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from .spec import SNNGraph

__all__ = [
    "DEFAULT_CUT_WEIGHT",
    "PlacementError",
    "PlacementPlan",
    "manual_placement",
    "node_work",
    "plan_placement",
]

DEFAULT_CUT_WEIGHT = 1.0
"""Default weight of the cut-traffic fraction against the balance in the objective."""

# `method="auto"` searches exhaustively when the number of distinct placements (set
# partitions of the nodes into device groups, devices being interchangeable) is at most this;
# e.g. 10 nodes on 4 devices = 34105 placements. Branch and bound keeps it fast.
_EXHAUSTIVE_AUTO_LIMIT = 50_000
# `method="exhaustive"` refuses problems with more placements than this.
_EXHAUSTIVE_MAX = 2_000_000
_RANDOM_RESTARTS = 4
_MAX_PASSES = 100
_EPS = 1e-12


class PlacementError(ValueError):
    """An invalid placement request or plan."""


# -- validation helpers ----------------------------------------------------------------


def _check_graph(graph) -> SNNGraph:
    if not isinstance(graph, SNNGraph):
        raise PlacementError(f"graph must be an SNNGraph, got {type(graph).__name__}: {graph!r}")
    return graph


def _check_devices(devices, what: str = "devices") -> Tuple[str, ...]:
    if isinstance(devices, (str, bytes, abc.Mapping)) or not isinstance(devices, abc.Iterable):
        raise PlacementError(
            f"{what} must be a list of device strings (e.g. ['/CPU:0', '/device:IPU:1']), got {devices!r}"
        )
    devices = list(devices)
    if not devices:
        raise PlacementError(f"{what} must not be empty: give at least one device string")
    seen = set()
    for device in devices:
        if not isinstance(device, str) or not device:
            raise PlacementError(f"{what} must contain non-empty device strings (e.g. '/CPU:0'), got {device!r}")
        if device in seen:
            raise PlacementError(f"{what}: duplicate device {device!r}")
        seen.add(device)
    return tuple(devices)


def _check_cut_weight(cut_weight) -> float:
    if (
        not isinstance(cut_weight, numbers.Real)
        or isinstance(cut_weight, bool)
        or not math.isfinite(float(cut_weight))
        or float(cut_weight) < 0
    ):
        raise PlacementError(f"cut_weight must be a finite number >= 0, got {cut_weight!r}")
    return float(cut_weight)


def node_work(graph: SNNGraph, name: str) -> int:
    """Work of node `name` per step: ``units * fan_in + units`` (synapses + neuron update).

    fan_in is the sum of the source nodes' units, plus, for an input node, `input_size` when
    the graph knows it, else the node's own units (an assumed input as wide as the node).
    """
    graph = _check_graph(graph)
    node = graph.node(name)  # GraphSpecError naming the node if unknown
    fan_in = graph.fan_in(name)
    if graph.is_input(name) and graph.input_size is None:
        fan_in += node.units
    return node.units * fan_in + node.units


def _edge_traffic(graph: SNNGraph) -> List[Tuple[str, str, int]]:
    """(source, target, spikes per step) for every edge that can be cut (no self-loops)."""
    return [(source, target, graph.node(source).units) for source, target in graph.edges if source != target]


# -- the plan --------------------------------------------------------------------------


class PlacementPlan(abc.Mapping):
    """An immutable placement: node name -> device string, plus the ordered devices list.

    A read-only mapping over the graph's node names (in graph order). Build one with
    `plan_placement` (optimised), `manual_placement` (user mapping) or `from_dict`.
    Devices may hold no node (e.g. more devices than nodes, or a manual plan).
    """

    __slots__ = ("_graph", "_devices", "_assignment", "_work", "_traffic")

    def __init__(self, graph: SNNGraph, assignment: Mapping[str, str], devices: Optional[Sequence[str]] = None):
        graph = _check_graph(graph)
        if not isinstance(assignment, abc.Mapping):
            raise PlacementError(
                f"mapping must be a dict node name -> device string, got {type(assignment).__name__}: {assignment!r}"
            )
        names = graph.node_names
        unknown = [key for key in assignment if key not in graph]
        if unknown:
            raise PlacementError(f"mapping: unknown node names {unknown!r}; the graph's nodes are {list(names)}")
        missing = [name for name in names if name not in assignment]
        if missing:
            raise PlacementError(f"mapping: nodes not placed on any device: {missing!r}")
        for name in names:
            device = assignment[name]
            if not isinstance(device, str) or not device:
                raise PlacementError(f"mapping: node {name!r} must map to a non-empty device string, got {device!r}")
        if devices is None:
            order: List[str] = []
            for name in names:
                if assignment[name] not in order:
                    order.append(assignment[name])
            devices = tuple(order)
        else:
            devices = _check_devices(devices)
            known = set(devices)
            bad = {name: assignment[name] for name in names if assignment[name] not in known}
            if bad:
                raise PlacementError(
                    f"mapping: unknown devices {sorted(set(bad.values()))!r} (for nodes "
                    f"{list(bad)!r}); devices are {list(devices)}"
                )
        self._graph = graph
        self._devices = devices
        self._assignment = MappingProxyType({name: assignment[name] for name in names})
        self._work = MappingProxyType({name: node_work(graph, name) for name in names})
        self._traffic = tuple(_edge_traffic(graph))

    # -- mapping protocol ------------------------------------------------------------------
    def __getitem__(self, name: str) -> str:
        return self._assignment[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._assignment)

    def __len__(self) -> int:
        return len(self._assignment)

    def __eq__(self, other) -> bool:
        if isinstance(other, PlacementPlan):
            return (
                self._devices == other._devices
                and dict(self._assignment) == dict(other._assignment)
                and self._graph == other._graph
            )
        return NotImplemented

    def __ne__(self, other) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self):
        return hash((self._devices, tuple(self._assignment.items())))

    def __repr__(self) -> str:
        groups = ", ".join(f"{device!r}: {self.nodes_on(device)}" for device in self._devices)
        return f"PlacementPlan({{{groups}}}, balance={self.balance():.3f}, cut_traffic={self.cut_traffic()})"

    def __setattr__(self, key, value):
        if hasattr(self, "_traffic"):
            raise AttributeError("PlacementPlan is immutable")
        object.__setattr__(self, key, value)

    # -- queries ---------------------------------------------------------------------------
    @property
    def graph(self) -> SNNGraph:
        return self._graph

    @property
    def devices(self) -> Tuple[str, ...]:
        return self._devices

    @property
    def assignment(self) -> Mapping[str, str]:
        """Read-only node name -> device mapping in graph node order."""
        return self._assignment

    def _check_device(self, device) -> str:
        if device not in self._devices:
            raise PlacementError(f"device: unknown device {device!r}; the plan's devices are {list(self._devices)}")
        return device

    def device_of(self, name: str) -> str:
        """The device that computes node `name`."""
        try:
            return self._assignment[name]
        except (KeyError, TypeError):
            raise PlacementError(
                f"name: unknown node {name!r}; the graph's nodes are {list(self._graph.node_names)}"
            ) from None

    def nodes_on(self, device: str) -> List[str]:
        """Names of the nodes on `device`, in graph node order (empty if none)."""
        device = self._check_device(device)
        return [name for name, dev in self._assignment.items() if dev == device]

    def work(self, name: str) -> int:
        """`node_work` of node `name`."""
        self.device_of(name)
        return self._work[name]

    def load(self, device: str) -> int:
        """Work units per step on `device` (sum of `node_work` of its nodes)."""
        device = self._check_device(device)
        return sum(self._work[name] for name, dev in self._assignment.items() if dev == device)

    def loads(self) -> Dict[str, int]:
        """device -> load, in device order."""
        out = {device: 0 for device in self._devices}
        for name, device in self._assignment.items():
            out[device] += self._work[name]
        return out

    def total_work(self) -> int:
        return sum(self._work.values())

    def balance(self) -> float:
        """max load / mean load over all devices (empty ones included): 1 is perfect balance."""
        loads = self.loads()
        return max(loads.values()) * len(self._devices) / self.total_work()

    def cut_edges(self) -> List[Tuple[str, str]]:
        """Edges (source, target) whose endpoints are on different devices, in graph edge order."""
        a = self._assignment
        return [(s, t) for s, t in self._graph.edges if a[s] != a[t]]

    def cut_traffic(self) -> int:
        """Spikes per step that cross devices (upper bound): sum of source units over cut edges."""
        a = self._assignment
        return sum(units for s, t, units in self._traffic if a[s] != a[t])

    def total_traffic(self) -> int:
        """Sum of source units over all edges that could be cut (self-loops excluded)."""
        return sum(units for _, _, units in self._traffic)

    def cut_fraction(self) -> float:
        """cut_traffic / total_traffic (0 if the graph has no edge between distinct nodes)."""
        total = self.total_traffic()
        return self.cut_traffic() / total if total else 0.0

    def objective(self, cut_weight: float = DEFAULT_CUT_WEIGHT) -> float:
        """``balance() + cut_weight * cut_fraction()``: what `plan_placement` minimises."""
        return self.balance() + _check_cut_weight(cut_weight) * self.cut_fraction()

    def stages(self) -> List[List[str]]:
        """One list of node names per device, in device order (empty list for an empty device).

        For IPU pipeline stages / shards (stage i on device i) or one `tf.device` scope per
        device. Because spikes cross every edge with a one-step delay, the stages of one time
        step do not wait on each other: nodes on different stages exchange spikes once per
        step (`cut_traffic` spikes at most), between steps.
        """
        groups: Dict[str, List[str]] = {device: [] for device in self._devices}
        for name, device in self._assignment.items():
            groups[device].append(name)
        return [groups[device] for device in self._devices]

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable dict: devices, assignment (graph node order) and the graph."""
        return {
            "devices": list(self._devices),
            "assignment": dict(self._assignment),
            "graph": self._graph.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], graph: Optional[SNNGraph] = None) -> "PlacementPlan":
        """Inverse of `to_dict`. `graph` is needed if `data` has no "graph" entry; if both are
        given they must be the same graph."""
        if not isinstance(data, abc.Mapping):
            raise PlacementError(f"data must be a dict (from PlacementPlan.to_dict), got {type(data).__name__}")
        allowed = ("devices", "assignment", "graph")
        unknown = [key for key in data if key not in allowed]
        if unknown:
            raise PlacementError(f"data: unknown keys {unknown}; allowed keys are {list(allowed)}")
        for key in ("devices", "assignment"):
            if key not in data:
                raise PlacementError(f"data: missing key {key!r}")
        if "graph" in data and data["graph"] is not None:
            stored = data["graph"] if isinstance(data["graph"], SNNGraph) else SNNGraph.from_dict(data["graph"])
            if graph is not None and _check_graph(graph) != stored:
                raise PlacementError("graph: differs from the graph stored in data['graph']")
            graph = stored
        elif graph is None:
            raise PlacementError("graph: data has no 'graph' entry, so pass the graph argument")
        return cls(graph, data["assignment"], data["devices"])

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str, graph: Optional[SNNGraph] = None) -> "PlacementPlan":
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            raise PlacementError(f"text is not valid JSON: {err}") from None
        return cls.from_dict(data, graph)


def manual_placement(
    graph: SNNGraph, mapping: Mapping[str, str], devices: Optional[Sequence[str]] = None
) -> PlacementPlan:
    """A plan from a user mapping node name -> device string, validated.

    Every node must be placed; unknown node names and (when `devices` is given) devices not in
    `devices` are errors naming them. Without `devices`, the devices are those used, in the
    order they first appear along the graph's node order. Devices may be left empty.
    """
    return PlacementPlan(graph, mapping, devices)


# -- the optimiser ---------------------------------------------------------------------


def _stirling2(n: int, k: int) -> int:
    """Number of partitions of n items into exactly k non-empty groups."""
    row = [1] + [0] * k  # S(0, j)
    for i in range(1, n + 1):
        new = [0] * (k + 1)
        for j in range(1, min(i, k) + 1):
            new[j] = j * row[j] + row[j - 1]
        row = new
    return row[k]


def _num_placements(n: int, d: int) -> int:
    """Distinct placements up to device relabelling (no empty device when n >= d)."""
    if n >= d:
        return _stirling2(n, d)
    return sum(_stirling2(n, k) for k in range(1, n + 1))


class _Problem:
    """Integer form of a placement problem: nodes 0..n-1 (graph order), d devices."""

    def __init__(self, graph: SNNGraph, num_devices: int, cut_weight: float):
        names = graph.node_names
        index = {name: i for i, name in enumerate(names)}
        self.n = len(names)
        self.d = num_devices
        self.work = [node_work(graph, name) for name in names]
        self.total_work = sum(self.work)
        # symmetric traffic between distinct nodes (both edge directions summed)
        self.nbrs: List[Dict[int, int]] = [dict() for _ in range(self.n)]
        total_traffic = 0
        for source, target, units in _edge_traffic(graph):
            s, t = index[source], index[target]
            self.nbrs[s][t] = self.nbrs[s].get(t, 0) + units
            self.nbrs[t][s] = self.nbrs[t].get(s, 0) + units
            total_traffic += units
        self.total_traffic = total_traffic
        self.fill = self.n >= self.d  # no device may be empty
        self.load_scale = self.d / self.total_work
        self.cut_scale = cut_weight / total_traffic if total_traffic else 0.0

    def value(self, max_load: int, cut: int) -> float:
        return max_load * self.load_scale + cut * self.cut_scale

    def evaluate(self, dev: Sequence[int]) -> float:
        loads = [0] * self.d
        for v, a in enumerate(dev):
            loads[a] += self.work[v]
        cut = sum(w for v in range(self.n) for x, w in self.nbrs[v].items() if x > v and dev[x] != dev[v])
        return self.value(max(loads), cut)

    # -- starting points -------------------------------------------------------------------
    def lpt(self) -> List[int]:
        """Longest processing time first; ties between least-loaded devices go to the device
        with the most traffic to the node's already placed neighbours."""
        order = sorted(range(self.n), key=lambda v: (-self.work[v], v))
        dev = [-1] * self.n
        loads = [0] * self.d
        for v in order:
            least = min(loads)
            affinity = [0] * self.d
            for x, w in self.nbrs[v].items():
                if dev[x] >= 0:
                    affinity[dev[x]] += w
            best = min((a for a in range(self.d) if loads[a] == least), key=lambda a: (-affinity[a], a))
            dev[v] = best
            loads[best] += self.work[v]
        return dev

    def contiguous(self) -> List[int]:
        """Consecutive runs of nodes (graph order) of about equal work: good for chains."""
        if not self.fill:
            return list(range(self.n))
        dev = [0] * self.n
        prefix = [0]
        for w in self.work:
            prefix.append(prefix[-1] + w)
        start = 0
        for k in range(self.d):
            if k == self.d - 1:
                end = self.n
            else:
                target = (k + 1) * self.total_work / self.d
                lo, hi = start + 1, self.n - (self.d - k - 1)
                end = min(range(lo, hi + 1), key=lambda i: (abs(prefix[i] - target), i))
            for v in range(start, end):
                dev[v] = k
            start = end
        return dev

    def round_robin(self, order: Optional[Sequence[int]] = None) -> List[int]:
        order = range(self.n) if order is None else order
        dev = [0] * self.n
        for position, v in enumerate(order):
            dev[v] = position % self.d
        return dev

    # -- local improvement -----------------------------------------------------------------
    def improve(self, dev: List[int], rng: random.Random) -> Tuple[List[int], float]:
        """Kernighan-Lin style descent: best single-node moves, then pairwise swaps, until
        neither improves the objective (no move empties a device when `fill`)."""
        n, d, work = self.n, self.d, self.work
        dev = list(dev)
        loads = [0] * d
        counts = [0] * d
        for v, a in enumerate(dev):
            loads[a] += work[v]
            counts[a] += 1
        conn = [[0] * d for _ in range(n)]  # conn[v][a]: traffic between v and nodes on a
        cut = 0
        for v in range(n):
            for x, w in self.nbrs[v].items():
                conn[v][dev[x]] += w
                if x > v and dev[x] != dev[v]:
                    cut += w
        current = self.value(max(loads), cut)

        def max_with(a, la, b, lb):
            best = max(la, lb)
            for c in range(d):
                if c != a and c != b and loads[c] > best:
                    best = loads[c]
            return best

        def relocate(v, a, b):
            dev[v] = b
            for x, w in self.nbrs[v].items():
                conn[x][a] -= w
                conn[x][b] += w

        order = list(range(n))
        for _ in range(_MAX_PASSES):
            improved = False
            rng.shuffle(order)
            for v in order:  # single-node moves
                a = dev[v]
                if self.fill and counts[a] == 1:
                    continue
                best_b, best_value = -1, current - _EPS
                for b in range(d):
                    if b == a:
                        continue
                    value = self.value(
                        max_with(a, loads[a] - work[v], b, loads[b] + work[v]),
                        cut + conn[v][a] - conn[v][b],
                    )
                    if value < best_value:
                        best_b, best_value = b, value
                if best_b >= 0:
                    b = best_b
                    cut += conn[v][a] - conn[v][b]
                    loads[a] -= work[v]
                    loads[b] += work[v]
                    counts[a] -= 1
                    counts[b] += 1
                    relocate(v, a, b)
                    current = best_value
                    improved = True
            for i, u in enumerate(order):  # pairwise swaps
                for v in order[i + 1 :]:
                    a, b = dev[u], dev[v]
                    if a == b:
                        continue
                    delta = conn[u][a] - conn[u][b] + conn[v][b] - conn[v][a] + 2 * self.nbrs[u].get(v, 0)
                    shift = work[v] - work[u]
                    value = self.value(max_with(a, loads[a] + shift, b, loads[b] - shift), cut + delta)
                    if value < current - _EPS:
                        cut += delta
                        loads[a] += shift
                        loads[b] -= shift
                        relocate(u, a, b)
                        relocate(v, b, a)
                        current = value
                        improved = True
            if not improved:
                break
        return dev, current

    # -- exact search ----------------------------------------------------------------------
    def exhaustive(self, best_dev: List[int], best_value: float) -> List[int]:
        """Branch and bound over set partitions into device groups (devices interchangeable);
        returns a strictly better placement than `best_dev` if one exists, else `best_dev`."""
        n, d, work, nbrs = self.n, self.d, self.work, self.nbrs
        order = sorted(range(n), key=lambda v: (-work[v], v))
        dev = [-1] * n
        loads = [0] * d
        best = [best_value, list(best_dev)]

        def search(i, used, max_load, cut):
            if self.value(max_load, cut) >= best[0] - _EPS:
                return  # the objective only grows as nodes are added
            if i == n:
                best[0], best[1] = self.value(max_load, cut), list(dev)
                return
            v = order[i]
            remaining = n - i
            for a in range(min(used + 1, d)):
                new_used = max(used, a + 1)
                if self.fill and remaining - 1 < d - new_used:
                    continue  # the other devices could not all be filled
                added = sum(w for x, w in nbrs[v].items() if dev[x] >= 0 and dev[x] != a)
                dev[v] = a
                loads[a] += work[v]
                search(i + 1, new_used, max(max_load, loads[a]), cut + added)
                loads[a] -= work[v]
                dev[v] = -1

        search(0, 0, 0, 0)
        return best[1]


def _canonical(dev: Sequence[int]) -> List[int]:
    """Relabel groups by their first node in graph order (group of node 0 -> device 0, ...)."""
    relabel: Dict[int, int] = {}
    for a in dev:
        if a not in relabel:
            relabel[a] = len(relabel)
    return [relabel[a] for a in dev]


def plan_placement(
    graph: SNNGraph,
    devices: Sequence[str],
    seed: int = 0,
    cut_weight: float = DEFAULT_CUT_WEIGHT,
    method: str = "auto",
) -> PlacementPlan:
    """Assign every node of `graph` to one of `devices`, balancing work and cutting little traffic.

    Minimises ``balance + cut_weight * cut_traffic / total_traffic`` (`PlacementPlan.objective`;
    `cut_weight=0` balances work only). With at least as many nodes as devices, no device is
    left empty; with fewer nodes, some devices necessarily are (the last ones).

    `method`:
      * "exhaustive": branch and bound over all placements (devices are interchangeable, so
        the set partitions of the nodes): optimal. Refused above 2,000,000 placements.
      * "heuristic": starts from longest-processing-time-first (with traffic affinity),
        contiguous runs of the node order, round-robin and seeded random round-robins, each
        improved by Kernighan-Lin style single-node moves and pairwise swaps; the best is
        kept, so the result is never worse than round-robin. Cost per pass ~ nodes^2.
      * "auto" (default): exhaustive when there are at most 50,000 placements (e.g. 10 nodes
        on 4 devices), else heuristic.

    Deterministic for a given `seed` (which drives the random restarts and move orders).
    A single device gets all nodes. Nodes are grouped optimally; groups are then labelled
    canonically: the first device gets the group holding the graph's first node, and so on.
    """
    graph = _check_graph(graph)
    devices = _check_devices(devices)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise PlacementError(f"seed must be an integer, got {seed!r}")
    cut_weight = _check_cut_weight(cut_weight)
    if method not in ("auto", "exhaustive", "heuristic"):
        raise PlacementError(f"method must be 'auto', 'exhaustive' or 'heuristic', got {method!r}")
    names = graph.node_names
    if len(devices) == 1:
        return PlacementPlan(graph, {name: devices[0] for name in names}, devices)

    problem = _Problem(graph, len(devices), cut_weight)
    count = _num_placements(problem.n, problem.d)
    if method == "exhaustive" and count > _EXHAUSTIVE_MAX:
        raise PlacementError(
            f"method='exhaustive': {count} placements of {problem.n} nodes on {problem.d} devices "
            f"exceed the limit {_EXHAUSTIVE_MAX}; use method='heuristic' or 'auto'"
        )
    exhaustive = method == "exhaustive" or (method == "auto" and count <= _EXHAUSTIVE_AUTO_LIMIT)

    rng = random.Random(int(seed))
    starts = [problem.lpt()]
    if not exhaustive:
        starts += [problem.contiguous(), problem.round_robin()]
        for _ in range(_RANDOM_RESTARTS):
            order = list(range(problem.n))
            rng.shuffle(order)
            starts.append(problem.round_robin(order))
    best_dev, best_value = None, math.inf
    for start in starts:
        dev, value = problem.improve(start, rng)
        if value < best_value - _EPS:
            best_dev, best_value = dev, value
    if exhaustive:
        best_dev = problem.exhaustive(best_dev, best_value)
    dev = _canonical(best_dev)
    return PlacementPlan(graph, {name: devices[dev[i]] for i, name in enumerate(names)}, devices)
