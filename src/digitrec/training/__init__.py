"""Training: the options and recipes (config.py, torch-free), the resume state (state.py),
several processes under torchrun (distributed.py) and the loop itself (loop.py)."""
