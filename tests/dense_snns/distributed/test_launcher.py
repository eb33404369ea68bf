"""The local cluster launcher: servers that answer and compute, pinned to cores; a server that
does not start or dies is named by its address within a bounded time; every server is
stopped, also on errors, Ctrl-C and when the parent process is killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dense_snns.distributed import ClusterError, LocalCluster, free_ports, tf_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by a parent that is gone) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, seconds=15):
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(alive(p) for p in pids)


def run_script(script, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)


CONNECT_SCRIPT = textwrap.dedent("""
    import os
    import tensorflow as tf
    from dense_snns.distributed import LocalCluster
    cores = sorted(os.sched_getaffinity(0))
    with LocalCluster(2, cores=[[cores[0]], [cores[-1]]], intra_op_threads=1, inter_op_threads=1) as cluster:
        tf.config.experimental_connect_to_cluster(cluster.cluster_resolver(), make_master_device_default=False)
        results = []
        for device in cluster.devices():
            with tf.device(device):
                y = tf.matmul(tf.ones([2, 3]), tf.ones([3, 4]))
            assert y.device.endswith(device.split("/", 2)[-1]), (y.device, device)
            results.append(float(tf.reduce_sum(y)))
        for pid, core in zip(cluster.pids, [cores[0], cores[-1]]):
            assert os.sched_getaffinity(pid) == {core}
        print("pids", *cluster.pids)
    print("sums", *results)
""")


def test_two_servers_answer_compute_on_their_cores_and_are_stopped():
    result = run_script(CONNECT_SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["sums"].split() == ["24.0", "24.0"]
    assert wait_gone([int(p) for p in lines["pids"].split()])


def test_a_server_that_exits_at_start_is_named_and_the_others_are_stopped(tmp_path):
    failing = tmp_path / "python"
    failing.write_text("#!/bin/sh\ncase \"$*\" in *'--task 1'*) echo 'cannot bind'; exit 3;; esac\nsleep 60\n")
    failing.chmod(0o755)
    cluster = LocalCluster(2, python=str(failing), start_timeout=30)
    start = time.monotonic()
    with pytest.raises(ClusterError, match=r"server localhost:\d+ \(task 1\) exited with code 3 before it answered"):
        cluster.start()
    assert time.monotonic() - start < 20
    assert "cannot bind" in open(os.path.join(cluster.log_dir, "server-1.log")).read()
    assert cluster.pids == []


def test_a_server_that_does_not_answer_is_named_within_the_timeout(tmp_path):
    silent = tmp_path / "python"
    silent.write_text('#!/bin/sh\necho $$ > "$(dirname "$0")/pid"\nexec sleep 60\n')
    silent.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(ClusterError, match=r"server localhost:\d+ did not answer within 1 s"):
        LocalCluster(1, python=str(silent), start_timeout=1).start()
    assert time.monotonic() - start < 10
    assert wait_gone([int((tmp_path / "pid").read_text())])


def test_a_server_that_dies_is_named_and_ctrl_c_stops_the_rest():
    with pytest.raises(KeyboardInterrupt):
        with LocalCluster(2, start_timeout=120) as cluster:
            pids = cluster.pids
            cluster.check()
            os.kill(pids[1], signal.SIGKILL)
            deadline = time.monotonic() + 10
            with pytest.raises(ClusterError, match=rf"server {cluster.addresses[1]} \(task 1\) was killed by SIGKILL"):
                while time.monotonic() < deadline:
                    cluster.check()
                    time.sleep(0.05)
            raise KeyboardInterrupt
    assert wait_gone(pids)


ORPHAN_SCRIPT = textwrap.dedent("""
    import time
    from dense_snns.distributed import LocalCluster
    cluster = LocalCluster(2, start_timeout=120).start()
    print("pids", *cluster.pids, flush=True)
    time.sleep(120)
""")


def test_servers_die_with_a_killed_parent():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = parent.stdout.readline()
        assert line.startswith("pids"), line
        pids = [int(p) for p in line.split()[1:]]
        assert all(alive(p) for p in pids)
    finally:
        parent.kill()
        parent.wait()
    assert wait_gone(pids)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_servers must be a positive integer, got 0"):
        LocalCluster(0)
    with pytest.raises(ValueError, match="cores gives 1 core lists for 2 servers"):
        LocalCluster(2, cores=[[0]])
    with pytest.raises(ValueError, match=r"cores of server 0: \[4096\] must be a non-empty subset"):
        LocalCluster(1, cores=[[4096]])
    with pytest.raises(ValueError, match="task index 2 is not one of the 2 tasks"):
        tf_config(["a:1", "b:2"], 2)
    ports = free_ports(3)
    assert len(set(ports)) == 3
