"""One vocabulary for `implementation` and one resolver (dense_snns.implementation); the
names of earlier versions still work, with a DeprecationWarning, in configs too."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
import sparse_snns as sp
from dense_snns import implementation
from snns_as_gnn import GraphSNN, chain


def test_the_vocabulary():
    assert implementation.IMPLEMENTATIONS == ("auto", "kernel", "compiled", "reference") == ds.IMPLEMENTATIONS
    for value in implementation.IMPLEMENTATIONS:
        assert implementation.check(value) == value
    with pytest.raises(
        implementation.ImplementationError, match="implementation must be one of .* got implementation='cuda'"
    ):
        implementation.check("cuda")
    assert issubclass(ds.ImplementationError, ValueError)


@pytest.mark.parametrize(
    "old, new", [("op", "kernel"), ("tf", "compiled"), ("fused", "compiled"), ("loop", "reference")]
)
def test_earlier_names_map_with_a_deprecation_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"implementation='{old}' is deprecated; use implementation='{new}'"):
        assert implementation.check(old) == new


def test_resolve():
    never = lambda: pytest.fail("the refusal must not be asked for")  # noqa: E731
    assert implementation.resolve("compiled", never, "x") == "compiled"
    assert implementation.resolve("reference", never, "x") == "reference"
    assert implementation.resolve("auto", None, "x") == "kernel"
    assert implementation.resolve("auto", lambda: "no compiler", "x") == "compiled"
    assert implementation.resolve("kernel", lambda: None, "x") == "kernel"
    with pytest.raises(
        implementation.ImplementationError, match="implementation='kernel' cannot run the layer 'a': no compiler"
    ):
        implementation.resolve("kernel", "no compiler", "the layer 'a'")


def test_the_error_keeps_its_type_through_autograph():
    @tf.function
    def traced(x):
        implementation.resolve("kernel", "a reason", "this call")
        return x

    with pytest.raises(ds.ImplementationError, match="a reason"):
        traced(tf.constant(1.0))


LAYERS = [
    (ds.SNNDense, dict(units=3), "fused", "compiled"),
    (ds.SNNConv1D, dict(filters=2, kernel_size=3), "loop", "reference"),
    (ds.LeakyReadout, dict(units=2), "fused", "compiled"),
    (sp.SparseLinear, dict(units=3, input_dim=4), "tf", "compiled"),
    (sp.SparseSNNDense, dict(units=3, input_dim=4, capacity=2), "op", "kernel"),
    (sp.SparseToDense, dict(num_neurons=4), "tf", "compiled"),
    (sp.SparseLeakyReadout, dict(units=2, input_dim=4), "tf", "compiled"),
    (GraphSNN, dict(graph=chain([3, 2]).to_dict()), "loop", "reference"),
]


@pytest.mark.parametrize("cls, kwargs, old, new", LAYERS, ids=[c[0].__name__ for c in LAYERS])
def test_configs_saved_with_earlier_names_still_load(cls, kwargs, old, new):
    config = dict(cls(**kwargs).get_config(), implementation=old)
    with pytest.warns(DeprecationWarning, match=f"implementation='{old}' is deprecated"):
        layer = cls.from_config(config)
    assert layer.get_config()["implementation"] == new
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="implementation=", category=DeprecationWarning)
        cls.from_config(layer.get_config())  # the new name: no warning


def test_graphs_have_no_kernel():
    with pytest.raises(ds.ImplementationError, match="cannot run GraphSNN .* the graph's loop has no C\\+\\+ kernel"):
        GraphSNN(chain([3]), implementation="kernel")


def test_the_sparse_functions_speak_the_same_vocabulary(rng):
    raster = tf.constant((rng.random((2, 5, 6)) < 0.4).astype(np.float32))
    for value in ("auto", "compiled", "reference"):
        spikes = sp.from_dense(raster, 6, implementation=value)
        np.testing.assert_array_equal(sp.to_dense(spikes, 6, implementation=value).numpy(), raster.numpy())
    with pytest.raises(ds.ImplementationError, match="implementation must be one of"):
        sp.from_dense(raster, 6, implementation="op-tf")
