"""Data-parallel training with MultiWorkerMirroredStrategy for the sparse and graph models too
(the dense main job is tests/examples/test_train_multiworker.py): two workers, trained by
`dense_snns.distributed.fit` under the Keras of the test run, end with the weights of one
process on the same global batches."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dense_snns.distributed import run_workers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    import dense_snns as ds
    import sparse_snns as sp
    from dense_snns import compat, distributed, keras
    from snns_as_gnn import GraphSNN, SNNGraph

    kind, out = sys.argv[1], sys.argv[2]
    multi = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.get_strategy()
    compat.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.random((64, 10, 6)) < 0.3).astype(np.float32)
    y = rng.integers(0, 2, 64).astype(np.int32)
    if kind == "sparse":
        data = tf.data.Dataset.from_tensor_slices((tuple(t.numpy() for t in sp.to_sparse_inputs(x, 6)), y))
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.batch(16, drop_remainder=True).with_options(options)
    init = keras.initializers.RandomNormal(0.2, 0.5, seed=1)
    keras.backend.set_floatx("float64")
    with strategy.scope():
        if kind == "sparse":
            inputs = [keras.Input((10, 6), dtype="int32"), keras.Input((10, 6)), keras.Input((10,), dtype="int32")]
            spikes = sp.SparseSNNDense(8, input_dim=6, capacity=8, self_recurrent=True, kernel_initializer=init)(inputs)
            outputs = sp.SparseLeakyReadout(2, input_dim=8, kernel_initializer=init)(spikes)
        else:  # a graph with a ring and a sparse node
            inputs = keras.Input((10, 6))
            graph = SNNGraph.from_adjacency(
                [[1], [0, 2], [1]], units=8, inputs=[0], outputs=[2], neuron="lif", capacity=[None, 8, None]
            )
            outputs = ds.LeakyReadout(2, kernel_initializer=init)(GraphSNN(graph, kernel_initializer=init)(inputs))
        model = keras.Model(inputs, outputs)
        model.compile(keras.optimizers.SGD(0.05), ds.MaxOverTimeCrossEntropy())
    distributed.fit(model, data, epochs=2)
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"] if multi else 0
    if task == 0:
        np.savez(out, *model.get_weights())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # TensorFlow's collective runtime can abort at interpreter exit
""")


@pytest.mark.parametrize("kind", ["sparse", "graph"])
def test_two_workers_end_with_the_weights_of_one_process(kind, tmp_path):
    env = {
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS", "0"),  # the workers run this Keras
    }
    multi, single = tmp_path / "multi.npz", tmp_path / "single.npz"
    run = run_workers([sys.executable, "-c", SCRIPT, kind, str(multi)], 2, env=env, timeout=600)
    assert run.attempts == ["ok"]
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, str(single)],
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(multi) as got, np.load(single) as want:
        assert len(got.files) == len(want.files) > 0
        for name in want.files:
            np.testing.assert_allclose(got[name], want[name], atol=1e-9, rtol=0)
