"""Data integrity: a cached dataset file that was truncated, bit-flipped or replaced is caught
on load by its size and SHA-256, and fetched again (here from a mirror on 127.0.0.1, through
the real download path with its MD5 check), or reported with what to do."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import torch

from digitrec.data.idx import write_idx
from digitrec.data.load import load
from digitrec.data.registry import MNIST, ROLES, FileSpec
from digitrec.errors import DataError
from synth import make_images


@pytest.fixture
def mirror(tmp_path, synth_dir):
    """An HTTP mirror on 127.0.0.1 serving the synthetic files as MNIST's .gz; yields
    (its base URL, its folder, the list of paths requested)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    for r in ROLES:
        name = MNIST.files[r].name
        (folder / (name + ".gz")).write_bytes(gzip.compress((synth_dir / name).read_bytes(), mtime=0))
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requested.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", folder, requested
    server.shutdown()
    server.server_close()


@pytest.fixture
def spec(synth_dir, mirror, monkeypatch):
    """MNIST's spec with the synthetic files' sizes and sums, and the local mirror as its only source."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    files = {}
    for r in ROLES:
        raw = (synth_dir / MNIST.files[r].name).read_bytes()
        files[r] = FileSpec(MNIST.files[r].name, hashlib.sha256(raw).hexdigest(), len(raw),
                            hashlib.md5(gzip.compress(raw, mtime=0)).hexdigest())
    return replace(MNIST, name="checkedmnist", files=files, mirrors=(mirror[0],), npm=None, torchvision_dir=None,
                   local_dirs=())


def damage(path: Path, how: str) -> None:
    blob = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "too long":
        path.write_bytes(bytes(blob) + b"\0" * 100)
    elif how == "bit-flipped":
        blob[len(blob) // 2] ^= 0x10  # one bit, inside the pixels: the IDX header stays valid
        path.write_bytes(bytes(blob))
    elif how == "replaced":  # another well-formed IDX file of exactly the same size
        n = (len(blob) - 16) // (28 * 28)
        write_idx(path, make_images(torch.zeros(n, dtype=torch.long), seed=99))
        assert path.stat().st_size == len(blob)
    else:
        raise ValueError(how)


CASES = [("truncated", "train_images", "truncated (235,208 of 470,416 bytes)"),
         ("empty", "test_labels", "truncated (0 of 208 bytes)"),
         ("too long", "train_labels", "too long (708 of 608 bytes)"),
         ("bit-flipped", "test_images", "damaged or replaced"),
         ("replaced", "train_images", "damaged or replaced")]


@pytest.fixture
def cache(tmp_path, spec, synth_dir) -> Path:
    """A data folder holding the genuine files, as `digitrec fetch` leaves it."""
    data_dir = tmp_path / "cache"
    (data_dir / spec.name).mkdir(parents=True)
    for r in ROLES:
        name = spec.files[r].name
        (data_dir / spec.name / name).write_bytes((synth_dir / name).read_bytes())
    return data_dir


def test_genuine_cache_loads_without_touching_the_network(spec, cache, mirror):
    ds = load(spec, cache)
    assert len(ds.train_x) == 600 and mirror[2] == []
    assert ds.checksums == {fs.name: fs.sha256 for fs in spec.files.values()}


@pytest.mark.parametrize("how,role,message", CASES, ids=[c[0] for c in CASES])
def test_damaged_cache_file_is_detected_and_fetched_again(how, role, message, spec, cache, mirror, synth_dir,
                                                          capsys):
    name = spec.files[role].name
    damage(cache / spec.name / name, how)
    ds = load(spec, cache)
    assert f"{name} is {message}" in capsys.readouterr().err  # said so, then fetched it again
    assert mirror[2] == [f"/{name}.gz"]  # only the damaged file
    assert (cache / spec.name / name).read_bytes() == (synth_dir / name).read_bytes()
    assert ds.checksums[name] == spec.files[role].sha256 and len(ds.test_x) == 200


@pytest.mark.parametrize("how,role,message", CASES, ids=[c[0] for c in CASES])
def test_damaged_cache_file_is_reported_when_not_fetching(how, role, message, spec, cache):
    name = spec.files[role].name
    damage(cache / spec.name / name, how)
    with pytest.raises(DataError) as e:
        load(spec, cache, fetch_missing=False)
    assert f"{name} is {message}" in str(e.value) and "digitrec fetch --force" in str(e.value)


def test_damaged_mirror_copy_is_refused_and_reported(spec, cache, mirror):
    name = spec.files["test_images"].name
    damage(cache / spec.name / name, "bit-flipped")
    gz = mirror[1] / (name + ".gz")
    blob = bytearray(gzip.decompress(gz.read_bytes()))
    blob[-1] ^= 1  # the mirror, too, serves a damaged copy
    gz.write_bytes(gzip.compress(bytes(blob)))
    with pytest.raises(DataError) as e:
        load(spec, cache)
    msg = str(e.value)
    assert name in msg and "official mirrors" in msg and "md5" in msg.lower() and "by hand" in msg
    assert not (cache / spec.name / name).exists()  # the damaged file never stays to be trained on
    assert not list((cache / spec.name).glob("**/*.gz"))  # nor the damaged download
