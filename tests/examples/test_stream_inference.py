"""The streaming example runs end to end in its quick mode: its predictions are those of
model.predict, one row per streamed sample."""

import csv
import json

import helpers
import pytest


def load_example():
    return helpers.load_example("stream_inference")


def test_quick_stream_matches_predict_and_writes_every_prediction(tmp_path):
    example = load_example()
    summary = example.main(["--quick", "--samples", "200", "--lanes", "20", "--chunk", "70", "--out", str(tmp_path)])
    assert summary["samples"] == 200
    assert summary["agreement_with_predict"] == 1.0
    assert summary["samples_checked_against_predict"] == 100  # the quick test set, 100 samples
    with open(tmp_path / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["sample"]) for r in rows] == list(range(200))
    accuracy = sum(r["label"] == r["prediction"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(summary["accuracy"])
    with open(tmp_path / "summary.json") as f:
        assert json.load(f)["samples_per_s"] > 0


def test_the_stream_order_covers_the_test_set_on_every_pass():
    example = load_example()
    order = example.sample_order(n_test=30, samples=60, lanes=4, seed=0)
    assert order.shape == (15, 4)
    flat = order.ravel()
    assert sorted(flat[:30]) == list(range(30)) and sorted(flat[30:]) == list(range(30))


def test_samples_must_fill_the_lanes():
    example = load_example()
    with pytest.raises(SystemExit):
        example.parse_args(["--samples", "101", "--lanes", "10"])
