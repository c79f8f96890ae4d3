import json

import torch
from torch import nn

from digitrec.augment import TTA_SHIFTS, AffineAug, shifted
from digitrec.card import ModelCard
from digitrec.cli.main import main
from digitrec.metrics import logits_of

BG = -0.4242  # a normalised 0 pixel


def digit_batch(n: int = 16) -> torch.Tensor:
    """(n, 1, 28, 28): n copies of one asymmetric glyph (an L) on the background."""
    x = torch.full((n, 1, 28, 28), BG)
    x[:, :, 6:22, 9:12] = 2.8  # the stem
    x[:, :, 19:22, 9:20] = 2.8  # the foot, to the right: mirrored it would point left
    return x


def test_affine_aug_draws_one_transform_per_image():
    x = digit_batch()
    out = AffineAug()(x, BG, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    flat = out.flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(4) for j in range(i + 1, 4))  # not one per batch


def test_affine_aug_is_reproducible_keeps_the_background_and_never_flips():
    x = digit_batch(8)
    a = AffineAug()(x, BG, torch.Generator().manual_seed(1))
    b = AffineAug()(x, BG, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    empty = torch.full((4, 1, 28, 28), BG)
    assert torch.allclose(AffineAug()(empty, BG, torch.Generator().manual_seed(0)), empty)
    theta = AffineAug().matrices(10_000, 28, torch.Generator().manual_seed(2), "cpu")
    assert (torch.linalg.det(theta[:, :, :2]) > 0).all()  # a flip has a negative determinant


def test_affine_aug_with_no_ranges_is_the_identity():
    x = digit_batch(4)
    out = AffineAug(rotate=0, scale=0, shear=0, translate=0)(x, BG, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)


def test_shifted_moves_the_image_and_fills_with_background():
    x = torch.full((1, 1, 5, 5), BG)
    x[0, 0, 2, 2] = 1.0
    right = shifted(x, 1, 0, BG)
    assert right[0, 0, 2, 3] == 1.0 and (right == 1.0).sum() == 1
    down = shifted(x, 0, -2, BG)  # negative dy: up
    assert down[0, 0, 0, 2] == 1.0
    corner = torch.full((1, 1, 3, 3), 1.0)
    assert (shifted(corner, 1, 1, BG)[0, 0, 0] == BG).all()  # the uncovered row is background
    assert shifted(x, 0, 0, BG) is x


class InkSum(nn.Module):
    """Logits from the total ink only: blind to where the digit is."""

    def __init__(self, background: float):
        super().__init__()
        self.background = background
        self.w = nn.Parameter(torch.linspace(-1, 1, 10))

    def forward(self, x):
        return (x - self.background).sum((1, 2, 3))[:, None] * self.w / 100


def test_tta_averages_the_shifted_views():
    images = torch.zeros(6, 28, 28, dtype=torch.uint8)
    images[:, 8:20, 10:18] = torch.arange(6, dtype=torch.uint8)[:, None, None] * 40
    mean, std = 0.1307, 0.3081
    card = ModelCard("digits", tuple("0123456789"), mean, std)
    blind = InkSum(-mean / std)
    plain = logits_of(blind, images, card).log_softmax(1)
    assert torch.allclose(logits_of(blind, images, card, tta=True), plain, atol=1e-5)
    torch.manual_seed(0)
    where = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # sees positions: the views differ
    x = ((images.float() / 255 - mean) / std).unsqueeze(1)
    views = torch.stack([where(shifted(x, dx, dy, -mean / std)).log_softmax(1) for dx, dy in TTA_SHIFTS])
    got = logits_of(where, images, card, tta=True)
    assert torch.allclose(got, views.mean(0), atol=1e-5)
    assert not torch.allclose(got, logits_of(where, images, card).log_softmax(1), atol=1e-3)


def test_evaluate_with_tta_writes_its_own_report(synth_run, capsys):
    assert main(["evaluate", "--checkpoint", str(synth_run / "best.pt"), "--tta"]) == 0
    printed = capsys.readouterr().out
    assert "with test-time augmentation" in printed
    summary = json.loads((synth_run / "tta" / "evaluation.json").read_text())
    assert summary["tta"] is True and "test-time augmentation" in summary["title"]
    assert (synth_run / "tta" / "errors_grid.png").exists()
    assert not (synth_run / "evaluation.json").exists() or \
        json.loads((synth_run / "evaluation.json").read_text()).get("tta") is not True  # the run's own report is kept


# ----------------------------------------------------------------------------- the extras

from digitrec.augment import Augment, gaussian_blur  # noqa: E402

STD = 0.3081


def ink_of(x: torch.Tensor) -> torch.Tensor:
    return ((x - BG) * STD).clamp(0, 1)


def thin_digit_batch(n: int = 16) -> torch.Tensor:
    """An L drawn with full ink and grey (anti-aliased) edges, on the background, as a normalised image."""
    ink = torch.zeros(n, 1, 28, 28)
    ink[:, :, 5:23, 9:13] = 0.4
    ink[:, :, 19:23, 9:21] = 0.4
    ink[:, :, 6:22, 10:12] = 1.0
    ink[:, :, 20:22, 10:20] = 1.0
    return ink / STD + BG


def test_each_extra_changes_the_images_one_draw_per_image_and_reproducibly():
    x = thin_digit_batch()
    for extra in ({"elastic": 2.0}, {"stroke": 1.0}, {"blur": 1.5}, {"contrast": 1.0}):
        aug = Augment(None, **extra)
        a = aug(x, BG, torch.Generator().manual_seed(3), STD)
        assert torch.equal(a, aug(x, BG, torch.Generator().manual_seed(3), STD)), extra
        assert not torch.allclose(a, x, atol=1e-3), extra
        flat = a.flatten(1)
        assert not all(torch.allclose(flat[0], flat[j], atol=1e-4) for j in range(1, 8)), f"{extra}: one draw per batch"
        assert torch.isfinite(a).all() and ink_of(a).max() <= 1 + 1e-5


def test_extras_off_draw_exactly_what_the_affine_map_drew_before():
    x = thin_digit_batch(8)
    old = AffineAug()(x, BG, torch.Generator().manual_seed(5))
    new = Augment(AffineAug())(x, BG, torch.Generator().manual_seed(5), STD)
    assert torch.equal(old, new)


def test_stroke_thickens_and_thins_and_blur_spreads_the_ink():
    x = torch.full((64, 1, 28, 28), BG)
    x[:, :, 6:22, 9:14] = 1 / STD + BG  # a bar five pixels wide: erosion thins it, dilation widens it
    area = (ink_of(x) > 0.5).flatten(1).sum(1).float()
    thick = ink_of(Augment(None, stroke=1.0)(x, BG, torch.Generator().manual_seed(0), STD))
    changed = (thick > 0.5).flatten(1).sum(1).float()
    assert (changed > area).any() and (changed < area).any(), "both dilation and erosion are drawn"
    blurred = gaussian_blur(ink_of(x), torch.full((64,), 1.0))
    assert (blurred > 0.05).flatten(1).sum(1).min() > (ink_of(x) > 0.05).flatten(1).sum(1).max()
    assert torch.allclose(blurred.sum((1, 2, 3)), ink_of(x).sum((1, 2, 3)), rtol=1e-4), "blur keeps the ink"
    assert torch.allclose(gaussian_blur(ink_of(x), torch.zeros(64)), ink_of(x), atol=1e-6), "sigma 0 is the identity"


def test_extras_keep_an_empty_image_empty():
    empty = torch.full((4, 1, 28, 28), BG)
    out = Augment(AffineAug(), elastic=2, stroke=1, blur=1, contrast=1)(empty, BG, torch.Generator().manual_seed(0), STD)
    assert torch.allclose(out, empty, atol=1e-6)
