#!/usr/bin/env python3
"""Benchmark of SparseLinear (C++ op and pure-TF path) against the dense matmul, and of a
whole sparse training step against the dense fused one.

For each layer size N_in -> N_out and input activity (fraction of active inputs per row),
with M = batch x time rows (default 32 x 100 = 3200), this measures in one run, interleaved
round by round so that load from other processes hits all of them alike:

  dense:  forward x @ W, weight gradient x^T @ dy, input gradient dy @ W^T (tf.matmul on the
          dense spike matrix; its cost does not depend on the activity);
  op:     `sparse_linear(..., implementation="kernel")` forward (in a `tf.function`, as in a
          training step), and the two gradient kernels its custom gradient calls: weight
          gradient (dense [N_in, N_out]) and values gradient;
  tf:     the pure-TF path (`implementation="compiled"`) forward + weight gradient in one
          `tf.function(jit_compile=True)` (what XLA devices run), for the smaller workloads.

Spikes are Bernoulli(activity) and converted with `from_dense` at capacity
`default_capacity(N_in, activity)`. The speed-up is dense time / sparse time (forward +
weight gradient, the training cost of a layer whose input needs no gradient); the
break-even activity is where it crosses 1 (interpolated in log-log).

Whole training step (``--mode step``): N_in -> N_h LIF -> 20 leaky readout units, batch 32,
T = 100, input Bernoulli(activity), loss: cross-entropy of the readout's max over time;
forward + gradients of all trainable weights in one `tf.function` (``--self-recurrent``:
hidden layers with recurrent weights, orthogonal with gain `RECURRENT_GAIN`; the sparse one
feeds back its selection through a sparse product):

  dense:  `dense_snns.SNNDense(N_h, LIF)` (fused) + `LeakyReadout(20)` on the dense raster;
  sparse: `SparseSNNDense` + `SparseLeakyReadout(20)` on input spikes converted by
          `from_dense` outside the step (as a tf.data pipeline does), same weights.

The LIF threshold is 0.5 at 700 -> 256 and 5% (the W1 workload of bench_layers.py) and is
scaled with the standard deviation of the input current elsewhere, so the hidden layer fires
at a few percent for every size and activity. The hidden capacity K_h covers the most
spikes of one step measured in the dense model, at least `default_capacity(N_h, rate)`; free
slots hold gradient-only entries. The sparse model's own hidden spikes can still exceed K_h
(its float sums differ slightly from the dense ones): the table reports the dropped count of
every row and the script lists the rows where it is not 0 (there the sparse step computed
less than the dense one). The dense
step's cost does not depend on the activity: it is timed once per size, at 5%.

Each thread setting runs in a fresh child process of this script (TensorFlow's thread pools
are fixed when it initialises). The C++ op is built (once, cached) before timing.

    PYTHONPATH=. python benchmarks/bench_sparse.py              # full run (~10 min on 2 cores)
    PYTHONPATH=. python benchmarks/bench_sparse.py --quick      # small sizes (~1 min)
    PYTHONPATH=. python benchmarks/bench_sparse.py --sizes 4096x4096 --activities 1,5 --threads 1
    PYTHONPATH=. python benchmarks/bench_sparse.py --mode step --step-sizes 700x256 --step-activities 5
    PYTHONPATH=. python benchmarks/bench_sparse.py --mode step --self-recurrent --threads 1
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

#: Whole-step comparison: sizes and input activities (percent).
STEP_FULL = {"step_sizes": "700x256,1024x1024,4096x4096", "step_activities": "0.5,1,2,5,10,20"}
STEP_QUICK = {"step_sizes": "700x256,1024x1024", "step_activities": "1,5"}
#: Readout units of the whole-step model.
READOUT_UNITS = 20
#: Gain of the orthogonal recurrent kernel of the ``--self-recurrent`` whole-step model.
RECURRENT_GAIN = 0.3
#: The activity at which the dense step is timed (its cost does not depend on it).
DENSE_STEP_ACTIVITY = 0.05


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
        return sparse_linear(sparse_snns.SparseSpikes(ids, values, count), kernel, implementation="kernel")

    @tf.function(jit_compile=True)
    def tf_path(ids, values, count, kernel, dy):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            y = sparse_linear(sparse_snns.SparseSpikes(ids, values, count), kernel, implementation="compiled")
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
                got = sparse_linear(spikes, kernel, implementation="kernel")
                info[tag]["max_abs_error"] = float(tf.reduce_max(tf.abs(got - reference)))
                entries += [
                    (f"op_fwd@{tag}", lambda s=spikes: op_forward(s.ids, s.values, s.count, kernel), (), None),
                    (
                        f"op_wgrad@{tag}",
                        lambda s=spikes: lib.dense_snns_sparse_linear_grad_weights(
                            s.ids, s.values, s.count, dy, kernel
                        ),
                        (),
                        None,
                    ),
                    (
                        f"op_vgrad@{tag}",
                        lambda s=spikes: lib.dense_snns_sparse_linear_grad_values(s.ids, s.count, kernel, dy),
                        (),
                        None,
                    ),
                ]
            if not args.no_tf and rows * capacity * n_out <= TF_PATH_MAX_WORK:
                entries.append(
                    (f"tf_fwdw@{tag}", lambda s=spikes: tf_path(s.ids, s.values, s.count, kernel, dy), (), None)
                )
        print(f"{n_in}->{n_out}: timing {len(entries)} functions", flush=True)
        before = cpu_snapshot()
        results = measure(entries, repeats=args.repeats, min_repeats=args.min_repeats, budget=args.budget)
        load = other_load(before, cpu_snapshot())
        emit(
            {
                "threads": args.threads,
                "n_in": n_in,
                "n_out": n_out,
                "rows": rows,
                "median": {name: r["median"] for name, r in results.items()},
                "n": {name: r["n"] for name, r in results.items()},
                "info": info,
                "other_load": load,
            }
        )


# -- child: whole training step ------------------------------------------------------------------
def step_threshold(n_in: int, n_hidden: int, activity: float) -> float:
    """LIF threshold: 0.5 at 700 -> 256 and 5% (W1), scaled with the input current's std."""

    def current_std(n_in, n_hidden, activity):
        return math.sqrt(activity * n_in) * math.sqrt(2.0 / (n_in + n_hidden))  # Glorot-uniform weights

    return 0.5 * current_std(n_in, n_hidden, activity) / current_std(700, 256, 0.05)


def index_of(weights, weight) -> int:
    """The position of `weight` in the list `weights` (variables compare by identity)."""
    return next(i for i, w in enumerate(weights) if w is weight)


def child_step(args) -> None:
    tf = configure_threads(args.threads)
    import numpy as np

    import dense_snns as ds
    import sparse_snns
    from dense_snns import keras
    from dense_snns.losses import reduce_over_time

    tf.get_logger().setLevel("ERROR")
    sparse_snns.ops.load()
    batch, steps = args.batch, args.time
    rng = np.random.default_rng(args.seed)
    labels = tf.constant(rng.integers(0, READOUT_UNITS, batch).astype(np.int32))

    def loss_fn(outputs):
        logits = reduce_over_time(outputs, "max")
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    def train_step(layers, weights):
        def step(*inputs):
            with tf.GradientTape() as tape:
                h = layers[0](list(inputs) if len(inputs) > 1 else inputs[0])
                loss = loss_fn(layers[1](h))
            return [loss] + tape.gradient(loss, weights)

        return tf.function(step)

    for n_in, n_hidden in parse_sizes(args.step_sizes):
        entries = []
        info: Dict[str, Any] = {}
        dense_step = None
        activities = parse_activities(args.step_activities)
        for activity in sorted(set(activities + [DENSE_STEP_ACTIVITY])):
            tag = f"{activity:g}"
            threshold = step_threshold(n_in, n_hidden, activity)
            neuron = {"class_name": "LIF", "config": {"threshold": threshold}}
            x = tf.constant((rng.random((batch, steps, n_in)) < activity).astype(np.float32))
            hidden = ds.SNNDense(
                n_hidden,
                neuron=neuron,
                self_recurrent=args.self_recurrent,
                kernel_initializer=keras.initializers.GlorotUniform(seed=1),
                recurrent_initializer=keras.initializers.Orthogonal(RECURRENT_GAIN, seed=3),
                implementation="compiled",
            )
            readout = ds.LeakyReadout(READOUT_UNITS, kernel_initializer=keras.initializers.GlorotUniform(seed=2))
            readout(hidden(x[:, :2]))
            spikes = hidden(x)
            per_step = tf.reduce_sum(spikes, axis=-1)
            rate = float(tf.reduce_mean(per_step)) / n_hidden
            k_hidden = max(int(tf.reduce_max(per_step)), sparse_snns.default_capacity(n_hidden, max(rate, 1e-3)))
            k_hidden = min(k_hidden, n_hidden)
            k_in = sparse_snns.default_capacity(n_in, activity)
            inputs, in_dropped = sparse_snns.from_dense_with_overflow(x, k_in)
            if int(tf.reduce_sum(in_dropped)):  # the capacity is 4 sigma above the mean: rare
                k_in = int(tf.reduce_max(inputs.count + in_dropped))
                inputs = sparse_snns.from_dense(x, k_in)
            s_hidden = sparse_snns.SparseSNNDense(
                n_hidden, input_dim=n_in, capacity=k_hidden, neuron=neuron, self_recurrent=args.self_recurrent
            )
            s_readout = sparse_snns.SparseLeakyReadout(READOUT_UNITS, input_dim=n_hidden)
            s_readout(s_hidden(list(inputs)))
            s_hidden.synapse.kernel.assign(hidden.cell.kernel)
            s_hidden.synapse.bias.assign(hidden.cell.bias)
            if args.self_recurrent:
                s_hidden.recurrent_kernel.assign(hidden.cell.recurrent_kernel)
            s_readout.set_weights(readout.get_weights())
            sparse_fn = train_step([s_hidden, s_readout], s_hidden.trainable_weights + s_readout.trainable_weights)
            sparse_out = sparse_fn(*inputs)
            dense_fn = train_step([hidden, readout], hidden.trainable_weights + readout.trainable_weights)
            dense_out = dense_fn(x)
            s_hidden(list(inputs))  # eagerly: the dropped count of these inputs
            # the input kernel's gradient (the weight lists are in each layer's own order)
            sparse_kernel_grad = sparse_out[1 + index_of(s_hidden.trainable_weights, s_hidden.synapse.kernel)]
            dense_kernel_grad = dense_out[1 + index_of(hidden.trainable_weights, hidden.cell.kernel)]
            info[tag] = {
                "threshold": threshold,
                "hidden_rate": rate,
                "k_in": k_in,
                "k_hidden": k_hidden,
                "mean_input_count": float(tf.reduce_mean(tf.cast(inputs.count, tf.float32))),
                "dropped": int(tf.reduce_sum(s_hidden.last_dropped)),
                "loss_dense": float(dense_out[0]),
                "loss_sparse": float(sparse_out[0]),
                "kernel_grad_rel_diff": float(
                    tf.norm(sparse_kernel_grad - dense_kernel_grad) / (tf.norm(dense_kernel_grad) + 1e-30)
                ),
            }
            if activity in activities:
                entries.append((f"sparse@{tag}", lambda f=sparse_fn, i=inputs: f(*i), (), None))
            if activity == DENSE_STEP_ACTIVITY:
                dense_step = (dense_fn, x)
        entries.insert(0, ("dense", lambda f=dense_step[0], x=dense_step[1]: f(x), (), None))
        print(f"step {n_in}->{n_hidden}: timing {len(entries)} training steps", flush=True)
        before = cpu_snapshot()
        results = measure(entries, repeats=args.repeats, min_repeats=args.min_repeats, budget=args.budget)
        load = other_load(before, cpu_snapshot())
        emit(
            {
                "kind": "step",
                "self_recurrent": args.self_recurrent,
                "threads": args.threads,
                "n_in": n_in,
                "n_hidden": n_hidden,
                "batch": batch,
                "time": steps,
                "median": {name: r["median"] for name, r in results.items()},
                "n": {name: r["n"] for name, r in results.items()},
                "info": info,
                "other_load": load,
            }
        )


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
        for r in [r for r in results if r.get("threads") == threads and r.get("kind") != "step"]:
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
                rows_out.append(
                    [
                        f"{r['n_in']}->{r['n_out']}",
                        f"{activity * 100:g}%",
                        info.get("capacity"),
                        f"{info.get('mean_count', 0):.1f}",
                        fmt_ms(dense),
                        fmt_ms(fwd),
                        fmt_ms(wgrad),
                        fmt_ms(op),
                        fmt_x(speedup),
                        fmt_ms(vgrad),
                        fmt_ms(med["dense_igrad"]),
                        fmt_x(ratio(med["dense_igrad"], vgrad)),
                        fmt_ms(tf_path),
                        fmt_x(ratio(dense, tf_path)),
                    ]
                )
                summary[f"t{threads}_{r['n_in']}x{r['n_out']}_{tag}"] = {
                    "speedup_fwd_wgrad": speedup,
                    "speedup_vgrad": ratio(med["dense_igrad"], vgrad),
                    "speedup_tf": ratio(dense, tf_path),
                }
            breaks.append(
                [
                    f"{r['n_in']}->{r['n_out']}",
                    break_even(activities, speedups),
                    f"{r['other_load']:.2f}",
                    min(r["n"].values()),
                ]
            )
        print(
            f"\n## {threads} thread{'s' if threads > 1 else ''} (times in ms, medians; M = {results[0]['rows']} rows)\n"
        )
        print(
            format_table(
                [
                    "size",
                    "activity",
                    "K",
                    "mean count",
                    "dense fwd+wgrad",
                    "op fwd",
                    "op wgrad",
                    "op fwd+wgrad",
                    "speed-up",
                    "op vgrad",
                    "dense dy@W^T",
                    "vgrad speed-up",
                    "tf(XLA) fwd+wgrad",
                    "tf speed-up",
                ],
                rows_out,
            )
        )
        print()
        print(
            format_table(
                ["size", "break-even activity (op fwd+wgrad = dense)", "other load (cores)", "repeats"], breaks
            )
        )
    return summary


def step_report(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Tables of the whole-step comparison; returns the speed-ups by thread/size/activity."""
    summary: Dict[str, Any] = {}
    for threads in sorted({r["threads"] for r in results}):
        rows_out, breaks = [], []
        for r in [r for r in results if r["threads"] == threads]:
            med = r["median"]
            dense = med["dense"]
            activities, speedups = [], []
            for name in sorted((k for k in med if k.startswith("sparse@")), key=lambda k: float(k.split("@")[1])):
                tag = name.split("@")[1]
                info = r["info"][tag]
                speedup = ratio(dense, med[name])
                activities.append(float(tag))
                speedups.append(speedup)
                summary[f"t{threads}_{r['n_in']}x{r['n_hidden']}_{tag}"] = speedup
                rows_out.append(
                    [
                        f"{r['n_in']}->{r['n_hidden']}->{READOUT_UNITS}",
                        f"{float(tag) * 100:g}%",
                        info["k_in"],
                        f"{info['hidden_rate'] * 100:.1f}%",
                        info["k_hidden"],
                        info["dropped"],
                        fmt_ms(med[name]),
                        fmt_ms(dense),
                        fmt_x(speedup),
                        f"{info['loss_sparse']:.4f}/{info['loss_dense']:.4f}",
                    ]
                )
            breaks.append(
                [
                    f"{r['n_in']}->{r['n_hidden']}",
                    break_even(activities, speedups),
                    f"{r['other_load']:.2f}",
                    min(r["n"].values()),
                ]
            )
        recurrent = ", self-recurrent hidden layers" if results[0].get("self_recurrent") else ""
        print(
            f"\n## whole training step{recurrent}, {threads} thread{'s' if threads > 1 else ''} (ms, medians; batch "
            f"{results[0]['batch']}, T = {results[0]['time']})\n"
        )
        print(
            format_table(
                [
                    "model",
                    "input activity",
                    "K_in",
                    "hidden rate",
                    "K_h",
                    "dropped",
                    "sparse step",
                    "dense step",
                    "speed-up",
                    "loss sparse/dense",
                ],
                rows_out,
            )
        )
        overflow = [f"{row[0]} at {row[1]} ({row[5]} spikes)" for row in rows_out if row[5]]
        if overflow:
            print(
                "\nWARNING: hidden spikes were dropped (K_h too small; the sparse step did less work than "
                "the dense one) in: " + "; ".join(overflow)
            )
        else:
            print("\nNo hidden spike was dropped in any row (dropped = 0).")
        print()
        print(
            format_table(
                ["size", "sparse step stops paying at (input activity)", "other load (cores)", "repeats"], breaks
            )
        )
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
    parser.add_argument(
        "--mode",
        default="all",
        choices=["all", "kernels", "step"],
        help="SparseLinear kernels, whole training steps, or both",
    )
    parser.add_argument("--step-sizes", default=None, help="whole-step sizes N_in x N_hidden, e.g. 700x256")
    parser.add_argument("--step-activities", default=None, help="whole-step input activities in percent")
    parser.add_argument(
        "--self-recurrent",
        action="store_true",
        help="whole step: self-recurrent hidden layers (orthogonal recurrent kernel, gain %g)" % RECURRENT_GAIN,
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write all results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in list(defaults.items()) + list((STEP_QUICK if args.quick else STEP_FULL).items()):
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.child:
        args.threads = int(args.threads)
        if args.mode == "step":
            child_step(args)
        else:
            child(args)
        return

    print("# SparseLinear benchmark")
    print(json.dumps(machine_info()))
    if args.mode != "step":
        print(
            f"kernels: sizes {args.sizes}, activities {args.activities}%, M = {args.batch} x {args.time}, "
            f"threads {args.threads}",
            flush=True,
        )
    if args.mode != "kernels":
        print(
            f"whole step: sizes {args.step_sizes}, input activities {args.step_activities}%, batch {args.batch}, "
            f"T = {args.time}, threads {args.threads}",
            flush=True,
        )
    # build the op once, before any child times anything
    run_child(
        [
            python(),
            "-c",
            "import sparse_snns; print('C++ op available:', sparse_snns.ops.op_available(), "
            "sparse_snns.ops.load_error() or '')",
        ],
        "build",
    )
    results: List[Dict[str, Any]] = []
    modes = ["kernels", "step"] if args.mode == "all" else [args.mode]
    for mode in modes:
        for threads in [int(t) for t in str(args.threads).split(",")]:
            cmd = [
                python(),
                os.path.abspath(__file__),
                "--child",
                "--mode",
                mode,
                "--threads",
                str(threads),
                "--sizes",
                args.sizes,
                "--activities",
                args.activities,
                "--step-sizes",
                args.step_sizes,
                "--step-activities",
                args.step_activities,
                "--batch",
                str(args.batch),
                "--time",
                str(args.time),
                "--repeats",
                str(args.repeats),
                "--min-repeats",
                str(args.min_repeats),
                "--budget",
                str(args.budget),
                "--seed",
                str(args.seed),
            ]
            cmd += (["--no-tf"] if args.no_tf else []) + (["--self-recurrent"] if args.self_recurrent else [])
            results += run_child(cmd, f"{mode}, {threads} thread{'s' if threads > 1 else ''}")
    good = [r for r in results if "median" in r and r.get("kind") != "step"]
    summary = report(good, parse_activities(args.activities)) if good else {}
    for threads in sorted({r["threads"] for r in good}):
        for activity, target in ((0.01, 8.0), (0.05, 2.5)):
            entry = summary.get(f"t{threads}_4096x4096_{activity:g}")
            if entry and entry["speedup_fwd_wgrad"] is not None:
                print(
                    f"{threads} thread(s), 4096->4096 at {activity * 100:g}%: forward + weight gradient "
                    f"{entry['speedup_fwd_wgrad']:.1f}x faster than dense (target {target:g}x)"
                )
    steps = [r for r in results if r.get("kind") == "step"]
    if steps:
        summary["step"] = step_report(steps)
        for threads in sorted({r["threads"] for r in steps}):
            speedup = summary["step"].get(f"t{threads}_700x256_0.05")
            if speedup is not None:
                print(
                    f"{threads} thread(s), W1 (700->256->20, 5% input): whole sparse training step "
                    f"{speedup:.2f}x faster than the dense fused step (target 2x)"
                )
    errors = [r for r in results if "child_error" in r]
    if errors:
        print(f"\nchild errors: {errors}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "summary": summary, "machine": machine_info()}, f, indent=1)


if __name__ == "__main__":
    main()
