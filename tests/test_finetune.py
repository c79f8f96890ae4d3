"""`digitrec finetune` on a tiny synthetic set: a calibrated checkpoint with before-and-after
figures, learned from corrections written in a style the model has not seen."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from digitrec.checkpoint import load_checkpoint
from digitrec.cli.main import main
from digitrec.corrections import Corrections
from digitrec.finetune import split
from synth import make_images


def styled(labels: torch.Tensor, seed: int) -> np.ndarray:
    """Synthetic glyphs drawn bold and pushed to a corner: a 'writer' the model never saw."""
    x = torch.nn.functional.max_pool2d(make_images(labels, seed=seed).float()[:, None], 3, 1, 1)[:, 0]
    return torch.roll(x, shifts=(3, -3), dims=(1, 2)).clamp(0, 255).byte().numpy()


def test_split_holds_out_a_share_of_each_class():
    labels = np.array([0] * 8 + [1] * 4 + [2])
    kept, held = split(labels, 0.25, seed=0)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(13))
    assert sorted(labels[held].tolist()) == [0, 0, 1]  # floor(8/4), floor(4/4), floor(1/4)


def test_finetune_learns_the_corrections_and_writes_a_calibrated_checkpoint(synth_run, tmp_path, capsys):
    labels = torch.arange(60) % 10
    folder = Corrections(tmp_path / "corr", tuple("0123456789"))
    for im, y in zip(styled(labels, seed=11), labels.tolist()):
        folder.add(im, str(y), "styled.png")
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(synth_run / "best.pt"), "--data", str(tmp_path / "corr"),
                 "--out", str(out), "--steps", "120", "--lr", "0.002"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["corrections"] == 60 and m["held_out"] == 10 and m["trained_on"] == 50
    assert m["after"]["held_out_accuracy"] > m["before"]["held_out_accuracy"]
    assert m["after"]["dataset_accuracy"] is not None and m["scored_on"] == "test" and m["steps"] == 120
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.card.calibrated and ckpt.meta["finetune"]["after"] == m["after"]
    assert "held-out corrections" in (out / "report.md").read_text()
    assert "--checkpoint" in capsys.readouterr().out
    # predict takes it like any checkpoint
    from PIL import Image

    Image.fromarray(styled(torch.tensor([4]), seed=12)[0]).save(tmp_path / "four.png")
    assert main(["predict", str(tmp_path / "four.png"), "--checkpoint", str(out / "best.pt")]) == 0


def test_finetune_without_corrections_is_a_clear_error(synth_run, tmp_path, capsys):
    assert main(["finetune", "--checkpoint", str(synth_run / "best.pt"), "--data", str(tmp_path / "none")]) == 2
    assert "holds no corrections yet" in capsys.readouterr().err


def _folder(path, labels, images=None) -> Corrections:
    folder = Corrections(path, tuple("0123456789"))
    images = styled(torch.tensor(labels), seed=11) if images is None else images
    for im, y in zip(images, labels):
        folder.add(im, str(y), "styled.png")
    return folder


@pytest.mark.parametrize("how", ["images missing", "label byte 10", "label byte 200"])
def test_finetune_on_a_damaged_folder_is_a_clear_error(synth_run, tmp_path, capsys, how):
    """Issue: a traceback on a missing images file or on label bytes 10 and 200."""
    from digitrec.corrections import IMAGES, LABELS

    _folder(tmp_path / "corr", list(range(10)))
    if how == "images missing":
        (tmp_path / "corr" / IMAGES).unlink()
    else:
        with open(tmp_path / "corr" / LABELS, "r+b") as f:
            f.seek(8 + 3)
            f.write(bytes([int(how.split()[-1])]))
    assert main(["finetune", "--checkpoint", str(synth_run / "best.pt"), "--data", str(tmp_path / "corr"),
                 "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err
    assert ("is missing" if how == "images missing" else f"label byte {how.split()[-1]}") in err
    assert "Traceback" not in err and not (tmp_path / "ft").exists()


def test_a_model_worse_on_the_dataset_is_not_kept_unless_asked(synth_run, tmp_path, capsys):
    """Issue: one correction gave a checkpoint 3 points worse, with a lower unsure threshold, and no
    warning. Here ten corrections all say '0': the model learns to answer 0; it is not kept, the
    classes it lost are named, and the few held-out corrections are said to measure nothing."""
    _folder(tmp_path / "corr", [0] * 10, styled(torch.arange(10), seed=11))
    args = ["finetune", "--checkpoint", str(synth_run / "best.pt"), "--data", str(tmp_path / "corr"),
            "--steps", "40", "--lr", "0.05", "--anchor", "0", "--replay", "0", "--batch", "16"]
    assert main([*args, "--out", str(tmp_path / "ft")]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["after"]["dataset_accuracy"] < m["before"]["dataset_accuracy"] and m["kept"] is False
    assert not (tmp_path / "ft" / "best.pt").exists() and (tmp_path / "ft" / "worse.pt").exists()
    assert "not kept" in text and "--keep-worse" in text
    assert "2 held-out corrections" in text and "too few" in text
    collapsed = m["collapsed"]
    assert len(collapsed) >= 3 and "0" not in collapsed and f"class {collapsed[0]}" in text
    before, after = m["before"]["per_class"], m["after"]["per_class"]
    assert len(before) == len(after) == 10 and after[0] >= before[0] - 1e-9
    assert "each class, synthetic test: 0 " in text
    assert "| class |" in (tmp_path / "ft" / "report.md").read_text()
    assert main([*args, "--out", str(tmp_path / "kept"), "--keep-worse"]) == 0
    assert load_checkpoint(tmp_path / "kept" / "best.pt").meta["finetune"]["kept"] is True


def test_contradictory_and_duplicate_corrections_are_left_out_and_reported(synth_run, tmp_path, capsys):
    """Issue: the same image stored under all ten labels went through finetune without a word."""
    labels = list(range(10)) * 3
    images = styled(torch.tensor(labels), seed=11)
    poison = np.repeat(images[:1], 10, axis=0)  # one image under every label
    twice = np.repeat(images[5:6], 2, axis=0)  # one image sent three times with its label
    folder = _folder(tmp_path / "corr", labels + list(range(10)) + [5, 5], np.concatenate([images, poison, twice]))
    assert len(folder) == 42
    assert main(["finetune", "--checkpoint", str(synth_run / "best.pt"), "--data", str(tmp_path / "corr"),
                 "--out", str(tmp_path / "ft"), "--steps", "10", "--keep-worse"]) == 0
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    # images[0] (label 0) is also in `poison`: its 11 samples disagree, all are left out
    assert m["left_out"] == {"contradictory": 11, "contradictory_images": 1, "duplicates": 2}
    assert m["corrections"] == 42 and m["trained_on"] + m["held_out"] == 42 - 13
    out = capsys.readouterr().out
    assert "11 contradictory" in out and "2 duplicates" in out
    assert "contradictory" in (tmp_path / "ft" / "report.md").read_text()
