import json
from pathlib import Path

import numpy as np
import pytest
import torch

from digitrec.card import ModelCard
from digitrec.checkpoint import load_checkpoint, load_model, save_checkpoint
from digitrec.errors import CheckpointError
from digitrec.models import create_model

CARD = {"card": ModelCard("digits", tuple("0123456789"), 0.1307, 0.3081).to_json()}
FORMAT1 = Path(__file__).with_name("fixtures") / "format1"


def test_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(1)
    model = create_model("seed").eval()
    save_checkpoint(tmp_path / "m.pt", model, "seed", {"num_classes": 10}, CARD)
    loaded, ckpt = load_model(tmp_path / "m.pt")
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert ckpt.card.classes[3] == "3" and ckpt.card.mean == 0.1307
    assert not loaded.training


def test_no_temp_files_left_behind(tmp_path):
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, CARD)
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, CARD)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_truncated_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, CARD)
    blob = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a digitrec checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="ONNX export.*needs a PyTorch checkpoint"):
        load_checkpoint(FORMAT1 / "best.onnx")


def test_weights_that_do_not_fit_the_model(tmp_path):
    save_checkpoint(tmp_path / "m.pt", create_model("seed", num_classes=26), "seed", {"num_classes": 10}, CARD)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "m.pt").build()


def test_a_card_that_does_not_match_the_outputs_is_refused(tmp_path):
    two = {"card": ModelCard("digits", ("0", "1"), 0.1307, 0.3081).to_json()}
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, two)
    with pytest.raises(CheckpointError, match=r"m\.pt: the model has 10 outputs but its card lists 2"):
        load_model(tmp_path / "m.pt")


def test_checkpoints_of_the_previous_format_still_load_and_answer_as_before():
    """tests/fixtures/format1 was written by digitrec before the model card (format /1: class
    names and normalisation in meta["dataset"], calibration in meta["calibration"]), with the
    probabilities that version gave for ten synthetic glyphs (expected.json)."""
    from synth import make_images

    from digitrec.inference.predictor import Predictor

    expected = json.loads((FORMAT1 / "expected.json").read_text())
    images = [im.numpy() for im in make_images(torch.arange(10), seed=5)]
    for backend, name in (("torch", "best.pt"), ("onnx", "best.onnx")):
        p = Predictor(FORMAT1 / name, backend=backend)
        assert p.card.calibrated and p.card.temperature == expected["info"]["temperature"]
        assert p.classes == expected["info"]["classes"] and p.card.dataset == "synthetic"
        np.testing.assert_allclose(p.probabilities(images), expected[backend], rtol=1e-4, atol=1e-6)
    assert load_checkpoint(FORMAT1 / "best.pt").card.mean == 0.13  # the synthetic set's, not MNIST's


def test_saved_training_options_are_read_back_as_the_config_type(synth_run, tmp_path):
    """Training's options in a checkpoint are read through TrainConfig.from_json: missing ones
    are the defaults; a mistyped or unknown one is refused, naming the file and the option."""
    import torch

    from digitrec.evaluate import evaluate
    from digitrec.training.config import TrainConfig, trained_with

    assert TrainConfig.from_json({"epochs": 2}, "x") == TrainConfig(epochs=2)
    assert trained_with({}, "fashion", "x") == TrainConfig(dataset="fashion")
    raw = torch.load(synth_run / "best.pt", weights_only=True)
    saved = dict(raw["meta"]["config"])
    for change, words in (({"val_size": "100"}, "val_size is '100'; it must be a whole number"),
                          ({"optimizer": "rmsprop"}, "optimizer is 'rmsprop'; it must be one of adam"),
                          ({"colour": "blue"}, "does not know: colour")):
        raw["meta"]["config"] = {**saved, **change}
        bad = tmp_path / "bad.pt"
        torch.save(raw, bad)
        with pytest.raises(CheckpointError, match=f"{bad}.*{words}"):
            evaluate([bad], out=tmp_path / "report", log=lambda *_: None)
