"""Probe stage: does this GPU, this PyTorch and this attention stack work for BGE-M3?"""

__version__ = "0.1.0"
