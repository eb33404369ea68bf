#!/usr/bin/env python3
"""Benchmark of a balanced 8-node SNN graph (`snns_as_gnn.GraphSNN`) on 1 vs 2 logical CPU
devices.

Graphs (8 nodes of equal size, LIF neurons, every node self-recurrent):

  chains: two independent 4-node chains a0->a1->a2->a3 and b0->b1->b2->b3, inputs a0, b0,
          outputs a3, b3. `plan_placement` puts one chain on each device: perfect balance,
          no spike crosses devices (the best case for two devices).
  ring:   a ring 0->1->...->7->0 with cross edges 0->4 and 2->6, input 0, outputs 3 and 7;
          two devices cut a few edges (spikes are copied between devices every step).

Every configuration (implementation x thread setting x number of devices) runs in its own
child process of this script, which splits the CPU into 1 or 2 logical devices with
`tf.config.set_logical_device_configuration` (and sets the thread pools) before TensorFlow
starts, places the nodes with `plan_placement` (2 devices), builds and warms up, inside
`tf.function`,

  forward: the graph layer over the whole sequence (inference);
  train:   forward + backward (gradients of all the layer's weights).

Implementations: ``fused`` (compiled loop with hand-written BPTT; XLA only when all nodes are
on one device, the ``fused-xla`` row; without XLA otherwise), ``loop`` (plain
`tf.while_loop`, autodiff) and ``events`` (every node sparse, with a capacity K, `--capacity`:
each node selects its spikes into K slots and sends them along its edges into one sparse
product per node, target device and step; gradient only at the selected neurons; the
compiled loop without XLA, as the C++ kernels need; the spikes dropped by overflow are
printed). The line "sparse nodes (events) vs the faster dense nodes" gives the 1-device step
rate of ``events`` over that of the faster of ``fused-xla`` and ``fused``.

Paired timing: the children of one thread setting stay alive together and the parent asks
them in turn (rotating the order every round) for one call each, so that load from other
processes on a shared machine hits all configurations alike; only one child computes at a
time. The 2/1 ratio (2-device step rate / 1-device step rate, same implementation and
threads) is the median over rounds of the per-round ratio; "quiet" ratios use only the
rounds in which other processes used < 0.5 core during both calls. "cores used" is a child's
CPU time / wall time during its calls (2 = both cores busy).

Logical CPU devices share TensorFlow's thread pools, so two devices only help if the two
halves of a step then run concurrently where they did not before: the ratio depends on the
thread settings (``default``: TensorFlow's own; ``intraXinterY``: intra-op and inter-op pool
sizes).

    PYTHONPATH=. python benchmarks/bench_graph.py              # default sizes (~5-8 min, 2 cores)
    PYTHONPATH=. python benchmarks/bench_graph.py --quick      # small sizes (~1-2 min)
    PYTHONPATH=. python benchmarks/bench_graph.py --graph ring --threads default --impls fused
    PYTHONPATH=. python benchmarks/bench_graph.py --cluster    # 1 vs 2 TensorFlow servers (~5 min)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import graph_cluster  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ServedChild,
    assign_graph_kernels,
    cpu_snapshot,
    emit,
    fmt_ms,
    format_table,
    graph_functions,
    machine_info,
    other_load,
    python,
)

GRAPHS = ("chains", "ring")
IMPLS = ("fused", "loop", "events")
THREADS = {
    "default": (None, None),
    "intra1inter1": (1, 1),
    "intra1inter2": (1, 2),
    "intra2inter1": (2, 1),
    "intra2inter2": (2, 2),
}
QUIET_LOAD = 0.5  # cores used by other processes below which a round counts as quiet


# -- the graphs (pure Python) -------------------------------------------------------------------
def make_graph(kind: str, units: int, inputs: int, threshold: float, capacity=None):
    from snns_as_gnn import SNNGraph

    config = {"beta": 0.9, "threshold": float(threshold), "reset": "subtract"}
    if kind == "chains":
        names = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
        conn = [[0], [0, 1], [1, 2], [2, 3], [4], [4, 5], [5, 6], [6, 7]]
        ins, outs = [0, 4], [3, 7]
    elif kind == "ring":
        names = [f"n{i}" for i in range(8)]
        conn = [[i, (i - 1) % 8] for i in range(8)]
        conn[4].append(0)
        conn[6].append(2)
        ins, outs = [0], [3, 7]
    else:
        raise ValueError(f"unknown graph {kind!r}; expected one of {GRAPHS}")
    return SNNGraph.from_adjacency(
        conn,
        units=units,
        inputs=ins,
        outputs=outs,
        neuron="lif",
        neuron_config=config,
        names=names,
        input_size=inputs,
        capacity=capacity,
    )


# -- child process ------------------------------------------------------------------------------
def setup(cfg: Dict[str, Any]):
    """Devices, threads, layer, input and the two tf.functions of one configuration."""
    import tensorflow as tf

    intra, inter = THREADS[cfg["threads"]]
    if intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    cpu = tf.config.list_physical_devices("CPU")[0]
    if cfg["devices"] > 1:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cfg["devices"])
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == cfg["devices"], devices

    import numpy as np

    from snns_as_gnn import GraphSNN, plan_placement

    events = cfg["impl"] == "events"  # sparse nodes: selections and sparse products (C++ kernels, no XLA)
    graph = make_graph(cfg["graph"], cfg["units"], cfg["inputs"], cfg["threshold"], cfg["capacity"] if events else None)
    plan = plan_placement(graph, devices) if len(devices) > 1 else None
    impl = {"loop": "reference", "events": "auto"}.get(cfg["impl"], "compiled")
    layer = GraphSNN(graph, placement=plan, implementation=impl, jit_compile=cfg["impl"] == "fused-xla")
    rng = np.random.default_rng(1234)
    x = tf.constant((rng.random((cfg["batch"], cfg["time"], cfg["inputs"])) < cfg["p"]).astype(np.float32))
    layer(x[:, :2])
    assign_graph_kernels(layer, rng)  # the same in every child
    readout = tf.constant(rng.standard_normal(layer.cell.output_size).astype(np.float32))
    info = {
        "devices_found": devices,
        "placement": None if plan is None else {d: plan.nodes_on(d) for d in plan.devices},
        "cut_edges": None if plan is None else [list(e) for e in plan.cut_edges()],
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }
    if events:  # one eager call: the spikes dropped by overflow, per sample, node and step
        layer(x)
        dropped = sum(float(tf.reduce_mean(tf.cast(d, tf.float32))) for d in layer.last_dropped.values())
        info["dropped_per_node_step"] = dropped / (cfg["time"] * len(layer.cell.sparse_nodes))
    return graph_functions(layer, readout), x, info


def serve(cfg: Dict[str, Any]) -> None:
    """Child: set up, warm up, report ready, then time one call per command read from stdin
    ("forward" / "train"; "quit" ends)."""
    import tensorflow as tf

    fns, x, info = setup(cfg)
    start = time.perf_counter()
    for fn in fns.values():  # trace/compile, then one warm call
        fn(x)
        fn(x)
    spikes = fns["forward"](x).numpy()
    grads = fns["train"](x)
    info.update(
        {
            "ready": True,
            "warmup_s": time.perf_counter() - start,
            "output_rate": float(spikes.mean()),
            "spike_checksum": float(spikes.sum()),
            "grad_checksum": float(sum(float(tf.reduce_sum(tf.abs(g))) for g in grads)),
        }
    )
    emit(info)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit" or not command:
            break
        fn = fns[command]
        before = cpu_snapshot()
        t0 = time.perf_counter()
        out = fn(x)
        seconds = time.perf_counter() - t0
        after = cpu_snapshot()
        del out
        wall = after["wall"] - before["wall"]
        emit(
            {
                "kind": command,
                "seconds": seconds,
                "own_cores": (after["own"] - before["own"]) / wall if wall > 0 else float("nan"),
                "other_load": other_load(before, after),
            }
        )


# -- parent -------------------------------------------------------------------------------------
class Child(ServedChild):
    """A configuration's child process, driven one call at a time over stdin/stdout."""

    def __init__(self, cfg: Dict[str, Any]):
        label = f"{cfg['impl']} {cfg['threads']} {cfg['devices']} dev"
        super().__init__([python(), os.path.abspath(__file__), "--serve", json.dumps(cfg)], label)
        self.cfg = cfg
        self.info: Dict[str, Any] = {}

    def call(self, kind: str) -> Dict[str, Any]:
        return self.request(kind)


def configurations(args, threads: str) -> List[Dict[str, Any]]:
    base = {
        "graph": args.graph,
        "units": args.units,
        "batch": args.batch,
        "time": args.time,
        "inputs": args.inputs,
        "p": args.p,
        "threshold": args.threshold,
        "threads": threads,
        "capacity": args.capacity,
    }
    out = []
    for impl in args.impls:
        if impl == "fused" and not args.no_xla:
            out.append(dict(base, impl="fused-xla", devices=1))
        for devices in (1, 2):
            out.append(dict(base, impl=impl, devices=devices))
    return out


def run_group(cfgs: List[Dict[str, Any]], rounds: int) -> List[Child]:
    """Start the children of one thread setting, then `rounds` rounds of one forward and one
    train call per child, in a rotating order."""
    children = [Child(cfg) for cfg in cfgs]
    try:
        for child in children:
            child.info = child.read()
            print(
                f"  {child.label}: ready after {child.info['warmup_s']:.0f} s, "
                f"output rate {child.info['output_rate']:.3f}",
                flush=True,
            )
        for r in range(rounds):
            order = children[r % len(children) :] + children[: r % len(children)]
            line = []
            for kind in ("forward", "train"):
                for child in order:
                    result = child.call(kind)
                    result["round"] = r
            for child in children:
                f, t = child.calls[-2], child.calls[-1]
                line.append(
                    f"{child.cfg['impl']}/{child.cfg['devices']}: {fmt_ms(f['seconds'])}+{fmt_ms(t['seconds'])}"
                )
            load = max(c["other_load"] for child in children for c in child.calls[-2:])
            print(
                f"  round {r + 1}/{rounds} (fwd+train ms; other load up to {load:.1f}): " + ", ".join(line), flush=True
            )
    finally:
        for child in children:
            child.close()
    return children


def series(child: Optional[Child], kind: str) -> Dict[int, Dict[str, Any]]:
    return {} if child is None else {c["round"]: c for c in child.calls if c["kind"] == kind}


def median_of(child: Optional[Child], kind: str, key: str) -> Optional[float]:
    values = [c[key] for c in series(child, kind).values()]
    return statistics.median(values) if values else None


def paired_ratio(one: Optional[Child], two: Optional[Child], kind: str, quiet: bool) -> Tuple[Optional[float], int]:
    """Median over rounds of (1-device time / 2-device time) = 2-device rate / 1-device rate."""
    a, b = series(one, kind), series(two, kind)
    ratios = [
        a[r]["seconds"] / b[r]["seconds"]
        for r in a
        if r in b and (not quiet or max(a[r]["other_load"], b[r]["other_load"]) < QUIET_LOAD)
    ]
    return (statistics.median(ratios) if ratios else None), len(ratios)


def find(children: List[Child], impl: str, threads: str, devices: int) -> Optional[Child]:
    for child in children:
        if (child.cfg["impl"], child.cfg["threads"], child.cfg["devices"]) == (impl, threads, devices):
            return child
    return None


def detail_table(children: List[Child]) -> str:
    rows = []
    for child in children:
        f, t = median_of(child, "forward", "seconds"), median_of(child, "train", "seconds")
        rows.append(
            [
                child.cfg["impl"],
                child.cfg["threads"],
                child.cfg["devices"],
                fmt_ms(f),
                fmt_ms(t),
                f"{1 / f:.2f}",
                f"{1 / t:.2f}",
                f"{median_of(child, 'forward', 'own_cores'):.2f}",
                f"{median_of(child, 'train', 'own_cores'):.2f}",
                f"{median_of(child, 'train', 'other_load'):.1f}",
            ]
        )
    return format_table(
        [
            "impl",
            "threads",
            "devices",
            "fwd ms",
            "train ms",
            "fwd/s",
            "train/s",
            "cores used fwd",
            "cores used train",
            "other load",
        ],
        rows,
    )


def ratio_table(children: List[Child], threads_order: List[str]) -> str:
    def fmt(value: Optional[float], n: Optional[int] = None) -> str:
        text = "-" if value is None else f"{value:.2f}x"
        return text if n is None else f"{text} ({n})"

    rows = []
    for threads in threads_order:
        for impl in ("fused", "loop"):
            one, two = find(children, impl, threads, 1), find(children, impl, threads, 2)
            if one is None or two is None:
                continue
            row = [impl, threads]
            for kind in ("forward", "train"):
                all_rounds, _ = paired_ratio(one, two, kind, quiet=False)
                quiet, n = paired_ratio(one, two, kind, quiet=True)
                row += [fmt(all_rounds), fmt(quiet, n)]
            rows.append(row)
    return format_table(
        ["impl", "threads", "fwd 2/1", "fwd 2/1 quiet (rounds)", "train 2/1", "train 2/1 quiet (rounds)"], rows
    )


def best_lines(children: List[Child]) -> List[str]:
    """The best 2-device rate against the best 1-device rate of any implementation/threads."""
    lines = []
    for kind in ("forward", "train"):
        rates = {
            (c.cfg["impl"], c.cfg["threads"], c.cfg["devices"]): 1 / median_of(c, kind, "seconds")
            for c in children
            if median_of(c, kind, "seconds")
        }
        ones = {k: v for k, v in rates.items() if k[2] == 1}
        twos = {k: v for k, v in rates.items() if k[2] == 2}
        if ones and twos:
            k1, k2 = max(ones, key=ones.get), max(twos, key=twos.get)
            lines.append(
                f"{kind}: best 2-device {twos[k2]:.2f}/s ({k2[0]}, {k2[1]}) vs best 1-device "
                f"{ones[k1]:.2f}/s ({k1[0]}, {k1[1]}): {twos[k2] / ones[k1]:.2f}x"
            )
    return lines


def events_lines(children: List[Child], threads_order: List[str]) -> List[str]:
    """Sparse nodes (events) against the faster dense-node row (fused, with or without XLA),
    1 device each, per kind."""
    lines = []
    for threads in threads_order:
        sparse = find(children, "events", threads, 1)
        dense = [c for c in (find(children, "fused-xla", threads, 1), find(children, "fused", threads, 1)) if c]
        if sparse is None or not dense:
            continue
        ratios = []
        for kind in ("forward", "train"):
            best = min(dense, key=lambda c: median_of(c, kind, "seconds"))
            ratio, _ = paired_ratio(best, sparse, kind, quiet=False)
            ratios.append(f"{kind} {ratio:.2f}x (vs {best.cfg['impl']})" if ratio else f"{kind} -")
        lines.append(
            f"sparse nodes (events, K={sparse.cfg['capacity']}, spikes dropped per node and step "
            f"{sparse.info.get('dropped_per_node_step', float('nan')):.2f}) vs the faster dense nodes, "
            f"threads {threads}: {', '.join(ratios)}"
        )
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph", choices=GRAPHS, default="chains")
    parser.add_argument("--units", type=int, default=512, help="neurons per node")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--time", type=int, default=100, help="time steps per sequence")
    parser.add_argument("--inputs", type=int, default=256, help="input features")
    parser.add_argument("--p", type=float, default=0.05, help="input spike probability per step")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.8,
        help="LIF threshold (0.8: ~6%% output spikes per step on the chains, ~17%% on the ring)",
    )
    parser.add_argument(
        "--impls",
        default="fused,loop",
        help="comma-separated: fused, loop, events (every node sparse: selections and sparse products)",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=None,
        help="K of every node of `events` (default: sparse_snns.default_capacity(units, 0.1))",
    )
    parser.add_argument(
        "--threads", default="default,intra1inter2", help=f"comma-separated thread settings: {', '.join(THREADS)}"
    )
    parser.add_argument("--no-xla", action="store_true", help="skip the 1-device fused row with XLA")
    parser.add_argument("--rounds", type=int, default=10, help="timed calls per configuration and kind")
    parser.add_argument("--quick", action="store_true", help="small sizes: 128 units, 20 steps, 4 rounds")
    parser.add_argument("--json", default=None, help="also write all results to this JSON file")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="1 TensorFlow server on one core vs 2 servers on one core each (see benchmarks/graph_cluster.py)",
    )
    parser.add_argument("--nodes", default="2,4,8", help="--cluster: comma-separated ring sizes")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-cluster", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.impls = [s for s in args.impls.split(",") if s]
    args.threads = [s for s in args.threads.split(",") if s]
    args.nodes = [int(s) for s in args.nodes.split(",") if s]
    if any(n < 2 for n in args.nodes):
        parser.error(f"--nodes: a ring needs at least 2 nodes, got {args.nodes}")
    for impl in args.impls:
        if impl not in IMPLS:
            parser.error(f"--impls: unknown implementation {impl!r}; expected {IMPLS}")
    for threads in args.threads:
        if threads not in THREADS:
            parser.error(f"--threads: unknown setting {threads!r}; expected one of {list(THREADS)}")
    if args.quick:
        args.units, args.time, args.rounds = 128, 20, 4
    if args.capacity is None:
        from sparse_snns.format import default_capacity

        args.capacity = default_capacity(args.units, 0.1)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve is not None:
        serve(json.loads(args.serve))
        return 0
    if args.serve_cluster is not None:
        graph_cluster.serve(json.loads(args.serve_cluster))
        return 0
    if args.cluster:
        return graph_cluster.run(args)

    from snns_as_gnn.placement import plan_placement

    graph = make_graph(args.graph, args.units, args.inputs, args.threshold)
    plan = plan_placement(graph, ["/CPU:0", "/CPU:1"])
    info = machine_info()
    print(
        f"bench_graph: {args.graph} graph, {graph.num_nodes} nodes x {args.units} LIF, {len(graph.edges)} edges, "
        f"batch {args.batch}, T={args.time}, input {args.inputs}"
    )
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg']}")
    print(f"2-device plan: {plan}; cut edges {plan.cut_edges()}")
    start = time.time()
    children: List[Child] = []
    for threads in args.threads:
        print(f"threads {threads}:", flush=True)
        children += run_group(configurations(args, threads), args.rounds)

    # The same implementation must compute the same spikes on 1 and 2 devices.
    mismatches = []
    for impl in ("fused", "loop", "events"):
        sums = {c.info["spike_checksum"] for c in children if c.cfg["impl"].startswith(impl)}
        if len(sums) > 1:
            mismatches.append(f"{impl}: spike sums differ across configurations: {sorted(sums)}")

    print()
    print(
        f"Median per call over {args.rounds} rounds (one call = batch {args.batch} x {args.time} time steps); "
        f"cores used = the child's CPU time / wall time during its calls; other load = cores used by "
        f"other processes"
    )
    print(detail_table(children))
    print()
    print(
        "2/1 = 2-device step rate / 1-device step rate (same implementation and threads), median of "
        f"per-round ratios; quiet = rounds with other load < {QUIET_LOAD} core"
    )
    print(ratio_table(children, args.threads))
    for line in best_lines(children):
        print(line)
    for line in events_lines(children, args.threads):
        print(line)
    print(f"total {time.time() - start:.0f} s; load average now {os.getloadavg()}")
    for line in mismatches:
        print("WARNING:", line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "args": vars(args),
                    "children": [{"config": c.cfg, "info": c.info, "calls": c.calls} for c in children],
                },
                f,
                indent=2,
            )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
