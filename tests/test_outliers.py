"""Outlier exposure: the bank of shapes that are not one character, and training with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitrec.training import outliers
from synth import make_images


def test_the_bank_is_model_inputs_of_each_kind_and_repeatable():
    digits = make_images(torch.arange(40) % 10, seed=3)
    a, b = outliers.bank(digits, 30, seed=1), outliers.bank(digits, 30, seed=1)
    assert a.shape == (30, 28, 28) and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, outliers.bank(digits, 30, seed=2))
    assert bool((a.flatten(1).amax(1) >= 128).all()), "each is an input as preprocessing makes it: strong ink"
    pairs = a[0::2].numpy() > 0  # kinds alternate, pairs first
    cols = pairs.any(1).sum(1)
    rows = pairs.any(2).sum(1)
    assert np.median(cols / rows) > 1.1, "two digits side by side are wider than tall"


def test_training_with_outliers_makes_the_model_doubt_them(synth_dir, tmp_path):
    from digitrec.inference.predictor import Predictor
    from digitrec.training.config import TrainConfig
    from digitrec.training.loop import train

    shapes = outliers.bank(make_images(torch.arange(60) % 10, seed=9), 60, seed=5)
    confidence = {}
    for share in (0.0, 0.5):
        cfg = TrainConfig(dataset=str(synth_dir), val_size=100, epochs=3, batch_size=64, lr=3e-3, outliers=share,
                          device="cpu", seed=0)
        train(cfg, tmp_path / str(share), quiet=True)
        p = Predictor(tmp_path / str(share) / "last.pt")
        confidence[share] = float(p.probabilities(list(shapes.numpy())).max(1).mean())
    assert confidence[0.5] < confidence[0.0] - 0.1, confidence


def test_the_bank_holds_doodles_drawn_like_its_other_shapes(monkeypatch):
    from digitrec.scenes.doodles import DOODLES, UPPER, doodle

    assert not set("OISZBG") & set(UPPER), "letters a hand makes look like digits stay out"
    rng = np.random.default_rng(0)
    for kind in DOODLES:
        g = doodle(kind, rng, field=56)
        assert g.shape == (56, 56) and g.dtype == np.float32 and 0 <= g.min() and g.max() <= 1
        ys, xs = np.nonzero(g > 0.5)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 == pytest.approx(40, abs=3), f"{kind} fills 20/28 of the field"
        x = outliers.model_input(g)
        assert x.shape == (28, 28) and x.dtype == np.uint8 and x.max() >= 128
    first = [doodle(k, np.random.default_rng(7), 56) for k in DOODLES]
    assert all(np.array_equal(a, doodle(k, np.random.default_rng(7), 56)) for a, k in zip(first, DOODLES))
    with pytest.raises(ValueError, match="unknown doodle"):
        doodle("teapot", rng)
    import digitrec.scenes.doodles

    drawn = []
    monkeypatch.setattr(digitrec.scenes.doodles, "doodle", lambda kind, rng, field: drawn.append(kind) or doodle(kind, rng, field))
    shapes = [outliers.shape(np.random.default_rng(s)) for s in range(130)]
    assert set(drawn) == set(DOODLES) and 40 <= len(drawn) <= 100, "the bank draws every doodle, 7 of 13 kinds"
    assert all(x is not None for x in shapes)
