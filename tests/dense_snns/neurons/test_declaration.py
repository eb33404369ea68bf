"""A neuron model is one declaration: the checks of a declaration, of parameter values by
kind, the registry, a model declared here (outside the package) working in every path, and
the generated reference docs."""

import os

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
import sparse_snns as sp
from dense_snns import keras, neurons
from dense_snns.neurons import NeuronModel, choice, decay, positive, real, threshold
from snns_as_gnn import GraphSNN, SNNGraph

from helpers import config_round_trip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def toy_update(current, state, p):
    """A LIF whose input is scaled by a positive gain, to exercise every kind of parameter."""
    v = p.beta * state.v + p.gain * current
    x = v - p.threshold
    spikes = p.spike_fn(x)
    v = neurons.apply_reset(v, spikes, p.threshold, p.reset, p.stop_reset_grad)
    return spikes, (v,), x


def toy_model(name="toy_gain_lif", class_name="ToyGainLIF"):
    return NeuronModel(
        name=name,
        class_name=class_name,
        update=toy_update,
        states=[("v", "membrane")],
        params=[
            decay("beta", 0.8, "membrane decay"),
            positive("gain", 2.0, "input gain"),
            threshold("threshold", 0.6, "threshold"),
            choice("reset", neurons.RESET_MODES, "zero", "reset"),
        ],
        summary="A LIF with an input gain.",
        equations="V = beta V + gain I",
    )


@pytest.fixture(scope="module")
def toy():
    """The toy model registered everywhere (once per test process: registration is global)."""
    model = neurons.MODELS.get("toy_gain_lif") or toy_model()
    cls = ds.register_neuron_model(model)
    return model, cls


# -- the declaration ---------------------------------------------------------------------


def test_derived_state_params_and_step():
    model = toy_model("toy_a", "ToyA")
    assert model.State._fields == ("v",)
    assert model.Params._fields == ("beta", "gain", "threshold", "reset", "stop_reset_grad", "spike_fn")
    params = model.params_from({"gain": 3.0}, spike_fn=ds.Surrogate())
    assert (params.beta, params.gain, params.reset) == (0.8, 3.0, "zero")
    spikes, state = model.step(tf.constant([[0.1, 0.3]]), model.State(tf.zeros([1, 2])), params)
    np.testing.assert_array_equal(spikes.numpy(), [[0.0, 1.0]])  # 3 * 0.3 > 0.6
    np.testing.assert_allclose(state.v.numpy(), [[0.3, 0.0]], rtol=1e-6)
    update = model.update(tf.constant([[0.1, 0.3]]), model.State(tf.zeros([1, 2])), params)
    np.testing.assert_allclose(update.pre_spike.numpy(), [[-0.3, 0.3]], rtol=1e-6)


def test_the_function_parameters_come_last_in_params():
    model = neurons.get("lif_neuron")
    assert model.Params._fields[-3:] == ("stop_reset_grad", "spike_fn", "state2_fn")
    assert model.params_from({"u_thresh": 0.3}).reset_val == 0.3  # default_from


@pytest.mark.parametrize(
    "change, match",
    [
        ({"name": "Bad Name"}, "snake_case"),
        ({"states": []}, "states"),
        ({"states": [("v", ""), ("v", "")]}, "states"),
        ({"params": [decay("beta", 0.9, ""), decay("beta", 0.8, "")]}, "used twice"),
        ({"params": [decay("spike_fn", 0.9, "")]}, "reserved"),
        ({"params": [decay("beta", 1.5, "")]}, "beta must be in the open interval"),
        ({"params": [real("r", None, "", default_from="nope")]}, "default_from"),
        ({"params": ["beta"]}, "parameters must be Params"),
    ],
)
def test_declaration_errors(change, match):
    kwargs = dict(name="m", class_name="M", update=toy_update, states=[("v", "")], params=[], summary="", equations="")
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        NeuronModel(**kwargs)


@pytest.mark.parametrize(
    "param, value, expected",
    [
        (decay("d", 0.5, ""), np.float32(0.25), 0.25),
        (decay("d", 0.5, ""), np.array([0.1, 0.2, 0.3]), [0.1, 0.2, 0.3]),
        (decay("d", 0.5, ""), (0.1, 0.2, 0.3), [0.1, 0.2, 0.3]),
        (positive("p", 1.0, ""), np.int64(3), 3.0),
        (threshold("t", 1.0, ""), -2, -2.0),
        (choice("c", ("a", "b"), "a", ""), "b", "b"),
    ],
)
def test_parameter_values_are_normalised(param, value, expected):
    assert param.check(value, 3) == expected


@pytest.mark.parametrize(
    "param, value, match",
    [
        (decay("d", 0.5, ""), 1.0, "d must be in the open interval"),
        (decay("d", 0.5, ""), [0.5, 0.5], "d has 2 per-neuron values but units=3"),
        (decay("d", 0.5, ""), np.ones((3, 1)) * 0.5, "got shape"),
        (positive("p", 1.0, ""), 0.0, "p must be a finite number > 0"),
        (real("r", 1.0, ""), float("nan"), "r must be a finite number"),
        (real("r", 1.0, ""), True, "r must be a finite number"),
        (threshold("t", 1.0, ""), "1", "t must be a finite number"),
        (choice("c", ("a", "b"), "a", ""), "z", "c must be one of"),
    ],
)
def test_bad_parameter_values_name_the_parameter(param, value, match):
    with pytest.raises(ValueError, match=match):
        param.check(value, 3)


def test_registry_names_and_lookup():
    assert {"lif", "alif", "cuba_lif", "lif_neuron", "leaky_integrator", "resonate_and_fire"} <= set(neurons.MODELS)
    assert neurons.get("CubaLIF") is neurons.get("cuba_lif") is neurons.MODELS["cuba_lif"]
    assert neurons.DEFAULT_NEURON in neurons.MODELS
    with pytest.raises(ValueError, match="Unknown neuron model 'hodgkin_huxley'"):
        neurons.get("hodgkin_huxley")
    with pytest.raises(ValueError, match="already registered"):
        neurons.register(toy_model("lif", "Other"))
    with pytest.raises(TypeError, match="NeuronModel"):
        neurons.register("lif")


def test_every_model_module_of_the_package_is_registered():
    folder = os.path.join(ROOT, "dense_snns", "neurons")
    modules = {name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_")}
    declared = {model.update_fn.__module__.rsplit(".", 1)[-1] for model in neurons.package_models()}
    assert declared == modules


# -- a model declared outside the package, in every path ----------------------------------


def test_a_registered_model_works_in_a_cell_with_trainable_parameters(toy, rng):
    model, cls = toy
    assert ds.NEURON_MODELS["toy_gain_lif"] is ds.NEURON_MODELS["ToyGainLIF"] is cls
    assert ds.get_neuron("toy_gain_lif", 3).model is model
    cell = cls(3, trainable_params=["gain", "threshold"])
    layer = keras.layers.RNN(cell, return_sequences=True)
    currents = tf.constant(rng.normal(0.3, 0.5, (2, 8, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(currents))
    names = [w.name.split("/")[-1].split(":")[0] for w in cell.trainable_weights]
    assert names == ["gain_log", "threshold"]
    np.testing.assert_allclose(cell.param("gain").numpy(), 2.0, rtol=1e-6)  # exp of its log
    assert all(g is not None for g in tape.gradient(loss, cell.trainable_weights))
    config_round_trip(cell)
    with pytest.raises(ValueError, match="'reset' cannot be trained"):
        cls(3, trainable_params=["reset"])
    with pytest.raises(ValueError, match="has no parameter 'alpha'"):
        cls(3, trainable_params=["alpha"])


def test_a_registered_model_works_in_the_fused_sparse_and_graph_paths(toy, rng):
    x = tf.constant((rng.random((2, 10, 5)) < 0.4).astype(np.float32))
    fused = ds.SNNDense(4, neuron="toy_gain_lif", kernel_initializer=keras.initializers.RandomNormal(0.3, 0.5, seed=1))
    reference = keras.layers.RNN(ds.SNNBlock(4, neuron="toy_gain_lif"), return_sequences=True)
    spikes = fused(x)
    reference(x)
    reference.set_weights(fused.get_weights())
    np.testing.assert_array_equal(spikes.numpy(), reference(x).numpy())
    assert 0 < spikes.numpy().sum() < spikes.numpy().size
    sparse = sp.SparseSNNDense(4, input_dim=5, capacity=4, neuron="toy_gain_lif")
    sparse(x)
    sparse.synapse.set_weights([fused.cell.kernel.numpy(), fused.cell.bias.numpy()])
    np.testing.assert_array_equal(sp.to_dense(sp.SparseSpikes(*sparse(x)), 4).numpy(), spikes.numpy())
    graph = SNNGraph.from_adjacency([[], [0]], units=4, inputs=[0], outputs=[1], neuron="toy_gain_lif")
    assert GraphSNN(graph)(x).shape == (2, 10, 4)


# -- the reference docs -------------------------------------------------------------------


def test_the_neuron_reference_docs_are_up_to_date(toy):
    generated = neurons.reference_markdown()
    assert all(f"## `{model.name}`" in generated for model in neurons.package_models())
    assert "toy_gain_lif" not in generated  # registered by a test, not part of the package
    with open(os.path.join(ROOT, "docs", "NEURONS.md"), encoding="utf-8") as f:
        assert f.read() == generated, "docs/NEURONS.md is stale: python -m dense_snns.neurons > docs/NEURONS.md"
