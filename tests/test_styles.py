"""Continental styles drawn onto digits (training/styles.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from digitrec.training import styles


def _digit(lines, ellipse=None) -> torch.Tensor:
    """A 28x28 uint8 MNIST-like digit drawn from polylines in a 20x20 box (x 4..24, y 4..24)."""
    im = Image.new("L", (112, 112))
    d = ImageDraw.Draw(im)
    for line in lines:
        d.line([(4 * x, 4 * y) for x, y in line], fill=255, width=10, joint="curve")
    if ellipse:
        d.ellipse([4 * v for v in ellipse], outline=255, width=10)
    return torch.from_numpy(np.asarray(im.reduce(4)).copy())


ONE = _digit([[(14, 4), (14, 24)]])
SEVEN = _digit([[(8, 4), (21, 4), (13, 24)]])
ZERO = _digit([], ellipse=(8, 4, 20, 24))


def test_stylise_keeps_shapes_dtypes_and_labels_and_changes_only_its_share():
    x = torch.stack([ONE, SEVEN, ZERO, ONE] * 8)
    y = torch.tensor([1, 7, 0, 3] * 8)  # the last "digit" claims to be a 3: no style for it
    out, labels = styles.stylise(x, y, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8 and torch.equal(labels, y)
    changed = (out != x).flatten(1).any(1)
    assert bool(changed[y != 3].all()) and not bool(changed[y == 3].any())
    same, _ = styles.stylise(x, y, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(same, x)
    assert int(out.flatten(1).amax(1).min()) == 255, "MNIST's darkest ink is 255"


def test_the_same_seed_gives_the_same_digits_and_another_seed_others():
    x, y = torch.stack([ONE, SEVEN, ZERO] * 6), torch.tensor([1, 7, 0] * 6)
    a = styles.stylise(x, y, 0.5, torch.Generator().manual_seed(3))[0]
    b = styles.stylise(x, y, 0.5, torch.Generator().manual_seed(3))[0]
    c = styles.stylise(x, y, 0.5, torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def _mnist_like(img: torch.Tensor) -> None:
    ys, xs = np.nonzero(img.numpy() > 25)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 == pytest.approx(20, abs=1.5), "longer side 20 px"
    w = img.float()
    r = torch.arange(28.0)
    cy, cx = float((w.sum(1) * r).sum() / w.sum()), float((w.sum(0) * r).sum() / w.sum())
    assert cy == pytest.approx(14, abs=0.6) and cx == pytest.approx(14, abs=0.6), "centre of mass at (14, 14)"


def test_a_continental_one_has_a_flag_left_of_its_stem_top():
    out = styles.style(ONE[None].repeat(8, 1, 1), 1, torch.Generator().manual_seed(1)).float()
    for img in out:
        _mnist_like(img.to(torch.uint8))
        ys, xs = np.nonzero(img.numpy() > 128)
        top, stem_x = ys.min(), np.median(xs)
        upper_left = img[top : top + 8, : int(stem_x) - 2].sum()
        lower_left = img[top + 11 : top + 16, : int(stem_x) - 2].sum()  # mid-stem: no flag, no foot
        assert upper_left > 4 * 255 and upper_left > 3 * lower_left


def test_a_crossed_seven_has_ink_either_side_of_its_stem_halfway_down():
    plain = styles.normalise(torch.nn.functional.pad(SEVEN[None].float() / 255, (6,) * 4))[0]
    out = styles.style(SEVEN[None].repeat(8, 1, 1), 7, torch.Generator().manual_seed(2)).float() / 255
    middle = slice(10, 20)  # the stem's middle, below the 7's top bar
    widest = (out[:, middle] > 0.5).sum(2).amax(1)  # (8,) the widest row there
    assert int(widest.min()) >= int((plain[middle] > 0.5).sum(1).max()) + 4, "a bar crosses the stem"


def test_a_slashed_zero_has_ink_inside_its_oval_a_closed_four_stays_a_four():
    out = styles.style(ZERO[None].repeat(8, 1, 1), 0, torch.Generator().manual_seed(5)).float() / 255
    assert bool((out[:, 12:16, 12:16].amax((1, 2)) > 0.5).all()), "the slash crosses the centre"
    assert float((ZERO[12:16, 12:16].float() / 255).max()) < 0.1, "which the plain 0 leaves empty"
    four = _digit([[(12, 4), (6, 17), (23, 17)], [(18, 8), (18, 24)]])  # an open 4: the arm's top is apart
    out = styles.style(four[None].repeat(8, 1, 1), 4, torch.Generator().manual_seed(6)).float() / 255
    plain = styles.normalise(torch.nn.functional.pad(four[None].float() / 255, (6,) * 4))
    gap = (slice(None), slice(8, 12), slice(13, 17))  # between the arm's top and the stem's
    assert float((plain[gap] > 0.5).sum()) <= 2, "the open 4 has a gap at the top"
    assert float((out[gap] > 0.5).float().sum((1, 2)).min()) >= 3, "which the closed 4 joins"


def test_a_continental_nine_keeps_its_loop_and_grows_a_stem_or_hook():
    nine = _digit([[(20, 10), (20, 24)]], ellipse=(8, 4, 20, 15))
    out = styles.style(nine[None].repeat(8, 1, 1), 9, torch.Generator().manual_seed(7))
    assert out.shape == (8, 28, 28) and out.dtype == torch.uint8
    holes = styles._holes(torch.nn.functional.pad(out.float() / 255, (6,) * 4))
    assert bool((holes.sum((1, 2)) >= 3).all()), "the loop is still there"


def test_the_bank_has_each_class_and_refuses_bad_input():
    x, y = torch.stack([ONE, SEVEN, ZERO] * 4), torch.tensor([1, 7, 0] * 4)
    bx, by = styles.build_style_bank(x, y, 10, seed=0)
    assert bx.shape == (10, 28, 28) and bx.dtype == torch.uint8 and set(by.tolist()) == {0, 1, 7}
    assert torch.equal(bx, styles.build_style_bank(x, y, 10, seed=0)[0])
    with pytest.raises(ValueError, match="uint8"):
        styles.stylise(x.float(), y, 0.5, torch.Generator())
    with pytest.raises(ValueError, match="styled classes"):
        styles.build_style_bank(x, torch.full_like(y, 3), 4, seed=0)
