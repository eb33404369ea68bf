"""Shared helpers of the benchmarks: timing, child processes, memory statistics, tables.

Nothing here imports TensorFlow at module level, so a parent process that only spawns
children and prints tables stays light (TensorFlow's thread pools are configured once per
process, before it initialises, so every thread setting runs in a fresh child process).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_TAG = "@@RESULT "


# -- timing ------------------------------------------------------------------------------
def measure(
    entries: Sequence[Tuple[str, Callable, Sequence[Any], Optional[Sequence[Any]]]],
    repeats: int,
    min_repeats: int,
    budget: float,
) -> Dict[str, Dict[str, Any]]:
    """Time several functions against each other: `entries` = (name, fn, args, warmup_args).

    Each function gets one warm-up call (it compiles; `warmup_args`, e.g. a shorter sequence
    for a function traced with a relaxed time dimension, replace `args` if given, and the
    first-call time is then not reported). Then rounds of timed calls, one call of each
    function per round in turn, so that load from other processes hits all of them alike.
    Up to `repeats` rounds; after `min_repeats` rounds it stops once `budget` seconds per
    function have been spent. TensorFlow eager execution on CPU is synchronous: outputs are
    computed when the call returns. Returns per name: first, median, min, times, n, last
    (the outputs of the last call).
    """
    results: Dict[str, Dict[str, Any]] = {}
    for name, fn, args, warmup_args in entries:
        start = time.perf_counter()
        out = fn(*(warmup_args if warmup_args is not None else args))
        first = time.perf_counter() - start
        del out
        results[name] = {
            "first": None if warmup_args is not None else first,
            "warmup": first,
            "times": [],
            "last": None,
        }
    begin = time.perf_counter()
    for round_ in range(max(1, repeats)):
        for name, fn, args, _ in entries:
            results[name]["last"] = None  # release the previous outputs before the next call
            t0 = time.perf_counter()
            out = fn(*args)
            results[name]["times"].append(time.perf_counter() - t0)
            results[name]["last"] = out
            del out
        if round_ + 1 >= min_repeats and time.perf_counter() - begin > budget * len(entries):
            break
    for result in results.values():
        times = result["times"]
        result.update(median=statistics.median(times), min=min(times), n=len(times))
    return results


def public(result: Dict[str, Any]) -> Dict[str, Any]:
    """A `measure` result without its (non-serialisable) last outputs."""
    return {k: v for k, v in result.items() if k != "last"}


# -- load from other processes -----------------------------------------------------------------
def cpu_snapshot() -> Dict[str, float]:
    """Busy CPU seconds of the whole machine (/proc/stat), own CPU seconds, wall time."""
    busy = float("nan")
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # without guest time (in user)
    except (OSError, ValueError, IndexError):
        pass
    times = os.times()
    return {"busy": busy, "own": times.user + times.system, "wall": time.perf_counter()}


def other_load(before: Dict[str, float], after: Dict[str, float]) -> float:
    """Average number of cores used by other processes between two snapshots."""
    wall = after["wall"] - before["wall"]
    if wall <= 0:
        return float("nan")
    other = (after["busy"] - before["busy"]) - (after["own"] - before["own"])
    return max(0.0, other / wall)


def wait_for_idle(max_wait: float, threshold: float, probe: float = 2.0) -> Dict[str, float]:
    """Wait (at most `max_wait` s) until other processes use fewer than `threshold` cores,
    measured over `probe`-second windows. Returns the waited time and the last load seen."""
    start = time.perf_counter()
    load = float("nan")
    while True:
        before = cpu_snapshot()
        time.sleep(probe)
        load = other_load(before, cpu_snapshot())
        waited = time.perf_counter() - start
        if not load >= threshold or waited >= max_wait:  # also stops on nan (no /proc/stat)
            return {"waited": waited, "load": load}


# -- TensorFlow process set-up and memory statistics ----------------------------------------
def configure_threads(threads: int):
    """Import TensorFlow and pin its intra-/inter-op pools; must run before any TF op."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def allocator_bytes(tf) -> Dict[str, int]:
    """Current and peak bytes of the TensorFlow CPU allocator (`get_memory_info`)."""
    return dict(tf.config.experimental.get_memory_info("CPU:0"))


def reset_peak(tf) -> None:
    tf.config.experimental.reset_memory_stats("CPU:0")


# -- child processes ---------------------------------------------------------------------------
def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = [REPO_ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


_NOISE = (
    "WARNING: All log messages",
    "oneDNN custom operations",
    "cudart_stub",
    "cuda_platform",
    "cuInit",
    "oneDNN supports DT_INT32 only",
)


def run_child(cmd: List[str], label: str, extra_env: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """Run a child process, echo its progress lines prefixed by `label`, collect its results
    (lines starting with RESULT_TAG followed by JSON)."""
    results: List[Dict[str, Any]] = []
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=child_env(extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        if line.startswith(RESULT_TAG):
            results.append(json.loads(line[len(RESULT_TAG) :]))
        elif line and not any(noise in line for noise in _NOISE):
            print(f"  [{label}] {line}", flush=True)
    code = proc.wait()
    if code != 0:
        print(f"  [{label}] child exited with code {code}", flush=True)
        results.append({"child_error": code, "label": label})
    return results


# -- graph layers (bench_graph.py and its --cluster part) --------------------------------------
def assign_graph_kernels(layer, rng) -> None:
    """Distinct kernels of a built `GraphSNN`, N(0, 1 / fan_in), drawn from `rng` in one order:
    the same weights in every child that draws from the same seed."""
    import numpy as np

    for kernel in list(layer.cell.input_kernels.values()) + list(layer.cell.edge_kernels):
        fan_in, units = kernel.shape
        kernel.assign(rng.normal(0.0, 1.0 / np.sqrt(fan_in), (fan_in, units)).astype(np.float32))


def graph_functions(layer, readout) -> Dict[str, Any]:
    """{"forward", "train"} tf.functions of a `GraphSNN`: inference over a sequence, and the
    gradients of all its weights of a loss (time-averaged spikes weighted by `readout`)."""
    import tensorflow as tf

    @tf.function
    def forward(x):
        return layer(x)

    @tf.function
    def train(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.reduce_mean(layer(x), axis=[0, 1]) * readout)
        return tape.gradient(loss, layer.trainable_weights)

    return {"forward": forward, "train": train}


class ServedChild:
    """A child process that serves one request per line of stdin and answers with one result
    line (`emit`), for paired timing: the parent asks several children in turn."""

    def __init__(self, argv: List[str], label: str):
        self.label = label
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            bufsize=1,
        )
        self.calls: List[Dict[str, Any]] = []

    def read(self) -> Dict[str, Any]:
        """The next result line; an error with the child's stderr tail if it ended instead."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(RESULT_TAG):
                return json.loads(line[len(RESULT_TAG) :])
        self.stderr.seek(0)
        tail = self.stderr.read()[-3000:]
        raise RuntimeError(f"child '{self.label}' ended (code {self.proc.wait()}):\n{tail}")

    def request(self, line: str, **extra) -> Dict[str, Any]:
        """Send one request line; its result (with `extra` fields) is also kept in `calls`."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        result = dict(self.read(), **extra)
        self.calls.append(result)
        return result

    def close(self) -> None:
        """Ask the child to quit; kill it if it does not within 60 s."""
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def emit(result: Dict[str, Any]) -> None:
    print(RESULT_TAG + json.dumps(result), flush=True)


# -- reporting ---------------------------------------------------------------------------------
def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.rjust(w) if n else c.ljust(w) for c, w in zip(row, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def fmt_ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def python() -> str:
    return sys.executable
