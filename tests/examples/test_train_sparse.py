"""The sparse example runs end to end in its quick mode."""

import json

import helpers


def test_quick_run_compares_sparse_and_dense(tmp_path):
    example = helpers.load_example("train_sparse")
    summary = example.main(["--quick", "--verbose", "0", "--out", str(tmp_path)])
    with open(tmp_path / "summary.json") as f:
        saved = json.load(f)
    assert saved["sparse"]["test_accuracy"] == summary["sparse"]["test_accuracy"]
    for kind in ("dense", "sparse"):
        assert 0.0 <= saved[kind]["test_accuracy"] <= 1.0
    assert saved["input_capacity"] >= 1 and len(saved["hidden_capacities"]) == 2
    assert set(saved["sparse"]["dropped_spikes_per_step"]) == {"sparse1_dropped", "sparse2_dropped"}
    assert all(0.0 <= d <= 1.0 for d in saved["sparse"]["hidden_spike_density"])
