"""A GraphSNN whose nodes run on two TensorFlow servers (separate processes): the same spikes
and gradients as on one device, one-step delays across the processes, and a placement on a
device the cluster does not have refused by name."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import numpy as np
    import tensorflow as tf
    from dense_snns import keras
    from dense_snns.distributed import LocalCluster
    from snns_as_gnn import GraphSNN, SNNGraph, chain, plan_placement

    def run(layer, x):
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * np.linspace(0.5, 1.5, y.shape[-1]).astype(np.float32))
        return [y.numpy()] + [g.numpy() for g in tape.gradient(loss, layer.trainable_weights)]

    with LocalCluster(2, intra_op_threads=1, start_timeout=120) as cluster:
        tf.config.experimental_connect_to_cluster(cluster.cluster_resolver(), make_master_device_default=False)
        init = keras.initializers.RandomNormal(0.2, 0.5, seed=1)
        graph = SNNGraph.from_adjacency([[1], [0, 2, 3], [1, 2], [1, 2, 3], [3, 4]], units=6, inputs=[0],
                                        outputs=[4], neuron="lif", neuron_config={"threshold": 0.3})
        x = tf.constant((np.random.default_rng(0).random((3, 9, 5)) < 0.5).astype(np.float32))
        placement = plan_placement(graph, cluster.devices())
        assert len(set(placement.values())) == 2
        split, whole = (run(GraphSNN(graph, placement=p, kernel_initializer=init), x) for p in (placement, None))
        assert split[0].sum() > 0
        np.testing.assert_array_equal(split[0], whole[0])
        for a, b in zip(split[1:], whole[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        print("same on 2 servers")

        # A chain of 4 nodes alternating between the servers: input at step k reaches the
        # output node, 3 edges away, at step k + 3 and not before.
        line = chain([8, 8, 8, 8], neuron="lif", neuron_config={"threshold": 0.05})
        devices = {name: cluster.devices()[i % 2] for i, name in enumerate(line.node_names)}
        layer = GraphSNN(line, placement=devices, kernel_initializer=keras.initializers.Constant(0.5))
        quiet = np.zeros((1, 12, 4), np.float32)
        kicked = quiet.copy()
        kicked[0, 4] = 1.0
        changed = np.nonzero(np.any(layer(kicked).numpy() != layer(quiet).numpy(), axis=-1)[0])[0]
        assert changed.size and changed[0] == 4 + 3, changed
        print("delays hold across servers")

        try:
            GraphSNN(graph, placement={name: "/job:worker/task:7/device:CPU:0" for name in graph.node_names})
        except ValueError as err:
            assert "device '/job:worker/task:7/device:CPU:0' is not in the cluster" in str(err), err
            print("unknown device refused")
""")


def test_graph_across_two_servers():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("same on 2 servers", "delays hold across servers", "unknown device refused"):
        assert line in result.stdout, result.stdout
