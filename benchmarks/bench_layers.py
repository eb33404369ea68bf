#!/usr/bin/env python3
"""Benchmark of the fused SNN sequence layers against the reference RNN-cell path and the
matmul roofline.

For each workload and thread count this measures, in one run, the time of one training step
(forward + backward, gradients of all trainable weights, inside a `tf.function`; the fused
layers XLA-compile only their own time loops) of

  (a) fused:   `SNNDense`/`SNNConv2D` as configured by default (``implementation="auto"``:
               the C++ LIF kernels; ``DENSE_SNNS_DISABLE_OP=1`` measures the compiled loops);
  (b) ref:     `keras.layers.RNN(SNNBlock(...), return_sequences=True)` (and
               `RNN(LeakyReadoutCell)` for the readout); for the conv workload the same
               layers with ``implementation="reference"``; weights copied with `set_weights`;
  (c) matmul:  only the unavoidable matmuls/convolutions of the same shapes: forward
               x @ W over [batch*time, features], weight gradient x^T @ dI and, for layers
               after the first, the input gradient dI @ W^T (the roofline);

plus times of the inference forward pass (``training=False``) of (a) and of the forward
matmuls. The peak memory of a training step is measured for (a), for the same layers on the
compiled loops (``implementation="compiled"``) with their default ``checkpoint_every="auto"``
(every 32nd neuron state kept at T=1000) and keeping every state (``checkpoint_every=None``),
for (b) and for (c). Before timing, (a) and (b) are checked to emit identical spikes on the
benchmark input. Paired ratios (the median over rounds of the ratio of two calls made one
after the other) are printed besides the ratios of medians.

Each thread setting runs in a fresh child process of this script (TensorFlow's thread pools
are fixed when it initialises); a further child measures the peak memory of a training step.

    PYTHONPATH=. python benchmarks/bench_layers.py                 # full run (~10 min, 2 cores)
    PYTHONPATH=. python benchmarks/bench_layers.py --quick         # small sizes (~2 min)
    PYTHONPATH=. python benchmarks/bench_layers.py --workloads W1,C1 --threads 1 --repeats 3

``--events`` measures instead the event-driven input products of the dense layers
(`dense_snns.input_products`): the training step and the forward pass of each dense workload
with ``input_sparsity="auto"`` (the default) against ``"dense"`` (same weights, same input),
at 1%, 5%, 20% and 50% input activity and on real-valued inputs, as paired ratios:

    PYTHONPATH=. python benchmarks/bench_layers.py --events --workloads W1,W2 --threads 1

``--kernels`` measures the C++ neuron kernels (`dense_snns.ops.lif`) against the compiled XLA
loops: the training step and the forward pass of each dense workload with
``implementation="auto"`` against ``"compiled"``, for each spiking model of the kernel table
(LIF, CuBa-LIF), at 5% input activity with dense input products in both (``"compiled"``
turns the event-driven products off), as paired ratios:

    PYTHONPATH=. python benchmarks/bench_layers.py --kernels --workloads W1,W2 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    allocator_bytes,
    child_env,
    configure_threads,
    cpu_snapshot,
    emit,
    fmt_ms,
    fmt_ratio,
    format_table,
    machine_info,
    measure,
    other_load,
    public,
    wait_for_idle,
    python,
    reset_peak,
    run_child,
)

# -- workloads ---------------------------------------------------------------------------------
# layers: ("dense", units, threshold) | ("conv", filters, kernel, stride, threshold) |
#         ("readout", units). Thresholds of the LIF neurons (beta 0.9, subtract reset, default
#         Glorot-uniform kernels) are chosen so that hidden layers fire at ~5-12 % per step.
WORKLOADS: Dict[str, Dict[str, Any]] = {
    "W1": {
        "title": "SHD-like: 700 -> SNNDense(256, LIF) -> LeakyReadout(20)",
        "batch": 32,
        "time": 100,
        "features": [700],
        "input": "bernoulli",
        "p": 0.05,
        "layers": [("dense", 256, 0.5), ("readout", 20)],
        "loss": "max_over_time_ce",
    },
    "W2": {
        "title": "wide: 1024 -> 1024 LIF",
        "batch": 16,
        "time": 500,
        "features": [1024],
        "input": "bernoulli",
        "p": 0.05,
        "layers": [("dense", 1024, 0.4)],
        "loss": "spike_sum",
        "quick": {"time": 100},
    },
    "W3": {
        "title": "Open Neuromorphic: 4096 -> 4096 LIF",
        "batch": 16,
        "time": 500,
        "features": [4096],
        "input": "normal",
        "layers": [("dense", 4096, 1.0)],
        "loss": "spike_sum",
        # The reference step takes tens of seconds here: trace it with a relaxed time
        # dimension and warm it up on 10 steps instead of a full extra step.
        "ref_warmup_time": 10,
        "quick": {
            "time": 50,
            "features": [2048],
            "layers": [("dense", 2048, 1.0)],
            "title": "Open Neuromorphic, shrunk for --quick: 2048 -> 2048 LIF",
        },
    },
    "C1": {
        "title": "conv: [34,34,2] -> SNNConv2D(16,3x3,s2) -> SNNConv2D(32,3x3,s2), LIF",
        "batch": 32,
        "time": 50,
        "features": [34, 34, 2],
        "input": "bernoulli",
        "p": 0.05,
        "layers": [("conv", 16, 3, 2, 0.1), ("conv", 32, 3, 2, 0.5)],
        "loss": "spike_sum",
        "quick": {"time": 10},
    },
}
MEMORY_WORKLOAD = "W2"
# By default TensorFlow's CPU allocator statistics count only large allocations (about
# 256 KiB and up); with a BFC allocator for all CPU memory every allocation is counted,
# including the per-step [batch, units] tensors of the reference while loop.
MEMORY_ENV = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}
#: `checkpoint_every` of the fused loops in the last fused memory measurement: every state.
ALL_STATES = None


def workload_spec(name: str, quick: bool, time_steps: Optional[int] = None) -> Dict[str, Any]:
    spec = copy.deepcopy(WORKLOADS[name])
    quick_overrides = spec.pop("quick", {})
    if quick:
        spec.update(quick_overrides)
    if time_steps is not None:
        spec["time"] = time_steps
    spec["name"] = name
    return spec


# -- model construction (child processes only) ---------------------------------------------------
def lif(threshold: float) -> Dict[str, Any]:
    return {"class_name": "LIF", "config": {"threshold": float(threshold)}}


def build(spec: Dict[str, Any]):
    """Inputs, labels, fused layers, reference layers (same weights) and the roofline plan."""
    import numpy as np
    import tensorflow as tf

    import dense_snns as ds
    from dense_snns import keras
    from dense_snns.layers import SNNConv2D, SNNDense

    rng = np.random.default_rng(1234)
    batch, steps = spec["batch"], spec["time"]
    shape = (batch, steps) + tuple(spec["features"])
    if spec["input"] == "bernoulli":
        x = (rng.random(shape) < spec["p"]).astype(np.float32)
    else:
        x = rng.standard_normal(shape, dtype=np.float32)
    x = tf.constant(x)
    labels = tf.constant(rng.integers(0, max(2, spec["layers"][-1][1]), batch).astype(np.int32))

    fused, ref, kinds = [], [], []
    for i, layer in enumerate(spec["layers"]):
        init = keras.initializers.GlorotUniform(seed=100 + i)
        kind = layer[0]
        kinds.append(layer)
        if kind == "dense":
            fused.append(SNNDense(layer[1], neuron=lif(layer[2]), kernel_initializer=init))
            ref.append(keras.layers.RNN(ds.SNNBlock(layer[1], neuron=lif(layer[2])), return_sequences=True))
        elif kind == "readout":
            fused.append(ds.LeakyReadout(layer[1], kernel_initializer=init))
            ref.append(keras.layers.RNN(ds.LeakyReadoutCell(layer[1]), return_sequences=True))
        elif kind == "conv":
            kwargs = dict(strides=layer[3], padding="same", neuron=lif(layer[4]), kernel_initializer=init)
            fused.append(SNNConv2D(layer[1], layer[2], **kwargs))
            ref.append(SNNConv2D(layer[1], layer[2], implementation="reference", **kwargs))
        else:
            raise ValueError(kind)
    # Build on two steps, then copy the weights into the reference.
    h_fused, h_ref = x[:, :2], x[:, :2]
    for layer_fused, layer_ref in zip(fused, ref):
        h_fused, h_ref = layer_fused(h_fused), layer_ref(h_ref)
        layer_ref.set_weights(layer_fused.get_weights())
    return x, labels, fused, ref, kinds


def kernel_of(layer):
    if hasattr(layer, "conv"):
        return layer.conv.kernel
    return layer.cell.kernel


def make_loss(spec):
    import tensorflow as tf

    from dense_snns.losses import reduce_over_time

    if spec["loss"] == "max_over_time_ce":

        def loss_fn(outputs, labels):
            logits = reduce_over_time(outputs, "max")
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    else:

        def loss_fn(outputs, labels):
            return tf.reduce_sum(outputs)

    return loss_fn


def make_functions(spec, x, fused, ref):
    """tf.functions: fused/ref training steps, fused/ref forward passes (all layer outputs)."""
    import tensorflow as tf

    loss_fn = make_loss(spec)

    def forward(layers, inputs, training=None):
        outputs = []
        h = inputs
        for layer in layers:
            h = layer(h, training=training)
            outputs.append(h)
        return outputs

    def train_step(layers):
        weights = [w for layer in layers for w in layer.trainable_weights]

        def step(inputs, labels):
            with tf.GradientTape() as tape:
                loss = loss_fn(forward(layers, inputs)[-1], labels)
            return [loss] + tape.gradient(loss, weights)

        return step

    relaxed = [tf.TensorSpec([x.shape[0], None] + list(x.shape[2:]), tf.float32), tf.TensorSpec([x.shape[0]], tf.int32)]
    return {
        "fused_step": tf.function(train_step(fused)),
        "ref_step": tf.function(train_step(ref), input_signature=relaxed),
        "fused_fwd": tf.function(lambda inputs: forward(fused, inputs, training=False)),
        "ref_fwd": tf.function(lambda inputs: forward(ref, inputs, training=False)),
    }


def make_roofline(kinds, x, hidden, weights):
    """Roofline tf.functions and their arguments: the matmuls/convolutions of every layer.

    Layer i gets input xs[i] (x, then the fused layers' real spikes), kernel W_i and a random
    output gradient dI_i shaped like its synaptic current; the step computes x_i W_i,
    x_i^T dI_i and (i > 0) dI_i W_i^T; the forward only x_i W_i.
    """
    import tensorflow as tf

    xs, dis, ops = [], [], []
    for i, kind in enumerate(kinds):
        inp = x if i == 0 else hidden[i - 1]
        flat = tf.reshape(inp, [-1] + list(inp.shape[2:]))  # [batch*time, ...]
        xs.append(flat)
        if kind[0] == "conv":
            stride = kind[3]
            out = tf.nn.conv2d(flat, weights[i], strides=stride, padding="SAME")
            ops.append(("conv", stride))
        else:
            out = tf.matmul(flat, weights[i])
            ops.append(("dense", None))
        dis.append(tf.random.stateless_normal(out.shape, seed=[i, 7]))

    def fwd_op(i, inp, w):
        kind, stride = ops[i]
        if kind == "conv":
            return tf.nn.conv2d(inp, w, strides=stride, padding="SAME")
        return tf.matmul(inp, w)

    def step(xs, ws, dis):
        results = []
        for i, (inp, w, d) in enumerate(zip(xs, ws, dis)):
            kind, stride = ops[i]
            results.append(fwd_op(i, inp, w))
            if kind == "conv":
                strides = [1, stride, stride, 1]
                results.append(
                    tf.raw_ops.Conv2DBackpropFilter(
                        input=inp, filter_sizes=tf.shape(w), out_backprop=d, strides=strides, padding="SAME"
                    )
                )
                if i > 0:
                    results.append(
                        tf.raw_ops.Conv2DBackpropInput(
                            input_sizes=tf.shape(inp), filter=w, out_backprop=d, strides=strides, padding="SAME"
                        )
                    )
            else:
                results.append(tf.matmul(inp, d, transpose_a=True))
                if i > 0:
                    results.append(tf.matmul(d, w, transpose_b=True))
        return results

    def forward(xs, ws):
        return [fwd_op(i, inp, w) for i, (inp, w) in enumerate(zip(xs, ws))]

    return tf.function(step), tf.function(forward), xs, dis


def spike_outputs(kinds, outputs):
    return [o for k, o in zip(kinds, outputs) if k[0] != "readout"]


def run_workload(spec, args, check: bool) -> Dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    timing = dict(repeats=args.repeats, min_repeats=args.min_repeats, budget=args.budget)
    t_start = time.perf_counter()
    load_start = cpu_snapshot()
    x, labels, fused, ref, kinds = build(spec)
    fns = make_functions(spec, x, fused, ref)
    result: Dict[str, Any] = {
        "workload": spec["name"],
        "title": spec["title"],
        "threads": args.threads,
        "batch": spec["batch"],
        "time": spec["time"],
        "features": spec["features"],
    }

    # Forward passes: fused layers vs the forward matmuls. The fused forward also gives the
    # firing rates, the spike check against the reference and the hidden spikes that are the
    # roofline's inputs of later layers.
    fused_out = [o.numpy() for o in fns["fused_fwd"](x)]
    result["rates"] = [float(o.mean()) for o in spike_outputs(kinds, fused_out)]
    print(f"{spec['name']}: firing rates per step {', '.join(f'{r:.1%}' for r in result['rates'])}", flush=True)
    if check:
        t0 = time.perf_counter()
        ref_out = [o.numpy() for o in fns["ref_fwd"](x)]
        mismatches = [
            int(np.sum(a != b)) for a, b in zip(spike_outputs(kinds, fused_out), spike_outputs(kinds, ref_out))
        ]
        sizes = [int(a.size) for a in spike_outputs(kinds, fused_out)]
        readout_err = [float(np.max(np.abs(a - b))) for k, a, b in zip(kinds, fused_out, ref_out) if k[0] == "readout"]
        # Units (last axis) of each layer whose spikes differ, to tell their gradients apart below.
        flipped = {}
        spiking = [i for i, k in enumerate(kinds) if k[0] != "readout"]
        for i, a, b in zip(spiking, spike_outputs(kinds, fused_out), spike_outputs(kinds, ref_out)):
            units = np.nonzero(np.any((a != b).reshape(-1, a.shape[-1]), axis=0))[0]
            if units.size:
                flipped[i] = [int(u) for u in units]
        result["check"] = {
            "spike_mismatches": mismatches,
            "spikes": sizes,
            "readout_max_abs_diff": readout_err,
            "flipped_units": {str(k): v for k, v in flipped.items()},
            "seconds": time.perf_counter() - t0,
        }
        print(
            f"{spec['name']}: spike check fused vs reference: {sum(mismatches)} of {sum(sizes)} spike values differ"
            f"{'' if not readout_err else f', readout max |diff| {max(readout_err):.2e}'}"
            f" ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        allowed = 0 if args.strict else int(args.mismatch_tolerance * sum(sizes))
        assert sum(mismatches) <= allowed, (
            f"{spec['name']}: fused and reference spikes differ in {mismatches} of {sizes} values"
        )
        del ref_out
    hidden = [tf.constant(o) for o in fused_out[:-1]]
    del fused_out
    gc.collect()

    weights = [tf.convert_to_tensor(kernel_of(layer)) for layer in fused]
    mm_step, mm_fwd, xs, dis = make_roofline(kinds, x, hidden, weights)
    forward = measure([("fused_fwd", fns["fused_fwd"], [x], None), ("mm_fwd", mm_fwd, [xs, weights], None)], **timing)
    result.update({name: public(r) for name, r in forward.items()})
    del forward
    gc.collect()

    # Training steps, interleaved.
    warmup = None
    if spec.get("ref_warmup_time"):
        warmup = [x[:, : spec["ref_warmup_time"]], labels]
    steps = measure(
        [
            ("fused_step", fns["fused_step"], [x, labels], None),
            ("ref_step", fns["ref_step"], [x, labels], warmup),
            ("mm_step", mm_step, [xs, weights, dis], None),
        ],
        **timing,
    )
    fused_step, ref_step = steps["fused_step"], steps["ref_step"]
    print(
        f"{spec['name']}: fused step {fmt_ms(fused_step['median'])} ms (first call {fused_step['first']:.1f} s), "
        f"reference {fmt_ms(ref_step['median'])} ms, matmuls {fmt_ms(steps['mm_step']['median'])} ms",
        flush=True,
    )
    result["mm_step"] = public(steps["mm_step"])
    del xs, dis, hidden

    # Same loss and gradients (the reference's last step against the fused one).
    g_fused = [g.numpy() for g in fused_step["last"]]
    g_ref = [g.numpy() for g in ref_step["last"]]
    result["loss"] = [float(g_fused[0]), float(g_ref[0])]
    result["grad_rel_err"] = max(
        float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30)) for a, b in zip(g_fused[1:], g_ref[1:])
    )
    flipped = {int(k): v for k, v in result.get("check", {}).get("flipped_units", {}).items()}
    if flipped and len(kinds) == 1:
        # One layer: a unit whose spike train differs has its own kernel column and bias entry.
        errors = []
        for a, b in zip(g_fused[1:], g_ref[1:]):
            keep = np.ones(a.shape[-1], bool)
            keep[flipped[0]] = False
            errors.append(float(np.max(np.abs(a - b)[..., keep]) / (np.max(np.abs(b)) + 1e-30)))
        result["grad_rel_err_unflipped"] = max(errors)
        result["flipped_count"] = len(flipped[0])
    result["fused_step"] = public(fused_step)
    result["ref_step"] = public(ref_step)
    result["seconds"] = time.perf_counter() - t_start
    result["other_load"] = other_load(load_start, cpu_snapshot())
    return result


# -- memory ------------------------------------------------------------------------------------
def run_memory(args) -> Dict[str, Any]:
    """Peak allocator bytes of one training step above the bytes held before it."""
    import tensorflow as tf

    spec = workload_spec(MEMORY_WORKLOAD, args.quick, args.memory_time)
    x, labels, fused, ref, kinds = build(spec)
    fns = make_functions(spec, x, fused, ref)
    hidden = [tf.constant(o) for o in fns["fused_fwd"](x)[:-1]]
    gc.collect()
    weights = [tf.convert_to_tensor(kernel_of(layer)) for layer in fused]
    mm_step, _, xs, dis = make_roofline(kinds, x, hidden, weights)
    units = spec["layers"][0][1]
    tensor_bytes = spec["batch"] * spec["time"] * units * 4
    out: Dict[str, Any] = {
        "memory": True,
        "workload": spec["name"],
        "threads": args.threads,
        "batch": spec["batch"],
        "time": spec["time"],
        "units": units,
        "tensor_bytes": tensor_bytes,
    }

    def loops_step(checkpoint_every):
        # The same layers on the compiled loops (implementation="compiled"), keeping every
        # `checkpoint_every`-th neuron state (traced after the other paths, so that those
        # run with the defaults).
        for layer in fused:
            if hasattr(layer, "checkpoint_every"):
                layer.implementation = "compiled"
                layer.checkpoint_every = checkpoint_every
        return make_functions(spec, x, fused, ref)["fused_step"]

    for name, fn, fn_args in [
        ("fused", fns["fused_step"], [x, labels]),
        ("ref", fns["ref_step"], [x, labels]),
        ("matmul", mm_step, [xs, weights, dis]),
        ("fused_loops", "auto", [x, labels]),
        ("fused_all", ALL_STATES, [x, labels]),
    ]:
        fn = fn if callable(fn) else loops_step(fn)
        warm = fn(*fn_args)  # compiles
        del warm
        extras = []
        for _ in range(args.memory_repeats):  # the peak depends on op scheduling: several runs
            gc.collect()
            reset_peak(tf)
            before = allocator_bytes(tf)["current"]
            res = fn(*fn_args)
            extras.append(allocator_bytes(tf)["peak"] - before)
            del res
        extras.sort()
        extra = extras[len(extras) // 2]
        out[name] = {
            "extra": extra,
            "extra_tensors": extra / tensor_bytes,
            "all": extras,
            "range_tensors": [extras[0] / tensor_bytes, extras[-1] / tensor_bytes],
        }
        print(
            f"memory {name}: +{extra / 2**20:.0f} MiB = {extra / tensor_bytes:.2f} x [T,B,N] "
            f"(runs: {', '.join(f'{e / tensor_bytes:.2f}' for e in extras)})",
            flush=True,
        )
    return out


# -- child entry point -----------------------------------------------------------------------
def child(args) -> int:
    tf = configure_threads(args.threads)
    from dense_snns import keras

    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__ if hasattr(keras, '__version__') else '?'}, "
        f"threads {args.threads}",
        flush=True,
    )
    if args.memory_child:
        emit(run_memory(args))
        return 0
    failed = False
    for name in args.workloads:
        spec = workload_spec(name, args.quick)
        if args.wait_idle > 0:
            idle = wait_for_idle(args.wait_idle, args.idle_threshold)
            print(
                f"{name}: waited {idle['waited']:.0f} s for other processes to go idle "
                f"(they use {idle['load']:.1f} cores now)",
                flush=True,
            )
        try:
            emit(run_workload(spec, args, check=args.check))
        except Exception as error:  # report and go on with the next workload
            traceback.print_exc(file=sys.stdout)
            emit({"workload": name, "threads": args.threads, "error": f"{type(error).__name__}: {error}"})
            failed = True
        gc.collect()
    return 1 if failed else 0


# -- event-driven input products ---------------------------------------------------------------
EVENT_ACTIVITIES = (0.01, 0.05, 0.2, 0.5, "real")


def compare_layers(args, x, make_a, make_b) -> List[str]:
    """Training step and inference forward pass of two layer stacks (`make_a()`, `make_b()`:
    lists of layers) on `x`: [train a, train b, paired ratio, infer a, infer b, paired
    ratio] as table cells (ratio > 1: b is faster)."""
    import tensorflow as tf

    steps = []
    for make in (make_a, make_b):
        layers = make()

        def forward(inputs, layers=layers, training=None):
            for layer in layers:
                inputs = layer(inputs, training=training)
            return inputs

        forward(x[:, :2])

        @tf.function
        def train(inputs, layers=layers, forward=forward):
            weights = [w for layer in layers for w in layer.trainable_variables]
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.reduce_mean(forward(inputs, training=True), axis=1) ** 2)
            return tape.gradient(loss, weights)

        steps.append((train, tf.function(lambda inputs, forward=forward: forward(inputs, training=False))))
    timed = measure(
        [
            ("train_a", steps[0][0], (x,), None),
            ("train_b", steps[1][0], (x,), None),
            ("infer_a", steps[0][1], (x,), None),
            ("infer_b", steps[1][1], (x,), None),
        ],
        args.repeats,
        args.min_repeats,
        args.budget,
    )
    cells = []
    for kind in ("train", "infer"):
        ratio = paired_ratio(timed[f"{kind}_a"]["times"], timed[f"{kind}_b"]["times"])
        cells += [fmt_ms(timed[f"{kind}_a"]["median"]), fmt_ms(timed[f"{kind}_b"]["median"]), f"{ratio:.2f}x"]
    return cells


def dense_stack(spec, neuron, **layer_kwargs):
    """The layers of a dense workload (SNNDense of `neuron(threshold)` and the readout), both
    with `layer_kwargs`; fixed initial weights."""
    import dense_snns as ds
    from dense_snns import keras

    layers = []
    for i, layer in enumerate(spec["layers"]):
        init = keras.initializers.GlorotUniform(seed=100 + i)
        if layer[0] == "dense":
            layers.append(ds.SNNDense(layer[1], neuron=neuron(layer[2]), kernel_initializer=init, **layer_kwargs))
        else:
            layers.append(ds.LeakyReadout(layer[1], kernel_initializer=init, **layer_kwargs))
    return layers


def dense_workloads(args):
    """(name, spec, rng, input shape) of each chosen workload without convolutions; the same
    seed for each."""
    import numpy as np

    for name in args.workloads:
        spec = workload_spec(name, args.quick)
        if not any(layer[0] == "conv" for layer in spec["layers"]):
            yield name, spec, np.random.default_rng(7), (spec["batch"], spec["time"]) + tuple(spec["features"])


def run_events(args) -> int:
    """Per dense workload and input activity: training step and forward pass with
    input_sparsity "auto" vs "dense" (paired ratios; > 1: auto is faster)."""
    import numpy as np
    import tensorflow as tf

    rows = []
    for name, spec, rng, shape in dense_workloads(args):
        for activity in EVENT_ACTIVITIES:
            if activity == "real":
                x = tf.constant(rng.standard_normal(shape, dtype=np.float32))
            else:
                x = tf.constant((rng.random(shape) < activity).astype(np.float32))
            label = "real-valued" if activity == "real" else f"{activity:.0%}"
            rows.append(
                [name, label]
                + compare_layers(
                    args,
                    x,
                    lambda: dense_stack(spec, lif, input_sparsity="dense"),
                    lambda: dense_stack(spec, lif, input_sparsity="auto"),
                )
            )
            print(" | ".join(rows[-1]), flush=True)
    headers = ["workload", "input", "train dense", "train auto", "speed-up", "infer dense", "infer auto", "speed-up"]
    print()
    print(format_table(headers, rows))
    return 0


def cuba_lif(threshold: float) -> Dict[str, Any]:
    return {"class_name": "CubaLIF", "config": {"threshold": float(threshold)}}


#: The neurons of ``--kernels``: the spiking models of the kernel table.
KERNEL_NEURONS = {"lif": lif, "cuba_lif": cuba_lif}


def run_kernels(args) -> int:
    """Per dense workload and neuron of the kernel table (at 5% input activity, dense input
    products in both): training step and forward pass with implementation "compiled" (the XLA
    loops) vs "auto" (the C++ kernels), paired ratios (> 1: the kernels are faster)."""
    import numpy as np
    import tensorflow as tf

    rows = []
    for name, spec, rng, shape in dense_workloads(args):
        x = tf.constant((rng.random(shape) < 0.05).astype(np.float32))
        for neuron_name, neuron in KERNEL_NEURONS.items():
            rows.append(
                [name, neuron_name]
                + compare_layers(
                    args,
                    x,
                    lambda: dense_stack(spec, neuron, implementation="compiled", input_sparsity="dense"),
                    lambda: dense_stack(spec, neuron, implementation="auto", input_sparsity="dense"),
                )
            )
            print(" | ".join(rows[-1]), flush=True)
    headers = [
        "workload",
        "neuron",
        "train loops",
        "train kernels",
        "speed-up",
        "infer loops",
        "infer kernels",
        "speed-up",
    ]
    print()
    print(format_table(headers, rows))
    return 0


# -- parent: spawn children, print the tables ------------------------------------------------
def child_command(args, threads: int, check: bool, memory: bool = False) -> List[str]:
    cmd = [
        python(),
        os.path.abspath(__file__),
        "--child",
        "--threads",
        str(threads),
        "--workloads",
        ",".join(args.workloads),
        "--repeats",
        str(args.repeats),
        "--min-repeats",
        str(args.min_repeats),
        "--budget",
        str(args.budget),
        "--mismatch-tolerance",
        str(args.mismatch_tolerance),
        "--wait-idle",
        str(args.wait_idle),
        "--idle-threshold",
        str(args.idle_threshold),
    ]
    if args.quick:
        cmd.append("--quick")
    if args.strict:
        cmd.append("--strict")
    if check:
        cmd.append("--check")
    if memory:
        cmd += ["--memory-child", "--memory-time", str(args.memory_time), "--memory-repeats", str(args.memory_repeats)]
    return cmd


def results_table(results: List[Dict[str, Any]]) -> str:
    headers = [
        "workload",
        "thr",
        "fused ms",
        "ref ms",
        "matmul ms",
        "fused/mm",
        "ref/fused",
        "fused fwd ms",
        "mm fwd ms",
        "fwd f/mm",
        "1st call s",
        "rate %",
        "n f/r/mm",
        "check",
        "other",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["workload"], r["threads"], "ERROR"] + [""] * (len(headers) - 4) + [r["error"][:40]])
            continue
        fused, ref, mm = r["fused_step"]["median"], r["ref_step"]["median"], r["mm_step"]["median"]
        ffwd, mfwd = r["fused_fwd"]["median"], r["mm_fwd"]["median"]
        check = r.get("check")
        check_text = "-" if check is None else f"{sum(check['spike_mismatches'])} diff"
        rows.append(
            [
                r["workload"],
                r["threads"],
                fmt_ms(fused),
                fmt_ms(ref),
                fmt_ms(mm),
                fmt_ratio(fused, mm),
                fmt_ratio(ref, fused),
                fmt_ms(ffwd),
                fmt_ms(mfwd),
                fmt_ratio(ffwd, mfwd),
                f"{r['fused_step']['first']:.1f}",
                "/".join(f"{100 * x:.1f}" for x in r["rates"]),
                f"{r['fused_step']['n']}/{r['ref_step']['n']}/{r['mm_step']['n']}",
                check_text,
                f"{r['other_load']:.1f}",
            ]
        )
    return format_table(headers, rows)


def best_of_table(results: List[Dict[str, Any]]) -> str:
    headers = [
        "workload",
        "thr",
        "fused ms",
        "ref ms",
        "matmul ms",
        "fused/mm",
        "ref/fused",
        "fused fwd ms",
        "mm fwd ms",
        "fwd f/mm",
    ]
    rows = []
    for r in results:
        if "error" in r:
            continue
        fused, ref, mm = r["fused_step"]["min"], r["ref_step"]["min"], r["mm_step"]["min"]
        ffwd, mfwd = r["fused_fwd"]["min"], r["mm_fwd"]["min"]
        rows.append(
            [
                r["workload"],
                r["threads"],
                fmt_ms(fused),
                fmt_ms(ref),
                fmt_ms(mm),
                fmt_ratio(fused, mm),
                fmt_ratio(ref, fused),
                fmt_ms(ffwd),
                fmt_ms(mfwd),
                fmt_ratio(ffwd, mfwd),
            ]
        )
    return format_table(headers, rows)


def paired_ratio(times_a: List[float], times_b: List[float]) -> Optional[float]:
    """Median over rounds of a/b, each a and b timed in the same round (one after the other):
    load that comes and goes between rounds cancels out."""
    pairs = [a / b for a, b in zip(times_a, times_b) if b > 0]
    return statistics.median(pairs) if pairs else None


def paired_table(results: List[Dict[str, Any]]) -> str:
    headers = ["workload", "thr", "fused/mm", "ref/fused", "fwd f/mm", "rounds"]
    rows = []
    for r in results:
        if "error" in r:
            continue
        fused, ref, mm = r["fused_step"]["times"], r["ref_step"]["times"], r["mm_step"]["times"]
        step_ratio, speedup = paired_ratio(fused, mm), paired_ratio(ref, fused)
        fwd_ratio = paired_ratio(r["fused_fwd"]["times"], r["mm_fwd"]["times"])
        rows.append(
            [r["workload"], r["threads"]]
            + [f"{v:.2f}" if v is not None else "-" for v in (step_ratio, speedup, fwd_ratio)]
            + [len(fused)]
        )
    return format_table(headers, rows)


def memory_report(memory: List[Dict[str, Any]]) -> str:
    mib = 2**20
    m = memory[0]
    tensor = m["tensor_bytes"]
    lines = [
        f"Peak memory of one training step, {m['workload']} at T={m['time']}, B={m['batch']}, N={m['units']}; "
        f"one [T,B,N] float32 tensor = {tensor / mib:.1f} MiB.",
        "Method: TensorFlow CPU allocator statistics (tf.config.experimental.get_memory_info('CPU:0')) in fresh "
        "processes with TF_CPU_ALLOCATOR_USE_BFC=true (so that small allocations are counted too): after a warm-up "
        "call, reset_memory_stats, run one step, extra = peak - bytes in use before it (the input, weights and "
        "other live tensors are excluded; XLA temporaries and the returned gradients are included; BFC rounding "
        "adds a little per tensor).",
    ]
    for r in memory:  # results saved by older versions: one step, no thread count
        r.setdefault("threads", 0)
        for name in ("fused", "fused_loops", "fused_all", "fused_ckpt", "ref", "matmul"):
            if name in r:
                r[name].setdefault("all", [r[name]["extra"]])
    threads = sorted({r["threads"] for r in memory})
    rows = []
    labels = {
        "fused": "fused (default: C++ kernels)",
        "fused_loops": 'fused loops (implementation="compiled", checkpoint_every="auto")',
        "fused_all": "fused loops, checkpoint_every=None",
        "fused_ckpt": "fused, checkpoint_every=32",
    }  # fused_ckpt: results of older versions
    for name in ("fused", "fused_loops", "fused_all", "fused_ckpt", "ref", "matmul"):
        if not all(name in r for r in memory):
            continue
        row = [labels.get(name, name)]
        for t in threads:
            runs = [r for r in memory if r["threads"] == t]
            values = sorted(v for r in runs for v in r[name]["all"])
            median = values[len(values) // 2]
            per_process = "/".join(f"{r[name]['extra_tensors']:.2f}" for r in runs)
            row.append(
                f"{median / mib:.0f} MiB = {median / tensor:.2f} ({values[0] / tensor:.2f}-"
                f"{values[-1] / tensor:.2f}; per process {per_process})"
            )
        rows.append(row)
    lines.append(
        format_table(["path"] + [f"extra, {t} thr: MiB = k x [T,B,N] (range; per process)" for t in threads], rows)
    )
    lines.append(
        "k = median over all measured steps of all processes; the peak depends on the order in which "
        "TensorFlow runs independent ops, which can differ between processes."
    )
    return "\n".join(lines)


def parent(args) -> int:
    start = time.perf_counter()
    info = machine_info()
    print(
        f"bench_layers: {info['date']}, {info['cpu']}, {info['cores']} cores, load average {info['loadavg']}",
        flush=True,
    )
    print(
        f"workloads {','.join(args.workloads)}; threads {args.thread_list}; "
        f"{'quick' if args.quick else 'full'} sizes; up to {args.repeats} repeats "
        f"(at least {args.min_repeats}, {args.budget:.0f} s budget per measurement)",
        flush=True,
    )
    for name in args.workloads:
        spec = workload_spec(name, args.quick)
        print(
            f"  {name}: {spec['title']}; batch {spec['batch']}, T {spec['time']}, input {spec['features']}", flush=True
        )
    results: List[Dict[str, Any]] = []
    for i, threads in enumerate(args.thread_list):
        check = args.check_all or (i == 0 and not args.no_check)
        results += run_child(child_command(args, threads, check), f"{threads} thr")
    memory: List[Dict[str, Any]] = []
    if not args.no_memory:
        for threads in args.thread_list:
            for _ in range(args.memory_processes):
                found = run_child(
                    child_command(args, threads, False, memory=True), f"memory {threads} thr", extra_env=MEMORY_ENV
                )
                memory += [r for r in found if r.get("memory")]
                results += [r for r in found if "child_error" in r]
    workload_results = [r for r in results if "workload" in r and not r.get("memory")]
    workload_results.sort(key=lambda r: (args.workloads.index(r["workload"]), r["threads"]))
    end_info = machine_info()
    info["loadavg_end"] = end_info["loadavg"]
    info["total_seconds"] = time.perf_counter() - start
    info["quick"] = args.quick
    report(info, workload_results, memory)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": workload_results, "memory": memory}, f, indent=1)
        print(f"wrote {args.json}")
    failed = [r for r in results if "error" in r or "child_error" in r]
    return 1 if failed else 0


def report(info: Dict[str, Any], workload_results: List[Dict[str, Any]], memory: List[Dict[str, Any]]) -> None:
    print("\n" + "=" * 100)
    print(
        f"Results ({info['date']}, {info['cpu']}, {info['cores']} cores; load average at start {info['loadavg']}, "
        f"at end {info.get('loadavg_end')}; total {info.get('total_seconds', float('nan')):.0f} s)"
    )
    names = list(dict.fromkeys(r["workload"] for r in workload_results))
    for name in names:
        spec = workload_spec(name, bool(info.get("quick")))
        sized = next((r for r in workload_results if r["workload"] == name and "time" in r), None)
        if sized is not None:
            spec.update(batch=sized["batch"], time=sized["time"], features=sized["features"])
        print(f"  {name}: {spec['title']}; batch {spec['batch']}, T {spec['time']}, input {spec['features']}")
    print(results_table(workload_results))
    print(
        "Times: median ms per call. fused/mm = fused step / matmul roofline; ref/fused = speed-up of the fused "
        "layer; 1st call s = first fused training step (tracing + XLA compilation of both loops + one step); "
        "rate = firing rate per step of each spiking layer; n = timed repeats; check = spike values differing "
        "between fused and reference (once, first thread setting); other = cores used on average by other "
        "processes during the workload (timing noise)."
    )
    print("\nThe same with the fastest of the n repeats instead of the median (less sensitive to other processes):")
    print(best_of_table(workload_results))
    print(
        "\nPaired ratios: median over the rounds of the ratio of two calls made one after the other in the same "
        "round (the most robust to load that changes between rounds):"
    )
    print(paired_table(workload_results))
    print("\nFused vs reference outputs:")
    for r in workload_results:
        if "grad_rel_err" in r:
            extra = ""
            if "check" not in r and r["grad_rel_err"] > 1e-3:
                extra = " (spike trains differ? the spike check ran in the first thread setting only)"
            if "grad_rel_err_unflipped" in r:
                extra = (
                    f" ({r['grad_rel_err_unflipped']:.1e} without the {r['flipped_count']} units whose spike "
                    f"trains differ)"
                )
            print(
                f"  {r['workload']} {r['threads']} thr: loss fused {r['loss'][0]:.6g} ref {r['loss'][1]:.6g}; "
                f"max gradient difference / max |gradient| = {r['grad_rel_err']:.1e}{extra}"
            )
    if memory:
        print()
        print(memory_report(memory))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (W2, C1 shorter; W3 shrunk to 2048 units, T=50)"
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated subset of " + ",".join(WORKLOADS)
    )
    parser.add_argument("--threads", default="1,2", help="thread counts, one child process each (default 1,2)")
    parser.add_argument("--repeats", type=int, default=5, help="max timed repeats per measurement (default 5)")
    parser.add_argument("--min-repeats", type=int, default=3, help="min timed repeats (default 3)")
    parser.add_argument(
        "--budget",
        type=float,
        default=10.0,
        help="stop repeating after min-repeats once this many seconds are spent (default 10)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the fused-vs-reference spike check")
    parser.add_argument("--check-all", action="store_true", help="run the spike check in every thread setting")
    parser.add_argument("--strict", action="store_true", help="require bit-identical spikes in every workload")
    parser.add_argument(
        "--mismatch-tolerance",
        type=float,
        default=1e-6,
        help="allowed fraction of differing spike values (float rounding of [B*T,F] vs [B,F] "
        "matmuls near threshold; default 1e-6; --strict makes it 0)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument(
        "--memory-time",
        type=int,
        default=None,
        help=f"T of the memory measurement on {MEMORY_WORKLOAD} (default 1000, 200 with --quick)",
    )
    parser.add_argument("--memory-repeats", type=int, default=3, help="measured steps per path (default 3)")
    parser.add_argument(
        "--memory-processes",
        type=int,
        default=2,
        help="fresh processes per thread count for the memory measurement (default 2)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="before each workload wait up to this many seconds until other processes use fewer "
        "than --idle-threshold cores (for shared machines; default 0: don't wait)",
    )
    parser.add_argument("--idle-threshold", type=float, default=0.3, help="cores (default 0.3)")
    parser.add_argument(
        "--report", default=None, metavar="FILE.json", help="only print the tables of a run saved with --json"
    )
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.add_argument(
        "--events",
        action="store_true",
        help="measure the event-driven input products (input_sparsity auto vs dense) instead",
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="measure the C++ kernels against the compiled loops, per neuron of the kernel table, instead",
    )
    # internal
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    if args.child:
        args.threads = int(args.threads)
    else:
        args.thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
    if args.memory_time is None:
        args.memory_time = 200 if args.quick else 1000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        memory = saved.get("memory") or []
        report(saved["machine"], saved["results"], memory if isinstance(memory, list) else [memory])
        return 0
    if args.events or args.kernels:
        flag = "--events" if args.events else "--kernels"
        if not args.child:  # one child per thread count: the thread pools are fixed at start
            failed = False
            for threads in args.thread_list:
                cmd = child_command(args, threads, check=False) + [flag]
                failed |= subprocess.run(cmd, env=child_env()).returncode != 0
            return 1 if failed else 0
        configure_threads(args.threads)
        return run_events(args) if args.events else run_kernels(args)
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
