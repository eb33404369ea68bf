"""Peak memory against sequence length: streaming inference and e-prop in constant memory,
BPTT in memory that grows with time; and the streaming throughput per step.

One network throughout, the main job's shapes: 100 input units (5% spikes per step), one
self-recurrent `SNNDense` of 128 current-based LIF units, a `LeakyReadout` of 10, batch 8.
Every point runs in its own child process, which reports its peak resident memory
(``ru_maxrss``: everything the process ever held, TensorFlow and compiled code included):

* **stream**: `run_stream` of a stateful copy over chunks of 1000 steps generated on the fly,
  reduced to spike counts of the readout ("sum"), at 1e3, 1e4, 1e5, 1e6 steps;
* **eprop**: `EProp(stateful=True)`, `train_on_batch` on consecutive chunks of 1000 steps
  (labels per step), the weights updated after every chunk, at 1e3, 1e4, 1e5 steps;
* **bptt**: one training step (forward, per-step cross-entropy, all weight gradients) of the
  same network over the whole sequence, at 1e2, 1e3, 1e4 steps.

The throughput child times, over the same 2000 steps: the fused full-sequence forward
(``model(x, training=False)``, the whole [B, T, 10] output), and `run_stream` with
``reduce="max"`` over chunks of 100 and of 1000 steps, run chunk by chunk (``loop="chunks"``)
and by the state-only step loop (``loop="steps"``); the ratios are per step.

    PYTHONPATH=. python benchmarks/bench_memory.py            # full run, ~10 min
    PYTHONPATH=. python benchmarks/bench_memory.py --quick    # ~2 min; the last line states the ratios
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

BATCH, FEATURES, UNITS, CLASSES, ACTIVITY = 8, 100, 128, 10, 0.05
CHUNK = 1000
#: Throughput: chunk sizes (steps) and the two loops of run_stream with a reduction.
CHUNK_SIZES, LOOPS = (100, 1000), ("chunks", "steps")
FULL = {"stream": [10**3, 10**4, 10**5, 10**6], "eprop": [10**3, 10**4, 10**5], "bptt": [10**2, 10**3, 10**4]}
QUICK = {"stream": [10**3, 10**5], "eprop": [10**3, 10**4], "bptt": [10**2, 10**3]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def build_network(keras, snn, seed: int = 0):
    """Input [batch, time, 100] -> recurrent SNNDense(128) -> LeakyReadout(10)."""
    snn.compat.set_random_seed(seed)
    hidden = snn.SNNDense(
        UNITS,
        self_recurrent=True,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1.0 / FEATURES**0.5),
        recurrent_initializer=keras.initializers.RandomNormal(stddev=0.5 / UNITS**0.5),
    )
    return hidden, snn.LeakyReadout(CLASSES, beta=0.9)


def spike_chunks(np, steps: int, size: int, seed: int = 1):
    """Random input spikes [BATCH, size, FEATURES], made as they are consumed."""
    rng = np.random.default_rng(seed)
    for start in range(0, steps, size):
        n = min(size, steps - start)
        yield (rng.random((BATCH, n, FEATURES)) < ACTIVITY).astype(np.float32)


def child(kind: str, steps: int) -> None:
    import numpy as np

    tf = common.configure_threads(1)
    import dense_snns as snn
    from dense_snns import keras
    from dense_snns.eprop import per_step_cross_entropy
    from dense_snns.streaming import run_stream, stateful_copy

    hidden, readout = build_network(keras, snn)
    start = time.perf_counter()
    if kind == "stream":
        x = keras.Input((None, FEATURES))
        model = stateful_copy(keras.Model(x, readout(hidden(x))), BATCH)
        for counts in run_stream(model, spike_chunks(np, steps, CHUNK), reduce="sum", progress=False):
            pass
        check = float(counts.sum())
    elif kind == "eprop":
        model = snn.EProp([hidden], readout, stateful=True, seed=0)
        model.compile(keras.optimizers.Adam(1e-3))
        labels = np.arange(BATCH * CHUNK).reshape(BATCH, CHUNK) % CLASSES
        for x in spike_chunks(np, steps, CHUNK):
            logs = model.train_on_batch(x, labels[:, : x.shape[1]], return_dict=True)
        check = float(logs["loss"])
    elif kind == "bptt":
        x_in = keras.Input((None, FEATURES))
        model = keras.Model(x_in, readout(hidden(x_in)))
        optimizer = keras.optimizers.Adam(1e-3)
        x = next(spike_chunks(np, steps, steps))
        labels = np.arange(BATCH * steps).reshape(BATCH, steps) % CLASSES

        @tf.function
        def train_step(x, labels):
            with tf.GradientTape() as tape:
                loss = per_step_cross_entropy(model(x, training=True), labels)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        check = float(train_step(x, labels))
    else:
        raise ValueError(kind)
    elapsed = time.perf_counter() - start
    common.emit({"kind": kind, "steps": steps, "peak_rss_mb": peak_rss_mb(), "seconds": elapsed, "check": check})


def throughput_child(steps: int, repeats: int) -> None:
    import numpy as np

    common.configure_threads(1)
    import dense_snns as snn
    from dense_snns import keras
    from dense_snns.streaming import run_stream, stateful_copy

    hidden, readout = build_network(keras, snn)
    x_in = keras.Input((None, FEATURES))
    model = keras.Model(x_in, readout(hidden(x_in)))
    stream = stateful_copy(model, BATCH)
    x = next(spike_chunks(np, steps, steps))

    def full():
        return model(x, training=False).numpy()

    def streamed(loop, size):
        chunks = [x[:, a : a + size] for a in range(0, steps, size)]
        return lambda: list(run_stream(stream, chunks, reduce="max", loop=loop, progress=False))[-1]

    entries = [("full", full, (), None)]
    entries += [(f"{loop} {size}", streamed(loop, size), (), None) for size in CHUNK_SIZES for loop in LOOPS]
    results = common.measure(entries, repeats=repeats, min_repeats=3, budget=5.0)
    want = full().max(axis=1)
    for name, _, _, _ in entries[1:]:
        np.testing.assert_allclose(results[name]["last"], want, rtol=1e-4, atol=1e-4)
    common.emit({"kind": "throughput", "steps": steps, **{k: common.public(v) for k, v in results.items()}})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter points")
    parser.add_argument("--kinds", default="stream,eprop,bptt,throughput")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds of the throughput child")
    parser.add_argument("--child", choices=["stream", "eprop", "bptt", "throughput"], help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "throughput":
        throughput_child(args.steps, args.repeats)
        return 0
    if args.child:
        child(args.child, args.steps)
        return 0

    points = QUICK if args.quick else FULL
    kinds = args.kinds.split(",")
    info = common.machine_info()
    print(f"{info['date']}  {info['cpu']}  {info['cores']} cores, 1 thread per child")
    failed = False
    memory = {}
    for kind in [k for k in kinds if k in points]:
        for steps in points[kind]:
            cmd = [common.python(), os.path.abspath(__file__), "--child", kind, "--steps", str(steps)]
            for result in common.run_child(cmd, f"{kind} {steps}"):
                if "child_error" in result:
                    failed = True
                    continue
                memory[(kind, steps)] = result
                print(
                    f"  {kind:6s} {steps:>8d} steps: peak {result['peak_rss_mb']:7.0f} MB, {result['seconds']:7.1f} s"
                )
    rows, growth = [], {}
    for kind in [k for k in kinds if k in points]:
        measured = [memory[(kind, s)] for s in points[kind] if (kind, s) in memory]
        if not measured:
            continue
        base = measured[0]["peak_rss_mb"]
        for r in measured:
            rows.append(
                [
                    kind,
                    r["steps"],
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['peak_rss_mb'] / base:.3f}x",
                    f"{1e6 * r['seconds'] / r['steps']:.1f}",
                ]
            )
        growth[kind] = (measured[0]["steps"], measured[-1]["steps"], measured[-1]["peak_rss_mb"] / base)
    if rows:
        print()
        print(common.format_table(["kind", "steps", "peak RSS MB", "vs shortest", "us per step"], rows))

    ratio = None
    if "throughput" in kinds:
        steps = 1000 if args.quick else 2000
        cmd = [
            common.python(),
            os.path.abspath(__file__),
            "--child",
            "throughput",
            "--steps",
            str(steps),
            "--repeats",
            str(args.repeats),
        ]
        for result in common.run_child(cmd, "throughput"):
            if "child_error" in result:
                failed = True
                continue
            full = result["full"]["median"]
            names = ["full"] + [f"{loop} {size}" for size in CHUNK_SIZES for loop in LOOPS]
            rows = [
                [
                    name,
                    common.fmt_ms(result[name]["median"]),
                    f"{1e6 * result[name]['median'] / steps:.1f}",
                    common.fmt_ratio(result[name]["median"], full),
                ]
                for name in names
            ]
            print()
            print(
                common.format_table(
                    ["path (loop, chunk steps)", "ms per sequence", "us per step", "vs full forward"], rows
                )
            )
            ratio = {name: result[name]["median"] / full for name in names[1:]}
    parts = [f"{kind} peak memory {hi:g}/{lo:g} steps = {g:.3f}x" for kind, (lo, hi, g) in growth.items()]
    if ratio:
        listed = ", ".join(f"{r:.2f}x ({name})" for name, r in ratio.items())
        parts.append(f"streaming time per step / full forward: {listed}")
    print("ratios: " + "; ".join(parts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
