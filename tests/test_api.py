"""The HTTP API through the ASGI test client: answers, the page, and a 4xx (never a 500) for
every kind of bad input. Uses the synthetic run's model."""

import asyncio
import base64
import io
import socket
import struct
import threading
import time
import zlib

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitrec.inference.predictor import Predictor
from digitrec.inference.preprocess import preprocess
from synth import render

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from digitrec.server.app import create_app  # noqa: E402

MAX_UPLOAD = 300_000


@pytest.fixture(scope="module")
def predictor(synth_run):
    return Predictor(synth_run / "best.pt")


@pytest.fixture(scope="module")
def client(predictor):
    # raise_server_exceptions=False: a bug must show up as a 500 response here, not as an exception.
    with TestClient(create_app(predictor, max_upload=MAX_UPLOAD, max_concurrency=2),
                    raise_server_exceptions=False) as c:
        yield c


def png(text="4", size=240, mode="L") -> bytes:
    g = 255 - render(text).numpy()  # dark ink on white, as drawn on paper
    im = Image.fromarray(g, "L").resize((size, size), Image.Resampling.BICUBIC).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def canvas_png(text="4") -> bytes:
    """Like the page's export: black strokes, alpha = ink, transparent (black) background."""
    a = np.zeros((280, 280, 4), np.uint8)
    a[..., 3] = np.asarray(Image.fromarray(render(text).numpy()).resize((280, 280), Image.Resampling.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def assert_json_error(r, status: int, words: str = ""):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()["detail"]  # a message, or FastAPI's list of validation errors
    assert words.lower() in str(detail).lower()


# ----------------------------------------------------------------------------- good requests


def test_health_lists_the_model(client, predictor):
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["classes"] == predictor.classes
    assert h["threshold"] == predictor.threshold and h["max_upload"] == MAX_UPLOAD


def test_predict_raw_body(client, predictor):
    data = png("4")
    r = client.post("/api/predict", content=data, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["classes"] == predictor.classes
    assert list(a["probabilities"]) == predictor.classes and abs(sum(a["probabilities"].values()) - 1) < 1e-5
    assert a["status"] in ("ok", "unsure") and a["label"] == a["top"][0]["label"]
    assert len(a["top"]) == 3
    assert a["input"]["inverted"] and a["input"]["width"] == 240 and a["input"]["format"] == "PNG"
    preview = Image.open(io.BytesIO(base64.b64decode(a["preview"])))
    assert preview.size == (28, 28)
    assert np.array_equal(np.asarray(preview), preprocess(data).image), "the preview is what the model saw"
    direct, _ = predictor.predict_image(data, top_k=3)
    for key in ("label", "status", "confidence", "top"):
        assert a[key] == direct.to_json()[key], "the API answers as the Predictor does"


def test_multipart_and_raw_give_the_same_answer(client):
    data = png("7")
    raw = client.post("/api/predict", content=data).json()
    form = client.post("/api/predict", files={"file": ("seven.png", data, "image/png")}).json()
    other_name = client.post("/api/predict", files={"upload": ("seven.png", data, "image/png")}).json()
    for a in (form, other_name):
        assert a["probabilities"] == raw["probabilities"] and a["preview"] == raw["preview"]


def test_canvas_export_and_options(client):
    r = client.post("/api/predict?preview=false&top_k=5", content=canvas_png("2"),
                    headers={"content-type": "image/png"})
    a = r.json()
    assert r.status_code == 200 and "preview" not in a and len(a["top"]) == 5
    assert a["status"] != "blank"
    assert a["input"]["inverted"], "dark strokes on transparent: put on white, then inverted"


def test_blank_drawing(client):
    empty_canvas = io.BytesIO()
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)).save(empty_canvas, "PNG")
    a = client.post("/api/predict", content=empty_canvas.getvalue()).json()
    assert a["status"] == "blank" and a["label"] is None and a["confidence"] is None
    assert a["probabilities"] == {} and a["top"] == [], "no numbers for an empty page"


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<canvas id="pad"' in r.text and "/static/app.js" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "/api/predict" in js.text and "/api/health" in js.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert_json_error(client.get("/static/../serve.py"), 404)
    assert_json_error(client.get("/static/secret.txt"), 404, "no static file")


def test_openapi_docs(client):
    from dataclasses import fields

    from digitrec.inference.predictor import Answer

    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/predict"]["post"]
    body = post["requestBody"]["content"]
    assert {"image/png", "multipart/form-data", "application/json"} <= set(body)
    assert "base64" in body["application/json"]["schema"]["properties"]["image"]["description"]
    assert "/api/health" in spec["paths"]
    ref = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    answer = spec["components"]["schemas"][ref]["properties"]
    assert {f.name for f in fields(Answer)} | {"classes", "input", "preview", "explanation", "ms"} == set(answer)
    read = spec["paths"]["/api/read"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    reading = spec["components"]["schemas"][read.split("/")[-1]]["properties"]
    assert {"text", "status", "confidence", "characters", "lines"} <= set(reading)
    character = spec["components"]["schemas"]["Character"]["properties"]
    assert {f.name for f in fields(Answer)} | {"box", "model"} == set(character)
    assert {"408", "413", "503"} <= set(post["responses"])
    html = client.get("/docs").text
    assert "/docs/swagger-ui-bundle.js" in html and "cdn." not in html and "https://" not in html


def test_json_bodies_give_the_same_answer(client):
    data = png("7")
    raw = client.post("/api/predict", content=data).json()
    b64 = base64.b64encode(data).decode()
    for image in (b64, "data:image/png;base64," + b64):
        a = client.post("/api/predict", json={"image": image}).json()
        assert a["probabilities"] == raw["probabilities"] and a["preview"] == raw["preview"]


def test_health_shares_the_one_size_limit(predictor):
    from digitrec.inference.decode import MAX_BYTES

    with TestClient(create_app(predictor)) as c:
        assert c.get("/api/health").json()["max_upload"] == MAX_BYTES == 20_000_000


def test_a_box_is_given_in_the_images_pixels(client):
    im = Image.new("L", (400, 300), 255)
    im.paste(Image.fromarray(255 - render("1").numpy()).resize((56, 56)), (300, 200))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    a = client.post("/api/predict", content=buf.getvalue()).json()
    left, top, right, bottom = a["input"]["box"]
    assert (a["input"]["width"], a["input"]["height"]) == (400, 300)
    assert 300 <= left < right <= 356 and 200 <= top < bottom <= 256


# ----------------------------------------------------------------------------- bad requests


def _bomb() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


BAD = {
    "empty body": (dict(content=b""), 400, "no image"),
    "text": (dict(content=b"hello there", headers={"content-type": "text/plain"}), 415, "supported format"),
    "html": (dict(content=b"<html><body>hi</body></html>", headers={"content-type": "image/png"}), 415, "format"),
    "oversized": (dict(content=b"\x89PNG" + b"0" * MAX_UPLOAD), 413, "limit"),
    "truncated": (dict(content=png()[:400], headers={"content-type": "image/png"}), 422, "truncated"),
    "pixel bomb": (dict(content=_bomb()), 413, "pixels"),
    "multipart without file": (dict(data={"note": "hi"}, files={"x": ("", b"")}), 400, ""),
    "multipart broken": (dict(content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\ntruncated",
                              headers={"content-type": "multipart/form-data; boundary=xyz"}), 400, "multipart"),
    "multipart without its closing boundary": (
        dict(content=b'--xyz\r\ncontent-disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + png(),
             headers={"content-type": "multipart/form-data; boundary=xyz"}), 400, "closing boundary (--xyz--)"),
    "JSON without image": (dict(json={"picture": "x"}), 400, "no 'image' string"),
    "JSON not base64": (dict(json={"image": "%%%"}), 400, "not valid base64"),
    "JSON data URL not base64": (dict(json={"image": "data:image/png,abc"}), 400, "not base64-encoded"),
    "JSON broken": (dict(content=b"{", headers={"content-type": "application/json"}), 400, "not valid JSON"),
    "multipart empty file": (dict(files={"file": ("a.png", b"", "image/png")}), 400, "no image"),
    "multipart two files": (dict(files=[("file", ("a.png", png(), "image/png")),
                                        ("file", ("b.png", png(), "image/png"))]), 400, ""),
    "bad top_k": (dict(content=png(), params={"top_k": 0}), 422, ""),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_gets_a_clear_4xx(client, name):
    kwargs, status, words = BAD[name]
    r = client.post("/api/predict", **kwargs)
    assert_json_error(r, status, words)


def test_oversized_declared_length_is_refused_before_reading(predictor):
    app = create_app(predictor, max_upload=1000)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            async def body():  # would be 1 MB, but the server stops after the header
                for _ in range(1000):
                    yield b"x" * 1000
            return await c.post("/api/predict", content=body(), headers={"content-length": str(1_000_000)})

    r = asyncio.run(go())
    assert r.status_code == 413 and "1,000,000" in r.json()["detail"]


def test_wrong_method_and_path(client):
    assert_json_error(client.get("/api/predict"), 405)
    assert_json_error(client.get("/api/nothing"), 404)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), flips=st.lists(st.integers(0, 10_000), max_size=8))
def test_no_input_makes_a_500(client, data, flips):
    """Random bytes, and real images with random bytes overwritten: always an answer or a 4xx."""
    for body in (data, _damaged(png("5", size=60), flips), _damaged(_jpeg(), flips)):
        r = client.post("/api/predict", content=body)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
        assert isinstance(r.json(), dict)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png("8", size=60))).convert("RGB").save(buf, "JPEG")
    return buf.getvalue()


def _damaged(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for i in flips:
        b[i % len(b)] ^= 0x5A
    return bytes(b)


# ----------------------------------------------------------------------------- concurrency and start-up


def test_concurrency_is_bounded(predictor):
    active, peak, lock = [0], [0], threading.Lock()

    class Slow:
        classes = predictor.classes

        def info(self):
            return predictor.info()

        def predict_image(self, *args, **kw):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1
            return predictor.predict_image(*args, **kw)

    app = create_app(Slow(), max_concurrency=2)
    data = png("3", size=60)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*[c.post("/api/predict", content=data) for _ in range(8)])

    responses = asyncio.run(go())
    assert all(r.status_code == 200 for r in responses)
    assert peak[0] == 2, f"at most 2 predictions at a time, saw {peak[0]}"


def test_serve_loads_the_model_once_and_binds_loopback(monkeypatch, synth_run, capsys):
    import uvicorn

    import digitrec.inference.predictor
    from digitrec.cli.main import main

    made, ran = [], []
    real = digitrec.inference.predictor.Predictor
    monkeypatch.setattr(digitrec.inference.predictor, "Predictor", lambda *a, **kw: made.append(a) or real(*a, **kw))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(kw))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)  # serve's setting must not leak into other tests
    assert main(["serve", "--checkpoint", str(synth_run / "best.pt"), "--port", "0"]) == 2  # port 0: refused
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now; serve_cli only test-binds it, uvicorn.run is faked
    assert main(["serve", "--checkpoint", str(synth_run / "best.pt"), "--port", str(port)]) == 0
    assert len(made) == 1 and ran[0]["host"] == "127.0.0.1" and ran[0]["port"] == port
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().err


# ----------------------------------------------------------------------------- read, explain, feedback


def drawn(lines, **kw) -> bytes:
    from synth import draw_text

    buf = io.BytesIO()
    draw_text(lines, **kw).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shipped_client():
    """The shipped model, which reads drawn digits (the synthetic one reads glyphs)."""
    with TestClient(create_app(Predictor(), max_upload=MAX_UPLOAD, max_concurrency=2),
                    raise_server_exceptions=False) as c:
        yield c


def test_read_answers_the_text_and_each_character(shipped_client):
    r = shipped_client.post("/api/read", content=drawn(["2026", "17"]), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["text"] == "2026\n17" and a["status"] in ("ok", "unsure") and a["lines"] == [4, 2]
    assert [c["label"] for c in a["characters"]] == list("202617")
    assert all(len(c["box"]) == 4 and len(c["probabilities"]) == 10 for c in a["characters"])
    assert {c["model"] for c in a["characters"]} <= {"line", "classifier"} and a["characters"][0]["model"], \
        "each character names the model that answered it"
    blank = shipped_client.post("/api/read", content=drawn(["1"])[:0] or png(" "))
    assert blank.json()["status"] == "blank" and blank.json()["text"] == ""


@pytest.mark.parametrize("kind", ["empty", "text", "half a PNG", "too big", "JSON without image", "bad multipart"])
def test_read_refuses_bad_input_as_predict_does(shipped_client, kind):
    body, headers = {"empty": (b"", {}), "text": (b"hello", {}), "half a PNG": (png("3")[:300], {}),
                     "too big": (b"x" * (MAX_UPLOAD + 1), {}),
                     "JSON without image": (b'{"picture": 1}', {"content-type": "application/json"}),
                     "bad multipart": (b"--x\r\n", {"content-type": "multipart/form-data; boundary=x"})}[kind]
    want = shipped_client.post("/api/predict", content=body, headers=headers)
    got = shipped_client.post("/api/read", content=body, headers=headers)
    assert 400 <= got.status_code < 500 and got.status_code == want.status_code, (kind, got.text)
    assert got.json()["detail"] == want.json()["detail"]


@pytest.mark.parametrize("make", ["many_strokes_png", "random_dots_png"])
def test_read_refuses_an_image_holding_more_than_a_reading_takes_with_422(shipped_client, make):
    """Issue 23's attacks (1,600 short strokes; a field of random dots) cost seconds each before:
    now refused, naming the limit, as soon as the pieces are counted; /api/predict still answers."""
    import synth

    r = shipped_client.post("/api/read", content=getattr(synth, make)(), headers={"content-type": "image/png"})
    assert_json_error(r, 422, "pieces of ink, more than one reading takes on (at most 160 with max_characters 40)")
    assert r.json()["kind"] == "too_much_ink" and "--max-characters" in r.json()["detail"]
    assert shipped_client.post("/api/predict", content=drawn(["4"])).status_code == 200


def test_read_takes_a_digit_count_or_a_pattern(shipped_client):
    year = drawn(["2026"])
    r = shipped_client.post("/api/read?digits=3", content=year)
    assert r.status_code == 200 and len(r.json()["text"]) == 3 and r.json()["reason"] is None
    r = shipped_client.post("/api/read", params={"pattern": r"19\d\d"}, content=year)
    assert r.status_code == 200 and r.json()["status"] == "unsure" and "19\\d\\d" in r.json()["reason"]
    assert_json_error(shipped_client.post("/api/read", params={"pattern": "(1|2)"}, content=year), 422,
                      "'(' at position 1 is not supported")
    assert_json_error(shipped_client.post("/api/read?digits=0", content=year), 422, "digits")
    params = {p["name"] for p in shipped_client.get("/openapi.json").json()["paths"]["/api/read"]["post"]["parameters"]}
    assert {"digits", "pattern", "top_k"} <= params


def test_predict_explains_the_answer_and_the_runner_up(shipped_client):
    r = shipped_client.post("/api/predict?explain=1", content=drawn(["4"]))
    a = r.json()
    e = a["explanation"]
    assert e["label"] == a["label"] == a["top"][0]["label"] and e["runner_up"] == a["top"][1]["label"]
    for key in ("input_png", "runner_up_png", "image_png"):
        Image.open(io.BytesIO(base64.b64decode(e[key]))).verify()
    assert "explanation" not in shipped_client.post("/api/predict", content=drawn(["4"])).json()


def test_feedback_is_refused_without_collect(client):
    assert_json_error(client.post("/api/feedback?label=3", content=png("3")), 403, "--collect")
    assert client.get("/api/health").json()["collect"] is False


def test_feedback_round_trip(predictor, tmp_path):
    from digitrec.corrections import Corrections

    folder = Corrections(tmp_path / "c", tuple(predictor.classes), max_samples=3)
    with TestClient(create_app(predictor, max_upload=MAX_UPLOAD, collect=folder), raise_server_exceptions=False) as c:
        assert c.get("/api/health").json()["collect"] is True
        r = c.post("/api/feedback?label=3&original=mine.png", content=png("3"))
        assert r.status_code == 200 and r.json() == {"saved": 0, "label": "3", "samples": 1}
        answer = c.post("/api/predict", content=png("5")).json()  # the page sends back what the model saw
        preview = base64.b64decode(answer["preview"])
        r = c.post("/api/feedback?label=5&input=1", json={"image": "data:image/png;base64," + answer["preview"]})
        assert r.status_code == 200 and r.json()["saved"] == 1
        assert_json_error(c.post("/api/feedback?label=Q", content=png("3")), 422, "not one of the model's classes")
        assert_json_error(c.post("/api/feedback?label=3&input=1", content=png("3")), 422, "28x28")
        assert_json_error(c.post("/api/feedback?label=3", content=png(" ")), 422, "no ink")
        assert_json_error(c.post("/api/feedback", content=png("3")), 422, "label")
        assert c.post("/api/feedback?label=1", content=png("1")).status_code == 200
        assert_json_error(c.post("/api/feedback?label=1", content=png("1")), 507, "cap of 3")
    images, labels, rows = folder.load()
    assert [int(v) for v in labels] == [3, 5, 1] and rows[0]["original"] == "mine.png"
    assert np.array_equal(images[0], preprocess(png("3")).image)
    assert np.array_equal(images[1], np.asarray(Image.open(io.BytesIO(preview))))


def serve_collect(monkeypatch, synth_run, folder) -> tuple[int, list]:
    """`digitrec serve --collect folder` with uvicorn faked: (exit code, uvicorn.run's calls)."""
    import uvicorn

    from digitrec.cli.main import main

    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append((app, kw)))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return main(["serve", "--checkpoint", str(synth_run / "best.pt"), "--port", str(port), "--collect",
                 str(folder)]), ran


def test_serve_refuses_a_damaged_corrections_folder_at_start(monkeypatch, synth_run, tmp_path, capsys):
    """Issue: a truncated image file made every POST a 500 while the server started happily."""
    from digitrec.corrections import IMAGES, LOG, Corrections

    folder = Corrections(tmp_path / "c", tuple("0123456789"))
    for i in range(5):
        folder.add(np.full((28, 28), 40 * i, np.uint8), str(i))
    with open(tmp_path / "c" / IMAGES, "r+b") as f:
        f.truncate(16 + 2 * 784)
    code, ran = serve_collect(monkeypatch, synth_run, tmp_path / "c")
    assert code == 2 and ran == []
    assert "truncated" in capsys.readouterr().err
    # a missing log beside intact IDX files: recovered, said so, and nothing is cut back
    folder = Corrections(tmp_path / "d", tuple("0123456789"))
    for i in range(48):
        folder.add(np.full((28, 28), i, np.uint8), str(i % 10))
    (tmp_path / "d" / LOG).unlink()
    code, ran = serve_collect(monkeypatch, synth_run, tmp_path / "d")
    err = capsys.readouterr().err
    assert code == 0 and len(ran) == 1 and "48 so far" in err and "48 recovered" in err
    assert len(Corrections(tmp_path / "d", tuple("0123456789")).load()[0]) == 48


def test_a_folder_damaged_while_serving_is_a_503_in_words(predictor, tmp_path):
    from digitrec.corrections import IMAGES, Corrections

    folder = Corrections(tmp_path / "c", tuple(predictor.classes))
    with TestClient(create_app(predictor, max_upload=MAX_UPLOAD, collect=folder), raise_server_exceptions=False) as c:
        assert c.post("/api/feedback?label=3", content=png("3")).status_code == 200
        assert c.post("/api/feedback?label=4", content=png("4")).status_code == 200
        with open(tmp_path / "c" / IMAGES, "r+b") as f:
            f.truncate(16 + 784 + 10)
        assert_json_error(c.post("/api/feedback?label=3", content=png("3")), 503, "truncated")


# ----------------------------------------------------------------------------- poisoned corrections


def gray_png(value: int, size: int = 28) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), value).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def collecting(predictor, tmp_path):
    """(client of a server collecting into tmp_path/c, the folder), Host and Origin its own."""
    from digitrec.corrections import Corrections

    folder = Corrections(tmp_path / "c", tuple(predictor.classes))
    app = create_app(predictor, max_upload=MAX_UPLOAD, collect=folder, allowed_hosts=("127.0.0.1", "localhost"))
    with TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False) as c:
        yield c, folder


@pytest.mark.parametrize("value", [0, 255])
def test_an_image_without_ink_is_refused_with_or_without_input(collecting, value):
    """Issue: with input=1 an all-black or all-white 28x28 image was stored."""
    c, folder = collecting
    for query in ("label=3&input=1", "label=3"):
        assert_json_error(c.post(f"/api/feedback?{query}", content=gray_png(value)), 422, "no ink")
    assert len(folder) == 0


def test_the_log_keeps_the_models_answer_and_no_spreadsheet_formula(collecting, predictor):
    c, folder = collecting
    originals = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tx", "ok.png"]
    for name in originals:
        assert c.post("/api/feedback", params={"label": "3", "original": name}, content=png("3")).status_code == 200
    _, _, rows = folder.load()
    assert [r["original"] for r in rows] == originals  # read back as given
    assert all(r["predicted"] == predictor.predict_image(png("3"))[0].label for r in rows)
    import csv

    with open(folder.folder / "log.csv", newline="") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], cells


def test_repeated_query_parameters_are_refused(collecting):
    """Issue: ?label=1&label=2 stored 2."""
    c, folder = collecting
    assert_json_error(c.post("/api/feedback?label=1&label=2", content=png("1")), 422, "label")
    assert_json_error(c.post("/api/feedback?label=1&original=a&original=b", content=png("1")), 422, "more than once")
    assert len(folder) == 0


def test_an_overlong_label_is_not_echoed_back(collecting):
    """Issue: a 100,000-character label came back in a 100 KB 422 (httpx sends at most 64 KB of URL)."""
    c, _ = collecting
    r = c.post("/api/feedback", params={"label": "7" * 60_000}, content=png("7"))
    assert_json_error(r, 422, "not one of the model's classes")
    assert len(r.content) < 1000


@pytest.mark.parametrize("headers", [{"origin": "http://evil.example"}, {"origin": "null"},
                                     {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                                     {"content-type": "text/plain"},
                                     {"content-type": "application/x-www-form-urlencoded"},
                                     {"content-type": "multipart/form-data; boundary=x"}])
def test_writes_from_another_origin_are_refused(collecting, headers):
    """Issue: a page elsewhere stored corrections with fetch(..., {mode: "no-cors"})."""
    c, folder = collecting
    r = c.post("/api/feedback?label=3", content=png("3"), headers=headers)
    assert r.status_code in (403, 415), r.text
    assert len(folder) == 0
    # the page's own request, and a script's (no Origin), are kept
    same = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin", "content-type": "application/json"}
    image = {"image": base64.b64encode(png("3")).decode()}
    assert c.post("/api/feedback?label=3", json=image, headers=same).status_code == 200
    assert c.post("/api/feedback?label=3", content=png("3")).status_code == 200


def test_unknown_host_names_are_refused(collecting):
    """Issue: DNS rebinding: the Host header was not checked."""
    c, folder = collecting
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        assert_json_error(c.post("/api/feedback?label=3", content=png("3"), headers={"host": host}), 403, "host")
        assert_json_error(c.get("/api/health", headers={"host": host}), 403, "--allowed-host")
    assert c.get("/api/health", headers={"host": "localhost:8000"}).status_code == 200
    assert len(folder) == 0


def test_serve_allows_its_own_host_and_warns_when_collecting_in_the_open(monkeypatch, synth_run, tmp_path, capsys):
    import uvicorn

    from digitrec.cli.main import main

    ran = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.append(app))
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    assert main(["serve", "--checkpoint", str(synth_run / "best.pt"), "--host", "0.0.0.0", "--port", str(port),
                 "--collect", str(tmp_path / "c"), "--allowed-host", "digits.example"]) == 0
    assert "anyone who can reach it can store" in capsys.readouterr().err
    with TestClient(ran[0], base_url=f"http://digits.example:{port}", raise_server_exceptions=False) as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"host": "[::1]"}).status_code == 200
        assert c.get("/api/health", headers={"host": "other.example"}).status_code == 403


@pytest.mark.parametrize("route", ["/api/feedback?label=3", "/api/predict"])
def test_deeply_nested_or_oversized_json_is_a_4xx(collecting, route):
    c, _ = collecting
    json_type = {"content-type": "application/json"}
    nested = b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_json_error(c.post(route, content=nested, headers=json_type), 400, "nested")
    assert_json_error(c.post(route, content=b'{"image": "' + b"A" * (2 * MAX_UPLOAD) + b'"}', headers=json_type), 413)
