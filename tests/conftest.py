"""Shared test setup: quiet TensorFlow, a Keras handle that follows TF_USE_LEGACY_KERAS."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import inspect  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from dense_snns.compat import KERAS_3, keras  # noqa: E402


def pytest_report_header(config):
    return f"keras under test: {'Keras 3' if KERAS_3 else 'Keras 2 (tf_keras)'}, tensorflow {tf.__version__}"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def float64():
    """Run the test with Keras float64 layers."""
    previous = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    yield
    keras.backend.set_floatx(previous)


@pytest.fixture
def checkpoint_choices(monkeypatch):
    """The list of what `dense_snns.fused.resolve_checkpoint_every` returns during the test
    (the `checkpoint_every` a compiled loop ends up with: None = every state kept)."""
    from dense_snns import fused

    seen = []
    original = fused.resolve_checkpoint_every

    def record(value, steps):
        seen.append(original(value, steps))
        return seen[-1]

    monkeypatch.setattr(fused, "resolve_checkpoint_every", record)
    return seen


@pytest.fixture
def tf_loops_only(monkeypatch):
    """Run fused LIF layers and readouts on the compiled TensorFlow loops of `dense_snns.fused`
    instead of the C++ kernels (which "auto" would pick)."""
    from dense_snns.ops import lif as lif_ops

    monkeypatch.setattr(lif_ops, "refusal", lambda *args: "turned off by the test")


def compile_kwargs():
    """No XLA for training steps under Keras 3 (autodiff through the time loop under XLA is slow)."""
    return {"jit_compile": False} if KERAS_3 else {}


#: Keras 2.6 (Graphcore's base) takes no `jit_compile` in `Model.compile`.
COMPILE_TAKES_JIT = "jit_compile" in inspect.signature(keras.Model.compile).parameters
needs_compile_jit = pytest.mark.skipif(
    not COMPILE_TAKES_JIT, reason="this Keras (2.6) takes no jit_compile in Model.compile"
)
