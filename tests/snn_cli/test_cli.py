"""The `snn` command line end to end on tiny configurations, for every model kind, and its
errors for unknown or incompatible choices."""

import json
import subprocess
import sys

import pytest

from helpers import write_nmnist_tree
from snn_cli.cli import main


def run(tmp_path, *args):
    out = tmp_path / "out"
    code = main(["train", "--quick", "--verbose", "0", "--out", str(out)] + list(args))
    return code, out


def check_outputs(out, data, model):
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["data"] == data and summary["model"] == model
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert (out / "model.keras").stat().st_size > 0
    with open(out / "raster.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    logs = list((out / "logs").rglob("events.out.tfevents.*"))
    assert any("spikes" in str(p) for p in logs) and any("train" in str(p) for p in logs)


@pytest.mark.parametrize(
    "data, model", [("randman", "dense"), ("randman", "sparse"), ("randman", "graph"), ("digits", "conv")]
)
def test_every_model_kind_trains_and_saves(tmp_path, data, model, capsys):
    code, out = run(tmp_path, "--data", data, "--model", model)
    assert code == 0
    check_outputs(out, data, model)
    printed = capsys.readouterr().out
    for name in ("model.keras", "raster.png", "tensorboard --logdir", "summary.json"):
        assert name in printed


def test_nmnist_from_a_folder_of_files(tmp_path):
    write_nmnist_tree(tmp_path / "nmnist")
    code, out = run(tmp_path, "--data", "nmnist", "--model", "conv", "--data-path", str(tmp_path / "nmnist"))
    assert code == 0
    check_outputs(out, "nmnist", "conv")


def test_errors_for_unknown_and_incompatible_choices(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "transformer"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'transformer'" in capsys.readouterr().err
    assert run(tmp_path, "--data", "randman", "--model", "conv")[0] == 2
    assert "--model conv needs image data (--data digits or nmnist), got --data randman" in capsys.readouterr().err
    assert run(tmp_path, "--data", "shd")[0] == 2
    assert "--data shd needs --data-path" in capsys.readouterr().err
    assert run(tmp_path, "--data", "nmnist", "--data-path", str(tmp_path / "none"))[0] == 2
    assert "N-MNIST folder not found" in capsys.readouterr().err


def test_the_module_runs_as_a_program():
    result = subprocess.run([sys.executable, "-m", "snn_cli", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "train" in result.stdout
