"""Pipeline stages for a stack of SNN blocks: one stage per group of consecutive blocks,
balanced by parameters and per-step FLOPs.

Keras pipelines micro-batches through layers; a sequence layer's time loop is indivisible,
so stage boundaries fall between the blocks of a stack (layers that return whole sequences).
`plan_stages(model, num_stages)` (balanced) and `manual_stages(model, {block: stage})` are
pure Python and check the model is a chain; `apply_stages(model, plan)` applies a plan
with Graphcore's Keras API on IPUs (``model.set_pipeline_stage_assignment``,
``model.set_pipelining_options(gradient_accumulation_steps_per_replica=...)``, as Poplar SDK
3.4 documents), and elsewhere returns the same layers (shared weights) rebuilt as a model
whose stages run under ``tf.device`` scopes.

Graphcore's rules, checked here: gradient accumulation is mandatory when training a pipeline
and must be at least twice the number of stages for the grouped schedule to fill it;
``steps_per_execution`` must be a multiple of the gradient-accumulation count
(`PipelinePlan.compile_kwargs`).

A `GraphSNN` is one block here: its time loop is one layer, and its nodes feed each other in a
cycle, not forward as pipeline stages need. To spread one graph over IPUs, place its nodes on
the shards of a multi-IPU device (``plan_placement(graph, dense_snns.devices.ipu_shards(k))``):
every node of a step then runs in parallel on its IPU.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .compat import keras

__all__ = ["PipelinePlan", "apply_stages", "block_cost", "manual_stages", "plan_stages"]


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


def _chain_layers(model) -> List:
    """The layers of `model` from its input to its output, checked to form a chain: one input,
    one output, every layer called once on one tensor, the output of the layer before."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs: "
            "pipeline stages split a chain of layers (one input, one output)"
        )
    chain, tensor = [], model.outputs[0]
    while tensor is not model.inputs[0]:  # back from the output, through each call's inputs
        layer, node_index = tensor._keras_history[:2]
        inputs = layer._inbound_nodes[node_index].input_tensors
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(inputs) != 1 or any(layer is seen for seen in chain):
            raise ValueError(
                f"layer {layer.name!r} of model {model.name!r} "
                + ("reads several tensors" if len(inputs) != 1 else "is called more than once")
                + ": pipeline stages split a chain of layers"
            )
        chain.append(layer)
        tensor = inputs[0]
    chain.reverse()
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    off_chain = [layer.name for layer in layers if not any(layer is c for c in chain)]
    if off_chain:
        raise ValueError(f"layers {off_chain} of model {model.name!r} are off the chain from its input to its output")
    return chain


def _blocks(model) -> List:
    """The layers with weights of a chain model, in order."""
    blocks = [layer for layer in _chain_layers(model) if layer.weights]
    if not blocks:
        raise ValueError(f"model {model.name!r} has no layers with weights to place in stages")
    return blocks


def _check_accumulation(gradient_accumulation: Optional[int], num_stages: int) -> int:
    if gradient_accumulation is None:
        return 2 * num_stages
    if isinstance(gradient_accumulation, bool) or not isinstance(gradient_accumulation, int):
        raise ValueError(f"gradient_accumulation must be an integer, got {gradient_accumulation!r}")
    if gradient_accumulation < 2 * num_stages:
        raise ValueError(
            f"gradient_accumulation={gradient_accumulation} must be at least 2 x num_stages = {2 * num_stages} "
            "to fill the pipeline"
        )
    return gradient_accumulation


def _plan(blocks, groups: Sequence[Sequence], gradient_accumulation: int) -> PipelinePlan:
    costs = {b.name: block_cost(b) for b in blocks}
    stages = tuple(tuple(b.name for b in group) for group in groups)
    stage_costs = tuple((sum(costs[n][0] for n in names), sum(costs[n][1] for n in names)) for names in stages)
    return PipelinePlan(stages, stage_costs, int(gradient_accumulation))


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
    gradient_accumulation = _check_accumulation(gradient_accumulation, num_stages)
    costs = [block_cost(b) for b in blocks]
    values = [c[1] if weight == "flops" else c[0] for c in costs]
    bounds = _linear_partition(values, num_stages)
    groups = [blocks[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
    return _plan(blocks, groups, gradient_accumulation)


def manual_stages(model, stages: Dict[str, int], num_stages: Optional[int] = None, gradient_accumulation=None):
    """A `PipelinePlan` from a mapping block name -> stage index, checked: every block of
    `model` has a stage, every index is within ``0 .. num_stages - 1`` (default: the largest
    index + 1), no stage is empty, and stages follow the chain (a block's stage is never
    before the stage of the block before it)."""
    blocks = _blocks(model)
    if not isinstance(stages, Mapping):
        raise ValueError(f"stages must map block names to stage indices, got {type(stages).__name__}")
    names = [b.name for b in blocks]
    unknown = sorted(set(stages) - set(names))
    if unknown:
        raise ValueError(f"stages name layers {unknown} that are not blocks of model {model.name!r}; blocks: {names}")
    missing = [name for name in names if name not in stages]
    if missing:
        raise ValueError(f"blocks {missing} of model {model.name!r} have no stage")
    for name in names:
        index = stages[name]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"the stage of block {name!r} must be an integer, got {index!r}")
    if num_stages is None:
        num_stages = max(int(stages[name]) for name in names) + 1
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise ValueError(f"num_stages must be a positive integer, got {num_stages!r}")
    for name in names:
        if not 0 <= stages[name] < num_stages:
            raise ValueError(
                f"stage {stages[name]} of block {name!r} is out of range: the {num_stages} stages are "
                f"0..{num_stages - 1}"
            )
    empty = [k for k in range(num_stages) if k not in {int(stages[n]) for n in names}]
    if empty:
        raise ValueError(f"stages {empty} of the {num_stages} stages hold no block")
    for before, after in zip(names[:-1], names[1:]):
        if stages[after] < stages[before]:
            raise ValueError(
                f"block {after!r} is in stage {stages[after]}, before the stage {stages[before]} of block "
                f"{before!r} that feeds it: stages follow the chain"
            )
    gradient_accumulation = _check_accumulation(gradient_accumulation, num_stages)
    groups = [[b for b in blocks if stages[b.name] == k] for k in range(num_stages)]
    return _plan(blocks, groups, gradient_accumulation)


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


def apply_stages(model, plan: PipelinePlan, devices: Optional[Sequence[str]] = None, num_ipus: Optional[int] = None):
    """Apply `plan` to `model` (the model it was planned for: the same chain of blocks).

    With Graphcore's Keras (the model has ``set_pipeline_stage_assignment``, i.e. it was
    built in an IPUStrategy scope) set each layer's stage and the pipelining options, and
    return `model`; stage i runs on IPU i, so the plan may not have more stages than the IPUs
    attached (`num_ipus`, default: what `dense_snns.devices.configure_ipus` attached).
    Elsewhere return a model of the same layers (shared weights) whose stage i runs under
    ``tf.device(devices[i])`` (default: this machine's CPU devices, round robin)."""
    _check_plan(model, plan)
    if hasattr(model, "set_pipeline_stage_assignment"):
        from . import devices as device_module

        attached = device_module.configured_ipus() if num_ipus is None else num_ipus
        if attached is not None and plan.num_stages > attached:
            raise ValueError(f"the plan has {plan.num_stages} stages but only {attached} IPU(s) are attached")
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
    inputs = keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype)
    x, stage = inputs, 0
    for layer in _chain_layers(model):
        if layer.weights:
            stage = plan.stage_of(layer.name)
        with tf.device(devices[stage]):
            x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_staged")


def _check_plan(model, plan: PipelinePlan) -> None:
    """The plan's stages hold exactly the blocks of `model`, in chain order."""
    if not isinstance(plan, PipelinePlan):
        raise ValueError(f"plan must be a PipelinePlan (plan_stages, manual_stages), got {type(plan).__name__}")
    names = [b.name for b in _blocks(model)]
    planned = [name for stage in plan.stages for name in stage]
    missing = [name for name in names if name not in planned]
    if missing:
        raise ValueError(f"blocks {missing} of model {model.name!r} are in no stage of the plan")
    extra = [name for name in planned if name not in names]
    if extra:
        raise ValueError(f"the plan stages layers {extra} that are not blocks of model {model.name!r}")
    if planned != names:
        raise ValueError(f"the plan's stages {plan.stages} do not follow the chain of model {model.name!r}: {names}")
