"""The training step captured once in a CUDA graph and replayed, for GPUs.

On a GPU a step of a network this small is almost all kernel-launch overhead (about 2.7 ms
for the anchor network on an H100, against a tenth of that in arithmetic). A CUDA graph
records every kernel of one step once, then replays them with one launch: the batch gather
(from a device-side permutation), augmentation, forward, loss, backward, Adam (capturable,
its learning rate a device tensor) and the learning-rate schedule, computed on the device
from a step counter that the graph itself advances. Nothing in the loop waits for the GPU.

`GraphStep` also runs without capture (`capture=False`): the same body, eagerly, on any
device. That is how the body is tested on CPU-only machines, against the ordinary step.
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .step import batch_loss


def lr_factor_tensor(cfg: TrainConfig, step: torch.Tensor, total: int) -> torch.Tensor:
    """`loop.lr_factor` computed on the device from a step counter (a 0-d float tensor)."""
    t = step / max(total, 1)
    if cfg.schedule == "constant":
        return torch.ones_like(t)
    if cfg.warmup > 0:
        warm = 0.1 + 0.9 * t / cfg.warmup
    else:
        warm = torch.ones_like(t)
    u = (t - cfg.warmup) / max(1 - cfg.warmup, 1e-9)
    decay = 0.5 * (1 + torch.cos(math.pi * u)) if cfg.schedule == "cosine" else (1.0 - u).clamp(min=0.0)
    return torch.where(t < cfg.warmup, warm, decay)


def supported(run) -> str | None:
    """None if `run` can train with a captured step, else why not."""
    from .distributed import dist_info

    if not run.device.startswith("cuda"):
        return "CUDA graphs need a CUDA device"
    if dist_info()[1] > 1:
        return "not under torchrun"
    if run.ema is not None:
        return "not with --ema (its update waits for the host)"
    if run.cfg.compile:
        return "not with --compile"
    if run.aug is not None and not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return "augmentation in a graph needs a newer PyTorch"
    return None


class GraphStep:
    """`step(batch) -> loss` like loop.train_step, for batches of `batch_size` indices."""

    def __init__(self, run, capture: bool = True, warm_steps: int = 3):
        self.run, self.cfg = run, run.cfg
        dev = run.device
        self.step = torch.zeros((), device=dev)  # steps taken, as a float: the schedule reads it
        self.step.fill_(float(run.scheduler.last_epoch))
        self.peaks = [float(g.get("initial_lr", g["lr"])) for g in run.optimizer.param_groups]
        for g in run.optimizer.param_groups:  # a device tensor the graph writes; Adam reads it there
            g["lr"] = torch.tensor(float(g["lr"]), device=dev)
            if capture:
                g["capturable"] = True
            g["foreach"] = False if not capture else g.get("foreach")
        self.idx = torch.zeros(run.cfg.batch_size, dtype=torch.long, device=dev)
        self.loss = torch.zeros((), device=dev)
        self.graph = None
        if capture:
            self._capture(warm_steps)

    def body(self, idx: torch.Tensor) -> torch.Tensor:
        """One step on the images `idx` indexes: everything on the device, nothing waits."""
        run, cfg = self.run, self.cfg
        factor = lr_factor_tensor(cfg, self.step, run.total_steps)
        for g, peak in zip(run.optimizer.param_groups, self.peaks):
            g["lr"].copy_(factor * peak)
        loss = batch_loss(run, idx, len(idx))
        run.optimizer.zero_grad(set_to_none=False)  # a graph keeps its gradient buffers
        loss.backward()
        run.optimizer.step()
        self.step.add_(1)
        return loss.detach()

    def _capture(self, warm_steps: int) -> None:
        """Warm up on a side stream (as CUDA graphs require), put every weight and optimiser
        state back, then record one step."""
        run = self.run
        saved_model = {k: v.clone() for k, v in run.model.state_dict().items()}
        saved_opt = {p: {k: v.clone() for k, v in s.items() if torch.is_tensor(v)}
                     for p, s in run.optimizer.state.items()}
        saved_step = self.step.clone()
        self.idx.copy_(torch.arange(len(self.idx), device=self.idx.device) % len(run.x_train))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warm_steps):
                self.body(self.idx)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        if run.aug is not None:
            self.graph.register_generator_state(run.aug_gen)
        with torch.cuda.graph(self.graph):
            self.loss.copy_(self.body(self.idx))
        # Capture recorded the kernels without running them; the warm-up ran them: undo it.
        with torch.no_grad():
            for k, v in run.model.state_dict().items():
                v.copy_(saved_model[k])
            for p, state in run.optimizer.state.items():  # Adam's state starts at zero
                for k, v in state.items():
                    if torch.is_tensor(v):
                        v.copy_(saved_opt[p][k]) if p in saved_opt else v.zero_()
            self.step.copy_(saved_step)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.run.scheduler.last_epoch += 1  # the host's record of the schedule, for last.pt
        if self.graph is None or len(batch) != len(self.idx):  # the last, shorter batch: no graph
            return self.body(batch)
        self.idx.copy_(batch, non_blocking=True)
        self.graph.replay()
        return self.loss.clone()
