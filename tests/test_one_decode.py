"""One decode: an image is read and turned upright once, and the answer, the preview and the
explanation all work on that one object (issue "One house", item 1; "first use", item 1).

The explanations of a big photo used to decode the file a second time at another size, and so
drew the heat beside the digit (`predict`) or crashed on boxes outside the picture (`read`)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from digitrec.cli.main import main
from digitrec.inference import decode as dec
from digitrec.inference.explain import explain_answer, explanation_picture, runner_up, saliency
from digitrec.inference.predictor import Predictor
from digitrec.inference.preprocess import preprocess
from synth import draw_text


@pytest.fixture(scope="module")
def shipped():
    return Predictor()


def photo(text: str, size=(4000, 3000), at=(2600, 1900)) -> Image.Image:
    """A `size` photo of light paper with `text` drawn 400 px high, its top left at `at`."""
    im = Image.new("RGB", size, (228, 224, 214))
    im.paste(draw_text([text], height=400, margin=20).convert("RGB"), at)
    return im


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture
def decodes(monkeypatch):
    """How many times an encoded image is opened and decoded."""
    count = []
    real = dec._open
    monkeypatch.setattr(dec, "_open", lambda *a, **k: count.append(1) or real(*a, **k))
    return count


def test_predict_explains_a_4000x3000_photo_from_one_decode_with_the_heat_on_the_digit(shipped, decodes):
    pre = preprocess(jpeg(photo("3")))
    answer = shipped.predict([pre], top_k=1)[0]
    assert answer.label == "3" and len(decodes) == 1
    picture = Image.open(io.BytesIO(explain_answer(pre, answer, shipped)["image_png"])).convert("RGB")
    assert len(decodes) == 1, "the explanation draws on the answer's own decode"
    assert picture.size == (512, 384)
    a = np.asarray(picture, np.int16)
    red = (a[..., 0] - a[..., 2]) > 60  # the heat: red evidence over the light paper
    ys, xs = np.nonzero(red)
    k = 512 / 4000
    l, t, r, b = (v * k for v in pre.box)
    assert len(xs) > 20, "the evidence for a confident answer is still visible"
    assert l - 2 <= xs.min() and xs.max() <= r + 2 and t - 2 <= ys.min() and ys.max() <= b + 2, \
        "the heat lies over the digit's box, in the picture's coordinates"


def test_cli_predict_and_read_explain_a_4000x3000_photo(tmp_path, capsys):
    big, number = tmp_path / "big.jpg", tmp_path / "number.jpg"
    big.write_bytes(jpeg(photo("3")))
    number.write_bytes(jpeg(photo("2026", at=(900, 1200))))
    assert main(["predict", str(big), "--explain"]) == 0
    assert main(["read", str(number), str(big), "--explain", "--json"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["text"] for r in rows] == ["2026", "3"]
    for r in rows:
        assert Image.open(r["explanation"]).size[0] >= 1000 - 1, "the picture is drawn at the work size"
    assert f"explanation written to {big}.explain.png" in out, "every file written is named"


def test_read_draws_every_characters_box_inside_the_picture(shipped, decodes):
    from digitrec.inference.explain import explain_reading
    from digitrec.inference.reader import read

    reading = read(jpeg(photo("2026", at=(900, 1200))), shipped)
    assert reading.text == "2026" and len(decodes) == 1
    assert all(c.box[0] >= 900 and c.box[2] <= 4000 for c in reading.characters), "boxes in the photo's pixels"
    picture = Image.open(io.BytesIO(explain_reading(reading, shipped)))
    assert len(decodes) == 1, "the reading's explanation draws on the reading's own decode"
    assert picture.size[0] == reading.decoded.image.size[0] == 1000, "drawn on the decode: libjpeg at 1/4"


def test_the_runner_up_panel_is_the_runner_up_at_any_top_k(shipped):
    pre = preprocess(jpeg(photo("8", size=(800, 600), at=(300, 100))))
    for k in (1, 3):
        answer = shipped.predict([pre], top_k=k)[0]
        first, second = runner_up(answer, shipped.classes)
        p = np.array([answer.probabilities[c] for c in shipped.classes])
        assert shipped.classes[first] == answer.label
        assert second == int(np.argsort(-p)[1]) and second != first, f"top-k {k}"


def test_a_confident_answer_still_shows_its_evidence_in_log_odds(shipped):
    """A 3x3 square cannot move 99.99% much in probability, but it moves the log-odds: the map of
    a confident answer is not empty."""
    pre = preprocess(jpeg(photo("7", size=(800, 600), at=(300, 100))))
    answer = shipped.predict([pre])[0]
    assert answer.confidence > 0.99
    sal = saliency(shipped.probabilities, pre.image, [shipped.classes.index(answer.label)])[0]
    assert sal.max() > 0.5, "the strongest evidence moves the log-odds by more than half a unit"


def test_every_saved_explanation_has_a_key(shipped):
    pre = preprocess(jpeg(photo("5", size=(800, 600), at=(300, 100))))
    answer = shipped.predict([pre])[0]
    picture = np.asarray(Image.open(io.BytesIO(explanation_picture(pre, answer, shipped))).convert("RGB"), np.int16)
    key = picture[-40:]
    assert ((key[..., 0] > 200) & (key[..., 2] < 60)).any(), "the key shows red (evidence for)"
    assert ((key[..., 2] > 200) & (key[..., 0] < 60)).any(), "the key shows blue (evidence against)"


def test_the_upload_queue_computes_an_images_cost_once(monkeypatch):
    from fastapi.testclient import TestClient

    from digitrec.server import uploads
    from digitrec.server.app import create_app

    calls = []
    real = uploads.decoded_cost
    monkeypatch.setattr(uploads, "decoded_cost", lambda data: calls.append(1) or real(data))
    client = TestClient(create_app(Predictor()))
    r = client.post("/api/predict?explain=1", content=jpeg(photo("4", size=(1600, 1200), at=(500, 300))))
    assert r.status_code == 200 and r.json()["label"] == "4"
    assert len(calls) == 1


def test_max_characters_limits_the_characters_read(shipped, tmp_path, capsys):
    page = tmp_path / "long.png"
    draw_text(["123456789"]).save(page)
    assert main(["read", str(page), "--max-characters", "5"]) == 2
    assert "characters" in capsys.readouterr().err
    assert main(["read", str(page), "--max-characters", "9"]) == 0


def test_the_pixel_limit_is_refused_in_our_words():
    im = Image.new("L", (9000, 9000), 255)  # 81 MP: past Pillow's own bomb limit too
    buf = io.BytesIO()
    im.save(buf, "PNG")
    with pytest.raises(dec.PreprocessError) as e:
        dec.decode(buf.getvalue())
    assert "81,000,000 pixels" in str(e.value) and f"{dec.MAX_PIXELS:,}" in str(e.value)
    assert "DOS" not in str(e.value) and "decompression" not in str(e.value).lower()
