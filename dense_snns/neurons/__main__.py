"""``python -m dense_snns.neurons``: print the reference of the registered models (docs/NEURONS.md)."""

from . import reference_markdown

print(reference_markdown(), end="")
