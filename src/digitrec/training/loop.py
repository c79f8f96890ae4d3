"""Training: the whole dataset as tensors on the device, shuffled with randperm, one line per epoch.

`train()` reads top to bottom: set up (data, model, optimiser, schedule), resume or start,
then for each epoch: train, validate on the validation split, save; finally score the kept
checkpoint on every split. Choices (the kept epoch, recipes) are made on validation only;
the test set is scored once at the end, for the report.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..augment import Augment
from ..card import ModelCard
from ..checkpoint import load_checkpoint, save_checkpoint, unwrap
from ..data.load import Dataset, load
from ..errors import UserError
from ..metrics import logits_of, metrics_from_logits
from ..models import check_model, count_parameters, create_model
from ..util import clock, environment, resolve_device, write_json
from . import distributed, graph, inputs
from .config import TrainConfig
from .inputs import Split
from .records import finish, write_history
from .state import TrainState
from .step import batch_loss


class TrainingInterrupted(Exception):
    pass


# ----------------------------------------------------------------------------- pieces


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]  # biases and norms: no decay
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(cfg.optimizer)
    if kind is not None:
        return kind(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    t = step / max(total, 1)
    if cfg.schedule == "constant":
        return 1.0
    if t < cfg.warmup:
        return 0.1 + 0.9 * t / cfg.warmup
    u = (t - cfg.warmup) / max(1 - cfg.warmup, 1e-9)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * u))
    return max(1.0 - u, 0.0)  # onecycle


def _progress(total: int, desc: str):
    if not sys.stderr.isatty() or distributed.dist_info()[0] != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


@contextmanager
def interrupt_flag():
    """A list that becomes non-empty on Ctrl-C (SIGINT), so training stops after the step it is in.
    Every rank installs it: Ctrl-C reaches all of torchrun's processes."""
    flag: list[bool] = []
    old = None
    try:
        old = signal.signal(signal.SIGINT, lambda *_: flag.append(True))
    except ValueError:  # not in the main thread
        old = None
    try:
        yield flag
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


# ----------------------------------------------------------------------------- set-up


@dataclass
class Run:
    """What one training run works with, built once by `setup`."""

    cfg: TrainConfig
    out: Path
    device: str
    ds: Dataset
    split: Split  # the training/validation split, computed once (inputs.Split)
    card: ModelCard
    x_train: torch.Tensor  # (N, 1, 28, 28) normalised, on the device
    y_train: torch.Tensor  # (N,) on the device
    x_val: torch.Tensor  # (V, 28, 28) uint8, CPU
    y_val: torch.Tensor
    model: torch.nn.Module  # the module trained (under torchrun: wrapped in DDP)
    forward: Callable  # the model, or its compiled form
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: torch.nn.Module | None
    aug: Augment | None
    outliers: torch.Tensor | None  # (K, 1, 28, 28) normalised shapes that are not characters, on the device
    renders: tuple[torch.Tensor, torch.Tensor] | None  # (R, 1, 28, 28) normalised real-world renders, (R,) labels
    extras: tuple  # ((B, 1, 28, 28) inputs, (B,) labels, share of the batch) of the other banks (inputs.extras)
    soft: torch.Tensor | None  # (N, C) with --teacher: the teachers' mean probabilities of each training image, on the device
    shuffle_gen: torch.Generator
    aug_gen: torch.Generator
    amp: torch.autocast
    steps_per_epoch: int
    total_steps: int
    model_args: dict
    meta: dict  # the metadata every checkpoint of this run carries
    log: Callable[[str], None]
    phases: dict = dataclasses.field(default_factory=dict)  # seconds spent in each part of the run

    @contextmanager
    def timed(self, phase: str):
        """Add the seconds the block takes (the device caught up at both ends) to `phases[phase]`."""
        t = clock(self.device)
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + clock(self.device) - t

    @property
    def n_epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and saved: the moving average with --ema."""
        return self.ema.module if self.ema is not None else unwrap(self.model)

    def save(self, name: str, extra: dict | None = None, state: TrainState | None = None) -> None:
        save_checkpoint(self.out / name, self.eval_model(), self.cfg.model, self.model_args,
                        {**self.meta, **(extra or {})}, state.to_dict() if state is not None else None)


def setup(cfg: TrainConfig, out: Path, data: Dataset | None, quiet: bool) -> Run:
    """Everything a run works with: data (split once), model, optimiser, schedule, the banks."""
    rank = distributed.dist_info()[0]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    check_model(cfg.model, cfg.model_args)  # an unknown model fails before the data loads
    distributed.start(device)
    torch.manual_seed(cfg.seed)
    t = clock()
    ds = data if data is not None else load(cfg.dataset, cfg.data_dir)
    loaded = clock() - t
    split = Split.of(cfg, ds)  # the one split of this run: every bank and score below uses it
    model_args = dict(cfg.model_args, num_classes=ds.spec.num_classes)
    model = create_model(cfg.model, **model_args).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    steps_per_epoch = math.ceil(len(split.train) / cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    log = (lambda *_: None) if (quiet or rank != 0) else (lambda s: print(s, flush=True))
    t = clock()
    renders, made = inputs.renders(cfg, ds, split, device, log)
    use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.startswith("cuda"))
    return Run(
        cfg=cfg, out=Path(out), device=device, ds=ds, split=split, card=ds.spec.card(),
        x_train=inputs.model_inputs(cfg, ds, ds.train_x[split.train], device),
        y_train=ds.train_y[split.train].to(device), x_val=ds.train_x[split.val], y_val=ds.train_y[split.val],
        model=model, forward=model, optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s, total_steps)),
        ema=_ema(cfg, model), aug=inputs.augmentation(cfg), outliers=inputs.outliers(cfg, ds, split, device),
        renders=renders, extras=inputs.extras(cfg, ds, split, device, log),
        soft=inputs.teachers(cfg, ds, split, device, log),
        shuffle_gen=torch.Generator().manual_seed(cfg.seed),
        aug_gen=torch.Generator(device=device).manual_seed(cfg.seed * 1000 + rank + 1),
        amp=torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp),
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, model_args=model_args,
        meta=_meta(cfg, ds, device, model, made), log=log,
        phases={"data": loaded, **({"renders": clock() - t} if renders is not None else {})})


def _ema(cfg: TrainConfig, model: torch.nn.Module) -> torch.nn.Module | None:
    """With --ema, the exponential moving average of the model's weights (buffers too)."""
    if not cfg.ema:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)


def _meta(cfg: TrainConfig, ds: Dataset, device: str, model: torch.nn.Module, made: dict) -> dict:
    """The metadata every checkpoint of the run carries (checkpoint.py)."""
    return {"card": ds.spec.card().to_json(), "dataset": {**ds.spec.to_json(), "checksums": ds.checksums},
            "config": dataclasses.asdict(cfg), "environment": environment(device),
            "parameters": count_parameters(model),
            **({"real_world": {k: v for k, v in made.items() if k != "folder"}} if made else {})}


def start_or_resume(run: Run, resume: bool) -> TrainState:
    """A fresh state (config.json written), or the one in last.pt with every object put back."""
    rank = distributed.dist_info()[0]
    if not resume:
        if rank == 0:
            write_json(run.out / "config.json", {**dataclasses.asdict(run.cfg), "resolved_device": run.device})
        return TrainState(shuffle_gen_epoch=run.shuffle_gen.get_state())
    ckpt = load_checkpoint(run.out / "last.pt")
    state = TrainState.from_dict(ckpt.train_state, str(run.out / "last.pt"))
    # With EMA the checkpoint's weights are the average; the trained weights are kept apart.
    unwrap(run.model).load_state_dict(state.model or ckpt.state_dict)
    run.optimizer.load_state_dict(state.optimizer)
    for g in run.optimizer.param_groups:  # a run begun with a CUDA graph kept its learning rate on the GPU
        g["lr"], g["capturable"] = float(g["lr"]), False
    run.scheduler.load_state_dict(state.scheduler)
    if run.ema is not None and state.ema is not None:
        run.ema.load_state_dict(state.ema)
    run.aug_gen.set_state(state.aug_gen)
    torch.set_rng_state(state.torch_rng)
    if rank == 0:
        # A kill between last.pt and history.csv leaves the history one epoch short; a kill
        # inside an atomic write leaves its temp file. last.pt is the truth: restore from it.
        write_history(run.out, state.history, state.step_losses[: state.epoch * run.steps_per_epoch])
        for tmp in run.out.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    run.log(f"resuming {run.out} at epoch {state.epoch + 1}, batch {state.batch}")
    return state


def capture(run: Run, state: TrainState, epoch: int, batch: int, partial: list[float]) -> TrainState:
    """The state to resume from after `batch` batches of epoch `epoch` (0-based)."""
    return dataclasses.replace(
        state, epoch=epoch, batch=batch, step_losses=state.step_losses + partial,
        optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
        ema=run.ema.state_dict() if run.ema is not None else None,
        model=({k: v.detach().cpu() for k, v in unwrap(run.model).state_dict().items()}
               if run.ema is not None else None),
        aug_gen=run.aug_gen.get_state(), torch_rng=torch.get_rng_state())


def warm_up(run: Run) -> tuple[Callable[[torch.Tensor], torch.Tensor], float]:
    """The step function, and the seconds spent getting it ready, which are not training time:
    one untimed forward and backward (compilation, first-call set-up; weights, buffers and
    random state are put back, so it changes nothing else), or, on a GPU, capturing the whole
    step in a CUDA graph (training/graph.py)."""
    t = clock(run.device)
    why = graph.supported(run) if run.cfg.graph != "off" else "--graph off"
    if run.cfg.graph == "on" and why:
        raise UserError(f"--graph on cannot be used here: {why}")
    if why is None:
        step = graph.GraphStep(run)
        return step, clock(run.device) - t
    with torch.random.fork_rng(devices=[]):
        saved = {k: v.clone() for k, v in unwrap(run.model).state_dict().items()}
        with run.amp:
            run.forward(run.x_train[: run.cfg.batch_size]).float().sum().backward()
        run.optimizer.zero_grad(set_to_none=True)
        unwrap(run.model).load_state_dict(saved)
    return (lambda batch: train_step(run, batch)), clock(run.device) - t


# ----------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, out: Path | str, data: Dataset | None = None, resume: bool = False,
          quiet: bool = False, observe=None, observe_every: int = 0) -> dict:
    """Train `cfg` into the run folder `out`; returns the metrics written to metrics.json.

    `observe(step, train_seconds, model)`, if given, is called every `observe_every` steps with
    the clock stopped (benchmarks use it to time the way to a target accuracy)."""
    t_start = clock()
    cfg.check()
    with distributed.together(agreed=(TrainingInterrupted,)):  # under torchrun, every rank ends here
        run = setup(cfg, Path(out), data, quiet)
        state = start_or_resume(run, resume)
        run.model = distributed.wrap(run.model)
        run.forward = torch.compile(run.model) if cfg.compile else run.model
        run.phases["set-up"] = clock(run.device) - t_start - run.phases["data"] - run.phases.get("renders", 0.0)
        step, run.phases["warm-up"] = warm_up(run)
        with interrupt_flag() as interrupted:
            for epoch in range(state.epoch, run.n_epochs):
                trained = state.train_time
                state = train_epoch(run, step, state, epoch, interrupted, observe, observe_every)
                if distributed.dist_info()[0] == 0:
                    end_epoch(run, state, epoch, state.train_time - trained)
        # Rank 0 scores and writes; the others wait for it at the barrier of `together`.
        return finish(run, state, t_start) if distributed.dist_info()[0] == 0 else {}


def train_epoch(run: Run, step_fn, state: TrainState, epoch: int, interrupted: list, observe,
                observe_every: int) -> TrainState:
    """One epoch (or what is left of it after a resume); returns the state after it. Every
    clock is read after the device has caught up (util.clock): queued GPU work is training."""
    cfg, t0 = run.cfg, clock(run.device)
    run.shuffle_gen.set_state(state.shuffle_gen_epoch)
    perm = torch.randperm(len(run.x_train), generator=run.shuffle_gen).to(run.device)
    next_gen_state = run.shuffle_gen.get_state()
    first = state.batch if epoch == state.epoch else 0
    last = min(run.steps_per_epoch, run.total_steps - epoch * run.steps_per_epoch)
    losses = torch.zeros(last - first, device=run.device)
    bar = _progress(last - first, f"epoch {epoch + 1}/{run.n_epochs}")
    run.model.train()
    step = epoch * run.steps_per_epoch + first
    for i in range(first, last):
        batch = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        losses[i - first] = step_fn(batch)
        step += 1
        if observe is not None and step % observe_every == 0:
            paused = clock(run.device)
            observe(step, state.train_time + paused - t0, run.eval_model())
            run.model.train()
            t0 += clock(run.device) - paused
        if bar is not None:
            bar.update()
        if distributed.any_rank(bool(interrupted), run.device):
            state = dataclasses.replace(state, train_time=state.train_time + clock(run.device) - t0)
            partial = distributed.mean_over_ranks(losses[: i + 1 - first]).tolist()
            if distributed.dist_info()[0] == 0:
                run.save("last.pt", {"epoch": epoch + 1}, capture(run, state, epoch, i + 1, partial))
            raise TrainingInterrupted(f"interrupted; saved {run.out / 'last.pt'} at epoch {epoch + 1}, "
                                      f"batch {i + 1}. Continue with: digitrec train --resume {run.out}")
    if bar is not None:
        bar.close()
    return dataclasses.replace(state, epoch=epoch + 1, batch=0, shuffle_gen_epoch=next_gen_state,
                               step_losses=state.step_losses + distributed.mean_over_ranks(losses).tolist(),
                               train_time=state.train_time + clock(run.device) - t0)


def train_step(run: Run, batch: torch.Tensor) -> torch.Tensor:
    """One optimiser step on the images `batch` indexes (this rank's shard of them); the loss."""
    loss = batch_loss(run, distributed.shard(batch), len(batch))
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(unwrap(run.model))
    return loss.detach()


def end_epoch(run: Run, state: TrainState, epoch: int, seconds: float) -> None:
    """Validate (every eval_every epochs and at the end), keep best.pt, save last.pt, log a line."""
    cfg = run.cfg
    epoch_losses = state.step_losses[epoch * run.steps_per_epoch :]  # the whole epoch, even if resumed mid-way
    step = len(state.step_losses)
    row = {"epoch": epoch + 1, "step": step, "lr": cfg.lr * lr_factor(cfg, step, run.total_steps),
           "train_loss": sum(epoch_losses) / max(len(epoch_losses), 1),
           "val_loss": float("nan"), "val_accuracy": float("nan"), "epoch_seconds": seconds}
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == run.n_epochs:
        with run.timed("validation"):
            vm = metrics_from_logits(logits_of(run.eval_model(), run.x_val, run.card, run.device), run.y_val,
                                     run.card.num_classes)
        row["val_loss"], row["val_accuracy"] = vm.loss, vm.accuracy
        better = (vm.accuracy, -vm.loss) > (state.best["val_accuracy"], -state.best["val_loss"])
        if better if cfg.keep == "best" else epoch + 1 == run.n_epochs:
            state.best = {"val_accuracy": vm.accuracy, "val_loss": vm.loss, "epoch": epoch + 1}
            with run.timed("checkpoints"):
                run.save("best.pt", {"epoch": epoch + 1, "val": vm.to_json()})
    state.history.append(row)
    with run.timed("checkpoints"):
        run.save("last.pt", {"epoch": epoch + 1}, capture(run, state, epoch + 1, 0, []))
        write_history(run.out, state.history, state.step_losses)
    run.log(f"epoch {epoch + 1:>3}/{run.n_epochs}  train loss {row['train_loss']:.4f}  "
            f"val loss {row['val_loss']:.4f}  val acc {100 * row['val_accuracy']:.2f}%  "
            f"lr {row['lr']:.2e}  {row['epoch_seconds']:.1f}s")
