"""Datasets: the registry of MNIST-format datasets (registry.py), fetching and checking their
files (fetch.py), the IDX format (idx.py), and loading them as tensors with the fixed
validation split (load.py). Import from the submodules: this package imports nothing, so that
the CLI can read the registry without loading PyTorch."""
