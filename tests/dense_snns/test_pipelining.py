"""Pipeline stages: consecutive blocks balanced by cost, Graphcore's rules on gradient
accumulation and steps per execution, applied as device scopes (same outputs) here and
through Graphcore's Keras API on IPUs (a stand-in model records the calls)."""

import numpy as np
import pytest

import dense_snns as ds
from dense_snns import keras
from dense_snns.pipelining import apply_stages, block_cost, plan_stages


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
