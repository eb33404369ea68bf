"""Multi-worker training of the main job: two local workers end with the weights one process
gets on the same batches, and a worker killed mid-epoch is restarted, the job resuming from
its last backup without losing what was trained."""

import os
import signal
import subprocess
import sys

import helpers
import numpy as np

#: Plain SGD, no firing-rate penalty (a statistic of each worker's share of the batch), float64:
#: the weights of different runs then differ by round-off only (gradients are summed in another
#: order), too little to move a membrane across its threshold.
ARGS = ["--quick", "--optimizer", "sgd", "--learning-rate", "0.01", "--rate-strength", "0", "--float64"]
ARGS += ["--verbose", "0"]
EXAMPLE = os.path.join(os.path.dirname(helpers.__file__), os.pardir, "examples", "train_multiworker.py")


def weights(out):
    with np.load(os.path.join(out, "weights.npz")) as f:
        return [f[name] for name in f.files]


def single_process_weights(out, extra=()):
    result = subprocess.run(
        [sys.executable, EXAMPLE, "--single", "--out", str(out)] + ARGS + list(extra),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return weights(out)


def assert_same_weights(got, want):
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-9, rtol=0)


def test_two_workers_end_with_the_weights_of_one_process(tmp_path):
    summary = helpers.load_example("train_multiworker").main(ARGS + ["--out", str(tmp_path / "multi")])
    assert summary["workers"] == 2 and summary["attempts"] == ["ok"]
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert_same_weights(weights(tmp_path / "multi"), single_process_weights(tmp_path / "single"))


def test_a_worker_killed_mid_epoch_is_restarted_and_nothing_trained_is_lost(tmp_path):
    killed = []

    def kill_in_second_epoch(attempt, workers):
        if attempt == 0 and not killed:
            with open(workers[1].log_path) as f:
                if "progress epoch 1 batch 5" in f.read():
                    os.kill(workers[1].pid, signal.SIGKILL)
                    killed.append(workers[1].address)

    out = tmp_path / "multi"
    summary = helpers.load_example("train_multiworker").main(
        ARGS + ["--epochs", "3", "--out", str(out)], monitor=kill_in_second_epoch
    )
    assert killed, "the worker finished before it could be killed"
    assert len(summary["attempts"]) == 2 and summary["attempts"][1] == "ok"
    assert summary["attempts"][0].startswith(f"worker 1 ({killed[0]}) was killed by SIGKILL")
    with open(out / "logs" / "attempt-1" / "worker-0.log") as f:
        begun = [line for line in f.read().splitlines() if line.endswith("begins")]
    assert begun[0] == "progress epoch 1 begins"  # resumed after the first epoch's backup
    assert_same_weights(weights(out), single_process_weights(tmp_path / "single", ["--epochs", "3"]))
