"""Devices: importing never fails; IPUs asked for without Graphcore's TensorFlow are an error
saying what is missing; the documented IPU API is driven as documented (a stand-in module
records it); without IPUs the strategy is one a model trains in."""

import os

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import devices, keras

NO_IPU = not devices.ipu_available()


@pytest.mark.skipif(not NO_IPU, reason="Graphcore's TensorFlow is installed here")
def test_without_graphcore_tensorflow_ipus_are_an_error_that_says_where_they_come_from():
    assert devices.ipu_module() is None
    with pytest.raises(devices.IPUUnavailableError, match=r"Poplar SDK.*no tensorflow.python.ipu"):
        devices.configure_ipus(1)
    with pytest.raises(devices.IPUUnavailableError, match="Graphcore's TensorFlow"):
        devices.get_strategy(ipu=True)


def test_bad_arguments_are_refused_before_any_device_is_touched():
    with pytest.raises(ValueError, match="num_ipus must be a positive integer, got 0"):
        devices.configure_ipus(0)
    with pytest.raises(ValueError, match="configure the IPU Model: pass emulator=True"):
        devices.configure_ipus(1, tiles_per_ipu=8)


def test_configure_and_strategy_drive_the_documented_ipu_api(stand_in_ipu):
    assert devices.ipu_available()
    config = devices.configure_ipus(2, emulator=True, tiles_per_ipu=8, compile_ipu_code=False)
    assert stand_in_ipu == [("configure", 2, {"tiles_per_ipu": 8, "compile_ipu_code": False})]
    assert config.auto_select_ipus == 2
    assert "--use_ipu_model" in os.environ["TF_POPLAR_FLAGS"]
    devices.get_strategy()
    assert stand_in_ipu[-1] == ("strategy",)


def test_without_ipus_a_model_trains_in_the_strategy_given(rng):
    strategy = devices.get_strategy(ipu=False)
    assert isinstance(strategy, tf.distribute.Strategy)
    with strategy.scope():
        inputs = keras.Input((None, 6))
        model = keras.Model(inputs, ds.LeakyReadout(2)(ds.SNNDense(8)(inputs)))
        model.compile("adam", ds.MaxOverTimeCrossEntropy())
    x = (rng.random((8, 5, 6)) < 0.3).astype(np.float32)
    history = model.fit(x, rng.integers(0, 2, 8), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_shard_names_and_scopes(stand_in_ipu):
    assert devices.ipu_shards(3) == ["ipu_shard:0", "ipu_shard:1", "ipu_shard:2"]
    assert [devices.ipu_shard_index(d) for d in ("ipu_shard:12", "/CPU:0", "ipu_shard:x")] == [12, None, None]
    with devices.device_scope("ipu_shard:1"):
        pass
    assert stand_in_ipu == [("shard", 1)]
    with devices.device_scope("/CPU:0"):
        assert tf.constant(1.0).device.endswith("CPU:0")
    assert devices.configured_ipus() is None
    devices.configure_ipus(2)
    assert devices.configured_ipus() == 2
    devices.check_ipu_shard("ipu_shard:1", "node 'a'")
    with pytest.raises(
        ValueError, match="node 'a' is placed on IPU shard 'ipu_shard:2', but configure_ipus attached 2"
    ):
        devices.check_ipu_shard("ipu_shard:2", "node 'a'")
    with pytest.raises(ValueError, match="num_ipus must be a positive integer"):
        devices.ipu_shards(0)


@pytest.mark.skipif(not NO_IPU, reason="Graphcore's TensorFlow is installed here")
def test_shards_without_graphcore_tensorflow_are_an_error_naming_the_user():
    with pytest.raises(devices.IPUUnavailableError, match="node 'a' is placed on IPU shard 'ipu_shard:0'.*Poplar SDK"):
        devices.check_ipu_shard("ipu_shard:0", "node 'a'")
    with pytest.raises(devices.IPUUnavailableError, match="Poplar SDK"):
        devices.device_scope("ipu_shard:0")
