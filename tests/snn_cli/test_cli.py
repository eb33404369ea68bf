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


def test_export_and_import_nir_files(tmp_path, capsys, rng):
    import numpy as np

    import dense_snns as ds
    from dense_snns import keras

    pytest.importorskip(
        "nir", reason="nir is not installed (the test extras install it; none for Python 3.8 has v_reset)"
    )
    x = keras.Input((None, 4))
    init = keras.initializers.RandomNormal(0.4, 0.5, seed=1)
    h = ds.SNNDense(5, neuron={"class_name": "lif", "config": {"reset": "zero"}}, kernel_initializer=init)(x)
    model = keras.Model(x, ds.LeakyReadout(2)(h))
    model.save(tmp_path / "m.keras")
    assert main(["export-nir", str(tmp_path / "m.keras"), str(tmp_path / "m.nir")]) == 0
    assert main(["import-nir", str(tmp_path / "m.nir"), str(tmp_path / "back.keras")]) == 0
    assert "NIR graph (6 nodes, 5 edges)" in capsys.readouterr().out
    spikes = (rng.random((2, 10, 4)) < 0.5).astype(np.float32)
    back = keras.models.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(back(spikes).numpy(), model(spikes).numpy(), rtol=1e-5, atol=1e-5)
    default_reset = keras.Model(x, ds.LeakyReadout(2)(ds.SNNDense(5, name="h")(x)))
    default_reset.save(tmp_path / "d.keras")
    assert main(["export-nir", str(tmp_path / "d.keras"), str(tmp_path / "d.nir")]) == 2
    assert "layer 'h': reset='subtract' has no NIR equivalent" in capsys.readouterr().err


def test_a_saved_graph_model_exports_to_nir_and_back(tmp_path, rng):
    import numpy as np

    import dense_snns as ds
    import snns_as_gnn as gnn
    from dense_snns import keras

    pytest.importorskip(
        "nir", reason="nir is not installed (the test extras install it; none for Python 3.8 has v_reset)"
    )
    graph = gnn.SNNGraph(
        [gnn.NodeSpec("a", 4, "lif", {"reset": "zero"}), gnn.NodeSpec("b", 3, "lif", {"reset": "zero"})],
        [("a", "b"), ("b", "a")],
        inputs="a",
        outputs="b",
    )
    x = keras.Input((None, 4))
    h = gnn.GraphSNN(graph, kernel_initializer=keras.initializers.RandomNormal(0.4, 0.5, seed=1), name="g")(x)
    model = keras.Model(x, ds.LeakyReadout(2)(h))
    model.save(tmp_path / "g.keras")
    assert main(["export-nir", str(tmp_path / "g.keras"), str(tmp_path / "g.nir")]) == 0
    assert main(["import-nir", str(tmp_path / "g.nir"), str(tmp_path / "back.keras")]) == 0
    spikes = (rng.random((2, 12, 4)) < 0.5).astype(np.float32)
    back = keras.models.load_model(tmp_path / "back.keras")
    assert back.get_layer("g").graph.edges == (("a", "b"), ("b", "a"))
    np.testing.assert_allclose(back(spikes).numpy(), model(spikes).numpy(), rtol=1e-5, atol=1e-5)
