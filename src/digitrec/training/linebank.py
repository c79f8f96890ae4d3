"""Lines of training digits as people hand them over, prepared by the reader itself: what the
line model is given when it reads a real photo or scan, not only MNIST's clean strokes.

The same idea as training/renders.py, for whole lines: training-split digits are set side by
side (clear or touching, as training/lines.py does), the line rendered by scenes.render_line
under a mix of real-world conditions (MIX: low resolution from 10 to 16 px, hairlines,
markers, faint pencil, phone photos, dark tables, lined paper, dust, JPEG, clean paper), encoded as files are, decoded, and its ink found and prepared into the
line model's strip by the reader's own code (reader.one_line_strip). Rendering is Python per
line, so it happens once, in worker processes, in parts that are cached as they are done (an
interrupted build takes up again where it stopped), under a key of everything that decides the
result: the digits, count, seed, longest line, mix, and the source of the code that renders,
finds and prepares. Training then draws a share of each batch from the bank.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import numpy as np

from ..util import atomic_write
from .renders import RENDERING

PART = 500  # lines per cached part
# The source files the cache key hashes: the scenes modules a render runs (as renders.py's key),
# and the reader's code that finds and prepares the ink.
CODE = (*RENDERING, "ink.py", "marks.py", "inference/decode.py", "inference/pixels.py", "inference/preprocess.py",
        "inference/find.py", "inference/lineread.py", "inference/linemodel.py", "training/renders.py",
        "training/linebank.py")
# The conditions lines are drawn from, with weights: low resolution (a line scanned 10 to 16 px
# high, as its digits are) weighs most, hairlines next. Not soft_gray (its blur, sized for one
# digit, smears a whole line into fog) nor 6-9 px lines (unreadable blocks): noise, not lessons.
MIX: dict[str, float] = {"lowres_10_16": 3.0, "very_thin": 1.5, "very_thick": 1.0, "faint_pencil": 1.0,
                         "phone_shadow": 1.0, "dark_table": 1.0, "lined_paper": 1.0, "speckle": 1.0,
                         "jpeg_low": 1.0, "clean_paper": 1.0}
CLEAR = (0.1, 1.2)  # the gaps of training/lines.py, in units of a digit's ink width
TOUCHING = (-0.35, 0.1)


def render_one(task: tuple[np.ndarray, str, tuple[float, float], int, int]) -> np.ndarray | None:
    """(digits (n, 28, 28) uint8, condition, gap range, seed, index) -> the (HEIGHT, W) uint8
    strip the reader prepares of that line rendered that way; None where it finds no ink."""
    from .. import scenes
    from ..errors import PreprocessError
    from ..inference.lineread import one_line_strip
    from .renders import LOWRES

    digits, name, gap, seed, i = task
    rng = np.random.default_rng([seed, i])
    condition = scenes.get_condition(name) if name != "lowres_10_16" else replace(
        LOWRES, name=name, paint=lambda canvas, r: scenes.low_resolution(int(r.integers(10, 17)))(canvas, r))
    data, _, _ = scenes.render_line(list(digits), condition, rng, gap=gap)
    try:
        s = one_line_strip(data)
    except PreprocessError:
        return None
    return None if s is None else np.round(np.clip(s, 0, 1) * 255).astype(np.uint8)


def plan(n_digits: int, n: int, seed: int, max_length: int, mix: dict[str, float]):
    """Each line's digits (indices), condition and gap range."""
    rng = np.random.default_rng(seed)
    names = sorted(mix)
    p = np.array([mix[k] for k in names], float)
    lengths = rng.integers(1, max_length + 1, n)
    which = [rng.integers(n_digits, size=k) for k in lengths]
    conditions = [names[j] for j in rng.choice(len(names), size=n, p=p / p.sum())]
    return which, conditions, [CLEAR if i % 2 else TOUCHING for i in range(n)]


def cache_key(digits: np.ndarray, n: int, seed: int, max_length: int, mix: dict[str, float]) -> str:
    h = hashlib.sha256(np.ascontiguousarray(digits).tobytes())
    h.update(repr((n, seed, max_length, sorted(mix.items()))).encode())
    root = resources.files("digitrec")
    for name in CODE:
        h.update(root.joinpath(name).read_bytes())
    return h.hexdigest()[:16]


def bank(digits: np.ndarray, labels: np.ndarray, n: int, seed: int, cache: Path, max_length: int = 10,
         jobs: int = 2, mix: dict[str, float] | None = None, log=lambda s: None, part: int = PART):
    """`n` lines of `digits` ((N, 28, 28) uint8, one split only) under `mix`, as the reader
    prepares them: (strips: list of (HEIGHT, W) uint8, labels: list of (k,) int64, facts);
    lines in which the reader finds no ink are left out. The same arguments give the same bank."""
    from .renders import build_parts

    mix = mix or MIX
    folder = Path(cache) / f"lines-{cache_key(digits, n, seed, max_length, mix)}"
    folder.mkdir(parents=True, exist_ok=True)
    which, conditions, gaps = plan(len(digits), n, seed, max_length, mix)
    t = time.perf_counter()
    parts, rendered = build_parts(
        folder, n, part, lambda s, e: [(digits[which[i]], conditions[i], gaps[i], seed, i) for i in range(s, e)],
        render_one, lambda path, strips, s, e: _save_part(path, strips, [labels[which[i]] for i in range(s, e)]),
        jobs, log, "lines of digits under real-world conditions")
    seconds = time.perf_counter() - t
    strips, ys = [], []
    for s, _ in parts:
        a, b = _load_part(folder / f"part-{s:07d}.npz")
        strips += a
        ys += b
    facts = {"folder": str(folder), "lines": n, "kept": len(strips), "rendered_now": rendered,
             "seconds": round(seconds, 2), "lines_per_second": round(rendered / seconds, 1) if rendered else None}
    return strips, ys, facts


def _save_part(path: Path, strips: list[np.ndarray | None], labels: list[np.ndarray]) -> None:
    """The part's strips side by side in one array, with their widths, and the labels padded."""
    keep = [i for i, s in enumerate(strips) if s is not None]
    width = np.array([strips[i].shape[1] for i in keep], np.int64)
    height = strips[keep[0]].shape[0] if keep else 0
    x = np.concatenate([strips[i] for i in keep], axis=1) if keep else np.zeros((height, 0), np.uint8)
    longest = max((len(labels[i]) for i in keep), default=0)
    y = np.full((len(keep), longest), -1, np.int64)
    for j, i in enumerate(keep):
        y[j, : len(labels[i])] = labels[i]
    buf = io.BytesIO()
    np.savez(buf, x=x, width=width, y=y)
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def _load_part(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with np.load(path) as f:
        x, width, y = f["x"], f["width"], f["y"]
    ends = np.cumsum(width)
    strips = [x[:, e - w : e] for e, w in zip(ends, width)]
    return strips, [row[row >= 0] for row in y]
