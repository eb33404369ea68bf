"""The IPU example: one pipeline stage per SNN block; without Graphcore's TensorFlow the same
stages run on this machine's CPU, and asking for IPUs there is an error saying what is missing."""

import json

import helpers
import pytest

from dense_snns import devices


def test_quick_run_trains_one_stage_per_block(tmp_path, capsys):
    example = helpers.load_example("train_ipu")
    summary = example.main(["--quick", "--verbose", "0", "--out", str(tmp_path)])
    with open(tmp_path / "summary.json") as f:
        saved = json.load(f)
    assert saved["stages"] == [["hidden1"], ["hidden2", "readout"]]
    assert saved["gradient_accumulation"] == 4 and saved["steps_per_execution"] == 4
    assert saved["stage_costs"][0]["parameters"] > 0
    assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    if not devices.ipu_available():
        assert saved["device"] == "cpu"
        assert "Graphcore's TensorFlow is not installed here" in capsys.readouterr().out


def test_balanced_stages_on_request(tmp_path):
    example = helpers.load_example("train_ipu")
    summary = example.main(["--quick", "--epochs", "0", "--stages", "3", "--verbose", "0", "--out", str(tmp_path)])
    assert summary["stages"] == [["hidden1"], ["hidden2"], ["readout"]]
    assert summary["gradient_accumulation"] == 6


@pytest.mark.skipif(devices.ipu_available(), reason="Graphcore's TensorFlow is installed here")
@pytest.mark.parametrize("flag", ["--require-ipu", "--emulator"])
def test_asking_for_ipus_without_the_sdk_says_what_is_missing(tmp_path, flag):
    example = helpers.load_example("train_ipu")
    with pytest.raises(SystemExit, match="Poplar SDK"):
        example.main(["--quick", flag, "--out", str(tmp_path)])


def test_batches_must_be_a_known_multiple_of_steps_per_execution():
    import tensorflow as tf

    example = helpers.load_example("train_ipu")
    batches = tf.data.Dataset.range(10)
    assert int(example.fixed_batches(batches, 4).cardinality()) == 8
    with pytest.raises(SystemExit, match="fewer than steps_per_execution=4"):
        example.fixed_batches(batches.take(3), 4)
    with pytest.raises(SystemExit, match="must be known and finite"):
        example.fixed_batches(batches.filter(lambda b: b > 2), 4)
    with pytest.raises(SystemExit, match="must be known and finite"):
        example.fixed_batches(batches.repeat(), 4)
