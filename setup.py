"""Installs the dense_snns, sparse_snns and snns_as_gnn packages.

TensorFlow comes through an extra so that an existing TensorFlow (e.g. Graphcore's IPU
wheel) is never replaced: `pip install .[cpu]`, `.[gpu]`, or plain `pip install .` on a
machine that already has TensorFlow.
"""

from setuptools import find_packages, setup

setup(
    name="dense-snns",
    version="0.1.0",
    description="Efficient spiking neural networks for TensorFlow/Keras: LIF cells, fused layers, sparse spikes, graphs of blocks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(
        include=[
            "dense_snns",
            "dense_snns.*",
            "sparse_snns",
            "sparse_snns.*",
            "snns_as_gnn",
            "snns_as_gnn.*",
            "snn_cli",
        ]
    ),
    # the C++ kernels are compiled at first use
    package_data={"dense_snns": ["ops/*.cc", "ops/*.h"], "sparse_snns": ["ops/*.cc", "ops/*.h"]},
    entry_points={"console_scripts": ["snn = snn_cli.cli:main"]},
    python_requires=">=3.8",
    install_requires=["numpy>=1.19,<3"],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16,<2.22"],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.22"],
        # Graphcore's TensorFlow base (its SDK 3.4: TensorFlow 2.6.3, Keras 2.6, Python 3.8),
        # for the suite's third leg; the IPU wheel itself comes with the Poplar SDK
        "tf26": ["tensorflow-cpu==2.6.3", "keras==2.6.0", "protobuf<3.21", "numpy>=1.19.2,<1.20"],
        "test-tf26": [
            "pytest>=7,<9",
            "hypothesis>=6.50,<7",
            "scikit-learn>=1.0,<1.4",
            "tensorboard>=2.6,<2.7",
            "h5py>=2.10,<3.2",
            "matplotlib>=3.3,<3.7",
        ],
        "test": [
            "pytest>=7,<10",
            "hypothesis>=6.50,<7",
            "tf-keras>=2.16,<2.22",
            "vermin>=1.5,<2",
            "ruff==0.17.6",  # pinned: `ruff format --check` must format as it did when the code was written
            "scikit-learn>=1.0,<2",  # the digits example's data
            "tensorboard>=2.16",  # its reader checks the event files of SpikeTensorBoard
            "h5py>=2.10,<4",
            "matplotlib>=3.3,<4",
            "nir>=1.0,<2",
        ],
        # optional features, each imported where it is used with a message naming its extra
        "plots": ["matplotlib>=3.3,<4"],
        "shd": ["h5py>=2.10,<4"],
        "examples": ["scikit-learn>=1.0,<2", "matplotlib>=3.3,<4"],
        "tensorboard": ["tensorboard>=2.16"],
        "tonic": ["tonic"],
        "nir": ["nir>=1.0,<2"],
    },
    license="Apache-2.0",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
