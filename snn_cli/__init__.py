"""The ``snn`` command line: train a spiking network of the library on a data set from the shell.

    snn train --data randman|digits|shd|nmnist --model dense|sparse|graph|conv --epochs N --out DIR
    snn export-nir MODEL.keras OUT.nir      snn import-nir IN.nir OUT.keras

(also ``python -m snn_cli ...``). It sits above the three packages and imports all of them.
"""

from .cli import main

__all__ = ["main"]
