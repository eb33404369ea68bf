"""A local TensorFlow cluster: N `tf.distribute.Server` processes on localhost.

    with LocalCluster(2, cores=[[0], [1]], intra_op_threads=1) as cluster:
        tf.config.experimental_connect_to_cluster(cluster.cluster_resolver(), make_master_device_default=False)
        ...  # cluster.devices() == ["/job:worker/task:0/device:CPU:0", ".../task:1/device:CPU:0"]

Each server runs ``python -m dense_snns.distributed.server`` in its own process (own thread
pools; `cores` pins it with ``sched_setaffinity``). `start` returns once every server accepts
connections, or raises a `ClusterError` naming the address of a server that exited or did not
answer within `start_timeout` seconds (after stopping the others). Leaving the ``with`` block
(normally, by an exception, or by Ctrl-C) stops all of them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from .processes import Child, stop_all

__all__ = ["ClusterError", "LocalCluster", "free_ports", "tf_config"]


class ClusterError(RuntimeError):
    """A server of a local cluster did not start, or died."""


def free_ports(n: int) -> List[int]:
    """`n` distinct TCP ports free on localhost now (bound and released together)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(addresses: Sequence[str], index: int, job: str = "worker") -> str:
    """The ``TF_CONFIG`` (JSON) of task `index` of a cluster whose `job` has `addresses`."""
    if not 0 <= index < len(addresses):
        raise ValueError(f"task index {index} is not one of the {len(addresses)} tasks")
    return json.dumps({"cluster": {job: list(addresses)}, "task": {"type": job, "index": int(index)}})


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("localhost", port), timeout=0.5):
            return True
    except OSError:
        return False


class LocalCluster:
    """`num_servers` TensorFlow servers of job `job` on free localhost ports.

    Args:
        num_servers: how many servers (tasks 0 .. num_servers - 1).
        cores: optional list of core lists, one per server (e.g. ``[[0], [1]]``).
        intra_op_threads, inter_op_threads: thread pool sizes of each server (0: TensorFlow's
            default).
        start_timeout: seconds to wait for every server to answer.
        log_dir: where each server's output goes (``server-<task>.log``); default a new
            temporary directory.
        python: the interpreter that runs the servers (default: this one).
    """

    def __init__(
        self,
        num_servers: int,
        job: str = "worker",
        cores: Optional[Sequence[Sequence[int]]] = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        start_timeout: float = 60.0,
        log_dir: Optional[str] = None,
        python: str = sys.executable,
    ):
        if isinstance(num_servers, bool) or not isinstance(num_servers, int) or num_servers < 1:
            raise ValueError(f"num_servers must be a positive integer, got {num_servers!r}")
        if cores is not None and len(cores) != num_servers:
            raise ValueError(f"cores gives {len(cores)} core lists for {num_servers} servers")
        if cores is not None:
            available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count()))
            for task, task_cores in enumerate(cores):
                missing = sorted(set(task_cores) - set(available))
                if not task_cores or missing:
                    raise ValueError(
                        f"cores of server {task}: {list(task_cores)} must be a non-empty subset of this "
                        f"process's cores {sorted(available)}"
                    )
        self.num_servers = num_servers
        self.job = job
        self.cores = None if cores is None else [list(c) for c in cores]
        self.intra_op_threads = int(intra_op_threads)
        self.inter_op_threads = int(inter_op_threads)
        self.start_timeout = float(start_timeout)
        self.log_dir = log_dir
        self.python = python
        self.addresses: List[str] = []
        self._children: List[Child] = []

    # -- life cycle ------------------------------------------------------------------------
    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LocalCluster":
        if self._children:
            raise ClusterError("this cluster is already started")
        if self.log_dir is None:
            self.log_dir = tempfile.mkdtemp(prefix="dense_snns_cluster_")
        os.makedirs(self.log_dir, exist_ok=True)
        self.addresses = [f"localhost:{port}" for port in free_ports(self.num_servers)]
        spec = json.dumps({self.job: self.addresses})
        try:
            for task in range(self.num_servers):
                argv = [
                    self.python,
                    "-m",
                    "dense_snns.distributed.server",
                    "--cluster",
                    spec,
                    "--job",
                    self.job,
                    "--task",
                    str(task),
                    "--intra-op-threads",
                    str(self.intra_op_threads),
                    "--inter-op-threads",
                    str(self.inter_op_threads),
                ]
                cores = None if self.cores is None else self.cores[task]
                log_path = os.path.join(self.log_dir, f"server-{task}.log")
                self._children.append(Child(argv, log_path, self._env(), cores))
            self._wait_until_answering()
        except BaseException:  # also KeyboardInterrupt: never leave a server behind
            self.stop()
            raise
        return self

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        return env

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        waiting = set(range(self.num_servers))
        while waiting:
            for task in sorted(waiting):
                child = self._children[task]
                if child.poll() is not None:
                    tail = child.log_tail()
                    ended = f"server {self.addresses[task]} (task {task}) {child.how_it_ended()} before it answered"
                    raise ClusterError(f"{ended}; its output ends with:\n{tail}" if tail else ended)
                if _answers(int(self.addresses[task].rsplit(":", 1)[1])):
                    waiting.discard(task)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(self.addresses[t] for t in sorted(waiting))
                raise ClusterError(f"server {names} did not answer within {self.start_timeout:g} s")
            if waiting:
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL); safe to call twice."""
        children, self._children = self._children, []
        stop_all(children)

    # -- what users need -------------------------------------------------------------------
    @property
    def pids(self) -> List[int]:
        return [child.pid for child in self._children]

    def check(self) -> None:
        """A `ClusterError` naming the address of every server that is no longer running."""
        dead = [
            f"server {self.addresses[task]} (task {task}) {child.how_it_ended()}"
            for task, child in enumerate(self._children)
            if child.poll() is not None
        ]
        if dead:
            raise ClusterError("; ".join(dead))

    def cluster_spec(self):
        import tensorflow as tf

        return tf.train.ClusterSpec({self.job: self.addresses})

    def cluster_resolver(self):
        """A `SimpleClusterResolver` of this cluster, for ``tf.config.experimental_connect_to_cluster``."""
        import tensorflow as tf

        return tf.distribute.cluster_resolver.SimpleClusterResolver(self.cluster_spec(), rpc_layer="grpc")

    def devices(self, device_type: str = "CPU") -> List[str]:
        """The first `device_type` device of every server: ``/job:<job>/task:<i>/device:CPU:0``."""
        return [f"/job:{self.job}/task:{task}/device:{device_type}:0" for task in range(self.num_servers)]

    def target(self, task: int) -> str:
        return f"grpc://{self.addresses[task]}"
