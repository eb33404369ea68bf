"""Shared test setup: quiet TensorFlow, a Keras handle that follows TF_USE_LEGACY_KERAS."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib  # noqa: E402
import inspect  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hypothesis import settings  # noqa: E402

from dense_snns.compat import KERAS_3, keras, set_random_seed  # noqa: E402

# `python3 run.py test` passes --hypothesis-profile=deterministic: every property runs on the
# same examples each time (drawn from a seed of the test itself), so a run's verdict depends
# on the code only. `python -m pytest` alone draws new examples on every run.
settings.register_profile("deterministic", derandomize=True)


def pytest_report_header(config):
    return f"keras under test: {'Keras 3' if KERAS_3 else 'Keras 2 (tf_keras)'}, tensorflow {tf.__version__}"


@pytest.fixture(autouse=True)
def same_random_state():
    """Every test starts from the same random state of Python, NumPy and TensorFlow, so that
    what draws without a seed of its own (e.g. a layer's default orthogonal recurrent kernel)
    is the same instance on every run: a run's verdict depends on the code only."""
    set_random_seed(0)


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


@pytest.fixture
def stand_in_ipu(monkeypatch):
    """A stand-in `tensorflow.python.ipu` with the documented names (IPUConfig, IPUStrategy,
    scopes.ipu_shard), recording their use as tuples in the returned list."""
    from dense_snns import devices

    calls = []

    class Options:
        pass

    class IPUConfig:
        def __init__(self):
            self.ipu_model = Options()

        def configure_ipu_system(self):
            calls.append(("configure", self.auto_select_ipus, dict(vars(self.ipu_model))))

    class IPUStrategy:
        def __init__(self):
            calls.append(("strategy",))

    @contextlib.contextmanager
    def ipu_shard(index):
        calls.append(("shard", index))
        yield

    module = types.ModuleType("tensorflow.python.ipu")
    module.config = types.SimpleNamespace(IPUConfig=IPUConfig)
    module.ipu_strategy = types.SimpleNamespace(IPUStrategy=IPUStrategy)
    module.scopes = types.SimpleNamespace(ipu_shard=ipu_shard)
    monkeypatch.setitem(sys.modules, "tensorflow.python.ipu", module)
    monkeypatch.delenv("TF_POPLAR_FLAGS", raising=False)
    monkeypatch.setattr(devices, "_configured_ipus", None)
    return calls


#: Why the IPU tests (tests/ipu/) skip where Graphcore's TensorFlow is not installed.
IPU_SKIP_REASON = (
    "needs Graphcore's TensorFlow (tensorflow.python.ipu, from the Poplar SDK), which brings the IPU Model "
    "emulator these tests run on; it is not installed here"
)


@pytest.fixture(scope="session")
def ipu_strategy():
    """An `IPUStrategy` over 2 IPUs: the IPU Model (small, fast-compiling tiles), or IPUs with
    DENSE_SNNS_IPU_HARDWARE=1; the IPU system is configured once per process."""
    from dense_snns import devices

    if not devices.ipu_available():
        pytest.skip(IPU_SKIP_REASON)
    if os.environ.get("DENSE_SNNS_IPU_HARDWARE") == "1":
        devices.configure_ipus(2)
    else:
        devices.configure_ipus(2, emulator=True, tiles_per_ipu=64, compile_ipu_code=False)
    return devices.get_strategy()
