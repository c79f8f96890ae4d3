"""The document conditions (scenes.DOCUMENTS): each draws the digit where it says, with the
clutter a document puts around it, the same way for the same seed. Digits: the validation
fixture of the MNIST training set (tests/fixtures/digits.npz)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitrec import scenes

FIXTURE = Path(__file__).parent / "fixtures" / "digits.npz"


@pytest.fixture(scope="module")
def images():
    with np.load(FIXTURE) as f:
        return f["images"]


def rendered(digit: np.ndarray, condition: str, seed: int):
    """(gray image (H, W) float in [0, 1], the digit's box in it)."""
    glyph = scenes.glyph_of(digit)
    data, _, boxes = scenes.render(scenes.Canvas(glyph, [scenes.ink_box(glyph)]), condition,
                                   np.random.default_rng(seed))
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255, boxes[0]


def dark(a: np.ndarray, by: float = 0.15) -> np.ndarray:
    """Pixels `by` darker than the paper (the lightest tenth)."""
    return a < np.percentile(a, 90) - by


def rule_share(a: np.ndarray) -> float:
    """How fully a vertical rule runs down `a`: in each quarter of its rows, the best column's
    share of pixels darker than their row (a pixel's tilt allowed); the worst quarter's."""
    d = a < np.median(a, 1, keepdims=True) - 0.05
    d = d | np.roll(d, 1, 1) | np.roll(d, -1, 1)
    return min(q.mean(0).max() for q in np.array_split(d, 4, 0))


def ruled_cell(a: np.ndarray) -> float:
    """The weakest of the rules a register cell has: at the left, at the right, at the top."""
    h, w = a.shape
    e, t = max(3, w // 4), max(3, h // 5)
    return min(rule_share(a[:, :e]), rule_share(a[:, -e:]), rule_share(a[:t].T))


def test_every_document_condition_is_registered_and_deterministic(images):
    assert set(scenes.DOCUMENTS) <= set(scenes.CONDITIONS)
    for name in scenes.DOCUMENTS:
        one = scenes.render_digit(images[0], name, np.random.default_rng(3))
        assert one == scenes.render_digit(images[0], name, np.random.default_rng(3))
        assert one != scenes.render_digit(images[0], name, np.random.default_rng(4))


@pytest.mark.parametrize("name", scenes.DOCUMENTS)
def test_a_line_of_digits_renders_under_each_with_a_box_per_digit(images, name):
    data, _, boxes = scenes.render_line(list(images[:3]), name, np.random.default_rng(1), gap=(0.2, 0.6))
    a = np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255
    assert len(boxes) == 3 and all(0 <= b[0] < b[2] <= a.shape[1] and 0 <= b[1] < b[3] <= a.shape[0] for b in boxes)
    assert all(dark(a[b[1] : b[3], b[0] : b[2]]).mean() > 0.05 for b in boxes)  # each digit is there


def test_a_register_cell_has_long_rules_at_both_edges_and_the_top(images):
    shares = [ruled_cell(rendered(images[s % 30], "register_cell", s)[0]) for s in range(20)]
    assert sum(s >= 0.75 for s in shares) >= 16, shares
    plain = [ruled_cell(rendered(images[s % 30], "clean_paper", s)[0]) for s in range(10)]
    assert max(plain) < 0.3, plain  # the measure does not find rules where there are none


def test_a_register_cells_number_is_mostly_a_third_to_three_fifths_of_its_height_and_sometimes_small(images):
    share = []
    for s in range(40):
        a, (left, top, right, bottom) = rendered(images[s % 30], "register_cell", s)
        assert dark(a[top:bottom, left:right]).mean() > 0.05  # the digit is in its box
        share.append((bottom - top) / a.shape[0])
    share = np.array(share)
    assert ((share > 0.3) & (share < 0.65)).mean() >= 0.6
    assert ((share > 0.12) & (share < 0.23)).sum() >= 3


def test_a_form_box_has_print_outside_the_digits_box(images):
    for s in range(6):
        a, (left, top, right, bottom) = rendered(images[s], "form_box", s)
        ink = dark(a)
        outside = ink.copy()
        outside[max(top - 2, 0) : bottom + 2, max(left - 2, 0) : right + 2] = False
        assert ink[top:bottom, left:right].mean() > 0.05
        assert outside.sum() > a.shape[0] + a.shape[1]  # the box's frame and its caption


def test_an_underline_runs_close_under_the_number(images):
    for s in range(6):
        a, (left, top, right, bottom) = rendered(images[s], "underlined", s)
        below = dark(a[bottom : bottom + round(0.4 * (bottom - top)) + 3, left:right], 0.08)
        assert below.mean(1).max() > 0.7, s  # a row under the digit is dark across most of its width


def test_a_tick_or_cross_sits_beside_the_number(images):
    for s in range(6):
        a, (left, top, right, bottom) = rendered(images[s], "tick_cross", s)
        rows = dark(a[top:bottom], 0.08)
        rows[:, max(left - 2, 0) : right + 2] = False
        assert rows.sum() > 0.05 * (bottom - top) ** 2, s


def test_a_binding_shadow_darkens_one_edge(images):
    for s in range(6):
        a, (left, top, right, bottom) = rendered(images[s], "binding_shadow", s)
        edges = [a[:, :3].mean(), a[:, -3:].mean(), a[:3].mean(), a[-3:].mean()]
        assert min(edges) < 0.75 * max(edges), (s, edges)
        assert dark(a[top:bottom, left:right], 0.08).mean() > 0.05
