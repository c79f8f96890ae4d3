"""Several processes under torchrun: each trains on its own shard of every batch; gradients are
averaged by DistributedDataParallel; the processes agree on when to stop; only rank 0 writes;
and they end together (`together`), so no rank exits while another still talks to it.
With one process every function here is a no-op."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

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


@contextmanager
def rank_zero_first():
    """Rank 0 runs the block first (making something the others then read, such as a cache); the
    other ranks run it after rank 0 has finished it."""
    rank, world = dist_info()
    if world > 1 and rank != 0:
        _barrier()
    yield
    if world > 1 and rank == 0:
        _barrier()


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


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


@contextmanager
def together(agreed: tuple[type[BaseException], ...] = ()):
    """End the process group when the block ends, on every rank.

    When the block finishes (or raises one of `agreed`: exceptions that every rank raises after
    the same step, such as an interruption they agreed on), each rank waits at a barrier for
    the others, then tears the group down: no collective is left pending and no rank leaves
    early, while rank 0 is still writing. A process that exits with its group still up can
    abort in gloo's threads at interpreter exit ("terminate called without an active
    exception"), a crash instead of a result. After any other error the group is torn down at
    once: the other ranks then fail fast rather than wait for a rank that will never come."""
    try:
        yield
    except agreed:
        finish()
        raise
    except BaseException:
        _destroy()
        raise
    finish()


def finish() -> None:
    """Wait for every rank, then tear the process group down."""
    _destroy(wait=True)


def _destroy(wait: bool = False) -> None:
    """Tear the process group down (after a barrier with `wait`), if there is one."""
    if dist_info()[1] == 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        if wait:
            _barrier()
        dist.destroy_process_group()


def leave(code: int) -> None:
    """Under torchrun, end this worker now, its group torn down and its files written: the
    atexit handlers run, the streams are flushed, and the process exits without the
    interpreter's teardown. Under load, the C++ threads of gloo and torch can race that teardown
    and abort a worker that had finished its work (SIGABRT, "terminate called without an
    active exception", with no Python frame left: seen in 1 of 12 two-process runs on two loaded
    cores), so torchrun would report a finished run as a crash. With one process: nothing."""
    if dist_info()[1] == 1:
        return
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
