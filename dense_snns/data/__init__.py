"""Data sets and spike encoders: randman, Spiking Heidelberg Digits, N-MNIST and other
event-camera data, scikit-learn's digits, rate/latency coding.

All spike tensors are time-major within a sample: [sample, time step, unit].
"""

from __future__ import annotations

from dense_snns.data.digits import DIGITS_ENCODINGS, digits_dataset, load_digits_split
from dense_snns.data.encoders import events_to_raster, latency_encode, rate_encode
from dense_snns.data.events import (
    decode_nmnist,
    events_dataset,
    events_to_frames,
    from_tonic,
    nmnist_dataset,
    read_nmnist,
)
from dense_snns.data.randman import make_randman, randman_dataset, randman_rasters
from dense_snns.data.shd import load_shd, shd_dataset

__all__ = [
    "DIGITS_ENCODINGS",
    "digits_dataset",
    "load_digits_split",
    "decode_nmnist",
    "events_dataset",
    "events_to_frames",
    "from_tonic",
    "nmnist_dataset",
    "read_nmnist",
    "events_to_raster",
    "latency_encode",
    "load_shd",
    "make_randman",
    "randman_dataset",
    "randman_rasters",
    "rate_encode",
    "shd_dataset",
]
