"""The graph example runs end to end in its quick mode: drawing, training, saving, summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import helpers
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "train_graph.py")
SVG = "{http://www.w3.org/2000/svg}"


def load_example():
    return helpers.load_example("train_graph")


def check_outputs(out_dir, summary=None, devices=1):
    for name in ("graph.svg", "model.keras", "summary.json"):
        assert (out_dir / name).stat().st_size > 0, name
    with open(out_dir / "summary.json") as f:
        saved = json.load(f)
    if summary is not None:
        assert saved["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    for key in ("test_accuracy", "train_accuracy"):
        assert 0.0 <= saved[key] <= 1.0
    assert saved["wall_time_s"] > 0 and saved["epochs"] == 1

    # The graph spec round-trips and is the seed's 5-node graph.
    from snns_as_gnn import SNNGraph

    graph = SNNGraph.from_dict(saved["graph"])
    assert graph.adjacency() == [[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]]
    assert graph.inputs == ("node0",) and graph.outputs == ("node4",) and graph.input_size == 100

    # Every node is placed on one of the devices.
    placement = saved["placement"]
    assert len(placement["devices"]) == len(saved["devices"]) == devices
    assert set(placement["assignment"]) == set(graph.node_names)
    assert set(placement["assignment"].values()) <= set(placement["devices"])
    assert placement["used_by_layer"] == (devices > 1)

    # The drawing is well-formed SVG with one circle per node.
    root = ET.parse(str(out_dir / "graph.svg")).getroot()
    assert root.tag == SVG + "svg"
    assert len(root.findall(f".//{SVG}circle")) == graph.num_nodes
    return saved


def test_quick_run_writes_drawing_model_and_summary(tmp_path):
    example = load_example()
    summary = example.main(["--quick", "--verbose", "0", "--out", str(tmp_path)])
    saved = check_outputs(tmp_path, summary)
    assert saved["placement"]["balance"] == pytest.approx(1.0)

    from dense_snns import keras
    from snns_as_gnn import GraphSNN

    model = keras.models.load_model(str(tmp_path / "model.keras"))
    layer = model.get_layer("graph")
    assert isinstance(layer, GraphSNN)
    assert layer.graph.to_dict() == saved["graph"]


def test_quick_run_on_two_logical_devices(tmp_path):
    # Logical devices must be configured before TensorFlow initialises: a fresh process.
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cmd = [sys.executable, EXAMPLE, "--quick", "--verbose", "0", "--devices", "2", "--out", str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "test accuracy:" in result.stdout
    saved = check_outputs(tmp_path, devices=2)
    devices = saved["placement"]["devices"]
    # plan_placement leaves no device empty when there are more nodes than devices.
    assert set(saved["placement"]["assignment"].values()) == set(devices)
    for device in devices:
        assert f"{device}: nodes" in result.stdout
