"""`bench_graph.py --cluster`: a GraphSNN on 1 TensorFlow server pinned to one core against the
same graph on 2 servers pinned to one core each (separate processes, 1 intra-op thread each),
measured in the same run.

Graphs: rings of 2, 4 and 8 nodes of `--units` LIF neurons, every node self-recurrent, with
skip edges 0 -> n/2 (n >= 4) and 2 -> n - 2 (n >= 8); input node 0, outputs n/2 - 1 and n - 1.
The 8-node ring is `bench_graph.py --graph ring`.

Placements: "1 server" (every node on it), "2 servers" (`plan_placement` over the two
servers' CPUs) and, for 8 nodes, "2 servers, unbalanced" (nodes 0-5 on the first server, 6-7
on the second). The layer's time loop runs on the first server; TensorFlow splits it into one
loop per server, which hand each other the spikes of the cut edges every step (Send/Recv).

Exchange: the same compiled loops (`dense_snns.fused`), forward and backward, over a step
that moves the same tensors between the servers as the graph's step does (`ExchangeStep`: each
node's state becomes the mean of its sources' states on its own server; no matmul, no neuron)
run on 1 and on 2 servers; the difference of the two, per step, is the exchange time. The bytes per step are counted from the plan: each (source node, other
server) pair carries a [batch, units] float32 spike tensor forward, and its gradient back in
training; the output nodes on the second server send their spikes to the first.

Projection (printed as one, with its assumptions): step time on D devices of a ring of N nodes
= (nodes per device) x (measured compute per node and step, on several devices x the slowdown
that reproduces the measured 2-server step) + (measured exchange latency + measured cost per
byte x bytes the busiest device exchanges), for D = 1 ... 64.

Every configuration's client is a child process connected to its cluster; the parent asks the
clients in turn (rotating) for one call each, so that other load hits both alike; ratios are
medians of per-round ratios. The servers and clients are stopped at the end, also on error.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from benchmarks.common import (
    REPO_ROOT,
    ServedChild,
    assign_graph_kernels,
    emit,
    fmt_ms,
    format_table,
    graph_functions,
    machine_info,
    python,
)

BYTES = 4  # float32


# -- graphs and plans (pure Python) -------------------------------------------------------------
def ring_graph(nodes: int, units: int, inputs: int, threshold: float):
    """A ring of `nodes` self-recurrent LIF nodes with skip edges (see the module docstring)."""
    from snns_as_gnn import SNNGraph

    conn = [sorted({i, (i - 1) % nodes}) for i in range(nodes)]
    if nodes >= 4:
        conn[nodes // 2].append(0)
    if nodes >= 8:
        conn[nodes - 2].append(2)
    outputs = sorted({nodes // 2 - 1, nodes - 1})
    return SNNGraph.from_adjacency(
        conn,
        units=units,
        inputs=[0],
        outputs=outputs,
        neuron="lif",
        neuron_config={"beta": 0.9, "threshold": float(threshold), "reset": "subtract"},
        input_size=inputs,
    )


def placements(graph, devices: Sequence[str]) -> Dict[str, Tuple[Dict[str, str], bool]]:
    """label -> (node name -> device, XLA), for a cluster of 1 or 2 servers. On 1 server the
    loop runs with and without XLA (either can be faster on one core); across servers it runs
    without (TensorFlow must split it by device)."""
    from snns_as_gnn import plan_placement

    names = graph.node_names
    if len(devices) == 1:
        everything = {name: devices[0] for name in names}
        return {"1 server": (everything, False), "1 server, XLA": (everything, True)}
    out = {"2 servers": (dict(plan_placement(graph, devices)), False)}
    if len(names) == 8:
        out["2 servers, unbalanced"] = ({name: devices[0 if i < 6 else 1] for i, name in enumerate(names)}, False)
    return out


def crossing_tensors(graph, placement: Dict[str, str], home: str) -> List[Tuple[str, str]]:
    """(node, destination device) of every [batch, units] tensor that crosses devices each
    forward step: a node's spikes to each other device that holds one of its targets (sent
    once per device), and an output node's spikes to `home`, where the loop collects them."""
    pairs = []
    for source, target in graph.edges:
        pair = (source, placement[target])
        if placement[target] != placement[source] and pair not in pairs:
            pairs.append(pair)
    for name in graph.outputs:
        pair = (name, home)
        if placement[name] != home and pair not in pairs:
            pairs.append(pair)
    return pairs


def bytes_per_step(graph, placement: Dict[str, str], home: str, batch: int) -> int:
    """Forward bytes crossing devices per step (training: the same again, as gradients)."""
    return sum(batch * graph.node(name).units * BYTES for name, _ in crossing_tensors(graph, placement, home))


# -- projection (pure Python) -------------------------------------------------------------------
def fit_exchange(points: Sequence[Tuple[int, float]]) -> Tuple[float, float]:
    """Least-squares (latency s, seconds per byte) of exchange time = latency + per_byte x bytes
    over (bytes, seconds) points (per_byte clipped at 0)."""
    if not points:
        return 0.0, 0.0
    if len(points) == 1 or len({b for b, _ in points}) == 1:
        return max(statistics.mean(s for _, s in points), 0.0), 0.0
    mb = statistics.mean(b for b, _ in points)
    ms = statistics.mean(s for _, s in points)
    slope = sum((b - mb) * (s - ms) for b, s in points) / sum((b - mb) ** 2 for b, _ in points)
    slope = max(slope, 0.0)
    return max(ms - slope * mb, 0.0), slope


def projection(
    nodes: int,
    units: int,
    batch: int,
    per_node: float,
    slowdown: float,
    latency: float,
    per_byte: float,
    training: bool,
) -> List[Dict[str, float]]:
    """Projected step time of a `ring_graph(nodes)` on D = 1, 2, 4, ... 64 devices (D <= nodes),
    contiguous blocks of nodes per device: compute = nodes per device x `per_node` (x
    `slowdown` on several devices); exchange = `latency` + `per_byte` x the bytes of the device
    that exchanges most (forward spikes; in training also their gradients)."""
    graph = ring_graph(nodes, units, units, 1.0)
    names = graph.node_names
    rows = []
    d = 1
    while d <= min(64, nodes):
        per_device = math.ceil(nodes / d)
        placement = {name: f"d{i // per_device}" for i, name in enumerate(names)}
        sent: Dict[str, int] = {}
        for name, dest in crossing_tensors(graph, placement, "d0"):
            size = batch * graph.node(name).units * BYTES * (2 if training else 1)
            sent[placement[name]] = sent.get(placement[name], 0) + size
            sent[dest] = sent.get(dest, 0) + size
        busiest = max(sent.values()) if sent else 0
        compute = per_device * per_node * (slowdown if d > 1 else 1.0)
        exchange = (latency + per_byte * busiest) if d > 1 else 0.0
        rows.append({"devices": d, "nodes_per_device": per_device, "compute": compute, "exchange": exchange})
        d *= 2
    one = rows[0]["compute"]
    for row in rows:
        row["step"] = row["compute"] + row["exchange"]
        row["speedup"] = one / row["step"]
    return rows


# -- client child -------------------------------------------------------------------------------
class ExchangeStep:
    """A step for `dense_snns.fused.compiled_recurrence` that moves between devices exactly the
    tensors a GraphSNN step moves (each node's state becomes the mean of its sources' states
    plus its input, on its own device; the output nodes' states are the output), with no
    matmul and no neuron: its loops, forward and backward, cost the exchange and the loop."""

    def __init__(self, graph, placement: Dict[str, str]):
        names = graph.node_names
        self.sources = [[names.index(s) for s in graph.sources(name)] or [i] for i, name in enumerate(names)]
        self.inputs = [names.index(name) for name in graph.inputs]
        self.outputs = [names.index(name) for name in graph.outputs]
        self.state_devices = [placement[name] for name in names]
        self.tensor_devices: List[str] = []

    def __call__(self, current, mask_t, states, tensors):
        import tensorflow as tf

        new = []
        for i, device in enumerate(self.state_devices):
            with tf.device(device):
                value = tf.add_n([states[j] for j in self.sources[i]]) * (1.0 / len(self.sources[i]))
                new.append(value + current if i in self.inputs else value)
        return tf.concat([new[i] for i in self.outputs], axis=-1), new


def exchange_loop(graph, placement: Dict[str, str], home: str, batch: int, steps: int):
    """({"forward", "train"} -> tf.function, its argument) of `ExchangeStep` over `steps` steps."""
    import tensorflow as tf

    from dense_snns import fused

    step = ExchangeStep(graph, placement)
    units = graph.node(graph.node_names[0]).units
    with tf.device(home):
        currents = tf.fill([steps, batch, units], 0.01)
    initial = []
    for name in graph.node_names:
        with tf.device(placement[name]):
            initial.append(tf.zeros([batch, graph.node(name).units]))

    def run(currents, initial):
        outputs, _ = fused.compiled_recurrence(step, currents, initial, jit_compile=False)
        return tf.reduce_sum(outputs)

    @tf.function
    def forward(args):
        return run(*args)

    @tf.function
    def train(args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss = run(*args)
        return tape.gradient(loss, args)

    return {"forward": forward, "train": train}, (currents, initial)


def serve(cfg: Dict[str, Any]) -> None:
    """Client child: connect to the cluster of `cfg`, build every configuration, warm up, then
    time one call per command ("<kind> <index>", kind forward/train/xforward/xtrain)."""
    import numpy as np
    import tensorflow as tf

    from snns_as_gnn import GraphSNN

    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": cfg["addresses"]}), rpc_layer="grpc"
    )
    tf.config.experimental_connect_to_cluster(resolver, make_master_device_default=False)
    devices = [f"/job:worker/task:{task}/device:CPU:0" for task in range(len(cfg["addresses"]))]
    home = devices[0]
    runs, infos = [], []
    for nodes in cfg["nodes"]:
        graph = ring_graph(nodes, cfg["units"], cfg["inputs"], cfg["threshold"])
        rng = np.random.default_rng(1234 + nodes)
        x_host = (rng.random((cfg["batch"], cfg["time"], cfg["inputs"])) < cfg["p"]).astype(np.float32)
        for label, (placement, xla) in placements(graph, devices).items():
            layer = GraphSNN(graph, placement=placement, jit_compile=xla)
            init = np.random.default_rng(99 + nodes)
            fns = graph_functions(layer, init.standard_normal(layer.cell.output_size).astype(np.float32))
            forward = fns["forward"]
            with tf.device(home):  # the variables, the input and the loop live on the first server
                x = tf.constant(x_host)
                forward(x)  # builds the layer (an eager call cannot run a loop on a remote device)
                assign_graph_kernels(layer, init)
            exchange, states = exchange_loop(graph, placement, home, cfg["batch"], cfg["time"])
            fns.update({"xforward": exchange["forward"], "xtrain": exchange["train"]})
            args = {"forward": x, "train": x, "xforward": states, "xtrain": states}
            start = time.perf_counter()
            with tf.device(home):
                for kind, fn in fns.items():
                    fn(args[kind])
                spikes = forward(x).numpy()
            infos.append(
                {
                    "nodes": nodes,
                    "label": label,
                    "placement": {d: [n for n in graph.node_names if placement[n] == d] for d in devices},
                    "bytes": bytes_per_step(graph, placement, home, cfg["batch"]),
                    "warmup_s": time.perf_counter() - start,
                    "output_rate": float(spikes.mean()),
                    "spike_checksum": float(spikes.sum()),
                }
            )
            runs.append((fns, args))
    emit({"ready": True, "configs": infos})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        kind, index = command[0], int(command[1])
        fns, args = runs[index]
        with tf.device(home):
            t0 = time.perf_counter()
            out = fns[kind](args[kind])
            tf.nest.map_structure(lambda t: t.numpy(), out)  # remote results: wait for them
            seconds = time.perf_counter() - t0
        emit({"kind": kind, "index": index, "seconds": seconds})


# -- parent -------------------------------------------------------------------------------------
class Client(ServedChild):
    """The client child process of one cluster, driven one call at a time over stdin/stdout."""

    def __init__(self, name: str, cfg: Dict[str, Any]):
        script = os.path.join(REPO_ROOT, "benchmarks", "bench_graph.py")
        super().__init__([python(), script, "--serve-cluster", json.dumps(cfg)], f"{name} cluster client")
        self.name = name
        self.configs: List[Dict[str, Any]] = []

    def call(self, kind: str, index: int, round_: int) -> Dict[str, Any]:
        return self.request(f"{kind} {index}", round=round_)

    def seconds(self, kind: str, index: int) -> Dict[int, float]:
        return {c["round"]: c["seconds"] for c in self.calls if c["kind"] == kind and c["index"] == index}


def median(values) -> Optional[float]:
    values = list(values)
    return statistics.median(values) if values else None


def paired(a: Dict[int, float], b: Dict[int, float]) -> Optional[float]:
    """Median over rounds of a / b."""
    return median(a[r] / b[r] for r in a if r in b)


def run(args) -> int:
    from dense_snns.distributed import LocalCluster

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print("bench_graph --cluster needs 2 cores (one per server)", file=sys.stderr)
        return 2
    base = {
        "units": args.units,
        "batch": args.batch,
        "time": args.time,
        "inputs": args.inputs,
        "p": args.p,
        "threshold": args.threshold,
        "nodes": args.nodes,
    }
    info = machine_info()
    print(
        f"bench_graph --cluster: rings of {args.nodes} nodes x {args.units} LIF, batch {args.batch}, "
        f"T={args.time}, input {args.inputs} (p={args.p}); servers: 1 intra-op thread, one core each "
        f"(cores {cores[:2]}); the clients only dispatch"
    )
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg']}")
    start = time.time()
    one_cluster = LocalCluster(1, cores=[[cores[0]]], intra_op_threads=1, start_timeout=180)
    two_cluster = LocalCluster(2, cores=[[cores[0]], [cores[1]]], intra_op_threads=1, start_timeout=180)
    clients: List[Client] = []
    try:
        with one_cluster, two_cluster:
            one = Client("1-server", dict(base, addresses=one_cluster.addresses))
            clients.append(one)
            two = Client("2-server", dict(base, addresses=two_cluster.addresses))
            clients.append(two)
            for client in clients:
                client.configs = client.read()["configs"]
                for c in client.configs:
                    print(
                        f"  {c['nodes']} nodes, {c['label']}: ready after {c['warmup_s']:.0f} s, "
                        f"output rate {c['output_rate']:.3f}",
                        flush=True,
                    )
            work = [(one, i) for i in range(len(one.configs))] + [(two, i) for i in range(len(two.configs))]
            for r in range(args.rounds):
                order = work[r % len(work) :] + work[: r % len(work)]
                for kind in ("forward", "train", "xforward", "xtrain"):
                    for client, i in order:
                        client.call(kind, i, r)
                one_cluster.check()
                two_cluster.check()
                print(f"  round {r + 1}/{args.rounds} done ({time.time() - start:.0f} s)", flush=True)
            return report(args, one, two, info, start)
    finally:
        for client in clients:
            client.close()


def report(args, one: Client, two: Client, info, start) -> int:
    def index_of(client, nodes, label):
        return next(i for i, c in enumerate(client.configs) if (c["nodes"], c["label"]) == (nodes, label))

    rows, ratio_rows, mismatches, points = [], [], [], {"forward": [], "train": []}
    per_node, two_server = {}, {}
    for i, c in enumerate(two.configs):
        plain, xla = index_of(one, c["nodes"], "1 server"), index_of(one, c["nodes"], "1 server, XLA")
        for j in (plain, xla):
            if c["spike_checksum"] != one.configs[j]["spike_checksum"]:
                mismatches.append(f"{c['nodes']} nodes, {c['label']}: spikes differ from {one.configs[j]['label']}")
        row = [c["nodes"], c["label"], f"{c['bytes'] / 1024:.0f}"]
        ratio_row = [c["nodes"], c["label"]]
        for kind in ("forward", "train"):
            t_plain, t_xla, t2 = (
                median(client.seconds(kind, k).values()) for client, k in ((one, plain), (one, xla), (two, i))
            )
            best = plain if t_plain <= t_xla else xla
            x1, x2 = one.seconds("x" + kind, plain), two.seconds("x" + kind, i)
            exchange = median(x2[r] - x1[r] for r in x2 if r in x1) / args.time
            step = t2 / args.time
            points[kind].append((c["bytes"] * (2 if kind == "train" else 1), exchange))
            per_node[(c["nodes"], kind)] = min(t_plain, t_xla) / args.time / c["nodes"]
            if c["label"] == "2 servers":
                two_server[(c["nodes"], kind)] = (step, c["bytes"] * (2 if kind == "train" else 1))
            row += [
                fmt_ms(t_plain),
                fmt_ms(t_xla),
                fmt_ms(t2),
                f"{exchange * 1e3:.2f}",
                f"{100 * exchange / step:.0f}%",
            ]
            ratio_row += [
                f"{paired(one.seconds(kind, plain), two.seconds(kind, i)):.2f}x",
                f"{paired(one.seconds(kind, xla), two.seconds(kind, i)):.2f}x",
                f"{paired(one.seconds(kind, best), two.seconds(kind, i)):.2f}x",
            ]
        rows.append(row)
        ratio_rows.append(ratio_row)
    print()
    print(
        f"Median ms per call over {args.rounds} rounds (one call = batch {args.batch} x {args.time} steps). "
        "exch ms/step: per-step time of the exchange-only loop on 2 servers minus on 1 server; "
        "exch share: of the 2-server step. KiB/step: forward spikes crossing servers (training sends as "
        "much again as gradients)."
    )
    headers = ["nodes", "plan", "KiB/step"]
    for kind in ("fwd", "train"):
        headers += [f"{kind} 1 srv", f"{kind} 1 srv XLA", f"{kind} 2 srv", f"{kind} exch ms/step", f"{kind} exch share"]
    print(format_table(headers, rows))
    print()
    print("2 servers / 1 server speed (step rate ratio, median of per-round ratios; best = the faster 1-server run):")
    print(
        format_table(
            [
                "nodes",
                "plan",
                "fwd vs 1 srv",
                "fwd vs XLA",
                "fwd vs best",
                "train vs 1 srv",
                "train vs XLA",
                "train vs best",
            ],
            ratio_rows,
        )
    )
    for c in two.configs:
        print(f"  {c['nodes']} nodes, {c['label']}: {c['placement']}")

    largest = max(args.nodes)
    print()
    print(
        f"Projection (not measured) for a ring of 64 nodes x {args.units} like the above on D devices, "
        "assuming: each device computes its nodes one after another at the per-node cost measured "
        f"on 1 server ({largest} nodes, the faster of the two runs), slowed on several devices by the "
        f"factor that makes the balanced {largest}-node 2-server step come out as measured (shared "
        "caches, waits); device pairs exchange in parallel, a device's exchange costs latency + "
        "per-byte x its bytes (both fitted to the exchange-only loops above); contiguous blocks of "
        "the ring per device; no stragglers."
    )
    for kind in ("forward", "train"):
        latency, per_byte = fit_exchange(points[kind])
        cost = per_node[(largest, kind)]
        step, sent = two_server[(largest, kind)]
        slowdown = max((step - latency - per_byte * sent) / (cost * largest / 2), 1.0)
        print(
            f"  {kind}: {cost * 1e3:.3f} ms per node and step on 1 server, x{slowdown:.2f} on several; "
            f"exchange {latency * 1e3:.3f} ms + {per_byte * 1e9:.3f} ms/MB"
        )
        table = projection(64, args.units, args.batch, cost, slowdown, latency, per_byte, kind == "train")
        print(
            format_table(
                ["devices", "nodes/device", "compute ms", "exchange ms", "step ms", "speedup"],
                [
                    [
                        r["devices"],
                        r["nodes_per_device"],
                        f"{r['compute'] * 1e3:.2f}",
                        f"{r['exchange'] * 1e3:.2f}",
                        f"{r['step'] * 1e3:.2f}",
                        f"{r['speedup']:.1f}x",
                    ]
                    for r in table
                ],
            )
        )
    print(f"total {time.time() - start:.0f} s; load average now {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "args": vars(args),
                    "configs": {c.name: c.configs for c in (one, two)},
                    "calls": {c.name: c.calls for c in (one, two)},
                },
                f,
                indent=2,
            )
    for line in mismatches:
        print("WARNING:", line)
    return 1 if mismatches else 0
