"""The kernel table (dense_snns/ops/kernel_table.h): what the C++ LIF kernels implement agrees
with the Python models, resets and surrogates, and everything else is refused before a
forward pass runs. These tests need no compiler."""

import os

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import neurons, surrogates
from dense_snns.ops import lif as lif_ops


def test_kernel_table_agrees_with_the_python_declarations():
    table = lif_ops.KERNEL_TABLE
    assert set(table.surrogates) == set(surrogates.SURROGATE_NAMES), (
        "dense_snns.surrogates and kernel_table.h list different surrogates: implement a new one in "
        "lif_ops.cc (SurrogateOf) and add it to DSNN_KERNEL_SURROGATES"
    )
    assert set(table.resets) == set(neurons.RESET_MODES)
    assert set(table.models) <= set(neurons.MODELS)
    assert {"lif", "leaky_integrator"} <= set(table.models)


def test_table_parser_reads_each_list(tmp_path):
    header = tmp_path / "table.h"
    header.write_text(
        "#define DSNN_KERNEL_MODELS(X) \\\n  X(a)   \\\n  X(b_c)\n"
        "#define DSNN_KERNEL_RESETS(X) X(r, kR)\n"
        "#define DSNN_KERNEL_SURROGATES(X) \\\n  X(s1, k1) \\\n  X(s2, k2)\n#endif\n"
    )
    assert lif_ops.read_kernel_table(str(header)) == lif_ops.KernelTable(("a", "b_c"), ("r",), ("s1", "s2"))
    (tmp_path / "broken.h").write_text("#define DSNN_KERNEL_MODELS(X) X(a)\n")
    with pytest.raises(ValueError, match="DSNN_KERNEL_RESETS"):
        lif_ops.read_kernel_table(str(tmp_path / "broken.h"))


def test_the_table_is_part_of_the_library_and_its_cache_key():
    headers = [os.path.basename(p) for p in lif_ops.LIBRARY.header_paths()]
    assert "kernel_table.h" in headers and "simd.h" in headers


def lif_params(name="superspike", reset="subtract"):
    return neurons.LIFParams(0.9, 1.0, reset, True, surrogates.Surrogate(name))


@pytest.mark.parametrize(
    "model, params, reason",
    [
        ("alif", neurons.ALIFParams(0.9, 0.9, 0.5, 0.1, "subtract", True, surrogates.Surrogate()), "not 'alif'"),
        ("lif", lif_params()._replace(spike_fn=lambda x: x), "not a dense_snns.surrogates.Surrogate"),
        ("lif", lif_params(reset="bounce"), "no reset 'bounce'"),
    ],
)
def test_refusals_name_the_reason(model, params, reason):
    currents = tf.zeros([2, 3, 4])
    assert reason in lif_ops.refusal(neurons.get(model), params, currents, 1, False, False)


def test_a_surrogate_missing_from_the_table_goes_to_the_loops(monkeypatch, rng):
    """A surrogate the kernels do not list is refused before the forward pass: "auto" runs the
    compiled loops, "kernel" says why."""
    table = lif_ops.KERNEL_TABLE
    monkeypatch.setattr(
        lif_ops, "KERNEL_TABLE", table._replace(surrogates=tuple(s for s in table.surrogates if s != "arctan"))
    )
    currents = tf.constant(rng.normal(0.3, 0.5, (2, 6, 5)).astype(np.float32))
    params = lif_params("arctan")
    assert "no 'arctan' surrogate" in lif_ops.refusal(neurons.get("lif"), params, currents, 1, False, False)
    with pytest.raises(ds.ImplementationError, match="no 'arctan' surrogate"):
        ds.fused.fused_recurrence(
            neurons.get("lif"), currents, [tf.zeros([2, 5])], params, time_axis=1, implementation="kernel"
        )
    calls = []
    monkeypatch.setattr(lif_ops, "run", lambda *args: calls.append(args))
    spikes, _ = ds.fused.fused_recurrence(neurons.get("lif"), currents, [tf.zeros([2, 5])], params, time_axis=1)
    assert not calls and spikes.shape == (2, 6, 5)
