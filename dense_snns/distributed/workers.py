"""Run a command as the N workers of a multi-worker job, and restart the job when a worker dies.

    run = run_workers([sys.executable, "train.py"], num_workers=2, max_restarts=1)

Worker i gets ``TF_CONFIG`` for task i of a cluster on free localhost ports (a new set for
every attempt) and ``DENSE_SNNS_ATTEMPT`` (0 for the first start). The job succeeds when every
worker exits with code 0. When one exits otherwise (or is killed) the others cannot go on
(their collectives wait for it), so they are stopped at once; with restarts left the whole job
starts again, and the command's epoch backup (`dense_snns.distributed.fit` with a
`backup_dir`, or Keras 2's ``keras.callbacks.BackupAndRestore``) resumes it from its last
backup. Without restarts left, a `WorkerFailure` names the worker, its address and how it
ended. `timeout` bounds the whole run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

from .launcher import free_ports, tf_config
from .processes import Child, stop_all

__all__ = ["Worker", "WorkerFailure", "WorkerRun", "run_workers", "worker_attempt"]


class WorkerFailure(RuntimeError):
    """A worker of a multi-worker job died and no restart was left (or the run timed out)."""


@dataclasses.dataclass
class Worker:
    """A running worker: its task index, address, process id and log file."""

    index: int
    address: str
    pid: int
    log_path: str


@dataclasses.dataclass
class WorkerRun:
    """What `run_workers` did: one entry per attempt, the reason it ended ("ok" or which
    worker died how), and the log directory (``attempt-<a>/worker-<i>.log``)."""

    attempts: List[str]
    log_dir: str

    def log_path(self, attempt: int, worker: int) -> str:
        return os.path.join(self.log_dir, f"attempt-{attempt}", f"worker-{worker}.log")


def run_workers(
    argv: Sequence[str],
    num_workers: int,
    max_restarts: int = 0,
    env: Optional[Dict[str, str]] = None,
    cores: Optional[Sequence[Sequence[int]]] = None,
    timeout: Optional[float] = None,
    log_dir: Optional[str] = None,
    monitor: Optional[Callable[[int, List[Worker]], None]] = None,
    poll_interval: float = 0.2,
) -> WorkerRun:
    """Run `argv` as `num_workers` workers (see the module docstring).

    Args:
        argv: the command of every worker.
        num_workers: how many workers.
        max_restarts: how often the job is started again after a worker died.
        env: extra environment variables of the workers.
        cores: optional core list per worker (``sched_setaffinity``).
        timeout: seconds for the whole run (all attempts); None: no limit.
        log_dir: where the workers' output goes; default a new temporary directory.
        monitor: called every `poll_interval` seconds with (attempt, workers) while they run
            (e.g. to report progress).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be a non-negative integer, got {max_restarts!r}")
    if cores is not None and len(cores) != num_workers:
        raise ValueError(f"cores gives {len(cores)} core lists for {num_workers} workers")
    log_dir = log_dir or tempfile.mkdtemp(prefix="dense_snns_workers_")
    deadline = None if timeout is None else time.monotonic() + timeout
    run = WorkerRun([], log_dir)
    for attempt in range(max_restarts + 1):
        outcome = _attempt(argv, num_workers, attempt, env or {}, cores, deadline, run, monitor, poll_interval)
        run.attempts.append(outcome)
        if outcome == "ok":
            return run
        if outcome.startswith("timeout"):
            break
    raise WorkerFailure(f"{run.attempts[-1]} (attempts: {len(run.attempts)}; logs in {log_dir})")


def _attempt(argv, num_workers, attempt, extra_env, cores, deadline, run, monitor, poll_interval) -> str:
    addresses = [f"localhost:{port}" for port in free_ports(num_workers)]
    os.makedirs(os.path.join(run.log_dir, f"attempt-{attempt}"), exist_ok=True)
    children: List[Child] = []
    try:
        for index in range(num_workers):
            env = dict(os.environ)
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            env.update(extra_env)
            env["TF_CONFIG"] = tf_config(addresses, index)
            env["DENSE_SNNS_ATTEMPT"] = str(attempt)
            task_cores = None if cores is None else cores[index]
            children.append(Child(argv, run.log_path(attempt, index), env, task_cores))
        workers = [Worker(i, addresses[i], c.pid, c.log_path) for i, c in enumerate(children)]
        while True:
            codes = [child.poll() for child in children]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                i = failed[0]
                tail = children[i].log_tail()
                ended = f"worker {i} ({addresses[i]}) {children[i].how_it_ended()}"
                return f"{ended}; its output ends with:\n{tail}" if tail else ended
            if all(code == 0 for code in codes):
                return "ok"
            if deadline is not None and time.monotonic() > deadline:
                running = [f"worker {i} ({addresses[i]})" for i, code in enumerate(codes) if code is None]
                return f"timeout: {', '.join(running)} still running when the time limit was reached"
            if monitor is not None:
                monitor(attempt, workers)
            time.sleep(poll_interval)
    finally:  # the others cannot finish without the dead one; also on Ctrl-C
        stop_all(children)


def worker_attempt() -> int:
    """In a worker: which start of the job this is (0 for the first)."""
    return int(os.environ.get("DENSE_SNNS_ATTEMPT", "0"))
