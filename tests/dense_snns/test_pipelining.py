"""Pipeline stages: consecutive blocks balanced by cost, Graphcore's rules on gradient
accumulation and steps per execution, applied as device scopes (same outputs) here and
through Graphcore's Keras API on IPUs (a stand-in model records the calls)."""

import numpy as np
import pytest

import dense_snns as ds
from dense_snns import keras
from dense_snns.pipelining import apply_stages, block_cost, manual_stages, plan_stages


def stack(widths=(64, 256, 32, 16), features=20):
    inputs = keras.Input((None, features))
    x = inputs
    for i, units in enumerate(widths):
        x = ds.SNNDense(units, neuron="lif", name=f"block{i}")(x)
        x = ds.SpikeMonitor(name=f"monitor{i}")(x)
    return keras.Model(inputs, ds.LeakyReadout(3, name="readout")(x))


def test_stages_are_consecutive_and_minimise_the_largest_stage():
    model = stack()
    plan = plan_stages(model, 2)
    flops = {layer.name: block_cost(layer)[1] for layer in model.layers if layer.weights}
    assert flops["block1"] == 2 * 64 * 256
    names = [name for stage in plan.stages for name in stage]
    assert names == ["block0", "block1", "block2", "block3", "readout"]
    best = min(
        max(sum(flops[n] for n in names[:cut]), sum(flops[n] for n in names[cut:])) for cut in range(1, len(names))
    )
    assert max(cost[1] for cost in plan.costs) == best
    assert plan.gradient_accumulation == 4 and plan.compile_kwargs() == {"steps_per_execution": 4}
    by_params = plan_stages(model, 3, weight="params")
    assert by_params.num_stages == 3 and all(by_params.stages)


def test_graphcores_rules_and_bad_arguments_are_errors():
    model = stack()
    with pytest.raises(ValueError, match="gradient_accumulation=3 must be at least 2 x num_stages = 4"):
        plan_stages(model, 2, gradient_accumulation=3)
    with pytest.raises(ValueError, match="steps_per_execution=6 must be a multiple of the gradient accumulation"):
        plan_stages(model, 2, gradient_accumulation=4).compile_kwargs(6)
    with pytest.raises(ValueError, match="num_stages=9 exceeds the 5 blocks"):
        plan_stages(model, 9)
    with pytest.raises(ValueError, match="num_stages must be a positive integer"):
        plan_stages(model, 0)


def test_device_scopes_keep_the_outputs(rng):
    model = stack()
    plan = plan_stages(model, 2)
    staged = apply_stages(model, plan, ["/CPU:0", "/CPU:0"])
    x = (rng.random((2, 7, 20)) < 0.3).astype(np.float32)
    np.testing.assert_array_equal(staged(x).numpy(), model(x).numpy())
    with pytest.raises(ValueError, match="1 devices given for 2 stages"):
        apply_stages(model, plan, ["/CPU:0"])


class _Assignment:
    def __init__(self, layer):
        self.layer, self.pipeline_stage = layer, None


def test_on_ipus_the_keras_pipeline_api_gets_the_stages():
    model = stack()
    plan = plan_stages(model, 2)
    calls = {}
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    model.get_pipeline_stage_assignment = lambda: [_Assignment(layer) for layer in layers]
    model.set_pipeline_stage_assignment = lambda assignments: calls.update(
        stages={a.layer.name: a.pipeline_stage for a in assignments}
    )
    model.set_pipelining_options = lambda **options: calls.update(options=options)
    assert apply_stages(model, plan) is model
    for name, stage in calls["stages"].items():
        owner = name.replace("monitor", "block")  # a monitor follows its block's stage
        assert stage == plan.stage_of(owner), name
    assert calls["options"] == {"gradient_accumulation_steps_per_replica": plan.gradient_accumulation}
    with pytest.raises(ValueError, match="the plan has 2 stages but only 1 IPU"):
        apply_stages(model, plan, num_ipus=1)


def branching():
    inputs = keras.Input((None, 6))
    a = ds.SNNDense(8, name="a")(inputs)
    b = ds.SNNDense(8, name="b")(a)
    c = ds.SNNDense(8, name="c")(inputs)
    merged = keras.layers.Add(name="add")([b, c])
    return keras.Model(inputs, ds.LeakyReadout(2, name="readout")(merged), name="branching")


def test_a_model_that_is_not_a_chain_is_refused_naming_the_layer():
    model = branching()
    with pytest.raises(ValueError, match="layer 'add' of model 'branching' reads several tensors"):
        plan_stages(model, 2)
    with pytest.raises(ValueError, match="reads several tensors"):
        apply_stages(model, plan_stages(stack(), 2))
    shared = ds.SNNDense(6, name="shared")
    inputs = keras.Input((None, 6))
    twice = keras.Model(inputs, shared(shared(inputs)), name="twice")
    with pytest.raises(ValueError, match="layer 'shared' of model 'twice' is called more than once"):
        plan_stages(twice, 1)


def test_a_manual_plan_is_checked_and_applied(rng):
    model = stack()
    stages = {"block0": 0, "block1": 0, "block2": 1, "block3": 1, "readout": 1}
    plan = manual_stages(model, stages)
    assert plan.stages == (("block0", "block1"), ("block2", "block3", "readout"))
    assert plan.costs[0][1] == block_cost(model.get_layer("block0"))[1] + block_cost(model.get_layer("block1"))[1]
    x = (rng.random((2, 5, 20)) < 0.3).astype(np.float32)
    np.testing.assert_array_equal(apply_stages(model, plan, ["/CPU:0", "/CPU:0"])(x).numpy(), model(x).numpy())
    with pytest.raises(ValueError, match=r"blocks \['readout'\] of model '.*' have no stage"):
        manual_stages(model, {k: v for k, v in stages.items() if k != "readout"})
    with pytest.raises(ValueError, match=r"stage 2 of block 'readout' is out of range: the 2 stages are 0..1"):
        manual_stages(model, dict(stages, readout=2), num_stages=2)
    with pytest.raises(ValueError, match=r"stage -1 of block 'block0' is out of range"):
        manual_stages(model, dict(stages, block0=-1))
    with pytest.raises(ValueError, match=r"stages \[1\] of the 3 stages hold no block"):
        manual_stages(model, dict(stages, block2=2, block3=2, readout=2))
    with pytest.raises(ValueError, match="block 'block2' is in stage 0, before the stage 1 of block 'block1'"):
        manual_stages(model, dict(stages, block1=1, block2=0))
    with pytest.raises(ValueError, match=r"stages name layers \['monitor0'\] that are not blocks"):
        manual_stages(model, dict(stages, monitor0=0))
    with pytest.raises(ValueError, match="the stage of block 'block0' must be an integer"):
        manual_stages(model, dict(stages, block0="0"))


def test_a_plan_for_another_model_is_refused():
    four, two = stack(), stack(widths=(8, 8))
    with pytest.raises(ValueError, match=r"blocks \['block2', 'block3'\] of model .* are in no stage of the plan"):
        apply_stages(four, plan_stages(two, 2))
    with pytest.raises(ValueError, match=r"the plan stages layers \['block2', 'block3'\] that are not blocks"):
        apply_stages(two, plan_stages(four, 2))
    with pytest.raises(ValueError, match="plan must be a PipelinePlan"):
        apply_stages(two, {"block0": 0})
