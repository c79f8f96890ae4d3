"""Training on what the preprocessing makes of real-world inputs (training/renders.py), and the
textbook preparation the pipeline is measured against (inference/textbook.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import digitrec.training.renders as renders
from digitrec.cli.main import main
from digitrec.data.load import load, split_indices
from digitrec.inference.textbook import textbook
from digitrec.training.config import TrainConfig
from digitrec.errors import UserError

MIX = {"lowres_6_16": 1.0, "faint_pencil": 1.0, "clean_paper": 1.0}  # cheap ones, for speed


@pytest.fixture(scope="module")
def digits(synth_dir):
    ds = load(str(synth_dir))
    tr, _ = split_indices(len(ds.train_x), 100, 0)
    return ds.train_x[tr].numpy(), ds.train_y[tr].numpy()


def test_the_bank_is_preprocess_of_rendered_training_digits(digits, tmp_path):
    x, y = digits
    images, labels, facts = renders.bank(x, y, 12, seed=1, cache=tmp_path, jobs=1, mix=MIX, part=5)
    assert images.dtype == np.uint8 and images.shape[1:] == (28, 28) and len(images) == len(labels) == facts["kept"]
    assert facts["rendered_now"] == 12 and len(images) >= 10  # a render may lose its ink, rarely
    # Each render is what preprocess() makes of that digit drawn under its condition, with its label.
    which, names = renders.plan(len(x), 12, 1, MIX)
    direct = [(renders.render_one((x[which[i]], names[i], 1, i)), y[which[i]]) for i in range(12)]
    kept = [(im, lab) for im, lab in direct if im is not None]
    assert all(np.array_equal(a, im) and b == lab for a, b, (im, lab) in zip(images, labels, kept))
    # ...and not the digit itself: the condition changed it.
    assert not any(np.array_equal(images[i], x[which[i]]) for i in range(min(5, len(images))))
    assert {names[i] for i in range(12)} <= set(MIX)


def test_the_bank_is_cached_and_an_interrupted_build_resumes(digits, tmp_path, monkeypatch):
    x, y = digits
    first = renders.bank(x, y, 12, seed=2, cache=tmp_path, jobs=1, mix=MIX, part=5)
    calls = []
    render_one = renders.render_one
    monkeypatch.setattr(renders, "render_one", lambda task: calls.append(task) or render_one(task))
    again = renders.bank(x, y, 12, seed=2, cache=tmp_path, jobs=1, mix=MIX, part=5)
    assert calls == [] and again[2]["rendered_now"] == 0
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    (next(tmp_path.glob("renders-*")) / "part-0000005.npz").unlink()  # as if killed while rendering it
    resumed = renders.bank(x, y, 12, seed=2, cache=tmp_path, jobs=1, mix=MIX, part=5)
    assert [t[3] for t in calls] == [5, 6, 7, 8, 9] and resumed[2]["rendered_now"] == 5
    assert np.array_equal(first[0], resumed[0])


def test_the_cache_key_follows_what_decides_the_renders(digits):
    x, _ = digits
    key = renders.cache_key(x, 12, 1, MIX)
    assert key == renders.cache_key(x.copy(), 12, 1, dict(MIX))
    changed = [renders.cache_key(x, 13, 1, MIX), renders.cache_key(x, 12, 2, MIX),
               renders.cache_key(x, 12, 1, {**MIX, "very_thin": 1.0}), renders.cache_key(x[::-1], 12, 1, MIX)]
    assert key not in changed and len(set(changed)) == 4


def test_training_draws_its_digits_from_the_bank(synth_dir, tmp_path, monkeypatch):
    """--real-world 1: every training input is a bank image (no augmentation here to change it)."""
    import digitrec.training.loop as loop

    seen, create_model = [], loop.create_model

    def recorded(*args, **kwargs):
        model = create_model(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()) if m.training else None)
        return model

    monkeypatch.setattr(loop, "create_model", recorded)
    monkeypatch.setattr(renders, "MIX", MIX)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(synth_dir), "--data-dir", str(tmp_path / "cache"), "--epochs", "1",
                 "--val-size", "100", "--real-world", "1", "--real-world-bank", "20", "--quiet",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["real_world"]["renders"] == 20 and "renders" in metrics["phases"]
    ds = load(str(synth_dir))
    tr, _ = split_indices(len(ds.train_x), 100, 0)
    images, _, _ = renders.bank(ds.train_x[tr].numpy(), ds.train_y[tr].numpy(), 20, 0, tmp_path / "cache",
                                jobs=1, mix=MIX)
    bank = ds.spec.card().normalise(torch.from_numpy(images)).flatten(1)
    batches = torch.cat(seen[-4:]).flatten(1)  # the training steps (the first forward is the warm-up's)
    exact = "donot_use_mm_for_euclid_dist"
    nearest = torch.cdist(batches, bank, compute_mode=exact).min(1).values
    assert float(nearest.max()) < 1e-4
    raw = ds.spec.card().normalise(ds.train_x[tr]).flatten(1)
    assert float(torch.cdist(batches, raw, compute_mode=exact).min(1).values.min()) > 1e-3


def test_the_share_is_checked_before_anything_loads():
    with pytest.raises(UserError, match="--real-world"):
        TrainConfig(real_world=1.5).check()


def test_the_textbook_preparation_fits_the_ink_into_20_pixels_centred(tmp_path):
    from PIL import Image, ImageDraw

    im = Image.new("L", (300, 200), 235)
    ImageDraw.Draw(im).line([(100, 40), (160, 40), (120, 170)], fill=20, width=9)  # a 7
    out = textbook(im)
    rows, cols = np.nonzero(out.any(1))[0], np.nonzero(out.any(0))[0]
    assert out.dtype == np.uint8 and out.max() > 200
    assert 19 <= rows[-1] - rows[0] + 1 <= 22  # the longer side, 20 px and its anti-aliased rim
    ys, xs = np.nonzero(out)
    w = out[ys, xs].astype(float)
    assert abs(np.average(ys, weights=w) - 14) < 1 and abs(np.average(xs, weights=w) - 14) < 1
    assert not textbook(Image.new("L", (50, 50), 200)).any()


def test_the_shipped_model_follows_the_shipping_rule():
    """pretrained/README.md: at least 99.65% on MNIST test, trained also on real-world renders
    and on shapes that are no digit, calibrated; its metrics are those of the checkpoint shipped."""
    from importlib import resources

    from digitrec.checkpoint import load_checkpoint

    folder = resources.files("digitrec") / "pretrained"
    metrics = json.loads(folder.joinpath("mnist.metrics.json").read_text())
    with resources.as_file(folder / "mnist.pt") as path:
        ckpt = load_checkpoint(path)
    config = ckpt.meta["config"]
    assert metrics["test_accuracy"] >= 0.9965 and config["real_world"] > 0 and config["outliers"] > 0
    assert config["real_sets"] > 0 and config["styles"] > 0, "trained also on real writers and continental shapes"
    assert ckpt.meta["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert ckpt.card.calibrated
    from digitrec.ink import PREPARATION

    assert ckpt.card.preparation == PREPARATION.to_json(), "served under the preprocessing it was trained under"
