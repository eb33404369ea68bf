"""Train the main job (randman, two SNN blocks and a readout) on Graphcore IPUs, one pipeline
stage per block.

The model is `train_randman.py`'s. Its blocks become pipeline stages: by default one per SNN
block, the readout joining the last (`dense_snns.pipelining.manual_stages`); ``--stages k``
balances k stages by FLOPs per step instead (`plan_stages`). On IPUs (Graphcore's
TensorFlow from the Poplar SDK 3.4, see the README's "Running on Graphcore IPUs") the model is
built in an `IPUStrategy`, stage i runs on IPU i with gradient accumulation over
2 x stages micro-batches, and ``steps_per_execution`` is a multiple of it, as Graphcore's
pipelining requires; batches have a fixed shape (``drop_remainder``). ``--emulator`` runs the
same on the IPU Model (CPU emulation, small tile count). Where Graphcore's TensorFlow is not
installed, the same stages run as ``tf.device`` scopes on this machine's CPU devices, and the
run says so (``--require-ipu`` makes that an error instead).

Outputs, in `--out` (default ``runs/ipu/``): a JSON summary (``summary.json``) with the
device, the stages, their costs, and the accuracies.

Run from the repository root::

    python examples/train_ipu.py                  # IPUs, or the CPU mapping without the SDK
    python examples/train_ipu.py --emulator       # the IPU Model
    python examples/train_ipu.py --quick          # smoke test, < 30 s on a CPU
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import _common as common  # noqa: E402
import train_randman  # noqa: E402
import dense_snns as snn  # noqa: E402
from dense_snns import compat, devices, keras  # noqa: E402
from dense_snns.data import randman_dataset  # noqa: E402
from dense_snns.pipelining import apply_stages, manual_stages, plan_stages  # noqa: E402

#: IPU Model tiles per IPU: small models compile in seconds on few tiles.
EMULATOR_TILES = 64


def stage_plan(model, stages):
    """One stage per SNN block (the readout with the last) or `stages` balanced stages."""
    if stages is None:
        blocks = [layer.name for layer in model.layers if isinstance(layer, snn.SNNDense)]
        assignment = {name: i for i, name in enumerate(blocks)}
        assignment["readout"] = len(blocks) - 1
        return manual_stages(model, assignment)
    return plan_stages(model, stages)


def fixed_batches(dataset, steps_per_execution):
    """The batches of `dataset` (fixed shape), as many as a multiple of `steps_per_execution`."""
    batches = int(dataset.cardinality())
    if batches < 0:  # tf.data.UNKNOWN_CARDINALITY or INFINITE_CARDINALITY
        raise SystemExit("the dataset's number of batches must be known and finite (e.g. no filter, no repeat())")
    usable = batches - batches % steps_per_execution
    if usable < steps_per_execution:
        raise SystemExit(
            f"{batches} batches are fewer than steps_per_execution={steps_per_execution}: "
            "use more samples or a smaller batch"
        )
    return dataset.take(usable)


def select_device(args):
    """'ipu', 'ipu-model' or 'cpu', after attaching the IPUs the stages need."""
    if not (devices.ipu_available() or args.require_ipu or args.emulator):
        print(
            "Graphcore's TensorFlow is not installed here: the stages run as tf.device scopes on this "
            "machine's CPU devices",
            flush=True,
        )
        return "cpu"
    kwargs = {"tiles_per_ipu": EMULATOR_TILES, "compile_ipu_code": False} if args.emulator else {}
    try:
        devices.configure_ipus(args.num_ipus, emulator=args.emulator, **kwargs)
    except devices.IPUUnavailableError as err:
        raise SystemExit(f"error: {err}") from None
    return "ipu-model" if args.emulator else "ipu"


def parse_args(argv=None):
    parser = common.argument_parser(
        __doc__, os.path.join("runs", "ipu"), "smoke test: 50 samples per class, 32+32 neurons, 1 epoch"
    )
    parser.add_argument("--stages", type=int, default=None, help="balanced stages (default: one per SNN block)")
    parser.add_argument("--emulator", action="store_true", help="run on the IPU Model (needs the Poplar SDK)")
    parser.add_argument("--require-ipu", action="store_true", help="fail instead of running on the CPU")
    parser.add_argument("--num-ipus", type=int, default=None, help="IPUs to attach (default: one per stage)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    config = dict(train_randman.CONFIG)
    if common.apply_quick(args):
        config["hidden"] = [32, 32]
    compat.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()

    # The plan depends only on the model's shapes: plan on a throwaway copy, then attach as
    # many IPUs as it has stages before anything is built on them.
    plan = stage_plan(train_randman.build_model(config), args.stages)
    if args.num_ipus is None:
        args.num_ipus = plan.num_stages
    device = select_device(args)
    strategy = devices.get_strategy(ipu=device != "cpu")
    steps = plan.gradient_accumulation
    with strategy.scope():
        model = train_randman.build_model(config)
        staged = apply_stages(model, plan)
        staged.compile(
            optimizer=keras.optimizers.Adam(config["learning_rate"]),
            loss=snn.TimeReducedCrossEntropy(config["loss"]),
            metrics=[snn.TimeReducedAccuracy(config["loss"], name="acc")],
            **plan.compile_kwargs(steps),
            **({"jit_compile": False} if snn.KERAS_3 else {}),
        )
    kwargs = common.randman_kwargs(config, args)
    train, test = (fixed_batches(d, steps) for d in randman_dataset(**kwargs, drop_remainder=True))
    history = staged.fit(train, epochs=args.epochs, validation_data=test, verbose=args.verbose, shuffle=False)
    train_time = time.time() - start
    train_logs = staged.evaluate(train, verbose=0, return_dict=True)
    test_logs = staged.evaluate(test, verbose=0, return_dict=True)
    summary = {
        "device": device,
        "stages": [list(names) for names in plan.stages],
        "stage_costs": [{"parameters": p, "flops_per_step": f} for p, f in plan.costs],
        "gradient_accumulation": plan.gradient_accumulation,
        "steps_per_execution": steps,
        "test_accuracy": float(test_logs["acc"]),
        "train_accuracy": float(train_logs["acc"]),
        **common.run_fields(args, start, train_time),
        "config": config,
        "history": common.history_dict(history),
    }
    json_path = common.write_summary(args.out, summary)
    print(f"device: {device}, stages: {summary['stages']}")
    print(f"test accuracy: {100 * summary['test_accuracy']:.2f}%")
    print(f"summary: {json_path}")
    return summary


if __name__ == "__main__":
    main()
