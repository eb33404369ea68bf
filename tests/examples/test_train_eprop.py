"""The e-prop example runs end to end in its quick mode and compares its update with BPTT."""

import json

import helpers
import pytest

from dense_snns import compat


def load_example():
    return helpers.load_example("train_eprop")


def test_quick_run_saves_model_and_summary_with_cosines(tmp_path):
    example = load_example()
    summary = example.main(["--quick", "--verbose", "0", "--out", str(tmp_path)])
    assert (tmp_path / "summary.json").stat().st_size > 0
    # an EProp model is subclassed: a SavedModel directory where Keras has no .keras format
    assert (tmp_path / ("model.keras" if compat.HAS_KERAS_FORMAT else "model")).exists()
    with open(tmp_path / "summary.json") as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    cosines = saved["cosine_vs_bptt_at_init"]
    # the readout's own gradient is exact; the recurrent layer's is an approximation
    readout = [v for k, v in cosines.items() if "readout" in k]
    assert readout and all(v == pytest.approx(1.0, abs=1e-4) for v in readout)
    assert 0.3 < cosines["all"] <= 1.0 + 1e-6


def test_without_recurrence_the_update_is_the_bptt_gradient(tmp_path):
    example = load_example()
    config = dict(example.CONFIG, hidden=16, recurrent=False)
    import numpy as np

    from dense_snns import compat

    compat.set_random_seed(0)
    model = example.build_model(config)
    x = (np.random.default_rng(0).random((4, 30, config["nb_units"])) < 0.1).astype(np.float32)
    labels = np.array([0, 1, 2, 3])
    model.build(x.shape)
    cosines = example.cosine_vs_bptt(model, x, labels)
    assert all(v == pytest.approx(1.0, abs=1e-4) for v in cosines.values()), cosines
