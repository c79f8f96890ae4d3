"""Hostile files: checkpoints that would run code when unpickled are refused, and the code never
runs; images of every malformed kind get a prediction or a clear error, from preprocess() and
from the API, never an unhandled exception, a hang or a 500."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitrec.checkpoint import FORMAT, CheckpointError, load_checkpoint, load_model, save_checkpoint
from digitrec.cli.main import main
from digitrec.models import create_model
from digitrec.inference.preprocess import Preprocessed, PreprocessError, preprocess
from synth import render


class RunsCode:
    """Unpickling this calls exec(): it writes `marker`. A real attack would do anything else."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('the payload ran')",)


def hostile_files(tmp_path) -> dict:
    """name -> (path of a hostile file, marker its payload would create)."""
    files = {}

    def mark(name):
        return tmp_path / f"{name}.ran"

    # A checkpoint that looks genuine (format tag, weights, metadata) with the payload in its metadata.
    path = tmp_path / "genuine_looking.pt"
    model = create_model("seed")
    torch.save({"format": FORMAT, "model": {"name": "seed", "args": {}}, "state_dict": model.state_dict(),
                "meta": {"dataset": {"classes": list("0123456789")}, "note": RunsCode(mark("genuine_looking"))}},
               path)
    files["genuine_looking"] = path
    # Nothing but the payload, in torch's zip format.
    path = tmp_path / "payload_only.pt"
    torch.save(RunsCode(mark("payload_only")), path)
    files["payload_only"] = path
    # A plain pickle file (torch's legacy format), named like a checkpoint.
    path = tmp_path / "legacy_pickle.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT, "meta": RunsCode(mark("legacy_pickle"))}, protocol=2))
    files["legacy_pickle"] = path
    return {name: (p, mark(name)) for name, p in files.items()}


@pytest.fixture
def hostile(tmp_path):
    return hostile_files(tmp_path)


def test_the_payloads_are_real(hostile):
    """Loaded the unsafe way (in another process), each file does run its code."""
    paths = [str(path) for path, _ in hostile.values()]
    code = f"import torch\nfor p in {paths!r}:\n    torch.load(p, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    for path, marker in hostile.values():
        assert marker.read_text() == "the payload ran", path.name


@pytest.mark.parametrize("name", ["genuine_looking", "payload_only", "legacy_pickle"])
def test_hostile_checkpoint_is_refused_and_its_code_never_runs(hostile, name):
    path, marker = hostile[name]
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert f"refused to load {path}" in msg and "could run code" in msg and "know where it came from" in msg
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", [["evaluate", "--checkpoint"], ["export"]])
def test_cli_refuses_hostile_checkpoint_with_a_message(hostile, command, capsys):
    path, marker = hostile["genuine_looking"]
    assert main([*command, str(path)]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and "could run code" in err and "Traceback" not in err
    assert not marker.exists()


def test_genuine_checkpoint_still_loads(tmp_path):
    """The refusal is about pickled objects, not about checkpoints: ours hold none."""
    card = {"dataset": {"name": "digits", "classes": list("0123456789"), "mean": 0.13, "std": 0.3}}
    save_checkpoint(tmp_path / "ok.pt", create_model("seed"), "seed", {}, card,
                    train_state={"history": [{"epoch": 1, "val_loss": 0.5}], "rng": torch.get_rng_state()})
    assert load_checkpoint(tmp_path / "ok.pt").train_state["history"][0]["epoch"] == 1


# ----------------------------------------------------------------------------- images
#
# Whatever bytes arrive, preprocess() returns a model input or raises PreprocessError (with a
# message and a kind), and the API answers 200 with a prediction or a 4xx with a detail:
# never another exception, never a 500, never a hang.

KINDS = {"empty", "too_large", "too_many_pixels", "unsupported", "damaged"}
HANG = 60.0  # seconds: far beyond any honest answer on a loaded machine; only a hang takes this long
# Pillow warns (and carries on) about some damaged TIFF tags; the outcome is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore:Tag data larger than file:UserWarning")
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def digit(d: int = 3, scale: int = 4) -> Image.Image:
    im = Image.fromarray(render(str(d)).numpy(), "L")
    return im.resize((28 * scale, 28 * scale))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


VALID = {fmt: encode(digit(3), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")}


def chunk(tag: bytes, data: bytes) -> bytes:
    """A PNG chunk, with its CRC right, so only what it says is hostile."""
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png(width: int, height: int, idat: bytes = b"", mode: tuple = (8, 0), extra: bytes = b"") -> bytes:
    """A PNG whose header says width x height, with the given (uncompressed) pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, mode[0], mode[1], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(idat))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A valid JPEG with its frame header (SOF0) rewritten to claim width x height."""
    data = bytearray(VALID["JPEG"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [digit(d).convert("P") for d in (7, 1, 4)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def gif(width: int, height: int) -> bytes:
    """A GIF whose screen and only frame are width x height, two colours, no pixel data."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b")


def truncations(blob: bytes) -> list[bytes]:
    return [blob[:n] for n in (1, 8, 16, 33, len(blob) // 2, len(blob) - 12, len(blob) - 1)]


HAND_MADE = {
    "random bytes": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
    "empty": b"",
    "text": b"<svg xmlns='http://www.w3.org/2000/svg'><text>7</text></svg>",
    **{f"truncated PNG {i}": b for i, b in enumerate(truncations(VALID["PNG"]))},
    **{f"truncated JPEG {i}": b for i, b in enumerate(truncations(VALID["JPEG"]))},
    "PNG claiming 100000x100000": png(100_000, 100_000, b"\0" * 100),
    "PNG claiming 7000x7000": png(7000, 7000, b"\0" * 100),  # over our limit, under Pillow's
    "PNG 0x0": png(0, 0),
    "PNG 0x100": png(0, 100, b"\0" * 100),
    "PNG 1x1": png(1, 1, b"\0\xff"),
    "PNG 16-bit": png(2, 2, b"\0" + b"\xff" * 4 + b"\0" + b"\0" * 4, mode=(16, 0)),
    "PNG with a 64 MB text bomb": png(1, 1, b"\0\0", extra=chunk(b"zTXt", b"k\0\0" + zlib.compress(b"\0" * (1 << 26)))),
    "PNG 6000x6000 of zeros": png(6000, 6000, b"\0" * (6001 * 6000)),  # under the limit: decoded
    "JPEG claiming 65535x65535": jpeg_claiming(65535, 65535),
    "JPEG claiming 0x0": jpeg_claiming(0, 0),
    "GIF 0x0": gif(0, 0),
    "GIF 65535x65535": gif(65535, 65535),
    "animated GIF": animated_gif(),
    **{f"valid {fmt}": blob for fmt, blob in VALID.items()},
}


def bounded(fn, *args):
    """fn(*args) in a thread: its result or exception, failing the test if it hangs."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001  handed to the caller
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t0 = time.monotonic()
    t.start()
    t.join(HANG)
    assert not t.is_alive(), f"{fn.__name__} hung (> {HANG:.0f} s)"
    if "error" in result:
        raise result["error"]
    return result["value"], time.monotonic() - t0


def check_preprocess(data: bytes) -> Preprocessed | PreprocessError:
    try:
        out, _ = bounded(preprocess, data)
    except PreprocessError as e:
        assert e.kind in KINDS and str(e), (e.kind, str(e))
        return e
    assert isinstance(out, Preprocessed)
    assert out.image.shape == (28, 28) and out.image.dtype == np.uint8
    return out


@pytest.mark.parametrize("name", list(HAND_MADE))
def test_preprocess_hand_made_hostile_images(name):
    out = check_preprocess(HAND_MADE[name])
    expected = {"PNG claiming 100000x100000": "too_many_pixels", "PNG claiming 7000x7000": "too_many_pixels",
                "JPEG claiming 65535x65535": "too_many_pixels", "empty": "empty", "text": "unsupported",
                "random bytes": "unsupported"}
    if name in expected:
        assert isinstance(out, PreprocessError) and out.kind == expected[name], out
    if name.startswith("valid") or name == "animated GIF":
        assert isinstance(out, Preprocessed) and not out.blank
    if name in ("PNG 0x0", "PNG 0x100", "GIF 0x0", "JPEG claiming 0x0"):
        assert isinstance(out, PreprocessError)


def test_animated_gif_uses_its_first_frame():
    first = preprocess(encode(digit(7), "PNG"))
    assert np.array_equal(preprocess(HAND_MADE["animated GIF"]).image, first.image)


@st.composite
def mutated_images(draw) -> bytes:
    """A valid image of one of the formats, then truncated, bit-flipped, overwritten, with bytes
    inserted or deleted: malformed deep inside the decoder, not only at its magic number."""
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "truncate":
            del data[pos:]
        elif op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            blob = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(blob)] = blob
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_preprocess_random_bytes(data):
    check_preprocess(data)


@settings(FUZZ, max_examples=400)
@given(data=mutated_images())
def test_preprocess_mutated_images(data):
    check_preprocess(data)


# ----------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def client(synth_run):
    from fastapi.testclient import TestClient

    from digitrec.inference.predictor import Predictor
    from digitrec.server.app import create_app

    app = create_app(Predictor(synth_run / "best.pt"), max_upload=1_000_000, max_concurrency=2)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check_api(client, data: bytes, multipart: bool = False):
    def post():
        if multipart:
            return client.post("/api/predict", files={"file": ("x.png", data, "image/png")})
        return client.post("/api/predict", content=data, headers={"content-type": "image/png"})

    r, _ = bounded(post)
    assert r.status_code in (200, 400, 413, 415, 422), (r.status_code, r.text[:300])
    body = r.json()
    if r.status_code == 200:
        assert body["status"] in ("ok", "unsure", "not_a_digit", "blank")
        counts = {"blank": (0,), "not_a_digit": (0, 10)}.get(body["status"], (10,))  # blank: no numbers
        assert len(body["probabilities"]) in counts
    else:
        assert isinstance(body["detail"], str) and body["detail"]
    return r


@pytest.mark.parametrize("name", list(HAND_MADE))
def test_api_hand_made_hostile_images(client, name):
    data = HAND_MADE[name]
    r = check_api(client, data)
    check_api(client, data, multipart=True)
    if name in ("PNG claiming 100000x100000", "JPEG claiming 65535x65535"):
        assert r.status_code == 413
    if name.startswith("valid") or name == "animated GIF":
        assert r.status_code == 200 and r.json()["label"] is not None


def test_api_refuses_oversized_and_malformed_requests(client):
    r = client.post("/api/predict", content=b"\0" * 1_000_001, headers={"content-type": "image/png"})
    assert r.status_code == 413
    r = client.post("/api/predict", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400
    r = client.post("/api/predict", content=VALID["PNG"], headers={"content-type": "text/plain"})
    assert r.status_code == 200  # the bytes decide, not what the client claims they are


@settings(FUZZ, max_examples=100)
@given(data=st.one_of(st.binary(max_size=2048), mutated_images()), multipart=st.booleans())
def test_api_fuzz(client, data, multipart):
    check_api(client, data, multipart)
