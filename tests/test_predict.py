"""Predictor and `digitrec predict`: calibrated answers with a status, files and folders, every
output format, previews, and bad files reported one by one; the backend `auto` picks, and the
default `digitrec predict` answering without importing torch. Uses the synthetic run's model
(and, where it says so, the packaged one)."""

import csv
import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from digitrec.checkpoint import load_model
from digitrec.errors import CheckpointError, UserError
from digitrec.cli.main import main
from digitrec.cli.files import find_images
from digitrec.cli.predict import ascii_art
from digitrec.inference.backends import resolve_backend
from digitrec.inference.predictor import FLAT, Predictor, answers, unsure_reason
from digitrec.inference.preprocess import preprocess
from synth import render


@pytest.fixture(scope="module")
def ckpt(synth_run):
    return synth_run / "best.pt"


@pytest.fixture(scope="module")
def predictor(ckpt):
    return Predictor(ckpt)


def glyph_png(text: str, path=None, size=200, invert=True) -> bytes:
    """A synthetic glyph as a person might save it: big, dark ink on white."""
    g = render(text).numpy()
    im = Image.fromarray(255 - g if invert else g, "L").resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    if path is not None:
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


# ----------------------------------------------------------------------------- Predictor


def test_predictor_reads_classes_and_calibration_from_the_checkpoint(predictor, ckpt):
    meta = load_model(ckpt)[1].meta
    assert predictor.classes == meta["dataset"]["classes"]
    assert predictor.card.temperature == meta["calibration"]["temperature"]
    assert predictor.threshold == meta["calibration"]["threshold"]
    assert predictor.card.calibrated
    info = predictor.info()
    assert info["classes"] == predictor.classes and info["dataset"] == meta["dataset"]["name"]


def test_probabilities_are_temperature_scaled_softmax(predictor, ckpt):
    model, c = load_model(ckpt)
    images = [render(ch).numpy() for ch in "0123"]
    mean, std = c.meta["dataset"]["mean"], c.meta["dataset"]["std"]
    x = ((torch.as_tensor(np.stack(images)).float() / 255 - mean) / std).unsqueeze(1)
    with torch.no_grad():
        expected = (model(x) / c.meta["calibration"]["temperature"]).softmax(1)
    got = predictor.probabilities(images)
    assert got.shape == (4, len(predictor.classes))
    assert np.allclose(got, expected.numpy(), atol=1e-6)


def test_answers_carry_all_probabilities_label_and_status(predictor):
    images = [render(ch).numpy() for ch in "0123456789"] + [np.zeros((28, 28), np.uint8)]
    answers = predictor.predict(images, top_k=3)
    assert len(answers) == len(images)
    for a in answers[:-1]:
        assert list(a.probabilities) == predictor.classes
        assert abs(sum(a.probabilities.values()) - 1) < 1e-5
        assert a.label == a.top[0]["label"] == max(a.probabilities, key=a.probabilities.get)
        assert a.confidence == a.top[0]["probability"]
        assert len(a.top) == 3 and a.top[0]["probability"] >= a.top[1]["probability"]
        assert a.status == ("ok" if a.confidence >= predictor.threshold else "unsure")
    blank = answers[-1]
    assert blank.status == "blank" and blank.label is None and blank.confidence is None
    assert blank.probabilities == {} and blank.top == [], "a blank page has no probabilities to show"


def test_unsure_below_the_threshold(predictor, monkeypatch):
    images = [render(ch).numpy() for ch in "0123"]
    monkeypatch.setattr(predictor, "card", dataclasses.replace(predictor.card, threshold=1.01))
    assert {a.status for a in predictor.predict(images)} == {"unsure"}
    monkeypatch.setattr(predictor, "card", dataclasses.replace(predictor.card, threshold=0.0))
    assert {a.status for a in predictor.predict(images)} == {"ok"}


def test_one_forward_pass_per_batch(predictor, monkeypatch):
    calls = []
    model = predictor._model
    monkeypatch.setattr(predictor, "_model", lambda x: calls.append(x.shape) or model(x))
    predictor.predict([render(ch).numpy() for ch in "01234567"])
    assert calls == [(8, 1, 28, 28)]
    assert predictor.predict([]) == []


def test_uncalibrated_checkpoint_falls_back_with_a_warning(synth_run, capsys):
    p = Predictor(synth_run / "last.pt")  # last.pt is saved before calibration
    assert not p.card.calibrated and p.card.temperature == 1.0 and p.threshold == 0.5
    assert "no calibration" in capsys.readouterr().err


def test_no_packaged_model_gives_a_clear_error(monkeypatch, tmp_path):
    import digitrec.inference.backends as backends

    monkeypatch.setattr(backends, "packaged_checkpoint", lambda: tmp_path / "mnist.pt")
    monkeypatch.setattr(backends, "packaged_onnx", lambda: tmp_path / "mnist.onnx")
    with pytest.raises(CheckpointError, match="--checkpoint"):
        Predictor()


def test_missing_and_unknown_backend(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Predictor(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="backend"):
        Predictor(ckpt, backend="tflite")


def test_onnx_backend_feeds_the_runner_numpy(ckpt, monkeypatch):
    """`--backend onnx` hands the checkpoint's ONNX export (made once, next to it) to
    onnxrun.OnnxRunner, gives it normalised float32 numpy arrays and computes the answers from
    what it returns, in numpy."""
    from digitrec.export import cached_onnx

    cached_onnx(ckpt)  # the export exists: only the backend's own runner is made below
    made = []
    model, c = load_model(ckpt)

    class FakeRunner:
        def __init__(self, path, threads=0):
            made.append(path)
            self.path, self.meta, self.card, self.model = path, c.meta, c.card, c.model

        def __call__(self, x):
            assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape[1:] == (1, 28, 28)
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()

    monkeypatch.setattr("digitrec.inference.onnxrun.OnnxRunner", FakeRunner)
    p = Predictor(ckpt, backend="onnx")
    # (the export, made on first use, checks itself with the runner too: one path either way)
    assert set(made) == {ckpt.with_suffix(".onnx")} and p.backend == "onnx"
    images = [render(ch).numpy() for ch in "012"] + [np.zeros((28, 28), np.uint8)]
    probs = p.probabilities(images)
    assert isinstance(probs, np.ndarray) and probs.shape == (4, 10)
    assert np.allclose(probs, Predictor(ckpt).probabilities(images), atol=1e-6)
    for a, b in zip(p.predict(images, top_k=3), Predictor(ckpt).predict(images, top_k=3)):
        assert (a.label, a.status, [t["label"] for t in a.top]) == (b.label, b.status, [t["label"] for t in b.top])
    assert p.predict([]) == []


def test_auto_backend_picks_onnx_for_onnx_files_and_torch_for_checkpoints(ckpt, monkeypatch):
    assert Predictor(backend="auto").backend == "onnx", "the packaged model runs from its ONNX export"
    assert Predictor(ckpt, backend="auto").backend == "torch", "a user's checkpoint runs in PyTorch"
    assert resolve_backend("auto", "model.ONNX") == "onnx"
    assert resolve_backend("torch", None) == "torch" and resolve_backend("onnx", ckpt) == "onnx"  # as asked
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if ONNX Runtime were not installed
    p = Predictor(backend="auto")
    assert p.backend == "torch" and p.path.name == "mnist.pt"


def test_cli_default_backend_is_auto(ckpt, tmp_path, monkeypatch, capsys):
    import digitrec.inference.predictor

    made = []
    real = digitrec.inference.predictor.Predictor

    def recorded(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(digitrec.inference.predictor, "Predictor", recorded)
    glyph_png("3", tmp_path / "three.png")
    assert main(["predict", str(tmp_path / "three.png")]) == 0
    assert main(["predict", str(tmp_path / "three.png"), "--checkpoint", str(ckpt)]) == 0
    assert [p.backend for p in made] == ["onnx", "torch"]
    assert capsys.readouterr().err == "", "nothing extra to say about the backend"


def test_default_predict_never_imports_torch(tmp_path):
    """`digitrec predict one.png` with the packaged model answers through ONNX Runtime alone:
    `import torch` would cost about a second of start-up."""
    glyph_png("7", tmp_path / "seven.png")
    code = ("import sys; from digitrec.cli.main import main; rc = main(['predict', sys.argv[1]]); "
            "print('torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "seven.png")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    answer, torch_imported = proc.stdout.splitlines()
    assert answer.startswith(f"{tmp_path / 'seven.png'}: 7 "), answer
    assert torch_imported == "False", "the default predict path imported torch"


def test_backend_errors_are_messages(tmp_path, monkeypatch, capsys):
    glyph_png("1", tmp_path / "a.png")
    (tmp_path / "m.onnx").write_bytes(b"not read")
    code, _, err = run(capsys, tmp_path / "a.png", "--checkpoint", tmp_path / "m.onnx", "--backend", "torch")
    assert code == 2 and "is an ONNX model, which PyTorch cannot run; use --backend onnx" in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    code, _, err = run(capsys, tmp_path / "a.png", "--backend", "onnx")
    assert code == 2 and "pip install 'digitrec[onnx]'" in err
    code, _, err = run(capsys, tmp_path / "a.png", "--checkpoint", tmp_path / "m.onnx")
    assert code == 2 and "needs ONNX Runtime" in err


def test_predict_image_runs_preprocessing(predictor):
    answer, pre = predictor.predict_image(glyph_png("3"))
    assert pre.inverted and pre.image.shape == (28, 28)
    assert answer == predictor.predict([preprocess(glyph_png("3"))])[0], "the same two views as predict()"
    answer, pre = predictor.predict_image(glyph_png(" "))  # nothing drawn
    assert pre.blank and answer.status == "blank"


def test_ascii_art_shape():
    art = ascii_art(render("7").numpy()).splitlines()
    assert len(art) == 28 and {len(line) for line in art} == {56}
    assert set(ascii_art(np.zeros((28, 28), np.uint8))) <= {" ", "\n"}


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def folder(tmp_path):
    """Two good images (one in a subfolder), a blank one, a broken one, an empty one, and files
    that a folder walk must skip: a text file and an earlier preview."""
    glyph_png("1", tmp_path / "one.png")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    glyph_png("7", tmp_path / "sub" / "deeper" / "seven.png")
    glyph_png(" ", tmp_path / "sub" / "blank.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "one.preview.png").write_bytes(b"old preview")
    return tmp_path


def run(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_find_images_recurses_and_skips_previews(folder):
    names = sorted(p.name for p in find_images([folder])[0])
    assert names == ["blank.png", "broken.jpg", "empty.png", "one.png", "seven.png"]


def test_json_output_reports_every_file_and_exit_code(folder, ckpt, capsys):
    code, out, err = run(capsys, folder, "--json", "--top-k", "2")  # the shipped model: it reads the glyphs
    rows = {json.loads(line)["path"].split("/")[-1]: json.loads(line) for line in out.splitlines()}
    assert set(rows) == {"blank.png", "broken.jpg", "empty.png", "one.png", "seven.png"}
    assert code == 1, "a file failed, so the exit code says so"
    assert rows["broken.jpg"]["status"] == "error" and "image" in rows["broken.jpg"]["error"]
    assert rows["empty.png"]["status"] == "error" and "empty" in rows["empty.png"]["error"]
    assert rows["blank.png"]["status"] == "blank" and rows["blank.png"]["label"] is None
    for name in ("one.png", "seven.png"):
        assert rows[name]["status"] in ("ok", "unsure") and len(rows[name]["top"]) == 2
        assert len(rows[name]["probabilities"]) == 10
    assert "5 images: " in err and "2 failed" in err


def test_all_good_files_exit_zero(folder, ckpt, capsys):
    code, out, _ = run(capsys, folder / "one.png", folder / "sub", "--checkpoint", ckpt)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3 and lines[0].startswith(str(folder / "one.png") + ": ")
    assert any("blank" in line for line in lines)


def test_text_output_top_k_and_errors_on_stderr(folder, ckpt, capsys):
    code, out, err = run(capsys, folder / "one.png", folder / "broken.jpg", folder / "missing.png", "--top-k", "3")
    assert code == 1
    assert out.split("  [")[0].count("%") == 3, "three guesses on the one good line (then any unsure reason)"
    assert "broken.jpg: error: " in err and "missing.png: error: no such file" in err


def test_csv_output(folder, ckpt, capsys, predictor):
    code, out, _ = run(capsys, folder, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    # In path order (sub/blank.png after one.png), errors in place.
    assert [r["path"].split("/")[-1] for r in rows] == ["broken.jpg", "empty.png", "one.png", "blank.png",
                                                        "seven.png"]
    good = rows[2]
    assert good["status"] in ("ok", "unsure") and good["label"] in predictor.classes
    assert abs(sum(float(good[c]) for c in predictor.classes) - 1) < 1e-4
    assert rows[0]["status"] == "error" and rows[0]["error"]


def test_save_preview_and_show(folder, ckpt, capsys):
    code, out, _ = run(capsys, folder / "sub" / "deeper" / "seven.png", "--checkpoint", ckpt,
                       "--save-preview", "--show")
    assert code == 0
    preview = folder / "sub" / "deeper" / "seven.png.preview.png"
    saved = np.asarray(Image.open(preview))
    assert saved.shape == (28, 28)
    assert np.array_equal(saved, preprocess(folder / "sub" / "deeper" / "seven.png").image)
    assert len(out.splitlines()) == 1 + 1 + 28, "the answer, the file written, then the 28 rows the model saw"
    assert out.splitlines()[1] == f"  preview written to {preview}", "every file written is named"


def test_usage_errors_exit_2(tmp_path, ckpt, capsys):
    code, _, err = run(capsys, tmp_path, "--checkpoint", ckpt)
    assert code == 2 and "no image files found" in err
    glyph_png("1", tmp_path / "a.png")
    code, _, err = run(capsys, tmp_path, "--checkpoint", ckpt, "--top-k", "0")
    assert code == 2 and "--top-k" in err
    code, _, err = run(capsys, tmp_path, "--checkpoint", tmp_path / "missing.pt")
    assert code == 2 and "does not exist" in err


def test_every_answer_says_why_it_is_not_ok_in_every_format(predictor, folder, ckpt, capsys):
    """`reason`: None for ok, the missing ink for blank, the threshold and the runner-up for
    unsure; the same words in JSON, CSV and the text line."""
    blank, = predictor.predict([np.zeros((28, 28), np.uint8)])
    assert blank.status == "blank" and "no ink" in blank.reason
    p = np.array([0.05, 0.55, 0.4])
    assert unsure_reason(p, ["a", "b", "c"], 0.9) == ("55% is below the 90% this model needs to be sure; "
                                                      "it could also be c (40%)")
    unsure = dataclasses.replace(blank, status="unsure", label="b", confidence=0.55, reason=unsure_reason(
        p, ["a", "b", "c"], 0.9), top=[{"label": "b", "probability": 0.55}])
    assert unsure.reason in unsure.describe()
    sure = max(predictor.predict([preprocess(glyph_png(d)).image for d in "0123456789"]),
               key=lambda a: a.confidence)
    assert sure.status == "ok" and sure.reason is None
    code, out, _ = run(capsys, folder / "sub" / "blank.png", "--checkpoint", ckpt, "--json")
    assert json.loads(out.splitlines()[0])["reason"] == blank.reason
    code, out, _ = run(capsys, folder / "sub" / "blank.png", "--checkpoint", ckpt, "--csv")
    assert next(csv.DictReader(io.StringIO(out)))["reason"] == blank.reason


# ----------------------------------------------------------------------------- blank and not a digit

DIGITS = [str(d) for d in range(10)]


def test_a_blank_answer_has_no_numbers_that_mean_nothing():
    """The model's answer for an empty input (the shipped one says 1 at 99.7%) is not passed on."""
    sure_one = np.full((1, 10), 0.0004)
    sure_one[0, 1] = 1 - 9 * 0.0004
    a, = answers(sure_one, DIGITS, 0.8, top_k=3, blank=[True])
    assert (a.status, a.label, a.confidence, a.probabilities, a.top) == ("blank", None, None, {}, [])
    assert "no ink" in a.reason and a.describe().startswith("blank: no ink") and "1" not in a.describe()
    assert a.to_json()["probabilities"] == {} and a.to_json()["top"] == []


def test_ink_that_left_nothing_is_no_digit_not_a_blank_page():
    """An image that held ink (specks, noise, lines) of which nothing survived is `not_a_digit`,
    told apart from a page with no ink at all."""
    p = np.full((2, 10), 0.1)
    none, inked = answers(p, DIGITS, 0.8, blank=[True, True], inked=[False, True])
    assert none.status == "blank" and inked.status == "not_a_digit"
    assert (inked.label, inked.confidence, inked.probabilities, inked.top) == (None, None, {}, [])
    assert "ink was found" in inked.reason and "digit" in inked.reason and inked.reason != none.reason
    assert inked.describe() == f"not a digit: {inked.reason}"


def test_a_flat_answer_is_not_a_digit_in_words():
    """The best class under FLAT/C (twice a blind guess) is no digit: no label, no confidence, the
    reason in words, the flat probabilities kept; just above it, an unsure digit with its runner-up."""
    flat = np.full(10, (1 - 0.15) / 9)
    flat[7] = 0.15  # under 2/10
    doubt = np.full(10, (1 - 0.25) / 9)
    doubt[7] = 0.25  # over 2/10: a doubtful 7
    a, b = answers(np.stack([flat, doubt]), DIGITS, 0.8, top_k=3)
    assert a.status == "not_a_digit" and a.label is None and a.confidence is None
    assert "does not look like a digit" in a.reason and "15%" in a.reason and "10%" in a.reason
    assert "could also be" not in a.reason
    assert a.describe().startswith("not a digit: ") and "7" not in a.describe()
    assert len(a.probabilities) == 10 and len(a.top) == 3, "the flat answer itself is shown as it is"
    assert b.status == "unsure" and b.label == "7" and "could also be" in b.reason
    assert FLAT / 10 == pytest.approx(0.2)
    letters, = answers(np.full((1, 6), 1 / 6), list("ABCDEF"), 0.8)
    assert "like a character" in letters.reason, "classes that are not digits are characters"
    two_way, = answers(np.array([[0.32, 0.32, 0.36]]), list("abc"), 0.8)
    assert two_way.status == "unsure", "with three classes, a doubt is a doubt, not a flat answer"


def test_not_a_digit_in_json_and_csv(tmp_path, capsys, monkeypatch):
    """Every output format says not_a_digit, and a CSV row without probabilities keeps its columns."""
    import digitrec.inference.predictor as predictor_module

    real = predictor_module.answers
    monkeypatch.setattr(predictor_module, "answers", lambda probs, classes, *a, **k: real(
        np.full_like(probs, 1 / probs.shape[1]), classes, *a, **k))
    Image.fromarray(np.pad(render("7").numpy(), 20)).save(tmp_path / "k.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "white.png")
    code, out, err = run(capsys, tmp_path, "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert all(len(r) == len(rows[0]) for r in rows), "every row as long as the header"
    by = {r[0].split("/")[-1]: dict(zip(rows[0], r)) for r in rows[1:]}
    assert by["k.png"]["status"] == "not_a_digit" and by["k.png"]["label"] == ""
    assert by["white.png"]["status"] == "blank" and by["white.png"]["5"] == ""
    assert "1 not a digit, 1 blank" in err
    code, out, _ = run(capsys, tmp_path / "k.png", "--json", "--explain")
    got = json.loads(out)
    assert got["status"] == "not_a_digit" and got["label"] is None and "digit" in got["reason"]


def test_the_packaged_model_calls_letters_not_a_digit_and_digits_digits():
    """The rule on the shipped model: letters (font and hand) answer flat; drawn digits do not."""
    from digitrec.scenes import non_digit
    from digitrec.training.outliers import model_input

    predictor = Predictor()
    rng = np.random.default_rng(7)
    letters = [model_input(non_digit(kind, rng, field=56)) for kind in ("letter_font", "letter_hand") * 5]
    got = predictor.predict([x for x in letters if x is not None])
    assert sum(a.status == "not_a_digit" for a in got) >= 0.8 * len(got), [a.describe() for a in got]
    digits = predictor.predict([preprocess(glyph_png(d)).image for d in "0123456789"])
    assert not any(a.status == "not_a_digit" for a in digits), [a.describe() for a in digits]


def test_a_model_served_under_other_preprocessing_says_so(synth_run, tmp_path, capsys):
    """Issue "One house", item 5: the preprocessing thresholds a model was trained under are in
    its card; served under others, it is said at load (a model from before records none)."""
    import dataclasses

    import torch

    from digitrec.ink import PREPARATION

    ckpt = torch.load(synth_run / "best.pt", weights_only=True)
    assert ckpt["meta"]["card"]["preparation"] == PREPARATION.to_json(), "training records it"
    Predictor(synth_run / "best.pt", backend="torch")
    assert "preprocessing" not in capsys.readouterr().err
    other = dataclasses.replace(PREPARATION, min_contrast=0.2).to_json()
    ckpt["meta"]["card"]["preparation"] = other
    torch.save(ckpt, tmp_path / "other.pt")
    Predictor(tmp_path / "other.pt", backend="torch")
    assert "min_contrast 0.2 -> 0.12" in capsys.readouterr().err


def test_what_preprocess_returned_and_the_model_doubts_is_read_in_two_views(monkeypatch):
    """Issue "world's handwriting", item 4: where the model is not sure of preprocess()'s input,
    the answer is the mean of its probabilities for that input and for the textbook preparation
    of the same decode (chosen on validation renders); a sure answer, or a bare 28x28 array, is
    read as it is."""
    import digitrec.inference.predictor as predictor_module
    from synth import draw_text

    shipped = Predictor()
    pre = preprocess(draw_text(["4"]))
    alone = shipped.probabilities([pre.image])[0]
    seen = []
    view = np.zeros((28, 28), np.uint8)
    view[4:24, 13:16] = 255  # another view: a 1
    monkeypatch.setattr(predictor_module, "textbook", lambda decoded: seen.append(decoded) or view)
    assert alone.max() >= shipped.threshold
    assert shipped.predict([pre])[0].probabilities["4"] == pytest.approx(float(alone[4]), abs=1e-6) and not seen, \
        "a sure answer is read from preprocess()'s input alone"
    doubtful = Predictor()
    object.__setattr__(doubtful, "card", dataclasses.replace(doubtful.card, threshold=1.0))
    got = doubtful.predict([pre])[0]
    want = (doubtful.probabilities([pre.image])[0] + doubtful.probabilities([view])[0]) / 2
    assert seen == [pre.decoded], "the textbook view is made from the answer's own decode"
    assert max(abs(got.probabilities[c] - float(want[i])) for i, c in enumerate(doubtful.classes)) < 1e-6
    assert doubtful.predict([pre.image])[0].probabilities["4"] == pytest.approx(float(alone[4]), abs=1e-6)
    monkeypatch.setattr(predictor_module, "textbook", lambda decoded: np.zeros((28, 28), np.uint8))
    assert doubtful.predict([pre])[0].probabilities["4"] == pytest.approx(float(alone[4]), abs=1e-6), \
        "a view without ink is left out"
