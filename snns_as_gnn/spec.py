"""Graph specification of an SNN: nodes (SNN blocks), directed edges, inputs and outputs.

Plain Python data (NumPy values are converted); neuron model names are checked against the
registry of `dense_snns.neurons`.

Semantics (see the GraphSNN layer): node i at step t+1 receives the spikes its source nodes
emitted at step t; input nodes also receive the external input of step t without delay.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import json
import numbers
from collections import deque
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from dense_snns import neurons

__all__ = [
    "GraphSpecError",
    "NodeSpec",
    "SNNGraph",
    "chain",
    "known_neuron_models",
]


class GraphSpecError(ValueError):
    """An invalid SNN graph specification."""


def known_neuron_models() -> Tuple[str, ...]:
    """Sorted neuron model names a node may use: those of `dense_snns.neurons` (snake_case and
    class names, models registered later included)."""
    return tuple(neurons.names())


# -- small helpers ---------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(value, what: str) -> int:
    if not _is_int(value) or int(value) <= 0:
        raise GraphSpecError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _plain(value, where: str):
    """`value` as plain JSON types (NumPy scalars/arrays and tuples converted)."""
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise GraphSpecError(f"{where} must be finite, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, abc.Mapping):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise GraphSpecError(f"{where} keys must be strings, got key {key!r}")
            out[key] = _plain(v, f"{where}[{key!r}]")
        return out
    raise GraphSpecError(
        f"{where} must be JSON-serialisable (numbers, strings, lists, dicts), got {type(value).__name__}: {value!r}"
    )


def _name_list(values, what: str) -> Tuple[str, ...]:
    """A tuple of node names from a sequence of names (a single string is one name)."""
    if isinstance(values, str):
        values = [values]
    try:
        values = list(values)
    except TypeError:
        raise GraphSpecError(f"{what} must be a list of node names, got {values!r}") from None
    for value in values:
        if not isinstance(value, str):
            raise GraphSpecError(f"{what} must contain node names (strings), got {value!r}")
    return tuple(values)


# -- nodes -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One graph node: an SNN block of `units` neurons of model `neuron`.

    `neuron_config` holds the neuron model's keyword arguments (JSON-serialisable; NumPy
    values are converted to plain Python). `capacity` K (at most `units`) makes the node
    sparse: each step `GraphSNN` selects its spikes into K slots (spikes beyond K are dropped
    and counted), sends them along its edges into sparse products and back-propagates
    through the selected neurons only (`GraphStep`); with K = `units` the node equals a dense
    one. The K of the static sparse format (`sparse_snns`); the neuron must spike. A
    self-recurrent block is a self-loop edge, not a flag.
    """

    name: str
    units: int
    neuron: str = neurons.DEFAULT_NEURON
    neuron_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    capacity: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise GraphSpecError(f"node name must be a non-empty string, got {self.name!r}")
        where = f"node {self.name!r}"
        object.__setattr__(self, "units", _positive_int(self.units, f"{where}: units"))
        if not isinstance(self.neuron, str):
            raise GraphSpecError(f"{where}: neuron must be a model name (string), got {self.neuron!r}")
        models = known_neuron_models()
        if self.neuron not in models:
            raise GraphSpecError(
                f"{where}: unknown neuron model neuron={self.neuron!r}; expected one of {list(models)}"
            )
        config = {} if self.neuron_config is None else self.neuron_config
        if not isinstance(config, abc.Mapping):
            raise GraphSpecError(f"{where}: neuron_config must be a dict, got {config!r}")
        config = _plain(config, f"{where}: neuron_config")
        if "units" in config:
            raise GraphSpecError(f"{where}: neuron_config must not set 'units' (use the node's units)")
        object.__setattr__(self, "neuron_config", config)
        if self.capacity is not None:
            capacity = _positive_int(self.capacity, f"{where}: capacity")
            if capacity > self.units:
                raise GraphSpecError(f"{where}: capacity={capacity} exceeds units={self.units}")
            object.__setattr__(self, "capacity", capacity)

    def __hash__(self):
        return hash((self.name, self.units, self.neuron, json.dumps(self.neuron_config, sort_keys=True), self.capacity))

    def to_dict(self) -> Dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return {
            "name": self.name,
            "units": self.units,
            "neuron": self.neuron,
            "neuron_config": json.loads(json.dumps(self.neuron_config)),
            "capacity": self.capacity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NodeSpec":
        """Inverse of `to_dict`; unknown keys are an error."""
        if isinstance(data, NodeSpec):
            return data
        if not isinstance(data, abc.Mapping):
            raise GraphSpecError(f"a node must be a NodeSpec or a dict, got {data!r}")
        label = repr(data.get("name", "?"))
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in allowed]
        if unknown:
            raise GraphSpecError(f"node {label}: unknown keys {unknown}; allowed keys are {allowed}")
        for key in ("name", "units"):
            if key not in data:
                raise GraphSpecError(f"node {label}: missing key {key!r}")
        return cls(**dict(data))


# -- graph -----------------------------------------------------------------------------


class SNNGraph:
    """A validated SNN graph: nodes, directed (source, target) edges, inputs and outputs.

    Self-loops and cycles are allowed. Every output must be reachable from an input.
    `input_size` (optional) is the number of external input features.
    Edges are stored sorted by (source, target) node order; inputs and outputs keep the
    order given.
    """

    def __init__(
        self,
        nodes: Sequence[Union[NodeSpec, Mapping[str, Any]]],
        edges: Iterable[Sequence[str]],
        inputs: Union[str, Sequence[str]],
        outputs: Union[str, Sequence[str]],
        input_size: Optional[int] = None,
    ):
        if isinstance(nodes, (str, bytes, abc.Mapping)) or not isinstance(nodes, abc.Iterable):
            raise GraphSpecError(f"nodes must be a list of NodeSpec (or dicts), got {nodes!r}")
        nodes = tuple(NodeSpec.from_dict(node) for node in nodes)
        if not nodes:
            raise GraphSpecError("empty graph: nodes must not be empty")
        index: Dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.name in index:
                raise GraphSpecError(f"duplicate node name {node.name!r} (nodes {index[node.name]} and {i})")
            index[node.name] = i
        self._nodes = nodes
        self._index = index

        if isinstance(edges, (str, bytes)) or not isinstance(edges, abc.Iterable):
            raise GraphSpecError(f"edges must be a list of (source, target) pairs, got {edges!r}")
        seen = set()
        for edge in edges:
            if isinstance(edge, (str, bytes)) or not isinstance(edge, abc.Iterable):
                raise GraphSpecError(f"edge {edge!r} must be a (source, target) pair of node names")
            edge = tuple(edge)
            if len(edge) != 2 or not all(isinstance(end, str) for end in edge):
                raise GraphSpecError(f"edge {edge!r} must be a (source, target) pair of node names")
            source, target = edge
            for role, end in (("source", source), ("target", target)):
                if end not in index:
                    raise GraphSpecError(f"edge ({source!r}, {target!r}): unknown {role} node {end!r}")
            if edge in seen:
                raise GraphSpecError(f"duplicate edge ({source!r}, {target!r})")
            seen.add(edge)
        self._edges = tuple(sorted(seen, key=lambda e: (index[e[0]], index[e[1]])))

        self._inputs = self._check_names(inputs, "inputs")
        self._outputs = self._check_names(outputs, "outputs")
        self._input_size = None if input_size is None else _positive_int(input_size, "input_size")

        n = len(nodes)
        self._sources: List[List[int]] = [[] for _ in range(n)]
        self._targets: List[List[int]] = [[] for _ in range(n)]
        for source, target in self._edges:
            self._sources[index[target]].append(index[source])
            self._targets[index[source]].append(index[target])
        for lst in self._sources + self._targets:
            lst.sort()
        self._check_reachable()

    def _check_names(self, names, what: str) -> Tuple[str, ...]:
        names = _name_list(names, what)
        if not names:
            raise GraphSpecError(f"{what} must name at least one node")
        seen = set()
        for name in names:
            if name not in self._index:
                raise GraphSpecError(f"{what}: unknown node {name!r}")
            if name in seen:
                raise GraphSpecError(f"{what}: node {name!r} listed twice")
            seen.add(name)
        return names

    def _check_reachable(self) -> None:
        reached = self.reachable_from_inputs()
        for name in self._outputs:
            if name not in reached:
                raise GraphSpecError(
                    f"output node {name!r} is not reachable from any input node {list(self._inputs)} "
                    "following the edges (no path from input to output)"
                )

    # -- queries -----------------------------------------------------------------------
    @property
    def nodes(self) -> Tuple[NodeSpec, ...]:
        return self._nodes

    @property
    def edges(self) -> Tuple[Tuple[str, str], ...]:
        return self._edges

    @property
    def inputs(self) -> Tuple[str, ...]:
        return self._inputs

    @property
    def outputs(self) -> Tuple[str, ...]:
        return self._outputs

    @property
    def input_size(self) -> Optional[int]:
        return self._input_size

    @property
    def node_names(self) -> Tuple[str, ...]:
        return tuple(node.name for node in self._nodes)

    @property
    def num_nodes(self) -> int:
        return len(self._nodes)

    @property
    def total_units(self) -> int:
        return sum(node.units for node in self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """Position of node `name` in the node order."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise GraphSpecError(f"unknown node {name!r}; nodes are {list(self.node_names)}") from None

    def node(self, name: str) -> NodeSpec:
        return self._nodes[self.index(name)]

    def sources(self, name: str) -> List[str]:
        """Names of the nodes with an edge into `name`, in node order."""
        return [self._nodes[j].name for j in self._sources[self.index(name)]]

    def targets(self, name: str) -> List[str]:
        """Names of the nodes `name` has an edge to, in node order."""
        return [self._nodes[j].name for j in self._targets[self.index(name)]]

    def is_input(self, name: str) -> bool:
        self.index(name)
        return name in self._inputs

    def is_output(self, name: str) -> bool:
        self.index(name)
        return name in self._outputs

    def fan_in(self, name: str) -> int:
        """Input features of node `name`: its sources' units (+ input_size if an input node)."""
        total = sum(self._nodes[j].units for j in self._sources[self.index(name)])
        if name in self._inputs and self._input_size is not None:
            total += self._input_size
        return total

    def adjacency(self) -> List[List[int]]:
        """Per node, the sorted indices of its source nodes (the `from_adjacency` format)."""
        return [list(lst) for lst in self._sources]

    def adjacency_matrix(self) -> np.ndarray:
        """Boolean [num_nodes, num_nodes] matrix, ``A[source, target]`` True for an edge."""
        matrix = np.zeros((len(self._nodes), len(self._nodes)), dtype=bool)
        for target, lst in enumerate(self._sources):
            matrix[lst, target] = True
        return matrix

    def reachable_from_inputs(self) -> List[str]:
        """Names of the nodes reachable from an input node (inputs included), in node order."""
        seen = set(self._index[name] for name in self._inputs)
        queue = deque(seen)
        while queue:
            i = queue.popleft()
            for j in self._targets[i]:
                if j not in seen:
                    seen.add(j)
                    queue.append(j)
        return [self._nodes[i].name for i in sorted(seen)]

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """Plain, JSON-serialisable dict in a stable order; `from_dict` inverts it."""
        return {
            "nodes": [node.to_dict() for node in self._nodes],
            "edges": [[source, target] for source, target in self._edges],
            "inputs": list(self._inputs),
            "outputs": list(self._outputs),
            "input_size": self._input_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SNNGraph":
        """Build (and validate) a graph from `to_dict` output."""
        if not isinstance(data, abc.Mapping):
            raise GraphSpecError(f"graph spec must be a dict, got {type(data).__name__}")
        allowed = ("nodes", "edges", "inputs", "outputs", "input_size")
        unknown = [key for key in data if key not in allowed]
        if unknown:
            raise GraphSpecError(f"graph spec: unknown keys {unknown}; allowed keys are {list(allowed)}")
        for key in ("nodes", "edges", "inputs", "outputs"):
            if key not in data:
                raise GraphSpecError(f"graph spec: missing key {key!r}")
        return cls(data["nodes"], data["edges"], data["inputs"], data["outputs"], data.get("input_size"))

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "SNNGraph":
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as err:
            raise GraphSpecError(f"graph spec is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def __eq__(self, other) -> bool:
        if not isinstance(other, SNNGraph):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self.to_json())

    def __repr__(self) -> str:
        return (
            f"SNNGraph({len(self._nodes)} nodes, {len(self._edges)} edges, "
            f"inputs={list(self._inputs)}, outputs={list(self._outputs)}, input_size={self._input_size})"
        )

    # -- constructors ------------------------------------------------------------------
    @classmethod
    def from_adjacency(
        cls,
        inp_connectivity: Sequence[Sequence[int]],
        units: Union[int, Sequence[int]],
        inputs: Union[int, Sequence[int]],
        outputs: Union[int, Sequence[int]],
        neuron: Union[str, Sequence[str]] = neurons.DEFAULT_NEURON,
        neuron_config: Union[None, Mapping[str, Any], Sequence[Optional[Mapping[str, Any]]]] = None,
        names: Optional[Sequence[str]] = None,
        capacity: Union[None, int, Sequence[Optional[int]]] = None,
        input_size: Optional[int] = None,
    ) -> "SNNGraph":
        """A graph from per-node SOURCE index lists: ``inp_connectivity[i]`` feeds node i.

        `units`, `neuron`, `neuron_config` and `capacity` are one value for all nodes or a
        list with one per node. `inputs`/`outputs` are node indices. Names default to
        ``node0``, ``node1``, ...
        """
        if isinstance(inp_connectivity, (str, bytes)) or not isinstance(inp_connectivity, abc.Iterable):
            raise GraphSpecError(f"inp_connectivity must be a list of source-index lists, got {inp_connectivity!r}")
        conn = list(inp_connectivity)
        n = len(conn)
        if n == 0:
            raise GraphSpecError("empty graph: inp_connectivity has no nodes")

        if names is None:
            names = [f"node{i}" for i in range(n)]
        else:
            names = list(_name_list(names, "names"))
            if len(names) != n:
                raise GraphSpecError(f"names has {len(names)} entries but inp_connectivity has {n} nodes")

        def per_node(value, what, is_single):
            if is_single(value):
                return [value] * n
            if isinstance(value, (str, bytes, abc.Mapping)) or not isinstance(value, abc.Iterable):
                raise GraphSpecError(f"{what} must be one value or a list with one per node, got {value!r}")
            value = list(value)
            if len(value) != n:
                raise GraphSpecError(f"{what} has {len(value)} entries but inp_connectivity has {n} nodes")
            return value

        units_list = per_node(units, "units", _is_int)
        neuron_list = per_node(neuron, "neuron", lambda v: isinstance(v, str))
        config_list = per_node(neuron_config, "neuron_config", lambda v: v is None or isinstance(v, abc.Mapping))
        capacity_list = per_node(capacity, "capacity", lambda v: v is None or _is_int(v))

        edges = []
        for i, sources in enumerate(conn):
            label = f"node {i} ({names[i]!r})"
            if isinstance(sources, (str, bytes)) or not isinstance(sources, abc.Iterable):
                raise GraphSpecError(f"{label}: sources must be a list of node indices, got {sources!r}")
            for j in sources:
                if not _is_int(j) or not 0 <= int(j) < n:
                    raise GraphSpecError(f"{label}: bad source {j!r}; sources must be node indices in [0, {n})")
                edges.append((names[int(j)], names[i]))

        def index_names(values, what):
            if _is_int(values):
                values = [values]
            if isinstance(values, (str, bytes)) or not isinstance(values, abc.Iterable):
                raise GraphSpecError(f"{what} must be node indices, got {values!r}")
            out = []
            for value in values:
                if not _is_int(value) or not 0 <= int(value) < n:
                    raise GraphSpecError(f"{what}: bad node index {value!r}; expected an index in [0, {n})")
                out.append(names[int(value)])
            return out

        nodes = [
            NodeSpec(
                names[i],
                units_list[i],
                neuron_list[i],
                dict(config_list[i] or {}),
                capacity_list[i],
            )
            for i in range(n)
        ]
        return cls(nodes, edges, index_names(inputs, "inputs"), index_names(outputs, "outputs"), input_size)


def chain(
    units_list: Sequence[int],
    neuron: Union[str, Sequence[str]] = neurons.DEFAULT_NEURON,
    neuron_config: Union[None, Mapping[str, Any], Sequence[Optional[Mapping[str, Any]]]] = None,
    names: Optional[Sequence[str]] = None,
    capacity: Union[None, int, Sequence[Optional[int]]] = None,
    self_recurrent: bool = False,
    input_size: Optional[int] = None,
) -> SNNGraph:
    """A chain graph node0 -> node1 -> ... ; input node 0, output the last node.

    `self_recurrent=True` adds a self-loop on every node.
    """
    if _is_int(units_list) or isinstance(units_list, (str, bytes)) or not isinstance(units_list, abc.Iterable):
        raise GraphSpecError(f"units_list must be a list of positive integers, got {units_list!r}")
    units_list = list(units_list)
    if not units_list:
        raise GraphSpecError("empty graph: units_list is empty")
    conn = []
    for i in range(len(units_list)):
        sources = [] if i == 0 else [i - 1]
        if self_recurrent:
            sources.append(i)
        conn.append(sources)
    return SNNGraph.from_adjacency(
        conn,
        units_list,
        inputs=[0],
        outputs=[len(units_list) - 1],
        neuron=neuron,
        neuron_config=neuron_config,
        names=names,
        capacity=capacity,
        input_size=input_size,
    )
