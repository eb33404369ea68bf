"""snns_as_gnn: SNN blocks wired as a directed graph.

Each node is an SNN block (a population of spiking neurons of one model); edges carry spikes
from a source block to a target block with a one-step delay, so within a time step all blocks
are independent and can be computed in parallel (or on different devices), exchanging only
spikes. Self-loops and cycles are allowed. Builds on `dense_snns` (neuron models, the fused
recurrence). Nodes exchange dense spike tensors, or, for a node with a sparse `capacity` K, its
spikes selected into K slots (ids, values, count) with sparse products and sparse BPTT.

`snns_as_gnn.spec` (the graph specification) and `snns_as_gnn.placement` (device plans) are
pure Python; `snns_as_gnn.layer` runs a graph (`GraphSNN`, `GraphSNNCell`).
"""

from __future__ import annotations

from . import nir  # noqa: F401  (registers GraphSNN with dense_snns.nir)
from .layer import GraphSNN, GraphSNNCell
from .placement import (
    DEFAULT_CUT_WEIGHT,
    PlacementError,
    PlacementPlan,
    manual_placement,
    node_work,
    plan_placement,
)
from .spec import GraphSpecError, NodeSpec, SNNGraph, chain, known_neuron_models

__all__ = [
    "DEFAULT_CUT_WEIGHT",
    "GraphSNN",
    "GraphSNNCell",
    "GraphSpecError",
    "NodeSpec",
    "PlacementError",
    "PlacementPlan",
    "SNNGraph",
    "chain",
    "known_neuron_models",
    "manual_placement",
    "node_work",
    "plan_placement",
]
