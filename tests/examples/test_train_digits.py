"""The digits example runs end to end in its quick mode on scikit-learn's bundled images."""

import json

import helpers
import pytest


def load_example():
    return helpers.load_example("train_digits")


def test_quick_run_writes_model_plot_and_summary(tmp_path):
    summary = load_example().main(["--quick", "--verbose", "0", "--out", str(tmp_path)])
    for name in ("model.keras", "raster.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "raster.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "summary.json") as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert saved["train_samples"] == 200 and saved["test_samples"] == 359
