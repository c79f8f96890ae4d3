"""Training the line model (inference/linemodel.py): lines composed from MNIST training digits,
read whole by a small CNN trained with CTC.

    lines      1 to 10 digits set side by side by scenes.compose_line (the same composer the
               whole-numbers benchmark renders with): each scaled +-15% and moved up or down
               +-10%, the gaps from clear to overlapping by a third of a digit's width; the
               line drawn at another resolution and pen now and then; then linemodel.strip,
               exactly as the reader prepares a line it found
    LineNet    (models.py) convolutions down to a quarter of the width and an eighth of the
               height, the height folded into channels, 1-d convolutions along the line: a score
               per class and for the blank every STRIDE pixels. Only convolutions: any width runs
    rendered   with --conditions (0.5 by default), that share of each batch is drawn instead
               from lines of training digits rendered under real-world conditions and prepared
               by the reader itself (linebank.py: built once, cached)
    training   AdamW with a one-cycle schedule on the CTC loss; validation lines are built from
               the validation split of the training digits (never test digits); --init starts
               from a trained model's weights (a lines.pt, or a lines.onnx: start_from)
    saved      lines.pt and the resume state state.pt are checkpoints (checkpoint.py; state.pt
               holds a state.LineState); the model's card is a card.LineCard
    export     ONNX with a dynamic batch and width, its LineCard (classes, `unsure` threshold,
               strip geometry) in its metadata: the reader runs it without torch
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..card import LineCard
from ..checkpoint import read_checkpoint, save_checkpoint
from ..errors import CheckpointError
from ..inference.linemodel import HEIGHT, INK_HEIGHT, META_KEY, PAD, STRIDE, LineModel, greedy, strip
from ..marks import dilate
from ..models import LineNet, count_parameters
from ..util import atomic_write, say, write_json
from .config import LineConfig, from_json
from .state import LineState

CLEAR = (0.1, 1.2)  # gaps between digits, in units of a digit's ink width: clear...
TOUCHING = (-0.35, 0.1)  # ...or touching and overlapping (each line is one or the other)
EVERY = 250  # steps between progress lines and saved states


# ----------------------------------------------------------------------------- lines


def make_line(digits: np.ndarray, rng: np.random.Generator, gap: tuple[float, float]) -> np.ndarray:
    """(n, 28, 28) uint8 MNIST digits -> one line's strip, as the reader would prepare it."""
    from ..scenes import compose_line, glyph_of, resize

    ink = compose_line([glyph_of(d) for d in digits], rng, gap, size_jitter=0.15, baseline_jitter=0.1).ink
    k = rng.uniform(0.6, 2.0)  # the resolution the reader finds the line at
    ink = resize(ink, max(4, round(ink.shape[1] * k)), max(4, round(ink.shape[0] * k)), sharp=False)
    if rng.random() < 0.25:  # a broader pen
        ink = dilate(ink, 1)
    return strip(ink)[0]


def batch_of(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, size: int, max_length: int,
             bank: dict[int, list[np.ndarray]] | None = None, share: float = 0.0):
    """A batch of lines of one length: (B, 1, HEIGHT, W) strips (padded with paper), the
    (B, n) labels, and the frames each strip has. With `bank` (length -> [(strip uint8, labels)],
    linebank.py), a `share` of the lines are rendered ones of that length."""
    n = int(rng.integers(1, max_length + 1))
    idx = rng.integers(0, len(x), (size, n))
    gaps = [CLEAR if rng.random() < 0.5 else TOUCHING for _ in range(size)]
    rendered = bank.get(n, []) if bank else []
    k = min(size, round(share * size)) if rendered else 0
    picked = [rendered[j] for j in rng.integers(0, len(rendered), k)] if k else []
    strips = [s.astype(np.float32) / 255 for s, _ in picked] + [make_line(x[i], rng, g) for i, g in zip(idx[k:], gaps[k:])]
    labels = np.concatenate([np.stack([t for _, t in picked]).reshape(k, n), y[idx[k:]]]) if k else y[idx]
    width = max(s.shape[1] for s in strips)
    out = np.zeros((size, 1, HEIGHT, width), np.float32)
    for b, s in enumerate(strips):
        out[b, 0, :, : s.shape[1]] = s
    frames = torch.tensor([s.shape[1] // STRIDE for s in strips])
    return torch.from_numpy(out), torch.from_numpy(labels.astype(np.int64)), frames


def validation_lines(x: np.ndarray, y: np.ndarray, count: int, max_length: int, seed: int):
    """`count` validation lines, half clear and half touching, of 1 to max_length digits:
    [(strip, (n,) class indices)]."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for k in range(count):
        n = 1 + k % max_length
        idx = rng.integers(0, len(x), n)
        out.append((make_line(x[idx], rng, CLEAR if k % 2 else TOUCHING), y[idx]))
    return out


def read_strips(model: nn.Module, strips: list[np.ndarray], classes: list[str]) -> list[tuple[str, float]]:
    """(text, the least confident character's confidence) for each strip, by the torch model."""
    model.eval()
    out = []
    with torch.no_grad():
        for s in strips:
            frames = model(torch.from_numpy(s)[None, None]).softmax(1)[0].T.numpy()
            chars = greedy(frames)
            out.append(("".join(classes[c.index] for c in chars),
                        min((float(c.probabilities.max()) for c in chars), default=1.0)))
    model.train()
    return out


def unsure_threshold(results: list[tuple[str, float]], truths: list[str]) -> float:
    """The confidence under which a character is `unsure`: about half of the wrong validation
    lines have a character below it (as the classifier's card chooses its own)."""
    wrong = sorted(conf for (text, conf), truth in zip(results, truths) if text != truth)
    return float(np.median(wrong)) if wrong else 0.5


# ----------------------------------------------------------------------------- training


@dataclass
class LineData:
    """What the line trainer draws from: the training split's digits, the validation lines, and
    with --conditions the rendered lines (linebank.py) for training and for the record."""

    x: np.ndarray  # (N, 28, 28) uint8 training-split digits
    y: np.ndarray  # (N,) their labels
    classes: list[str]
    val: list  # [(strip, (n,) labels)]
    rendered_val: list  # [(strip uint8, (n,) labels)], with --conditions
    bank: dict | None  # length -> [(strip uint8, labels)], with --conditions


def train_lines(out: Path, cfg: LineConfig, log=say) -> dict:
    """Train a line model into `out` (lines.pt, lines.onnx, lines.json); returns its metrics.
    Every EVERY steps the whole state is saved (state.pt, a checkpoint with a LineState): run
    again to go on from there."""
    torch.manual_seed(cfg.seed)
    data = line_data(cfg, log)
    model = LineNet(len(data.classes), cfg.width, HEIGHT)
    if cfg.init:
        start_from(model, Path(cfg.init),
                   batch_of(data.x, data.y, np.random.default_rng(cfg.seed + 7), 64, cfg.max_length)[0])
        log(f"starting from the weights of {cfg.init}")
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.15)
    rng = np.random.default_rng(cfg.seed)
    start = resume(out / "state.pt", cfg, model, opt, sched, rng, log)
    log(f"line model: {count_parameters(model):,} parameters; steps {start + 1} to {cfg.steps}, {cfg.batch} lines each")
    t0, seen = time.perf_counter(), None
    for step in range(start + 1, cfg.steps + 1):
        loss = train_step(model, opt, sched, data, rng, cfg)
        seen = loss if seen is None else 0.98 * seen + 0.02 * loss
        if step % EVERY == 0 or step == cfg.steps:
            log(f"step {step}/{cfg.steps}  loss {seen:.4f}  {time.perf_counter() - t0:.0f} s")
            keep_state(out / "state.pt", cfg, step, model, opt, sched, rng, data.classes)
    metrics = score(model, data, log)
    metrics.update(train_seconds=time.perf_counter() - t0, parameters=count_parameters(model), config=asdict(cfg))
    save(model, out, data.classes, metrics)
    return metrics


def line_data(cfg: LineConfig, log) -> LineData:
    """The digits of the training split (the validation split only in validation lines)."""
    from ..data.load import load, split_indices

    ds = load(cfg.dataset, cfg.data_dir)
    tr, va = split_indices(len(ds.train_x), cfg.val_size, 0)
    x, y = ds.train_x.numpy(), ds.train_y.numpy()
    val = validation_lines(x[va.numpy()], y[va.numpy()], cfg.val_lines, cfg.max_length, cfg.seed)
    rendered_val, bank = rendered(cfg, x, y, tr.numpy(), va.numpy(), log)
    return LineData(x[tr.numpy()], y[tr.numpy()], [str(c) for c in ds.spec.classes], val, rendered_val, bank)


def train_step(model: nn.Module, opt, sched, data: LineData, rng: np.random.Generator, cfg: LineConfig) -> float:
    """One AdamW step on a batch of lines of one length, by the CTC loss; the loss."""
    xb, yb, frames = batch_of(data.x, data.y, rng, cfg.batch, cfg.max_length, data.bank, cfg.conditions)
    logp = model(xb.contiguous(memory_format=torch.channels_last)).log_softmax(1).permute(2, 0, 1)  # (T, B, C+1)
    loss = F.ctc_loss(logp, yb, frames, torch.full((cfg.batch,), yb.shape[1]), blank=len(data.classes),
                      zero_infinity=True)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return float(loss.detach())


def score(model: nn.Module, data: LineData, log) -> dict:
    """Lines read whole on validation (and rendered validation lines), and the `unsure` threshold."""
    classes = data.classes
    results = read_strips(model, [s for s, _ in data.val], classes)
    truths = ["".join(classes[int(v)] for v in t) for _, t in data.val]
    accuracy = float(np.mean([r[0] == t for r, t in zip(results, truths)]))
    metrics = {"val_line_accuracy": accuracy, "val_lines": len(data.val), "threshold": unsure_threshold(results, truths)}
    log(f"validation lines read whole: {100 * accuracy:.2f}% of {len(data.val)}")
    if data.rendered_val:
        got = read_strips(model, [s.astype(np.float32) / 255 for s, _ in data.rendered_val], classes)
        want = ["".join(classes[int(v)] for v in t) for _, t in data.rendered_val]
        metrics["val_rendered_accuracy"] = float(np.mean([g[0] == w for g, w in zip(got, want)]))
        metrics["val_rendered_lines"] = len(data.rendered_val)
        log(f"validation lines rendered under real-world conditions, read whole: "
            f"{100 * metrics['val_rendered_accuracy']:.2f}% of {len(data.rendered_val)}")
    return metrics


def rendered(cfg: LineConfig, x: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, log):
    """With --conditions: lines of validation digits rendered under real-world conditions and
    prepared by the reader (half as many as --val-lines; for the record), and the training bank
    (length -> [(strip, labels)]); both built once and cached beside the data (linebank.py)."""
    if not cfg.conditions:
        return [], None
    import os

    from ..data.fetch import default_data_dir
    from .linebank import bank

    jobs = max(1, os.cpu_count() or 1)
    cache = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    vs, vy, _ = bank(x[va], y[va], max(1, cfg.val_lines // 2), cfg.seed + 1, cache, cfg.max_length, jobs, log=log)
    ts, ty, facts = bank(x[tr], y[tr], cfg.bank, cfg.seed, cache, cfg.max_length, jobs, log=log)
    by_length: dict[int, list] = {}
    for s_, t in zip(ts, ty):
        by_length.setdefault(len(t), []).append((s_, t))
    log(f"rendered lines: {facts['kept']:,} of {facts['lines']:,} kept" + (
        f", {facts['rendered_now']:,} rendered now at {facts['lines_per_second']} lines/s" if facts["rendered_now"] else " (cached)"))
    return list(zip(vs, vy)), by_length


def start_from(model: LineNet, path: Path, calibration: torch.Tensor) -> None:
    """The weights of a trained line model: a lines.pt as saved, or a lines.onnx, whose batch
    norms the export folded into the convolutions before them (unfold)."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: --init takes a lines.onnx or lines.pt")
    if path.suffix == ".pt":
        try:
            model.load_state_dict(read_checkpoint(path)["state_dict"])
        except (RuntimeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path} is not a line model of this shape ({str(e).splitlines()[0][:160]}): give "
                                  f"--width as it was trained with") from None
        return
    import onnx
    from onnx import numpy_helper

    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(str(path)).graph.initializer}
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d))]
    for name, conv in layers:
        if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and getattr(weights.get(f"{name}.weight"), "shape", None) != conv.weight.shape:
            raise CheckpointError(f"{path} is not a line model of this shape (its {name} differs): give --width as "
                                  f"it was trained with, or start from a lines.pt")
    model.eval()
    with torch.no_grad():
        unfold(model, layers, weights, calibration, path)
    model.train()


def unfold(model: LineNet, layers: list, weights: dict, calibration: torch.Tensor, path: Path) -> None:
    """Each batch norm after a convolution, unfolded from the export's folded weights: its scale
    and shift set to the statistics of its convolution's output on `calibration` strips (B, 1,
    HEIGHT, W), so that the network computes what the export does and trains on from there."""
    for (name, conv), (_, norm) in zip(layers[:-1], layers[1:]):
        if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        if f"{name}.weight_bias" not in weights:
            raise CheckpointError(f"{path} has no folded batch norm after {name}: start from a lines.pt")
        conv.weight.copy_(weights[f"{name}.weight"])
        seen = []
        hook = conv.register_forward_hook(lambda m, i, o: seen.append(o))
        model(calibration)
        hook.remove()
        dims = [0, 2, 3] if seen[0].dim() == 4 else [0, 2]
        mean, var = seen[0].mean(dims), seen[0].var(dims, unbiased=False)
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.weight.copy_((var + norm.eps).sqrt())
        norm.bias.copy_(mean + weights[f"{name}.weight_bias"])
    last, conv = layers[-1]
    conv.weight.copy_(weights[f"{last}.weight"])
    conv.bias.copy_(weights[f"{last}.bias"])


def _card(classes: list[str], threshold: float = 0.5) -> LineCard:
    """The card of a line model trained here: today's strip geometry (inference/linemodel.py)."""
    return LineCard(tuple(classes), float(threshold), HEIGHT, INK_HEIGHT, PAD, STRIDE)


def keep_state(path: Path, cfg: LineConfig, step: int, model, opt, sched, rng: np.random.Generator,
               classes: list[str]) -> None:
    """state.pt: a checkpoint (checkpoint.py) of the weights, the options and a LineState."""
    state = LineState(step, opt.state_dict(), sched.state_dict(), rng.bit_generator.state, torch.get_rng_state())
    save_checkpoint(path, model, "lines", {"num_classes": len(classes), "width": cfg.width, "height": HEIGHT},
                    {"card": _card(classes).to_json(), "config": asdict(cfg)}, state.to_dict())


def resume(path: Path, cfg: LineConfig, model, opt, sched, rng: np.random.Generator, log) -> int:
    """The step to go on from: that of the saved state where it was trained with this config, else 0."""
    if not path.is_file():
        return 0
    try:
        raw = read_checkpoint(path)
        state = LineState.from_dict(raw.get("train_state"), str(path))
        saved = from_json(LineConfig, raw["meta"].get("config"), str(path))
    except CheckpointError as e:
        raise CheckpointError(f"{e}; cannot go on from it: delete it to start again, or give another --out") from None
    if not cfg.same_run(saved):
        log(f"{path} was trained with other options; starting again")
        return 0
    model.load_state_dict(raw["state_dict"])
    opt.load_state_dict(state.optimizer)
    sched.load_state_dict(state.scheduler)
    rng.bit_generator.state = state.rng
    torch.set_rng_state(state.torch_rng)
    log(f"going on from step {state.step} ({path})")
    return int(state.step)


def save(model: nn.Module, out: Path, classes: list[str], metrics: dict) -> Path:
    """lines.pt (a checkpoint: weights, card, options, metrics), lines.json (metrics) and
    lines.onnx (what the reader runs, the card in its metadata), the export checked against
    the torch model."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().to(memory_format=torch.contiguous_format)
    card, width = _card(classes, metrics["threshold"]), metrics["config"]["width"]
    save_checkpoint(out / "lines.pt", model, "lines", {"num_classes": len(classes), "width": width, "height": card.height},
                    {"card": card.to_json(), "config": metrics["config"], "metrics": metrics})
    write_json(out / "lines.json", metrics)
    return export(model, out / "lines.onnx",
                  {**card.to_json(), "width": width, "val_line_accuracy": metrics["val_line_accuracy"]})


def export(model: nn.Module, path: Path, info: dict) -> Path:
    """lines.onnx: any batch, any width (a multiple of STRIDE); checked against torch."""
    import onnx

    from ..export import to_onnx

    frames = torch.export.Dim("frames", min=2, max=4096)
    proto = to_onnx(model, torch.zeros(2, 1, HEIGHT, 64), {0: torch.export.Dim("batch"), 3: STRIDE * frames},
                    "strip", META_KEY, info)
    atomic_write(path, lambda tmp: onnx.save_model(proto, str(tmp)))
    x = torch.rand(1, 1, HEIGHT, 4 * 37, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x).softmax(1)[0].T.numpy()
    worst = float(np.abs(LineModel(path).frames(x[0, 0].numpy()) - want).max())
    if not worst <= 1e-4:
        path.unlink(missing_ok=True)
        raise CheckpointError(f"the ONNX export of the line model differs from torch by {worst:.2g}; "
                              f"it was not kept (the trained weights are in {path.with_suffix('.pt')})")
    return path


def load_lines(path: Path) -> tuple[nn.Module, LineCard]:
    """A lines.pt's network (eval mode) and its card."""
    raw = read_checkpoint(Path(path))
    card = LineCard.from_meta(raw["meta"].get("card"), str(path))
    model = LineNet(**raw["model"]["args"])
    model.load_state_dict(raw["state_dict"])
    return model.eval(), card
