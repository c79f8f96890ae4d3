"""Datasets: the registry of MNIST-format datasets (registry.py), fetching and checking their
files (fetch.py), the IDX format (idx.py), and loading them as tensors with the fixed
validation split (load.py); real handwriting published as text (USPS, Semeion: registered in
registry.REAL_SETS, parsed by textsets.py, split by writers and prepared as user images by
real.py). Import from the submodules: this package imports nothing, so that
the CLI can read the registry without loading PyTorch."""
