"""Fuzzing the public layers with arguments and inputs, good and bad: every outcome is a result
or a ValueError/TypeError that names an argument, never an internal TensorFlow error."""

import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dense_snns as ds
import sparse_snns as sp
from snns_as_gnn import GraphSNN, chain

#: Words an error message must contain one of: the argument (or the thing) it is about.
ARGUMENT = re.compile(
    r"`inputs`|inputs|units|filters|neuron|implementation|capacity|input_dim|kernel_size|mask|"
    r"beta|threshold|reset|spike_func|checkpoint_every|time dimension|rank|features|shape|"
    r"padding|strides|graph|node|ids|count|values"
)

# Mostly good values, so that calls get past the constructors.
SIZES = st.one_of(
    st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.integers(-2, 0), st.sampled_from([2.5, "3", None, True])
)
IMPLEMENTATIONS = st.sampled_from(["auto", "auto", "kernel", "compiled", "reference", "op", "gpu"])
NEURONS = st.sampled_from([None, "lif", "alif", "cuba_lif", "resonate_and_fire", "lif_neuron", "izhikevich", 3])


@st.composite
def layer_and_inputs(draw):
    kind = draw(st.sampled_from(["dense", "conv1d", "readout", "sparse", "graph"]))
    batch, steps, features = draw(st.integers(1, 3)), draw(st.integers(0, 4)), draw(st.integers(1, 5))
    rank = draw(st.sampled_from([2, 3, 3, 3, 4]))
    shape = [batch, steps, features, 2][:rank]
    dtype = draw(st.sampled_from([np.float32, np.float32, np.int32, np.bool_, np.float64]))
    x = (np.random.default_rng(draw(st.integers(0, 99))).random(shape) < 0.5).astype(dtype)
    units, implementation, neuron = draw(SIZES), draw(IMPLEMENTATIONS), draw(NEURONS)
    kernel_size, capacity = draw(st.integers(0, 4)), draw(SIZES)
    beta = draw(st.sampled_from([0.5, 1.5, -1, "x", np.float32(0.7)]))
    second = max(1, units) if isinstance(units, int) and not isinstance(units, bool) else units

    def make():
        if kind == "dense":
            return ds.SNNDense(units, neuron=neuron, implementation=implementation, jit_compile=False)
        if kind == "conv1d":
            return ds.SNNConv1D(units, kernel_size, implementation=implementation, jit_compile=False)
        if kind == "readout":
            return ds.LeakyReadout(units, beta=beta, implementation=implementation)
        if kind == "sparse":
            return sp.SparseSNNDense(
                units, input_dim=features, capacity=capacity, implementation=implementation, jit_compile=False
            )
        return GraphSNN(chain([3, second]), implementation=implementation, jit_compile=False)

    if kind == "conv1d" and x.ndim == 3:
        x = x.reshape(x.shape + (1,))
    return kind, make, x


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=layer_and_inputs())
def test_every_outcome_is_a_result_or_an_error_naming_an_argument(case):
    kind, make, x = case
    try:
        layer = make()
        outputs = layer(tf.constant(x))
    except (ValueError, TypeError) as err:
        assert ARGUMENT.search(str(err)), f"{kind}: the error names no argument: {err}"
        return
    except Exception as err:  # noqa: BLE001 - what the test is about
        pytest.fail(f"{kind}: an internal error instead of one naming an argument: {type(err).__name__}: {err}")
    assert all(np.all(np.isfinite(np.asarray(t))) for t in tf.nest.flatten(outputs))
