"""Devices: importing never fails; IPUs asked for without Graphcore's TensorFlow are an error
saying what is missing; the documented IPU API is driven as documented (a stand-in module
records it); without IPUs the strategy is one a model trains in."""

import os
import sys
import types

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


class _Options:
    pass


@pytest.fixture
def stand_in_ipu(monkeypatch):
    """A stand-in `tensorflow.python.ipu` with the documented names, recording their use."""
    calls = []

    class IPUConfig:
        def __init__(self):
            self.ipu_model = _Options()

        def configure_ipu_system(self):
            calls.append(("configure", self.auto_select_ipus, dict(vars(self.ipu_model))))

    class IPUStrategy:
        def __init__(self):
            calls.append(("strategy",))

    module = types.ModuleType("tensorflow.python.ipu")
    module.config = types.SimpleNamespace(IPUConfig=IPUConfig)
    module.ipu_strategy = types.SimpleNamespace(IPUStrategy=IPUStrategy)
    monkeypatch.setitem(sys.modules, "tensorflow.python.ipu", module)
    monkeypatch.delenv("TF_POPLAR_FLAGS", raising=False)
    return calls


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
