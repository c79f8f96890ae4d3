import pytest
import torch

from digitrec.checkpoint import CheckpointError, build_model, load_checkpoint, load_model, save_checkpoint
from digitrec.models import create_model


def test_round_trip_gives_identical_logits(tmp_path):
    torch.manual_seed(1)
    model = create_model("seed").eval()
    save_checkpoint(tmp_path / "m.pt", model, "seed", {"num_classes": 10}, {"dataset": {"classes": list("0123456789")}})
    loaded, ckpt = load_model(tmp_path / "m.pt")
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert ckpt["meta"]["dataset"]["classes"][3] == "3"
    assert not loaded.training


def test_no_temp_files_left_behind(tmp_path):
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, {})
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, {})
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_missing_truncated_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    save_checkpoint(tmp_path / "m.pt", create_model("seed"), "seed", {}, {})
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


def test_weights_that_do_not_fit_the_model(tmp_path):
    save_checkpoint(tmp_path / "m.pt", create_model("seed", num_classes=26), "seed", {"num_classes": 10}, {})
    with pytest.raises(CheckpointError, match="do not fit"):
        build_model(load_checkpoint(tmp_path / "m.pt"))
