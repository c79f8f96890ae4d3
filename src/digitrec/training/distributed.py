"""Several processes under torchrun: each trains on its own shard of every batch; gradients are
averaged by DistributedDataParallel; the processes agree on when to stop; only rank 0 writes.
With one process every function here is a no-op."""

from __future__ import annotations

import os

import torch


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def start(device: str) -> None:
    """Join the process group (nccl on CUDA, gloo on the CPU) when there is more than one process."""
    if dist_info()[1] == 1:
        return
    import torch.distributed as dist

    if device == "cuda":  # before the process group, so NCCL binds each rank to its own GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    if dist_info()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's share of a batch of indices: every world-th one, starting at the rank."""
    rank, world = dist_info()
    return batch[rank::world]


def loss_scale(batch_size: int) -> float:
    """DDP averages gradients over ranks; a rank's summed loss times world / batch makes that
    average the mean over the whole batch, as in one process, even when shards differ in size."""
    return dist_info()[1] / batch_size


def any_rank(flag: bool, device: str) -> bool:
    """True on every rank if it is true on any: all ranks stop after the same step, or the
    others wait forever."""
    if dist_info()[1] == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return bool(t.item())


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over ranks (the whole batch's loss, not this rank's share of it)."""
    world = dist_info()[1]
    if world == 1:
        return t
    import torch.distributed as dist

    dist.all_reduce(t)
    return t / world


def finish() -> None:
    if dist_info()[1] == 1:
        return
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()
