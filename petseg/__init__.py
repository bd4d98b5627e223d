"""petseg: semantic segmentation of the Oxford-IIIT Pet dataset (the library behind the petseg book)."""

from petseg import _torchvision_shim

__version__ = "0.1.0"

# Make ``import torchvision`` work on CPU-only machines with a CUDA-linked torchvision wheel
# (a no-op where torchvision is healthy; see petseg/_torchvision_shim.py).
_torchvision_shim.install()
