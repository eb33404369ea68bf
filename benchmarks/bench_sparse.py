#!/usr/bin/env python3
"""Benchmark of SparseLinear (C++ op and pure-TF path) against the dense matmul.

For each layer size N_in -> N_out and input activity (fraction of active inputs per row),
with M = batch x time rows (default 32 x 100 = 3200), this measures in one run, interleaved
round by round so that load from other processes hits all of them alike:

  dense:  forward x @ W, weight gradient x^T @ dy, input gradient dy @ W^T (tf.matmul on the
          dense spike matrix; its cost does not depend on the activity);
  op:     `sparse_linear(..., implementation="op")` forward (in a `tf.function`, as in a
          training step), and the two gradient kernels its custom gradient calls: weight
          gradient (dense [N_in, N_out]) and values gradient;
  tf:     the pure-TF path (`implementation="tf"`) forward + weight gradient in one
          `tf.function(jit_compile=True)` (what XLA devices run), for the smaller workloads.

Spikes are Bernoulli(activity) and converted with `from_dense` at capacity
`default_capacity(N_in, activity)`. The speed-up is dense time / sparse time (forward +
weight gradient, the training cost of a layer whose input needs no gradient); the
break-even activity is where it crosses 1 (interpolated in log-log).

Each thread setting runs in a fresh child process of this script (TensorFlow's thread pools
are fixed when it initialises). The C++ op is built (once, cached) before timing.

    PYTHONPATH=. python benchmarks/bench_sparse.py              # full run (~10 min on 2 cores)
    PYTHONPATH=. python benchmarks/bench_sparse.py --quick      # small sizes (~1 min)
    PYTHONPATH=. python benchmarks/bench_sparse.py --sizes 4096x4096 --activities 1,5 --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    configure_threads,
    cpu_snapshot,
    emit,
    fmt_ms,
    format_table,
    machine_info,
    measure,
    other_load,
    python,
    run_child,
)

FULL = {
    "sizes": "700x256,1024x1024,4096x4096",
    "activities": "0.5,1,2,5,10,20,35,50",
    "batch": 32,
    "time": 100,
    "repeats": 5,
    "min_repeats": 3,
    "budget": 3.0,
}
QUICK = {
    "sizes": "700x256,1024x1024",
    "activities": "1,5,20",
    "batch": 8,
    "time": 100,
    "repeats": 3,
    "min_repeats": 2,
    "budget": 1.0,
}

#: The pure-TF path is timed only while M * K * N_out stays below this (it is slow on CPU).
TF_PATH_MAX_WORK = 1.5e9


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        n_in, n_out = item.lower().split("x")
        sizes.append((int(n_in), int(n_out)))
    return sizes


def parse_activities(text: str) -> List[float]:
    return [float(a) / 100.0 for a in text.split(",")]


# -- child: measure one thread setting -----------------------------------------------------------
def child(args) -> None:
    tf = configure_threads(args.threads)
    import numpy as np

    import sparse_snns
    from sparse_snns import default_capacity, sparse_linear

    tf.get_logger().setLevel("ERROR")  # one trace per capacity K is expected, not a problem
    lib = sparse_snns.ops.load()
    if lib is None:
        print(f"C++ op unavailable: {sparse_snns.ops.load_error()}", flush=True)
    rows = args.batch * args.time

    @tf.function
    def op_forward(ids, values, count, kernel):
        return sparse_linear(sparse_snns.SparseSpikes(ids, values, count), kernel, implementation="op")

    @tf.function(jit_compile=True)
    def tf_path(ids, values, count, kernel, dy):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            y = sparse_linear(sparse_snns.SparseSpikes(ids, values, count), kernel, implementation="tf")
        return y, tape.gradient(y, kernel, output_gradients=dy)

    rng = np.random.default_rng(args.seed)
    for n_in, n_out in parse_sizes(args.sizes):
        kernel = tf.constant(rng.normal(0.0, 1.0 / math.sqrt(n_in), size=(n_in, n_out)).astype(np.float32))
        dy = tf.constant(rng.normal(size=(rows, n_out)).astype(np.float32))
        activities = parse_activities(args.activities)
        dense_x = tf.constant((rng.random((rows, n_in)) < 0.05).astype(np.float32))
        entries = [
            ("dense_fwd", lambda x=dense_x: tf.matmul(x, kernel), (), None),
            ("dense_wgrad", lambda x=dense_x: tf.matmul(x, dy, transpose_a=True), (), None),
            ("dense_igrad", lambda: tf.matmul(dy, kernel, transpose_b=True), (), None),
        ]
        info: Dict[str, Any] = {}
        for activity in activities:
            x = (rng.random((rows, n_in)) < activity).astype(np.float32)
            capacity = default_capacity(n_in, activity)
            spikes, dropped = sparse_snns.from_dense_with_overflow(x, capacity)
            tag = f"{activity:g}"
            info[tag] = {
                "capacity": capacity,
                "mean_count": float(tf.reduce_mean(tf.cast(spikes.count, tf.float32))),
                "dropped": int(tf.reduce_sum(dropped)),
            }
            if lib is not None:
                # correctness of this configuration before timing it
                reference = tf.matmul(sparse_snns.to_dense(spikes, n_in), kernel)
                got = sparse_linear(spikes, kernel, implementation="op")
                info[tag]["max_abs_error"] = float(tf.reduce_max(tf.abs(got - reference)))
                entries += [
                    (f"op_fwd@{tag}", lambda s=spikes: op_forward(s.ids, s.values, s.count, kernel), (), None),
                    (f"op_wgrad@{tag}",
                     lambda s=spikes: lib.dense_snns_sparse_linear_grad_weights(s.ids, s.values, s.count, dy, kernel),
                     (), None),
                    (f"op_vgrad@{tag}",
                     lambda s=spikes: lib.dense_snns_sparse_linear_grad_values(s.ids, s.count, kernel, dy), (), None),
                ]
            if not args.no_tf and rows * capacity * n_out <= TF_PATH_MAX_WORK:
                entries.append((f"tf_fwdw@{tag}",
                                lambda s=spikes: tf_path(s.ids, s.values, s.count, kernel, dy), (), None))
        print(f"{n_in}->{n_out}: timing {len(entries)} functions", flush=True)
        before = cpu_snapshot()
        results = measure(entries, repeats=args.repeats, min_repeats=args.min_repeats, budget=args.budget)
        load = other_load(before, cpu_snapshot())
        emit({
            "threads": args.threads, "n_in": n_in, "n_out": n_out, "rows": rows,
            "median": {name: r["median"] for name, r in results.items()},
            "n": {name: r["n"] for name, r in results.items()},
            "info": info, "other_load": load,
        })


# -- parent: tables ------------------------------------------------------------------------------
def break_even(activities: Sequence[float], speedups: Sequence[Optional[float]]) -> str:
    """Activity at which the speed-up crosses 1 (log-log interpolation between measurements)."""
    points = [(a, s) for a, s in zip(activities, speedups) if s is not None and s > 0]
    if not points:
        return "-"
    points.sort()
    if all(s >= 1.0 for _, s in points):
        return f"> {points[-1][0] * 100:g}%"
    if all(s < 1.0 for _, s in points):
        return f"< {points[0][0] * 100:g}%"
    for (a0, s0), (a1, s1) in zip(points, points[1:]):
        if s0 >= 1.0 > s1:
            t = (0.0 - math.log(s0)) / (math.log(s1) - math.log(s0))
            return f"{math.exp(math.log(a0) + t * (math.log(a1) - math.log(a0))) * 100:.1f}%"
    return "-"


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}x"


def report(results: List[Dict[str, Any]], activities: List[float]) -> Dict[str, Any]:
    summary: Dict[str, Any] = {}
    for threads in sorted({r["threads"] for r in results if "threads" in r}):
        rows_out = []
        breaks = []
        for r in [r for r in results if r.get("threads") == threads]:
            med = r["median"]
            dense = med["dense_fwd"] + med["dense_wgrad"]
            speedups = []
            for activity in activities:
                tag = f"{activity:g}"
                info = r["info"].get(tag, {})
                fwd, wgrad, vgrad = med.get(f"op_fwd@{tag}"), med.get(f"op_wgrad@{tag}"), med.get(f"op_vgrad@{tag}")
                op = fwd + wgrad if fwd is not None and wgrad is not None else None
                tf_path = med.get(f"tf_fwdw@{tag}")
                speedup = ratio(dense, op)
                speedups.append(speedup)
                rows_out.append([
                    f"{r['n_in']}->{r['n_out']}", f"{activity * 100:g}%", info.get("capacity"),
                    f"{info.get('mean_count', 0):.1f}", fmt_ms(dense), fmt_ms(fwd), fmt_ms(wgrad), fmt_ms(op),
                    fmt_x(speedup), fmt_ms(vgrad), fmt_ms(med["dense_igrad"]), fmt_x(ratio(med["dense_igrad"], vgrad)),
                    fmt_ms(tf_path), fmt_x(ratio(dense, tf_path)),
                ])
                summary[f"t{threads}_{r['n_in']}x{r['n_out']}_{tag}"] = {
                    "speedup_fwd_wgrad": speedup, "speedup_vgrad": ratio(med["dense_igrad"], vgrad),
                    "speedup_tf": ratio(dense, tf_path),
                }
            breaks.append([f"{r['n_in']}->{r['n_out']}", break_even(activities, speedups),
                           f"{r['other_load']:.2f}", min(r["n"].values())])
        print(f"\n## {threads} thread{'s' if threads > 1 else ''} (times in ms, medians; M = {results[0]['rows']} rows)\n")
        print(format_table(
            ["size", "activity", "K", "mean count", "dense fwd+wgrad", "op fwd", "op wgrad", "op fwd+wgrad",
             "speed-up", "op vgrad", "dense dy@W^T", "vgrad speed-up", "tf(XLA) fwd+wgrad", "tf speed-up"],
            rows_out,
        ))
        print()
        print(format_table(["size", "break-even activity (op fwd+wgrad = dense)", "other load (cores)", "repeats"],
                           breaks))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer activities and repeats")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (one child each)")
    parser.add_argument("--sizes", default=None, help="e.g. 700x256,4096x4096")
    parser.add_argument("--activities", default=None, help="percent, e.g. 0.5,1,5")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--time", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--min-repeats", type=int, default=None)
    parser.add_argument("--budget", type=float, default=None, help="seconds per function after min repeats")
    parser.add_argument("--no-tf", action="store_true", help="skip the pure-TF path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write all results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.child:
        args.threads = int(args.threads)
        child(args)
        return

    print("# SparseLinear benchmark")
    print(json.dumps(machine_info()))
    print(f"sizes {args.sizes}, activities {args.activities}%, M = {args.batch} x {args.time}, "
          f"threads {args.threads}", flush=True)
    # build the op once, before any child times anything
    run_child([python(), "-c", "import sparse_snns; print('C++ op available:', sparse_snns.ops.op_available(), "
               "sparse_snns.ops.load_error() or '')"], "build")
    results: List[Dict[str, Any]] = []
    for threads in [int(t) for t in str(args.threads).split(",")]:
        cmd = [python(), os.path.abspath(__file__), "--child", "--threads", str(threads), "--sizes", args.sizes,
               "--activities", args.activities, "--batch", str(args.batch), "--time", str(args.time),
               "--repeats", str(args.repeats), "--min-repeats", str(args.min_repeats), "--budget", str(args.budget),
               "--seed", str(args.seed)] + (["--no-tf"] if args.no_tf else [])
        results += run_child(cmd, f"{threads} thread{'s' if threads > 1 else ''}")
    good = [r for r in results if "median" in r]
    summary = report(good, parse_activities(args.activities)) if good else {}
    for threads in sorted({r["threads"] for r in good}):
        for activity, target in ((0.01, 8.0), (0.05, 2.5)):
            entry = summary.get(f"t{threads}_4096x4096_{activity:g}")
            if entry and entry["speedup_fwd_wgrad"] is not None:
                print(f"{threads} thread(s), 4096->4096 at {activity * 100:g}%: forward + weight gradient "
                      f"{entry['speedup_fwd_wgrad']:.1f}x faster than dense (target {target:g}x)")
    errors = [r for r in results if "child_error" in r]
    if errors:
        print(f"\nchild errors: {errors}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "summary": summary, "machine": machine_info()}, f, indent=1)


if __name__ == "__main__":
    main()
