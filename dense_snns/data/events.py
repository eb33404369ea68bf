"""Event-camera data: N-MNIST binary files and DVS-style ``(x, y, polarity, t)`` event arrays,
binned into spike rasters inside `tf.data`.

Events are NumPy structured arrays with the fields ``x``, ``y`` (pixel column and row),
``p`` (polarity: 0 OFF, 1 ON) and ``t`` (time stamp in microseconds), one array per sample:
the layout `tonic` and most event-camera tools use. `sensor_size` is ``(width, height)``:
the x and y extents of the sensor.

N-MNIST (Orchard et al., 2015; 34 x 34 ATIS sensor, about 300 ms per sample) comes as one
binary file per sample in ``<root>/Train/<digit>/*.bin`` and ``<root>/Test/<digit>/*.bin``.
Every event is 40 bits, big-endian: bits 39-32 x, 31-24 y, 23 polarity, 22-0 time stamp
in microseconds; an entry with y = 240 marks a time-stamp overflow. Download the archive (Train.zip and Test.zip from the dataset's page,
https://www.garrickorchard.com/datasets/n-mnist), unzip both into one folder and pass it as
`root` to `nmnist_dataset`.

Binning: `events_to_frames` cuts ``[0, duration)`` microseconds into `nb_steps` bins, in
integer arithmetic (events at or after `duration` land in the last bin), optionally pools
``downsample x downsample`` pixels into one, and gives [time, height, width, polarity]
rasters (the layout of `SNNConv2D`) or, with ``flatten=True``, [time, height * width *
polarity] (the layout of `SNNDense`).
"""

from __future__ import annotations

import os
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ..compat import numpy_function
from ..validation import check_positive_int, check_seed

__all__ = [
    "EVENT_DTYPE",
    "NMNIST_SENSOR_SIZE",
    "decode_nmnist",
    "events_dataset",
    "events_to_frames",
    "from_tonic",
    "nmnist_dataset",
    "nmnist_files",
    "read_nmnist",
]

#: Events of one sample: pixel column and row, polarity (0 OFF, 1 ON), time in microseconds.
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])

#: (width, height) of the ATIS sensor crop of N-MNIST.
NMNIST_SENSOR_SIZE = (34, 34)

#: N-MNIST samples last about 300 ms: the default binning window, in microseconds.
NMNIST_DURATION_US = 300_000

_EVENT_BYTES = 5
_OVERFLOW_Y = 240
#: Microseconds added to the time stamps after an overflow marker (y = 240).
OVERFLOW_US = 2**13


def decode_nmnist(data: bytes, name: str = "<bytes>", sensor_size: Tuple[int, int] = NMNIST_SENSOR_SIZE) -> np.ndarray:
    """Decode the bytes of one N-MNIST file into events (`EVENT_DTYPE`).

    Raises:
        ValueError: naming `name` and the byte offset, if the length is not a whole number of
            5-byte events (a truncated file) or an event lies outside `sensor_size` (a
            corrupt file, or not an N-MNIST file).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    whole = raw.size - raw.size % _EVENT_BYTES
    if whole != raw.size:
        raise ValueError(
            f"{name}: {raw.size} bytes is not a whole number of 5-byte events: the file is truncated, "
            f"its last event starts at byte offset {whole} and has only {raw.size - whole} of its 5 bytes"
        )
    fields = raw.reshape(-1, _EVENT_BYTES).astype(np.int64)
    times = ((fields[:, 2] & 0x7F) << 16) | (fields[:, 3] << 8) | fields[:, 4]
    # y = 240 marks a time-stamp overflow, not an event: every later time stamp is raised by
    # OVERFLOW_US (the convention of the dataset's own reader).
    overflow = fields[:, 1] == _OVERFLOW_Y
    times = times + np.cumsum(overflow) * OVERFLOW_US
    kept = np.flatnonzero(~overflow)
    fields, times = fields[kept], times[kept]
    events = np.empty(fields.shape[0], EVENT_DTYPE)
    events["x"] = fields[:, 0]
    events["y"] = fields[:, 1]
    events["p"] = fields[:, 2] >> 7
    events["t"] = times
    width, height = sensor_size
    outside = np.flatnonzero((events["x"] >= width) | (events["y"] >= height))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"{name}: the event at byte offset {_EVENT_BYTES * int(kept[i])} has x={int(events['x'][i])}, "
            f"y={int(events['y'][i])}, outside the {width} x {height} sensor: the file is corrupt "
            "or not an N-MNIST file"
        )
    return events


def read_nmnist(path, sensor_size: Tuple[int, int] = NMNIST_SENSOR_SIZE) -> np.ndarray:
    """The events (`EVENT_DTYPE`) of one N-MNIST binary file; see `decode_nmnist`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"N-MNIST file not found: path={path!r}")
    with open(path, "rb") as f:
        return decode_nmnist(f.read(), repr(path), sensor_size)


def _as_events(events) -> np.ndarray:
    """A structured array with x, y, p, t (any integer types), or a dict / tuple of arrays."""
    if isinstance(events, dict):
        events = tuple(events[k] for k in "xypt")
    if isinstance(events, tuple):
        if len(events) != 4:
            raise ValueError(f"events as a tuple must be (x, y, p, t), got {len(events)} arrays")
        x, y, p, t = (np.asarray(a) for a in events)
        if not (x.shape == y.shape == p.shape == t.shape) or x.ndim != 1:
            raise ValueError(f"x, y, p, t must be 1-D arrays of one length, got shapes {[a.shape for a in events]}")
        out = np.empty(x.shape[0], EVENT_DTYPE)
        out["x"], out["y"], out["p"], out["t"] = x, y, p, t
        return out
    events = np.asarray(events)
    names = events.dtype.names or ()
    missing = [k for k in "xypt" if k not in names]
    if missing:
        raise ValueError(f"events must have the fields x, y, p, t; missing {missing} (fields: {list(names)})")
    return events


def events_to_frames(
    events,
    nb_steps: int,
    sensor_size: Tuple[int, int],
    duration: Optional[float] = None,
    downsample: int = 1,
    polarity: bool = True,
    binary: bool = True,
    flatten: bool = False,
) -> np.ndarray:
    """Bin the events of one sample into spike frames.

    Args:
        events: structured array with fields x, y, p, t (t in microseconds), or a dict or
            tuple of the four arrays.
        nb_steps: time bins.
        sensor_size: (width, height) of the sensor.
        duration: window in microseconds, cut into `nb_steps` bins; default: up to the last
            event of this sample.
        downsample: pool `downsample` x `downsample` pixels into one (a partial block at the
            edge is kept).
        polarity: two channels (OFF, ON); False: one channel of both.
        binary: 0/1 entries; False: event counts.
        flatten: [time, height * width * channels] instead of [time, height, width, channels].

    Returns: float32 frames [nb_steps, ceil(height / downsample), ceil(width / downsample),
    channels] (or flattened).
    """
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    downsample = check_positive_int(downsample, "downsample")
    width, height = (check_positive_int(s, "sensor_size") for s in sensor_size)
    events = _as_events(events)
    x, y, p, t = (events[k].astype(np.int64) for k in "xypt")
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height) | (p < 0) | (p > 1) | (t < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"event {i} (x={x[i]}, y={y[i]}, p={p[i]}, t={t[i]}) is outside the {width} x {height} sensor, "
            "has a polarity other than 0/1 or a negative time"
        )
    w, h = -(-width // downsample), -(-height // downsample)
    channels = 2 if polarity else 1
    units = ((y // downsample) * w + x // downsample) * channels + (p if polarity else 0)
    if duration is None:
        duration = int(t.max()) + 1 if t.size else 1
    duration = int(round(duration))
    if duration <= 0:
        raise ValueError(f"duration must be a positive number of microseconds, got duration={duration!r}")
    # Integer bins of duration / nb_steps microseconds, exact at every boundary; events at or
    # after the end of the window go into the last bin.
    steps = np.minimum(t * nb_steps // duration, nb_steps - 1)
    frames = np.zeros((nb_steps, h * w * channels), np.float32)
    np.add.at(frames, (steps, units), 1.0)
    if binary:
        frames = np.minimum(frames, 1.0)
    return frames if flatten else frames.reshape(nb_steps, h, w, channels)


def _frame_shape(nb_steps, sensor_size, downsample, polarity, flatten) -> Tuple[int, ...]:
    width, height = sensor_size
    w, h = -(-width // downsample), -(-height // downsample)
    channels = 2 if polarity else 1
    return (nb_steps, h * w * channels) if flatten else (nb_steps, h, w, channels)


def nmnist_files(root, split: str = "train") -> Tuple[List[str], np.ndarray]:
    """(paths, labels) of the N-MNIST samples of `split` ("train" or "test") under `root`
    (``<root>/Train/<digit>/*.bin``; the folder name's case does not matter)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got split={split!r}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"N-MNIST folder not found: root={root!r}")
    folders = [d for d in os.listdir(root) if d.lower() == split and os.path.isdir(os.path.join(root, d))]
    if not folders:
        raise FileNotFoundError(
            f"{root!r} has no {split.capitalize()}/ folder: unzip the N-MNIST Train.zip and Test.zip into it"
        )
    base = os.path.join(root, folders[0])
    paths, labels = [], []
    for digit in range(10):
        folder = os.path.join(base, str(digit))
        if not os.path.isdir(folder):
            continue
        names = sorted(n for n in os.listdir(folder) if n.endswith(".bin"))
        paths += [os.path.join(folder, n) for n in names]
        labels += [digit] * len(names)
    if not paths:
        raise FileNotFoundError(f"no .bin files in {base!r}/<digit>/")
    return paths, np.asarray(labels, np.int32)


def nmnist_dataset(
    root,
    split: str = "train",
    nb_steps: int = 30,
    duration: Optional[float] = NMNIST_DURATION_US,
    downsample: int = 1,
    polarity: bool = True,
    flatten: bool = False,
    binary: bool = True,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: Optional[int] = None,
    max_samples: Optional[int] = None,
) -> tf.data.Dataset:
    """N-MNIST as a `tf.data.Dataset` of (frames [batch, nb_steps, ...], labels [batch]).

    Files are read and binned as the dataset is consumed (`events_to_frames` with these
    arguments, `NMNIST_SENSOR_SIZE`); with `shuffle`, the order of the files is reshuffled
    every epoch (from `seed`). `max_samples` takes the first samples of the (shuffled once)
    file list, for a quick run.
    """
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    downsample = check_positive_int(downsample, "downsample")
    batch_size = check_positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    paths, labels = nmnist_files(root, split)
    if max_samples is not None:
        max_samples = check_positive_int(max_samples, "max_samples")
        order = np.random.default_rng(seed).permutation(len(paths))[:max_samples]
        paths, labels = [paths[i] for i in order], labels[order]
    shape = _frame_shape(nb_steps, NMNIST_SENSOR_SIZE, downsample, polarity, flatten)

    def load(path):
        events = read_nmnist(path.decode() if isinstance(path, bytes) else str(path))
        return events_to_frames(events, nb_steps, NMNIST_SENSOR_SIZE, duration, downsample, polarity, binary, flatten)

    def load_tensor(path, label):
        frames = numpy_function(load, [path], tf.float32, stateful=False)
        frames.set_shape(shape)
        return frames, label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(load_tensor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def events_dataset(
    samples: Sequence,
    labels,
    sensor_size: Tuple[int, int],
    nb_steps: int,
    duration: Optional[float] = None,
    downsample: int = 1,
    polarity: bool = True,
    flatten: bool = False,
    binary: bool = True,
    batch_size: int = 32,
) -> tf.data.Dataset:
    """In-memory event samples (structured arrays or (x, y, p, t) tuples; see
    `events_to_frames`) and their labels as a `tf.data.Dataset` of (frames, labels)
    batches, binned as they are consumed."""
    labels = np.asarray(labels)
    if len(samples) != labels.shape[0]:
        raise ValueError(f"samples and labels must have one entry each, got {len(samples)} and {labels.shape[0]}")
    return _generated(
        lambda: zip(samples, labels), sensor_size, nb_steps, duration, downsample, polarity, flatten, binary, batch_size
    )


def from_tonic(
    dataset,
    nb_steps: int,
    sensor_size: Optional[Tuple[int, int]] = None,
    duration: Optional[float] = None,
    downsample: int = 1,
    polarity: bool = True,
    flatten: bool = False,
    binary: bool = True,
    batch_size: int = 32,
) -> tf.data.Dataset:
    """A `tonic` event dataset (indexable, items ``(events, target)`` with x, y, p, t fields;
    e.g. ``tonic.datasets.NMNIST(save_to=...)`` without a transform) as a `tf.data.Dataset`
    of (frames, labels) batches. `sensor_size` defaults to the dataset's own (tonic gives
    (width, height, polarities))."""
    if sensor_size is None:
        if not hasattr(dataset, "sensor_size"):
            raise ValueError("the dataset has no sensor_size: pass sensor_size=(width, height)")
        sensor_size = tuple(dataset.sensor_size)[:2]

    def items():
        for i in range(len(dataset)):
            events, target = dataset[i]
            yield events, target

    return _generated(items, sensor_size, nb_steps, duration, downsample, polarity, flatten, binary, batch_size)


def _generated(items, sensor_size, nb_steps, duration, downsample, polarity, flatten, binary, batch_size):
    nb_steps = check_positive_int(nb_steps, "nb_steps")
    downsample = check_positive_int(downsample, "downsample")
    batch_size = check_positive_int(batch_size, "batch_size")
    sensor_size = tuple(int(s) for s in sensor_size)
    shape = _frame_shape(nb_steps, sensor_size, downsample, polarity, flatten)

    def frames() -> Iterable:
        for events, label in items():
            x = events_to_frames(events, nb_steps, sensor_size, duration, downsample, polarity, binary, flatten)
            yield x, np.int32(label)

    signature = (tf.TensorSpec(shape, tf.float32), tf.TensorSpec((), tf.int32))
    ds = tf.data.Dataset.from_generator(frames, output_signature=signature)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
