"""run_workers: each worker gets its TF_CONFIG; a worker that dies stops the others and the
job restarts; without restarts, or past the time limit, a WorkerFailure names the worker."""

import json
import os
import sys
import textwrap
import time

import pytest

from dense_snns.distributed import WorkerFailure, run_workers
from test_launcher import alive, wait_gone

WORKER = textwrap.dedent("""
    import json, os, sys, time
    out, fail_at = sys.argv[1], int(sys.argv[2])
    config = json.loads(os.environ["TF_CONFIG"])
    index, attempt = config["task"]["index"], int(os.environ["DENSE_SNNS_ATTEMPT"])
    with open(os.path.join(out, f"worker-{index}-{attempt}.json"), "w") as f:
        json.dump({"config": config, "pid": os.getpid()}, f)
    if index == 1 and attempt < fail_at:
        time.sleep(0.5)
        sys.exit(3)
    if index == 0 and attempt < fail_at:
        time.sleep(60)  # waits for its peer, as a collective would
""")


def command(tmp_path, fail_at):
    return [sys.executable, "-c", WORKER, str(tmp_path), str(fail_at)]


def record(tmp_path, index, attempt):
    with open(tmp_path / f"worker-{index}-{attempt}.json") as f:
        return json.load(f)


def test_every_worker_gets_its_task_of_one_cluster(tmp_path):
    run = run_workers(command(tmp_path, 0), 3)
    assert run.attempts == ["ok"]
    configs = [record(tmp_path, i, 0)["config"] for i in range(3)]
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(c["cluster"]["worker"] == addresses for c in configs)


def test_a_dead_worker_stops_the_others_and_the_job_restarts(tmp_path):
    start = time.monotonic()
    run = run_workers(command(tmp_path, 1), 2, max_restarts=1)
    assert time.monotonic() - start < 30  # the waiting worker was stopped, not waited for
    assert len(run.attempts) == 2 and run.attempts[1] == "ok"
    assert run.attempts[0].startswith("worker 1 (localhost:") and "exited with code 3" in run.attempts[0]
    assert wait_gone([record(tmp_path, 0, 0)["pid"]])
    first, second = (record(tmp_path, 0, a)["config"]["cluster"]["worker"] for a in (0, 1))
    assert first != second  # fresh ports for the new attempt


def test_without_restarts_the_failure_names_the_worker(tmp_path):
    with pytest.raises(WorkerFailure, match=r"(?s)worker 1 \(localhost:\d+\) exited with code 3.*attempts: 2"):
        run_workers(command(tmp_path, 5), 2, max_restarts=1)
    assert not alive(record(tmp_path, 0, 1)["pid"])


def test_the_time_limit_stops_everything(tmp_path):
    start = time.monotonic()
    with pytest.raises(WorkerFailure, match=r"timeout: worker 0 \(localhost:\d+\) still running"):
        run_workers([sys.executable, "-c", "import time; time.sleep(60)"], 1, timeout=1)
    assert time.monotonic() - start < 15


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_workers must be a positive integer"):
        run_workers(["true"], 0)
    with pytest.raises(ValueError, match="max_restarts must be a non-negative integer"):
        run_workers(["true"], 1, max_restarts=-1)
    with pytest.raises(ValueError, match="cores gives 1 core lists for 2 workers"):
        run_workers(["true"], 2, cores=[[0]])
    assert os.path.isdir(run_workers(["true"], 1).log_dir)
