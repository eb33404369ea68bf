"""dense_snns.validation: the input checks every layer shares, and their messages."""

import numpy as np
import pytest
import tensorflow as tf

from dense_snns import validation


@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3)])
def test_positive_integers(value):
    assert validation.check_positive_int(value, "capacity") == 3
    assert validation.check_units(value) == 3


@pytest.mark.parametrize("value", [0, -1, 2.5, "3", True, None, np.float32(3.0)])
def test_not_positive_integers_name_the_argument(value):
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        validation.check_positive_int(value, "capacity")
    with pytest.raises(ValueError, match="filters must be a positive integer"):
        validation.check_units(value, "filters")


def test_seeds():
    assert validation.check_seed(None) is None and validation.check_seed(np.int64(7)) == 7
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="seed must be a non-negative integer or None"):
            validation.check_seed(bad)


@pytest.mark.parametrize("raw", [np.array([[1, 0]], np.bool_), np.array([[1, 0]], np.int64), [[1.0, 0.0]]])
def test_spike_rasters_of_any_numeric_dtype_are_cast(raw):
    x = validation.as_numeric_tensor(raw, "inputs", tf.float32)
    assert x.dtype == tf.float32
    np.testing.assert_array_equal(x.numpy(), [[1.0, 0.0]])


def test_non_numeric_inputs():
    with pytest.raises(TypeError, match="`inputs` must be numeric"):
        validation.as_numeric_tensor(tf.constant(["a"]), "inputs", tf.float32)
    with pytest.raises(TypeError, match="`inputs` must be a numeric tensor, could not convert it"):
        validation.as_numeric_tensor([[1.0], [1.0, 2.0]], "inputs", tf.float32)


def test_rank_and_features():
    validation.check_rank(tf.zeros([2, 3]), 2, "inputs", "[batch, features]")
    with pytest.raises(ValueError, match=r"`inputs` must have rank 3 \(\[batch, time, features\]\), got shape"):
        validation.check_rank(tf.zeros([2, 3]), 3, "inputs", "[batch, time, features]")
    validation.check_features([None, 5], 5, "inputs", "the kernel's input size")
    with pytest.raises(
        ValueError, match="`inputs` has 4 features in its last dimension but the kernel's input size is 5"
    ):
        validation.check_features([2, 4], 5, "inputs", "the kernel's input size")
    with pytest.raises(ValueError, match="must have a feature dimension"):
        validation.check_features([], 5, "inputs", "x")
