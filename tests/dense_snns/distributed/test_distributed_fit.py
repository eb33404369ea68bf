"""`dense_snns.distributed.fit` / `evaluate` under the Keras of the leg (Keras 3 included, whose
`Model.fit` does not run multi-worker): in one process they equal `Model.fit` /
`Model.evaluate`; two workers end with the weights of one process; a worker killed in the
middle of an epoch is restarted and training resumes from the epoch backup, ending with the
weights of an uninterrupted run."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import dense_snns as ds
from dense_snns import distributed, keras
from dense_snns.distributed import run_workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# argv: out (weights .npz), backup dir or "-", kill marker file or "-"
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    import tensorflow as tf
    import dense_snns as ds
    from dense_snns import compat, distributed, keras

    out, backup, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    multi = "TF_CONFIG" in os.environ
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"] if multi else 0
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.get_strategy()
    keras.backend.set_floatx("float64")
    rng = np.random.default_rng(0)
    x = (rng.random((64, 10, 6)) < 0.3).astype(np.float64)
    y = rng.integers(0, 3, 64).astype(np.int32)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True).with_options(options)
    init = keras.initializers.RandomNormal(0.2, 0.5, seed=1)
    with strategy.scope():
        model = keras.Sequential([keras.Input((10, 6)), ds.SNNDense(8, kernel_initializer=init),
                                  ds.LeakyReadout(3, kernel_initializer=init)])
        model.compile(keras.optimizers.SGD(0.05), ds.MaxOverTimeCrossEntropy(),
                      metrics=[ds.TimeReducedAccuracy("max", name="acc")])

    def on_epoch_begin(epoch):
        print(f"begin epoch {epoch}", flush=True)

    def on_batch_end(epoch, batch):
        if marker != "-" and task == 1 and epoch == 1 and batch == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of epoch 1, once

    history = distributed.fit(model, data, epochs=3, backup_dir=None if backup == "-" else backup,
                              on_epoch_begin=on_epoch_begin, on_batch_end=on_batch_end)
    logs = distributed.evaluate(model, data)
    print("history", json.dumps(history), "evaluate", json.dumps(logs), flush=True)
    if task == 0:
        np.savez(out, *model.get_weights())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # TensorFlow's collective runtime can abort at interpreter exit
""")


def env():
    keep = {"TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS", "0")}
    return dict(keep, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def single_process(tmp_path):
    out = tmp_path / "single.npz"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), "-", "-"],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env()),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def assert_same_weights(got_path, want_path):
    with np.load(got_path) as got, np.load(want_path) as want:
        assert len(got.files) == len(want.files) > 0
        for name in want.files:
            np.testing.assert_allclose(got[name], want[name], atol=1e-9, rtol=0)


def reported(output):
    """{metric: values} of the line the script prints: the history, then "evaluate <metric>"."""
    line = output.split("history ")[-1].splitlines()[0]
    history, logs = (json.loads(part) for part in line.split(" evaluate "))
    return dict(history, **{f"evaluate {name}": value for name, value in logs.items()})


def worker_output(run, attempt, worker):
    with open(run.log_path(attempt, worker)) as f:
        return f.read()


def test_two_workers_end_with_the_weights_of_one_process(tmp_path):
    multi = tmp_path / "multi.npz"
    run = run_workers([sys.executable, "-c", SCRIPT, str(multi), "-", "-"], 2, env=env(), timeout=600)
    assert run.attempts == ["ok"]
    single, single_output = single_process(tmp_path)
    assert_same_weights(multi, single)
    # the metrics of every epoch are those of the whole global batches, as in one process
    got, want = reported(worker_output(run, 0, 0)), reported(single_output)
    assert sorted(got) == sorted(want) == ["acc", "evaluate acc", "evaluate loss", "loss"]
    for name in want:  # Keras 2.6 sums its metrics in float32 variables whatever floatx
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)


def test_a_killed_worker_is_restarted_and_training_resumes_from_the_backup(tmp_path):
    multi, marker = tmp_path / "multi.npz", tmp_path / "killed"
    argv = [sys.executable, "-c", SCRIPT, str(multi), str(tmp_path / "backup"), str(marker)]
    run = run_workers(argv, 2, max_restarts=1, env=env(), timeout=600)
    assert marker.exists() and len(run.attempts) == 2 and run.attempts[1] == "ok", run.attempts
    first, second = worker_output(run, 0, 1), worker_output(run, 1, 1)
    assert "begin epoch 1" in first and "history" not in first  # died in epoch 1
    assert "begin epoch 0" not in second and second.index("begin epoch 1") < second.index("begin epoch 2")
    assert not (tmp_path / "backup").exists()  # deleted once training ended
    single, _ = single_process(tmp_path)
    assert_same_weights(multi, single)  # nothing trained before the kill was lost or repeated


def test_in_one_process_fit_and_evaluate_equal_the_models_own(rng):
    x = (rng.random((32, 8, 5)) < 0.3).astype(np.float32)
    y = rng.integers(0, 3, 32).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    results = []
    for loop in ("keras", "distributed"):
        init = keras.initializers.RandomNormal(0.2, 0.5, seed=1)
        model = keras.Sequential(
            [keras.Input((8, 5)), ds.SNNDense(6, kernel_initializer=init), ds.LeakyReadout(3, kernel_initializer=init)]
        )
        model.compile(keras.optimizers.SGD(0.05), ds.MaxOverTimeCrossEntropy(), metrics=[ds.TimeReducedAccuracy("max")])
        if loop == "keras":
            history = model.fit(data, epochs=2, verbose=0).history
            logs = model.evaluate(data, verbose=0, return_dict=True)
        else:
            history = distributed.fit(model, data, epochs=2)
            logs = distributed.evaluate(model, data)
        results.append((history, logs, model.get_weights()))
    (h1, l1, w1), (h2, l2, w2) = results
    assert sorted(h1) == sorted(h2) and sorted(l1) == sorted(l2)
    for name in h1:
        np.testing.assert_allclose(h2[name], h1[name], rtol=1e-5)
        np.testing.assert_allclose(l2[name], l1[name], rtol=1e-5)
    for a, b in zip(w2, w1):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_named():
    unbuilt = keras.Sequential([ds.SNNDense(2)])
    unbuilt.compile("sgd", "mse")
    with pytest.raises(ValueError, match="build the model first"):
        distributed.fit(unbuilt, tf.data.Dataset.range(2), epochs=1)
    model = keras.Sequential([keras.Input((4, 3)), ds.SNNDense(2)])
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 4, 3), np.float32), np.zeros(4))).batch(2)
    with pytest.raises(ValueError, match="compile the model first"):
        distributed.fit(model, data, epochs=1)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        distributed.fit(model, data, epochs=0)
    with pytest.raises(TypeError, match="dataset must be a tf.data.Dataset of global batches, got ndarray"):
        distributed.fit(model, np.zeros((4, 4, 3)), epochs=1)
