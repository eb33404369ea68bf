"""The main job runs end to end in its quick mode, with both kinds of SNN layer."""

import json

import helpers
import pytest


def load_example():
    return helpers.load_example("train_randman")


@pytest.mark.parametrize("layer", ["fused", "rnn"])
def test_quick_run_writes_model_plot_and_summary(tmp_path, layer):
    example = load_example()
    summary = example.main(["--quick", "--verbose", "0", "--layer", layer, "--out", str(tmp_path)])
    for name in ("model.keras", "raster.png", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    with open(tmp_path / "summary.json") as f:
        saved = json.load(f)
    assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert 0.0 <= saved["test_accuracy"] <= 1.0
    assert set(saved["firing_rates_test"]) == {"h1_rate", "h2_rate"}
    assert saved["layer"] == layer
    with open(tmp_path / "raster.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
