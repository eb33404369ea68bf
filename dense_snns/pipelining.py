"""Pipeline stages for a stack of SNN blocks: one stage per group of consecutive blocks,
balanced by parameters and per-step FLOPs.

Keras pipelines micro-batches through layers; a sequence layer's time loop is indivisible,
so stage boundaries fall between the blocks of a stack (layers that return whole sequences).
`plan_stages(model, num_stages)` is pure Python; `apply_stages(model, plan)` applies a plan
with Graphcore's Keras API on IPUs (``model.set_pipeline_stage_assignment``,
``model.set_pipelining_options(gradient_accumulation_steps_per_replica=...)``, as Poplar SDK
3.4 documents), and elsewhere returns the same layers (shared weights) rebuilt as a model
whose stages run under ``tf.device`` scopes.

Graphcore's rules, checked here: gradient accumulation is mandatory when training a pipeline
and must be at least twice the number of stages for the grouped schedule to fill it;
``steps_per_execution`` must be a multiple of the gradient-accumulation count
(`PipelinePlan.compile_kwargs`).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .compat import keras

__all__ = ["PipelinePlan", "apply_stages", "block_cost", "plan_stages"]


def block_cost(layer) -> Tuple[int, int]:
    """(parameters, FLOPs per sample and time step) of one block: its products (the neuron
    updates are O(units) and left out). Layers without weights cost nothing."""
    params = int(sum(int(np.prod(w.shape)) for w in layer.weights))
    kind = type(layer).__name__
    if kind in ("SNNConv1D", "SNNConv2D"):
        kernel = layer.conv.kernel
        out_positions = int(np.prod(layer.output.shape[2:-1]))
        flops = 2 * int(np.prod(kernel.shape)) * out_positions
    elif hasattr(layer, "cell") and hasattr(layer.cell, "graph"):  # GraphSNN
        graph = layer.graph
        flops = sum(2 * graph.node(s).units * graph.node(t).units for s, t in graph.edges)
        flops += sum(2 * int(k.shape[0]) * int(k.shape[1]) for k in layer.cell.input_kernels.values())
    else:
        kernels = [w for w in layer.weights if len(w.shape) == 2]
        flops = sum(2 * int(w.shape[0]) * int(w.shape[1]) for w in kernels)
    return params, int(flops)


@dataclasses.dataclass(frozen=True)
class PipelinePlan:
    """Stages of consecutive blocks: `stages[i]` holds the names of stage i's layers; `costs`
    their (parameters, FLOPs per step) sums; `gradient_accumulation` the accumulation count."""

    stages: Tuple[Tuple[str, ...], ...]
    costs: Tuple[Tuple[int, int], ...]
    gradient_accumulation: int

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def stage_of(self, layer_name: str) -> int:
        for i, names in enumerate(self.stages):
            if layer_name in names:
                return i
        raise KeyError(f"layer {layer_name!r} is in no stage of the plan")

    def compile_kwargs(self, steps_per_execution: Optional[int] = None) -> Dict[str, int]:
        """``model.compile`` arguments: ``steps_per_execution`` (default: the accumulation
        count; else it must be a multiple of it)."""
        steps = self.gradient_accumulation if steps_per_execution is None else int(steps_per_execution)
        if steps % self.gradient_accumulation:
            raise ValueError(
                f"steps_per_execution={steps} must be a multiple of the gradient accumulation count "
                f"{self.gradient_accumulation}"
            )
        return {"steps_per_execution": steps}


def _blocks(model) -> List:
    """The model's layers with weights, in order, for a chain model."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    blocks = [layer for layer in layers if layer.weights]
    if not blocks:
        raise ValueError(f"model {model.name!r} has no layers with weights to place in stages")
    return blocks


def plan_stages(model, num_stages: int, weight: str = "flops", gradient_accumulation: Optional[int] = None):
    """Split the blocks of `model` (a chain: Sequential or functional) into `num_stages`
    consecutive stages minimising the largest stage's cost (`weight`: "flops" per step, or
    "params"); a `PipelinePlan`. `gradient_accumulation` defaults to 2 x num_stages (the
    least that fills a grouped pipeline); smaller is refused."""
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise ValueError(f"num_stages must be a positive integer, got {num_stages!r}")
    if weight not in ("flops", "params"):
        raise ValueError(f"weight must be 'flops' or 'params', got {weight!r}")
    blocks = _blocks(model)
    if num_stages > len(blocks):
        raise ValueError(f"num_stages={num_stages} exceeds the {len(blocks)} blocks of model {model.name!r}")
    if gradient_accumulation is None:
        gradient_accumulation = 2 * num_stages
    if gradient_accumulation < 2 * num_stages:
        raise ValueError(
            f"gradient_accumulation={gradient_accumulation} must be at least 2 x num_stages = {2 * num_stages} "
            "to fill the pipeline"
        )
    costs = [block_cost(b) for b in blocks]
    values = [c[1] if weight == "flops" else c[0] for c in costs]
    bounds = _linear_partition(values, num_stages)
    stages, stage_costs = [], []
    for start, end in zip(bounds[:-1], bounds[1:]):
        stages.append(tuple(b.name for b in blocks[start:end]))
        stage_costs.append((sum(c[0] for c in costs[start:end]), sum(c[1] for c in costs[start:end])))
    return PipelinePlan(tuple(stages), tuple(stage_costs), int(gradient_accumulation))


def _linear_partition(values: Sequence[int], parts: int) -> List[int]:
    """Boundaries [0, ..., n] of `parts` non-empty consecutive groups minimising the largest
    group sum (dynamic programming; ties: the earliest boundaries)."""
    n = len(values)
    prefix = np.concatenate([[0], np.cumsum(values)])
    best = np.full((parts + 1, n + 1), np.inf)
    cut = np.zeros((parts + 1, n + 1), dtype=int)
    best[0, 0] = 0
    for k in range(1, parts + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                cost = max(best[k - 1, j], prefix[i] - prefix[j])
                if cost < best[k, i]:
                    best[k, i], cut[k, i] = cost, j
    bounds, i = [n], n
    for k in range(parts, 0, -1):
        i = cut[k, i]
        bounds.append(i)
    return bounds[::-1]


def apply_stages(model, plan: PipelinePlan, devices: Optional[Sequence[str]] = None):
    """Apply `plan`: with Graphcore's Keras (the model has ``set_pipeline_stage_assignment``,
    i.e. it was built in an IPUStrategy scope) set each layer's stage and the pipelining
    options, and return `model`; elsewhere return a model of the same layers (shared weights)
    whose stage i runs under ``tf.device(devices[i])`` (default: this machine's CPU devices,
    round robin)."""
    if hasattr(model, "set_pipeline_stage_assignment"):
        assignments = model.get_pipeline_stage_assignment()
        stage = 0
        for assignment in assignments:  # a layer without weights joins the stage before it
            if assignment.layer.weights:
                stage = plan.stage_of(assignment.layer.name)
            assignment.pipeline_stage = stage
        model.set_pipeline_stage_assignment(assignments)
        model.set_pipelining_options(gradient_accumulation_steps_per_replica=plan.gradient_accumulation)
        return model
    if devices is None:
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        devices = [cpus[i % len(cpus)] for i in range(plan.num_stages)]
    if len(devices) != plan.num_stages:
        raise ValueError(f"{len(devices)} devices given for {plan.num_stages} stages")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x, stage = inputs, 0
    for layer in layers:
        if layer.weights:
            stage = plan.stage_of(layer.name)
        with tf.device(devices[stage]):
            x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_staged")
