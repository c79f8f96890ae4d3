"""Training: the whole dataset as tensors, shuffled with randperm, one line per epoch.

The loop below is the whole story: shuffle, step, evaluate on the validation split,
log, save. Choices (best checkpoint, recipe) are made on validation only; the test set
is scored once at the end, for the report.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import AffineAug
from .calibrate import calibrate
from .checkpoint import load_checkpoint, load_model, save_checkpoint, unwrap
from .config import RECIPES, TrainConfig, config_from  # noqa: F401  re-exported: the names live there, torch-free
from .data import Dataset, load, split_indices, to_float
from .evaluate import logits_of, metrics_from_logits
from .models import count_parameters, create_model
from .util import atomic_write_text, environment, resolve_device, write_json


def check_config(cfg: TrainConfig) -> None:
    """Fail fast, before any data is loaded, on options that cannot work."""
    from .models import MODELS

    choices = {"model": sorted(MODELS), "schedule": ["constant", "cosine", "onecycle"],
               "optimizer": ["adam", "adamw", "sgd"], "amp": ["auto", "off", "bf16"], "keep": ["best", "last"]}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"unknown {name} {getattr(cfg, name)!r}: choose one of {', '.join(allowed)}")
    if cfg.epochs <= 0 or cfg.batch_size <= 0 or cfg.lr <= 0:
        raise ValueError("--epochs, --batch-size and --lr must be positive")
    if not 0 <= cfg.ema < 1 or not 0 <= cfg.label_smoothing < 1 or not 0 <= cfg.warmup < 1:
        raise ValueError("--ema, --label-smoothing and --warmup must be in [0, 1)")


class TrainingInterrupted(Exception):
    pass


# ----------------------------------------------------------------------------- pieces


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]  # biases and norms: no decay
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}: choose adam, adamw or sgd")


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    t = step / max(total, 1)
    if cfg.schedule == "constant":
        return 1.0
    if t < cfg.warmup:
        return 0.1 + 0.9 * t / cfg.warmup
    u = (t - cfg.warmup) / max(1 - cfg.warmup, 1e-9)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * u))
    if cfg.schedule == "onecycle":
        return max(1.0 - u, 0.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}: choose constant, cosine or onecycle")


def dist_info() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _progress(total: int, desc: str):
    if not sys.stderr.isatty() or dist_info()[0] != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def write_history(out: Path, history: list[dict], step_losses: list[float]) -> None:
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    atomic_write_text(out / "history.csv", buf.getvalue())
    atomic_write_text(out / "steps.csv", "step,loss\n" + "".join(
        f"{i},{loss:.6g}\n" for i, loss in enumerate(step_losses)))


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, out: Path | str, data: Dataset | None = None, resume: bool = False,
          quiet: bool = False, observe=None, observe_every: int = 0) -> dict:
    """Train `cfg` into the run folder `out`; returns the metrics written to metrics.json.

    `observe(step, train_seconds, model)`, if given, is called every `observe_every` steps with
    the clock stopped (benchmarks use it to time the way to a target accuracy)."""
    t_start = time.perf_counter()
    check_config(cfg)
    out = Path(out)
    rank, world = dist_info()
    log = (lambda *_: None) if (quiet or rank != 0) else (lambda s: print(s, flush=True))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        if device == "cuda":  # before the process group, so NCCL binds each rank to its own GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
    torch.manual_seed(cfg.seed)

    ds = data if data is not None else load(cfg.dataset, cfg.data_dir)
    spec = ds.spec
    if not 0 < cfg.val_size < len(ds.train_x):
        raise ValueError(f"--val-size {cfg.val_size} must be between 1 and {len(ds.train_x) - 1}: "
                         f"{spec.name} has {len(ds.train_x):,} training images")
    tr, va = split_indices(len(ds.train_x), cfg.val_size, cfg.split_seed)
    x_train = to_float(ds.train_x[tr], spec.mean, spec.std).to(device)  # (N, 1, 28, 28)
    y_train = ds.train_y[tr].to(device)
    x_val, y_val = ds.train_x[va], ds.train_y[va]
    if cfg.channels_last:
        x_train = x_train.contiguous(memory_format=torch.channels_last)
    background = (0.0 - spec.mean) / spec.std

    model_args = dict(cfg.model_args, num_classes=spec.num_classes)
    model = create_model(cfg.model, **model_args).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    n = len(x_train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s, total_steps))
    ema = None
    if cfg.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    aug = AffineAug(cfg.aug_rotate, cfg.aug_scale, cfg.aug_shear, cfg.aug_translate) if cfg.augment else None
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank + 1)

    history: list[dict] = []
    step_losses: list[float] = []
    start_epoch, start_batch, best = 0, 0, {"val_accuracy": -1.0, "val_loss": math.inf, "epoch": 0}
    train_time = 0.0
    epoch_gen_state = shuffle_gen.get_state()
    if resume:
        st = load_checkpoint(out / "last.pt")
        state = st.get("train_state")
        if state is None:
            raise ValueError(f"{out / 'last.pt'} holds no training state to resume from")
        # With EMA the checkpoint's weights are the average; the trained weights are kept apart.
        unwrap(model).load_state_dict(state.get("model") or st["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        epoch_gen_state = state["shuffle_gen_epoch"]
        aug_gen.set_state(state["aug_gen"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, start_batch = state["epoch"], state["batch"]
        history, step_losses, best = state["history"], state["step_losses"], state["best"]
        train_time = state["train_time"]
        if rank == 0:
            # A kill between last.pt and history.csv leaves the history one epoch short; a kill
            # inside an atomic write leaves its temp file. last.pt is the truth: restore from it.
            write_history(out, history, step_losses[: start_epoch * steps_per_epoch])
            for tmp in out.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)
        log(f"resuming {out} at epoch {start_epoch + 1}, batch {start_batch}")
    elif rank == 0:
        write_json(out / "config.json", {**dataclasses.asdict(cfg), "resolved_device": device})
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    fwd = torch.compile(model) if cfg.compile else model
    use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.startswith("cuda"))
    amp = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp)
    meta_base = {"dataset": {**spec.to_json(), "checksums": ds.checksums}, "config": dataclasses.asdict(cfg),
                 "environment": environment(device), "parameters": count_parameters(unwrap(model))}

    def snapshot(epoch: int, batch: int, partial: list[float]) -> dict:
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "model": ({k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
                          if ema is not None else None),
                "shuffle_gen_epoch": epoch_gen_state, "aug_gen": aug_gen.get_state(),
                "torch_rng": torch.get_rng_state(), "epoch": epoch, "batch": batch,
                "history": history, "step_losses": step_losses + partial, "best": best,
                "train_time": train_time}

    def eval_model():
        return ema.module if ema is not None else unwrap(model)

    interrupted = []
    old_handler = None
    if hasattr(signal, "SIGINT"):  # every rank: Ctrl-C reaches all of torchrun's processes
        try:
            old_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        except ValueError:  # not in the main thread
            old_handler = None
    # One untimed forward and backward first: compilation and first-call set-up are not training
    # time. Weights, buffers and random state are put back, so it changes nothing else.
    t_warm = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        saved = {k: v.clone() for k, v in unwrap(model).state_dict().items()}
        with amp:
            fwd(x_train[: cfg.batch_size]).float().sum().backward()
        optimizer.zero_grad(set_to_none=True)
        unwrap(model).load_state_dict(saved)
    warmup_seconds = time.perf_counter() - t_warm
    step = start_epoch * steps_per_epoch + start_batch
    try:
        for epoch in range(start_epoch, n_epochs):
            t0 = time.perf_counter()
            shuffle_gen.set_state(epoch_gen_state)
            perm = torch.randperm(n, generator=shuffle_gen).to(device)
            next_gen_state = shuffle_gen.get_state()
            first = start_batch if epoch == start_epoch else 0
            last = min(steps_per_epoch, total_steps - epoch * steps_per_epoch)
            losses = torch.zeros(last - first, device=device)
            bar = _progress(last - first, f"epoch {epoch + 1}/{n_epochs}")
            model.train()
            for i in range(first, last):
                batch = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                idx = batch[rank::world]  # under torchrun, each rank its own shard of every batch
                x, y = x_train[idx], y_train[idx]
                if aug is not None:
                    x = aug(x, background, aug_gen)
                with amp:
                    if world == 1:
                        loss = F.cross_entropy(fwd(x), y, label_smoothing=cfg.label_smoothing)
                    else:  # DDP averages gradients over ranks; scaled so, the average is the mean over
                        # the whole batch, as in one process, even when shards differ in size (or are empty)
                        loss = F.cross_entropy(fwd(x), y, label_smoothing=cfg.label_smoothing,
                                               reduction="sum") * (world / len(batch))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(unwrap(model))
                losses[i - first] = loss.detach()
                step += 1
                if observe is not None and step % observe_every == 0:
                    paused = time.perf_counter()
                    observe(step, train_time + paused - t0, eval_model())
                    model.train()
                    t0 += time.perf_counter() - paused
                if bar is not None:
                    bar.update()
                stop = bool(interrupted)
                if world > 1:  # all ranks stop after the same step, or the others wait forever
                    flag = torch.tensor([float(stop)], device=device)
                    dist.all_reduce(flag)
                    stop = bool(flag.item())
                if stop:
                    train_time += time.perf_counter() - t0
                    if world > 1:
                        dist.all_reduce(losses)
                        losses /= world
                    if rank == 0:
                        save_checkpoint(out / "last.pt", eval_model(), cfg.model, model_args, meta_base,
                                        snapshot(epoch, i + 1, losses[: i + 1 - first].tolist()))
                    raise TrainingInterrupted(f"interrupted; saved {out / 'last.pt'} at epoch {epoch + 1}, "
                                              f"batch {i + 1}. Continue with: digitrec train --resume {out}")
            if bar is not None:
                bar.close()
            if world > 1:  # the whole batch's loss, not this rank's share of it
                dist.all_reduce(losses)
                losses /= world
            step_losses.extend(losses.tolist())
            epoch_losses = step_losses[epoch * steps_per_epoch :]  # the whole epoch, even if resumed mid-way
            train_time += time.perf_counter() - t0
            epoch_gen_state = next_gen_state
            if rank != 0:
                continue
            row = {"epoch": epoch + 1, "step": step, "lr": scheduler.get_last_lr()[0],
                   "train_loss": sum(epoch_losses) / max(len(epoch_losses), 1),
                   "val_loss": float("nan"), "val_accuracy": float("nan"), "epoch_seconds": time.perf_counter() - t0}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == n_epochs:
                vm = metrics_from_logits(logits_of(eval_model(), x_val, spec.mean, spec.std, device), y_val,
                                         spec.num_classes)
                row["val_loss"], row["val_accuracy"] = vm.loss, vm.accuracy
                better = (vm.accuracy, -vm.loss) > (best["val_accuracy"], -best["val_loss"])
                if better if cfg.keep == "best" else epoch + 1 == n_epochs:
                    best = {"val_accuracy": vm.accuracy, "val_loss": vm.loss, "epoch": epoch + 1}
                    save_checkpoint(out / "best.pt", eval_model(), cfg.model, model_args,
                                    {**meta_base, "epoch": epoch + 1, "val": vm.to_json()})
            history.append(row)
            save_checkpoint(out / "last.pt", eval_model(), cfg.model, model_args,
                            {**meta_base, "epoch": epoch + 1}, snapshot(epoch + 1, 0, []))
            write_history(out, history, step_losses)
            log(f"epoch {epoch + 1:>3}/{n_epochs}  train loss {row['train_loss']:.4f}  "
                f"val loss {row['val_loss']:.4f}  val acc {100 * row['val_accuracy']:.2f}%  "
                f"lr {row['lr']:.2e}  {row['epoch_seconds']:.1f}s")
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        if rank != 0:
            return {}
    return finish(out, ds, device, train_time, time.perf_counter() - t_start, best, log, warmup_seconds)


def finish(out: Path, ds: Dataset, device: str, train_time: float, wall: float, best: dict, log,
           warmup: float = 0.0) -> dict:
    """Score the best checkpoint, reloaded from disk, on every split; write metrics.json."""
    model, ckpt = load_model(out / "best.pt")
    model.to(device)
    spec = ds.spec
    cfg = ckpt["meta"]["config"]
    tr, va = split_indices(len(ds.train_x), cfg["val_size"], cfg["split_seed"])
    scores, val_logits = {}, None
    for name, x, y in (("train", ds.train_x[tr], ds.train_y[tr]), ("val", ds.train_x[va], ds.train_y[va]),
                       ("test", ds.test_x, ds.test_y)):
        logits = logits_of(model, x, spec.mean, spec.std, device)
        scores[name] = metrics_from_logits(logits, y, spec.num_classes).to_json()
        if name == "val":
            val_logits, val_y = logits, y
    calibration = calibrate(val_logits, val_y)
    metrics = {
        "model": ckpt["model"], "parameters": ckpt["meta"]["parameters"], "best_epoch": best["epoch"],
        **{f"{k}_loss": v["loss"] for k, v in scores.items()},
        **{f"{k}_accuracy": v["accuracy"] for k, v in scores.items()},
        "per_class_accuracy": dict(zip(spec.classes, scores["test"]["per_class_accuracy"])),
        "confusion": scores["test"]["confusion"],
        "train_seconds": train_time, "warmup_seconds": warmup, "wall_seconds": wall,
        "seed": cfg["seed"], "calibration": calibration, "dataset": ckpt["meta"]["dataset"],
        **ckpt["meta"]["environment"],
    }
    write_json(out / "metrics.json", metrics)
    # The metrics travel inside the best checkpoint too, so it stands on its own.
    ckpt_meta = {**ckpt["meta"], "metrics": {k: metrics[k] for k in
                                             ("train_accuracy", "val_accuracy", "test_accuracy", "test_loss")},
                 "calibration": calibration}
    save_checkpoint(out / "best.pt", model, ckpt["model"]["name"], ckpt["model"]["args"], ckpt_meta)
    chosen = "best" if cfg.get("keep", "best") == "best" else "kept"
    log(f"{chosen} epoch {best['epoch']}: val acc {100 * metrics['val_accuracy']:.2f}%  "
        f"test acc {100 * metrics['test_accuracy']:.2f}%  ({train_time:.1f}s training, {wall:.1f}s in all)")
    return metrics
