"""Devices: Graphcore IPUs when Graphcore's TensorFlow (the Poplar SDK's wheel) is installed,
the `tf.distribute` strategy of this machine otherwise.

    from dense_snns import devices
    if devices.ipu_available():
        devices.configure_ipus(2)                 # or configure_ipus(1, emulator=True)
    strategy = devices.get_strategy()             # IPUStrategy, MirroredStrategy or the default
    with strategy.scope():
        model = build_model(); model.compile(...)

Importing this module never fails. Asking for IPUs without Graphcore's TensorFlow raises an
`IPUUnavailableError` that says what is missing and where it comes from. The IPU API used
is Graphcore's documented one (Poplar SDK 3.4, TensorFlow 2.6.3): ``from tensorflow.python
import ipu``, `ipu.config.IPUConfig` (``auto_select_ipus``, ``ipu_model.*``,
``configure_ipu_system()``), `ipu.ipu_strategy.IPUStrategy`. The IPU Model emulator is
chosen by the environment, ``TF_POPLAR_FLAGS=--use_ipu_model``, which `configure_ipus`
sets when ``emulator=True``.

A `GraphSNN` split over several IPUs places its nodes on the shards of the one multi-IPU
device: ``GraphSNN(graph, placement=plan_placement(graph, ipu_shards(2)))`` (a Keras pipeline
cannot split one time loop; shards run the nodes of a step in parallel and exchange the
spikes of cut edges once per step).

On an IPU everything runs as XLA (``jit_compile``), where the library's C++ CPU kernels
have no place: every layer's ``implementation="auto"`` then takes its compiled TensorFlow
path by itself (`in_xla_context`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from typing import List, Optional

import tensorflow as tf

__all__ = [
    "IPUUnavailableError",
    "check_ipu_shard",
    "configure_ipus",
    "configured_ipus",
    "device_scope",
    "get_strategy",
    "ipu_available",
    "ipu_module",
    "ipu_shard_index",
    "ipu_shards",
]

#: Where the IPU API comes from, for the error without it.
_WHERE = (
    "Graphcore's TensorFlow, which ships only inside the Poplar SDK (https://www.graphcore.ai/downloads): "
    "install its tensorflow wheel (and keras 2.6 and ipu_tensorflow_addons wheels) into this environment "
    "and source the SDK's enable.sh"
)


class IPUUnavailableError(RuntimeError):
    """IPUs were asked for where Graphcore's TensorFlow is not installed."""


#: The number of IPUs `configure_ipus` attached in this process (None: not called).
_configured_ipus: Optional[int] = None

#: How a placement names IPU shard k of the one multi-IPU device (see `ipu_shards`).
_SHARD = re.compile(r"ipu_shard:(\d+)")


def ipu_module():
    """Graphcore's `tensorflow.python.ipu`, or None where TensorFlow has no IPU API."""
    try:
        return importlib.import_module("tensorflow.python.ipu")
    except ImportError:
        return None


def ipu_available() -> bool:
    """True where Graphcore's TensorFlow (with its IPU API) is installed."""
    return ipu_module() is not None


def _require_ipu():
    ipu = ipu_module()
    if ipu is None:
        raise IPUUnavailableError(
            f"IPUs need {_WHERE}; this TensorFlow ({tf.__version__}) has no tensorflow.python.ipu"
        )
    return ipu


def configure_ipus(
    num_ipus: int = 1,
    emulator: bool = False,
    tiles_per_ipu: Optional[int] = None,
    compile_ipu_code: Optional[bool] = None,
):
    """Attach `num_ipus` IPUs (one TensorFlow device /device:IPU:0 for all of them) and return
    the `IPUConfig` applied. With ``emulator=True`` the IPU Model runs on the CPU
    (``TF_POPLAR_FLAGS=--use_ipu_model``, before the system is configured); `tiles_per_ipu`
    and `compile_ipu_code` set its ``ipu_model`` options (small tile counts compile fast)."""
    if isinstance(num_ipus, bool) or not isinstance(num_ipus, int) or num_ipus < 1:
        raise ValueError(f"num_ipus must be a positive integer, got {num_ipus!r}")
    if not emulator and (tiles_per_ipu is not None or compile_ipu_code is not None):
        raise ValueError("tiles_per_ipu and compile_ipu_code configure the IPU Model: pass emulator=True")
    ipu = _require_ipu()
    if emulator:
        flags = os.environ.get("TF_POPLAR_FLAGS", "")
        if "--use_ipu_model" not in flags:
            os.environ["TF_POPLAR_FLAGS"] = (flags + " --use_ipu_model").strip()
    config = ipu.config.IPUConfig()
    config.auto_select_ipus = num_ipus
    if tiles_per_ipu is not None:
        config.ipu_model.tiles_per_ipu = int(tiles_per_ipu)
    if compile_ipu_code is not None:
        config.ipu_model.compile_ipu_code = bool(compile_ipu_code)
    config.configure_ipu_system()
    global _configured_ipus
    _configured_ipus = num_ipus
    return config


def configured_ipus() -> Optional[int]:
    """The number of IPUs `configure_ipus` attached in this process, or None."""
    return _configured_ipus


def ipu_shards(num_ipus: int) -> List[str]:
    """Device names of the `num_ipus` shards (IPUs) of the one multi-IPU TensorFlow device:
    ``["ipu_shard:0", ...]``, for a `GraphSNN` placement (``plan_placement(graph,
    ipu_shards(2))``). Ops placed on shard k run on IPU k inside the one compiled program
    (Graphcore's ``ipu.scopes.ipu_shard(k)``), their gradients too."""
    if isinstance(num_ipus, bool) or not isinstance(num_ipus, int) or num_ipus < 1:
        raise ValueError(f"num_ipus must be a positive integer, got {num_ipus!r}")
    return [f"ipu_shard:{k}" for k in range(num_ipus)]


def ipu_shard_index(device: str) -> Optional[int]:
    """k for ``"ipu_shard:k"``; None for any other device name."""
    match = _SHARD.fullmatch(str(device).strip())
    return int(match.group(1)) if match else None


def check_ipu_shard(device: str, what: str) -> None:
    """For a shard name (`ipu_shards`): an `IPUUnavailableError` without Graphcore's
    TensorFlow, a ValueError when the shard is beyond the IPUs `configure_ipus` attached.
    `what` names the user of the device in the messages."""
    index = ipu_shard_index(device)
    if index is None:
        return
    if ipu_module() is None:
        raise IPUUnavailableError(
            f"{what} is placed on IPU shard {device!r}: IPUs need {_WHERE}; this TensorFlow "
            f"({tf.__version__}) has no tensorflow.python.ipu"
        )
    if _configured_ipus is not None and index >= _configured_ipus:
        raise ValueError(
            f"{what} is placed on IPU shard {device!r}, but configure_ipus attached {_configured_ipus} IPU(s)"
        )


def device_scope(device: Optional[str]):
    """The scope that places ops on `device`: Graphcore's ``ipu.scopes.ipu_shard(k)`` for
    ``"ipu_shard:k"``, ``tf.device(device)`` for other names, nothing for None or ""."""
    if not device:
        return contextlib.nullcontext()
    index = ipu_shard_index(device)
    if index is None:
        return tf.device(device)
    return _require_ipu().scopes.ipu_shard(index)


def get_strategy(ipu: Optional[bool] = None):
    """The strategy to build and train models in: `IPUStrategy` on IPUs (``ipu=True``, or by
    default where Graphcore's TensorFlow is installed), else `MirroredStrategy` over this
    machine's GPUs when there are several, else TensorFlow's default strategy."""
    if ipu is None:
        ipu = ipu_available()
    if ipu:
        return _require_ipu().ipu_strategy.IPUStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.get_strategy()
