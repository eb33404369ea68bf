"""Data sets and spike encoders: randman, Spiking Heidelberg Digits, rate/latency coding.

All spike tensors are time-major within a sample: [sample, time step, unit].
"""

from __future__ import annotations

from dense_snns.data.encoders import events_to_raster, latency_encode, rate_encode
from dense_snns.data.randman import make_randman, randman_dataset, randman_rasters
from dense_snns.data.shd import load_shd, shd_dataset

__all__ = [
    "events_to_raster",
    "latency_encode",
    "load_shd",
    "make_randman",
    "randman_dataset",
    "randman_rasters",
    "rate_encode",
    "shd_dataset",
]
