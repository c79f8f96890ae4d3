"""Explanations: occlusion saliency must be faithful (its deletion curve below random's), local
to the ink, and drawable over the input and over the original image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digitrec.inference.decode import decode
from digitrec.inference.explain import deletion_curve, overlay_input, overlay_original, saliency, squares
from digitrec.inference.predictor import Predictor
from synth import make_images


@pytest.fixture(scope="module")
def toy(synth_run):
    return Predictor(synth_run / "best.pt")


def test_squares_cover_every_pixel():
    m = squares(28, 3, 1)
    assert m.shape == (26 * 26, 28, 28) and m.sum((1, 2)).tolist() == [9] * 676
    assert m.any(0).all()


def test_saliency_is_zero_away_from_ink_and_positive_for_the_answer(toy):
    import torch

    image = make_images(torch.tensor([3]), seed=4)[0].numpy()
    image[image < 40] = 0  # clean background
    label = int(toy.probabilities([image])[0].argmax())
    sal = saliency(toy.probabilities, image, [label, (label + 1) % 10])
    assert sal.shape == (2, 28, 28)
    far = np.ones((28, 28), bool)
    ys, xs = np.nonzero(image)
    for y, x in zip(ys, xs):
        far[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] = False
    assert np.all(sal[:, far] == 0), "a square that wipes no ink changes nothing"
    assert sal[0].sum() > 0, "the ink speaks for the answer"


def test_deletion_curve_of_saliency_falls_faster_than_random(toy):
    """The deletion test on a trained toy model: wiping the most salient pixels first must lower
    the probability of the answer more than wiping them in random order, at every step."""
    import torch

    images = make_images(torch.arange(40) % 10, seed=21).numpy()
    images[images < 40] = 0
    probs = toy.probabilities(list(images))
    pred = probs.argmax(1)
    sal = np.stack([saliency(toy.probabilities, im, [int(c)])[0] for im, c in zip(images, pred)])
    by_saliency = np.argsort(-sal.reshape(len(images), -1), 1, kind="stable")
    rng = np.random.default_rng(0)
    random = np.stack([rng.permutation(784) for _ in images])
    s, r = (deletion_curve(toy.probabilities, images, pred, order, steps=10) for order in (by_saliency, random))
    assert s[0] == pytest.approx(r[0]) and s[-1] == pytest.approx(r[-1], abs=1e-6)  # all ink wiped either way
    assert np.all(s[1:-1] < r[1:-1]), f"saliency {s.round(3)} vs random {r.round(3)}"


def test_overlays_are_pngs_of_the_right_size():
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 12:16] = 255
    sal = np.zeros((28, 28), np.float32)
    sal[6:22, 12:16] = 0.3
    small = Image.open(io.BytesIO(overlay_input(image, sal)))
    assert small.size == (224, 224)
    assert small.getpixel((14 * 8, 14 * 8))[0] > small.getpixel((14 * 8, 14 * 8))[2], "evidence is red"
    original = decode(Image.new("L", (600, 300), 230))
    big = Image.open(io.BytesIO(overlay_original(original, image, sal, (100, 50, 160, 250))))
    assert big.size == (512, 256)
    inside, outside = big.getpixel((110, 120)), big.getpixel((400, 200))
    assert outside == (230, 230, 230) and inside != outside
