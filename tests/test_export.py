"""ONNX export: a dynamic batch dimension, the same probabilities as PyTorch (within 1e-4) and
the same labels on test digits, metadata that travels with the file, the onnx backend
of `digitrec predict` and `digitrec serve`, and the packaged mnist.onnx kept the export of
the packaged mnist.pt."""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from digitrec.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from digitrec.cli.main import main
from digitrec.data.fetch import sha256_file
from digitrec.data.load import load
from digitrec.metrics import logits_of
from digitrec.export import cached_onnx
from digitrec.inference.onnxmodel import OnnxModel
from digitrec.inference.onnxrun import OnnxRunner
from digitrec.inference.backends import packaged_checkpoint, packaged_onnx
from digitrec.inference.predictor import Predictor


@pytest.fixture(scope="module")
def exported(synth_run, tmp_path_factory):
    """(checkpoint, its ONNX export), made by `digitrec export` into a folder of their own."""
    folder = tmp_path_factory.mktemp("export")
    ckpt = folder / "best.pt"
    shutil.copy(synth_run / "best.pt", ckpt)
    assert main(["export", str(ckpt), "--format", "onnx"]) == 0
    assert (folder / "best.onnx").is_file()
    return ckpt, folder / "best.onnx"


@pytest.fixture(scope="module")
def test_digits(synth_dir):
    return load(str(synth_dir))


def test_batch_dimension_is_dynamic(exported):
    graph = onnx.load(str(exported[1])).graph
    (image,), (logits,) = graph.input, graph.output
    assert image.name == "image" and logits.name == "logits"
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[0] and dims[1:] == [1, 28, 28]
    assert logits.type.tensor_type.shape.dim[0].dim_param == dims[0]


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_onnx_runtime_matches_pytorch_on_test_digits(exported, test_digits, batch):
    """Raw ONNX Runtime, as a deployment would call it, against the checkpoint in PyTorch."""
    model, ckpt = load_model(exported[0])
    ds = test_digits
    mean, std = ckpt.card.mean, ckpt.card.std
    session = ort.InferenceSession(str(exported[1]), providers=["CPUExecutionProvider"])
    x = ((ds.test_x.float() / 255.0 - mean) / std).unsqueeze(1)  # (200, 1, 28, 28)
    out = [session.run(["logits"], {"image": x[i : i + batch].numpy()})[0] for i in range(0, len(x), batch)]
    got = torch.from_numpy(np.concatenate(out)).softmax(1)
    want = logits_of(model, ds.test_x, ckpt.card).softmax(1)
    assert got.shape == want.shape == (200, 10)
    assert float((got - want).abs().max()) < 1e-4
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_onnx_model_carries_the_checkpoint_metadata(exported, test_digits):
    model, ckpt = load_model(exported[0])
    onnx_model = OnnxModel(exported[1])  # the .onnx alone: nothing else to read
    assert onnx_model.meta == json.loads(json.dumps(ckpt.meta))
    assert onnx_model.meta["dataset"]["classes"] == list("0123456789")
    assert "temperature" in onnx_model.meta["calibration"]
    assert onnx_model.card == ckpt.card
    # OnnxModel runs wherever the torch model does, e.g. in the evaluation's batched inference.
    a = logits_of(onnx_model, test_digits.test_x, onnx_model.card)
    b = logits_of(model, test_digits.test_x, ckpt.card)
    assert torch.allclose(a.softmax(1), b.softmax(1), atol=1e-4) and torch.equal(a.argmax(1), b.argmax(1))
    assert OnnxModel(exported[1])(torch.zeros(0, 1, 28, 28)).shape == (0, 10)


def test_export_is_reused_while_the_checkpoint_is_unchanged(exported, tmp_path):
    ckpt, onnx_file = tmp_path / "m.pt", tmp_path / "m.onnx"
    shutil.copy(exported[0], ckpt)
    shutil.copy(exported[1], onnx_file)  # an up-to-date export, as if made earlier
    os.utime(onnx_file, (1, 1))
    assert OnnxModel(ckpt).path == onnx_file and onnx_file.stat().st_mtime == 1  # reused, not rewritten

    model, old = load_model(ckpt)
    with torch.no_grad():
        model[-1].bias += 1.0  # the checkpoint changes: its export is stale
    save_checkpoint(ckpt, model, old.model["name"], old.model["args"], old.meta)
    fresh = OnnxModel(ckpt)
    assert fresh.path == onnx_file and onnx_file.stat().st_mtime > 1
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x), atol=1e-4)
    assert cached_onnx(ckpt) == onnx_file


def test_foreign_and_damaged_onnx_files_are_clear_errors(exported, tmp_path):
    (tmp_path / "noise.onnx").write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        OnnxModel(tmp_path / "noise.onnx")
    proto = onnx.load(str(exported[1]))
    del proto.metadata_props[:]
    onnx.save_model(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(CheckpointError, match="not one exported by digitrec"):
        OnnxModel(tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="does not exist"):
        OnnxModel(tmp_path / "none.onnx")


def assert_same_answers(a: list, b: list) -> None:
    """Two backends' answers (Answers, or their JSON): same labels and statuses, probabilities within 1e-4."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = (v.to_json() if hasattr(v, "to_json") else v for v in (x, y))
        assert (x["label"], x["status"]) == (y["label"], y["status"])
        assert x["probabilities"].keys() == y["probabilities"].keys()  # none for a blank answer
        assert max((abs(x["probabilities"][k] - y["probabilities"][k]) for k in x["probabilities"]), default=0) < 1e-4


def test_onnx_and_torch_predictors_agree(exported, test_digits):
    images = list(test_digits.test_x.numpy()) + [np.zeros((28, 28), np.uint8)]  # 200 digits and a blank
    want = Predictor(exported[0], backend="torch").predict(images, top_k=3)
    for source in exported:  # the checkpoint (its export is reused) and the .onnx file itself
        p = Predictor(source, backend="onnx")
        assert p.backend == "onnx" and p.info()["checkpoint"] == source.name
        assert_same_answers(p.predict(images, top_k=3), want)
    assert Predictor(exported[1], backend="auto").backend == "onnx"
    assert Predictor(exported[0], backend="auto").backend == "torch"


def test_packaged_onnx_is_the_export_of_the_packaged_checkpoint(test_digits):
    """pretrained/mnist.onnx must be `digitrec export pretrained/mnist.pt` of the mnist.pt beside it."""
    with resources.as_file(packaged_checkpoint()) as pt, resources.as_file(packaged_onnx()) as onnx_file:
        runner = OnnxRunner(onnx_file)
        assert runner.source_sha256 == sha256_file(pt), \
            "mnist.onnx was exported from another mnist.pt: run `digitrec export src/digitrec/pretrained/mnist.pt`"
        ckpt = load_checkpoint(pt)
        assert runner.model == ckpt.model and runner.meta == json.loads(json.dumps(ckpt.meta, default=str))
    rng = np.random.default_rng(0)
    images = (list(test_digits.test_x[:100].numpy()) + [np.zeros((28, 28), np.uint8)]
              + [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(10)])
    onnx_p, torch_p = Predictor(backend="onnx"), Predictor(backend="torch")
    assert (onnx_p.path.name, torch_p.path.name) == ("mnist.onnx", "mnist.pt")
    assert_same_answers(onnx_p.predict(images), torch_p.predict(images))
    assert onnx_p.predict([]) == []


def write_digit_pngs(ds, folder, n=12):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(ds.test_x[i].numpy(), "L").save(folder / f"{i:02d}.png")
    return folder


def test_predict_and_serve_with_the_onnx_backend(exported, test_digits, tmp_path, capsys):
    pngs = write_digit_pngs(test_digits, tmp_path / "digits")
    answers = {}
    for backend in ("torch", "onnx"):
        assert main(["predict", str(pngs), "--checkpoint", str(exported[0]), "--backend", backend, "--json"]) == 0
        answers[backend] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(answers["onnx"]) == 12
    assert [t["path"] for t in answers["torch"]] == [o["path"] for o in answers["onnx"]]
    assert_same_answers(answers["torch"], answers["onnx"])

    from fastapi.testclient import TestClient

    from digitrec.inference.predictor import Predictor
    from digitrec.server.app import create_app

    client = TestClient(create_app(Predictor(exported[0], backend="onnx")))
    assert client.get("/api/health").json()["backend"] == "onnx"
    r = client.post("/api/predict", content=(pngs / "03.png").read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json()["label"] == answers["torch"][3]["label"]
