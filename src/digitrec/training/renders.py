"""Training digits as people hand them over, prepared by the very `preprocess()` users' images
go through: the model learns the distribution it will be given, not only MNIST's clean strokes.

A blurred 8x8 scan enlarged, a faint pencil, a marker or a phone photo does not come out of
preprocessing looking like an MNIST digit, however good the preprocessing: the strokes stay
soft, fat, thin or broken. So training digits (the training split only: validation digits stay
unseen) are rendered under a mix of real-world conditions (`MIX`: the scenes package's, and low
resolution drawn anywhere from 6 to 16 px), encoded as files are (PNG or JPEG), and prepared by
`preprocess()`, exactly as `digitrec predict` and the server prepare an upload.

Rendering is Python per image (Pillow, scipy), so it happens once, before training, in worker
processes, in parts of PART images; each part is written to the cache as it is done (an
interrupted build takes up again where it stopped) under a key made of everything that
decides the result: the digits' bytes, the mix, the seed, the count and the source of the code
that renders and prepares (a change to preprocessing makes a new bank). Training then draws
from the bank as tensors on the device (step.py): no per-sample Python in the hot loop.
"""

from __future__ import annotations

import hashlib
import io
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from importlib import resources
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .. import scenes
from ..util import atomic_write

PART = 1000  # renders per cached part

# Conditions the bank is drawn from, with weights: those where preprocessing alone leaves the
# most behind weigh most (low resolution, blur, pencil, marker, photos on tables, form frames);
# clean ones keep the model at home on ordinary scans.
LOWRES = replace(scenes.CONDITIONS["lowres_8"], name="lowres_6_16",
                 help="cut tightly from a form, scanned at 6 to 16 px and enlarged",
                 paint=lambda canvas, rng: scenes.low_resolution(int(rng.integers(6, 17)))(canvas, rng))
MIX: dict[str, float] = {"lowres_6_16": 4.0, "soft_gray": 1.0, "faint_pencil": 1.0, "very_thick": 1.0,
                         "very_thin": 1.0, "phone_shadow": 1.0, "dark_table": 1.0, "frame_box": 1.0,
                         "lined_paper": 1.0, "speckle": 1.0, "jpeg_low": 1.0, "clean_paper": 1.0,
                         # digits in the cells of documents, as preprocess's mark finder leaves them
                         "register_cell": 1.0, "form_box": 1.0, "underlined": 1.0, "tick_cross": 1.0,
                         "binding_shadow": 0.5}
# The source files the cache key hashes: every module a render runs, and none it does not.
# RENDERING: the scenes modules that lay out, paint and encode (the registry imports them all;
# not nondigits.py, nor __init__.py, which only re-exports); tests/test_scenes.py checks it
# against the imports. ink.py: preprocess measures strokes with it.
RENDERING = tuple(f"scenes/{m}.py" for m in ("canvas", "strokes", "paper", "pens", "damage", "printing",
                                              "documents", "register", "conditions"))
CODE = (*RENDERING, "ink.py", "marks.py", "inference/preprocess.py", "inference/decode.py", "inference/pixels.py",
        "training/renders.py")


def condition(name: str) -> scenes.Condition:
    return LOWRES if name == LOWRES.name else scenes.get_condition(name)


def render_one(task: tuple[np.ndarray, str, int, int]) -> np.ndarray | None:
    """(digit (28, 28) uint8, condition, seed, index) -> the (28, 28) uint8 model input that
    preprocess() makes of the digit rendered that way; None where it finds no ink."""
    from ..errors import PreprocessError
    from ..inference.preprocess import preprocess

    digit, name, seed, i = task
    rng = np.random.default_rng([seed, i])
    data, _ = scenes.render_digit(digit, condition(name), rng)
    try:
        pre = preprocess(data)
    except PreprocessError:
        return None
    return None if pre.blank else pre.image


def plan(n_digits: int, n: int, seed: int, mix: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    """Which digit (an index into the digits given) and which condition each render is."""
    rng = np.random.default_rng(seed)
    names = sorted(mix)
    p = np.array([mix[k] for k in names], float)
    return rng.integers(n_digits, size=n), [names[j] for j in rng.choice(len(names), size=n, p=p / p.sum())]


def cache_key(digits: np.ndarray, n: int, seed: int, mix: dict[str, float]) -> str:
    h = hashlib.sha256(np.ascontiguousarray(digits).tobytes())
    h.update(repr((n, seed, sorted(mix.items()))).encode())
    root = resources.files("digitrec")
    for name in CODE:
        h.update(root.joinpath(name).read_bytes())
    return h.hexdigest()[:16]


def bank(digits: np.ndarray, labels: np.ndarray, n: int, seed: int, cache: Path, jobs: int = 2,
         mix: dict[str, float] | None = None, log=lambda s: None, part: int = PART) -> tuple[np.ndarray, np.ndarray, dict]:
    """`n` renders of `digits` ((N, 28, 28) uint8, training split only) under `mix`, prepared by
    preprocess(): (images (M, 28, 28) uint8, their labels (M,), facts), M <= n (renders in which
    preprocessing finds no ink are left out). `facts`: where it is cached, how many parts were
    rendered now, seconds and images per second. The same arguments give the same bank."""
    mix = mix or MIX
    folder = Path(cache) / f"renders-{cache_key(digits, n, seed, mix)}"
    folder.mkdir(parents=True, exist_ok=True)
    which, names = plan(len(digits), n, seed, mix)
    t = time.perf_counter()
    parts, rendered = build_parts(
        folder, n, part, lambda s, e: [(digits[which[i]], names[i], seed, i) for i in range(s, e)], render_one,
        lambda path, images, s, e: _save_part(path, images, labels[which[s:e]]), jobs, log,
        "real-world training digits", chunksize=16)
    seconds = time.perf_counter() - t
    x, y = zip(*(_load_part(folder / f"part-{s:07d}.npz") for s, _ in parts))
    facts = {"folder": str(folder), "renders": n, "kept": int(sum(len(a) for a in y)), "rendered_now": rendered,
             "seconds": round(seconds, 2), "images_per_second": round(rendered / seconds, 1) if rendered else None}
    return np.concatenate(x), np.concatenate(y), facts


def build_parts(folder: Path, n: int, part: int, tasks, render, save, jobs: int, log, what: str,
                chunksize: int = 8) -> tuple[list[tuple[int, int]], int]:
    """Render `n` items in parts of `part` into `folder`, skipping the parts already there (an
    interrupted build takes up again at its part): `tasks(s, e)` the arguments of items s to e,
    `render` one item (in `jobs` worker processes), `save(path, results, s, e)` writes a part
    atomically. Returns every part's (start, end) and how many items were rendered now."""
    parts = [(s, min(s + part, n)) for s in range(0, n, part)]
    todo = [(s, e) for s, e in parts if not (folder / f"part-{s:07d}.npz").exists()]
    if todo:
        t = time.perf_counter()
        log(f"rendering {sum(e - s for s, e in todo):,} {what} in {jobs} processes (cached in {folder})")
        with _pool(jobs) as pool:
            for s, e in todo:
                args = tasks(s, e)
                made = list(pool.map(render, args, chunksize=chunksize)) if pool else list(map(render, args))
                save(folder / f"part-{s:07d}.npz", made, s, e)
                log(f"  {e:,} of {n:,} ({time.perf_counter() - t:.0f} s)")
    return parts, sum(e - s for s, e in todo)


def _pool(jobs: int):
    """Worker processes (spawned: the parent may hold torch's threads, which fork does not
    copy safely), or a stand-in for rendering in this process when jobs <= 1."""
    if jobs <= 1:
        from contextlib import nullcontext

        return nullcontext(None)
    return ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))


def _save_part(path: Path, images: list[np.ndarray | None], labels: np.ndarray) -> None:
    keep = [i for i, im in enumerate(images) if im is not None]
    x = np.stack([images[i] for i in keep]) if keep else np.zeros((0, 28, 28), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=np.asarray(labels)[keep].astype(np.int64))
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def _load_part(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as f:
        return f["x"], f["y"]
