"""The dataset registry and its sources, on small synthetic files in each dataset's real layout.

Each registered dataset is rebuilt here with its own file names, orientation and label
coding, but a few hundred images, so the sizes (and sums, where the real ones are
published) are the synthetic files'. No test touches the network: the one download
function is replaced.
"""

import gzip
import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from synth import make_idx_folder, make_images, render

from digitrec.data import fetch as data
from digitrec.data.fetch import fetch
from digitrec.data.idx import write_idx
from digitrec.data.load import load
from digitrec.data.registry import REGISTRY, ROLES, FileSpec, get_spec, mnist_files
from digitrec.errors import DataError

N_TRAIN, N_TEST = 260, 52  # ten of each letter in training, two in test


# ---------------------------------------------------------------- the registry itself


def test_every_dataset_is_complete():
    assert {"mnist", "fashion-mnist", "emnist-digits", "emnist-letters", "emnist-balanced"} <= set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert spec.name == name and set(spec.files) == set(ROLES)
        assert len(set(spec.classes)) == spec.num_classes >= 2, name
        assert 0 < spec.mean < 1 and 0 < spec.std < 1, name
        assert spec.mirrors or spec.archive or spec.npm, f"{name} has no download source"
        for fs in spec.files.values():
            assert fs.size and (fs.sha256 is None or len(fs.sha256) == 64), fs.name
        n_train = (spec.files["train_images"].size - 16) // 784
        assert spec.files["train_labels"].size == 8 + n_train, name  # as many labels as images


def test_emnist_and_fashion_entries():
    letters, balanced = get_spec("emnist-letters"), get_spec("emnist-balanced")
    assert letters.classes[0] == "A" and letters.num_classes == 26 and letters.label_offset == 1
    assert balanced.num_classes == 47 and balanced.label_offset == 0
    assert get_spec("emnist-digits").classes == get_spec("mnist").classes
    for spec in (letters, balanced, get_spec("emnist-digits")):
        assert spec.transposed and spec.archive.name == "gzip.zip" and spec.archive.folder == "emnist"
        assert spec.files["train_images"].name == f"{spec.name}-train-images-idx3-ubyte"
    fashion = get_spec("fashion-mnist")
    assert fashion.classes[9] == "Ankle boot" and "/usr/share/datasets/fashion-mnist" in fashion.local_dirs
    assert all(fs.sha256 and fs.md5_gz for fs in fashion.files.values())


# ---------------------------------------------------------------- synthetic files, real layout


def glyphs_for(spec) -> str:
    """One renderable character per class (Fashion-MNIST's classes become letters)."""
    return "".join(c if len(c) == 1 else "ABCDEFGHIJ"[i] for i, c in enumerate(spec.classes))


def sample(spec, seed: int = 0):
    """Upright images and 0-based labels: what `load` must give back."""
    out = {}
    for part, n in (("train", N_TRAIN), ("test", N_TEST)):
        y = torch.arange(n) % spec.num_classes
        out[part] = (make_images(y, glyphs_for(spec), seed=seed + (part == "test")), y)
    return out


def write_layout(spec, folder: Path, upright: dict, gz: bool = False) -> dict[str, bytes]:
    """Store `upright` as the real dataset stores it: transposed and label-offset where it is."""
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {}
    for part, (x, y) in upright.items():
        stored_x = x.transpose(1, 2) if spec.transposed else x
        for role, arr in ((f"{part}_images", stored_x), (f"{part}_labels", y + spec.label_offset)):
            path = folder / spec.files[role].name
            write_idx(path, arr)
            blobs[role] = path.read_bytes()
            if gz:
                (folder / (path.name + ".gz")).write_bytes(gzip.compress(blobs[role], mtime=0))
                path.unlink()
    return blobs


def small(spec, blobs: dict[str, bytes] | None = None, **changes):
    """`spec` with its real names but the synthetic files' sizes (and sums, where it has sums)."""
    files = mnist_files({}, N_TRAIN, N_TEST, prefix=spec.files["train_images"].name[: -len("train-images-idx3-ubyte")])
    assert [f.name for f in files.values()] == [spec.files[r].name for r in ROLES]
    if blobs and spec.files["train_images"].sha256:
        files = {r: FileSpec(f.name, hashlib.sha256(blobs[r]).hexdigest(), f.size,
                             hashlib.md5(gzip.compress(blobs[r], mtime=0)).hexdigest())
                 for r, f in files.items()}
    return replace(spec, **{"files": files, "mirrors": (), "npm": None, "local_dirs": (), **changes})


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(data, "_download", refuse)


@pytest.mark.parametrize("name", ["emnist-letters", "emnist-balanced", "emnist-digits", "fashion-mnist", "mnist"])
def test_load_undoes_each_layout(tmp_path, name):
    spec = small(REGISTRY[name])
    upright = sample(spec)
    write_layout(spec, tmp_path / spec.name, upright)
    ds = load(spec, tmp_path, fetch_missing=False)
    assert torch.equal(ds.train_x, upright["train"][0]) and torch.equal(ds.test_x, upright["test"][0])
    assert torch.equal(ds.train_y, upright["train"][1]) and torch.equal(ds.test_y, upright["test"][1])
    assert int(ds.train_y.min()) == 0 and int(ds.train_y.max()) == spec.num_classes - 1


def test_emnist_letters_glyph_is_upright_and_labels_zero_based(tmp_path):
    """An 'F' stored as EMNIST stores it (transposed, label 6) loads as an upright 'F', class 5."""
    spec = small(REGISTRY["emnist-letters"])
    f = render("F")
    assert not torch.equal(f, f.T) and not torch.equal(f, f.flip(1))  # the check can tell
    folder = tmp_path / spec.name
    images = torch.zeros(N_TRAIN, 28, 28, dtype=torch.uint8)
    labels = torch.arange(N_TRAIN) % 26 + 1  # as stored: 1..26
    images[5] = f.T  # as stored: column by column
    write_idx(folder / spec.files["train_images"].name, images)
    write_idx(folder / spec.files["train_labels"].name, labels)
    write_idx(folder / spec.files["test_images"].name, images[:N_TEST])
    write_idx(folder / spec.files["test_labels"].name, labels[:N_TEST])
    ds = load(spec, tmp_path, fetch_missing=False)
    assert torch.equal(ds.train_x[5], f)
    assert spec.classes[int(ds.train_y[5])] == "F"
    # The upright glyph has its bars on the right side of its stem: ink in the top rows
    # reaches further right than in the bottom rows (a transposed 'F' would not).
    rows = (ds.train_x[5] > 128).nonzero()
    top, bottom = rows[rows[:, 0] <= rows[:, 0].min() + 2], rows[rows[:, 0] >= rows[:, 0].max() - 2]
    assert top[:, 1].max() > bottom[:, 1].max() + 3
    assert int(ds.train_y.min()) == 0 and int(ds.train_y.max()) == 25


def test_label_outside_the_classes_is_a_clear_error(tmp_path):
    spec = small(REGISTRY["emnist-letters"])
    upright = sample(spec)
    upright["test"][1][0] = -1  # stored as 0: EMNIST letters never uses 0
    write_layout(spec, tmp_path / spec.name, upright)
    with pytest.raises(DataError, match="emnist-letters-test-labels-idx1-ubyte has labels outside 1..26"):
        load(spec, tmp_path, fetch_missing=False)


# ---------------------------------------------------------------- the EMNIST archive


def make_archive(path: Path, splits: list, extra: dict[str, bytes] | None = None) -> str:
    """A zip laid out like NIST's gzip.zip: gzip/<file>.gz for each (spec, blobs) in `splits`.
    Returns its MD5."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # NIST stores the .gz members
        for spec, blobs in splits:
            for role, blob in blobs.items():
                zf.writestr(f"gzip/{spec.files[role].name}.gz", gzip.compress(blob, mtime=0))
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return hashlib.md5(path.read_bytes()).hexdigest()


def emnist_pair(tmp_path):
    """Small emnist-letters and emnist-digits specs sharing one fake archive, and its MD5."""
    letters, digits = small(REGISTRY["emnist-letters"]), small(REGISTRY["emnist-digits"])
    splits = [(s, write_layout(s, tmp_path / "made" / s.name, sample(s))) for s in (letters, digits)]
    zpath = tmp_path / "gzip.zip"
    md5 = make_archive(zpath, splits, {"gzip/../../escape": b"x", "/etc/evil": b"x"})
    archive = replace(letters.archive, md5=md5)
    return replace(letters, archive=archive), replace(digits, archive=archive), zpath


def test_archive_is_downloaded_once_and_only_the_split_asked_for_is_extracted(tmp_path, monkeypatch):
    letters, digits, zpath = emnist_pair(tmp_path)
    calls = []

    def fake_download(url, md5, folder, fname, timeout=15.0):
        calls.append(url)
        assert hashlib.md5(zpath.read_bytes()).hexdigest() == md5
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / fname).write_bytes(zpath.read_bytes())
        return Path(folder) / fname

    monkeypatch.setattr(data, "_download", fake_download)
    cache = tmp_path / "cache"
    ds = load(letters, cache)
    assert calls == [letters.archive.urls[0]]
    assert (cache / "emnist" / "gzip.zip").exists()  # kept for the other splits
    assert sorted(p.name for p in (cache / "emnist-letters").iterdir()) == sorted(
        letters.files[r].name for r in ROLES)  # the four members, nothing else
    assert not (cache / "emnist-digits").exists()
    assert not list(tmp_path.rglob("escape")) and not list(tmp_path.rglob("evil"))
    assert ds.spec.classes[int(ds.train_y[0])] == "A" and torch.equal(ds.train_x, sample(letters)["train"][0])
    load(digits, cache)  # the second split comes from the cached archive
    assert calls == [letters.archive.urls[0]]


def test_archive_from_the_users_folder_and_torchvisions(tmp_path):
    letters, digits, zpath = emnist_pair(tmp_path)
    fetch(letters, tmp_path / "c1", source=zpath.parent)
    assert (tmp_path / "c1" / "emnist-letters" / letters.files["test_labels"].name).exists()
    tv = tmp_path / "c2" / "EMNIST" / "raw"
    tv.mkdir(parents=True)
    (tv / "gzip.zip").write_bytes(zpath.read_bytes())
    assert len(load(digits, tmp_path / "c2").test_x) == N_TEST


def test_damaged_archive_is_refused_and_the_message_says_where_to_put_it(tmp_path):
    letters, _, zpath = emnist_pair(tmp_path)
    blob = bytearray(zpath.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "cache" / "emnist").mkdir(parents=True)
    (tmp_path / "cache" / "emnist" / "gzip.zip").write_bytes(bytes(blob))
    with pytest.raises(DataError) as e:
        fetch(letters, tmp_path / "cache")
    msg = str(e.value)
    assert "gzip.zip is not the published gzip.zip (its MD5 does not match)" in msg
    assert "no network in tests" in msg and letters.archive.urls[0] in msg
    assert f"put gzip.zip ({letters.archive.urls[0]}) in {tmp_path / 'cache' / 'emnist'}" in msg


def test_oversized_member_is_cut_off(tmp_path):
    letters = small(REGISTRY["emnist-letters"])
    blobs = write_layout(letters, tmp_path / "made", sample(letters))
    blobs["train_labels"] += b"\0" * 10_000  # decompresses past its expected size
    md5 = make_archive(tmp_path / "gzip.zip", [(letters, blobs)])
    letters = replace(letters, archive=replace(letters.archive, md5=md5))
    with pytest.raises(DataError, match="more than the expected 268 bytes"):
        fetch(letters, tmp_path / "cache", source=tmp_path)
    assert (tmp_path / "cache" / "emnist-letters" / letters.files["train_images"].name).exists()
    assert not (tmp_path / "cache" / "emnist-letters" / letters.files["train_labels"].name).exists()


# ---------------------------------------------------------------- Fashion-MNIST's sources


def test_debian_folder_is_used(tmp_path):
    """Debian's dataset-fashion-mnist installs the four .gz in /usr/share/datasets/fashion-mnist/,
    recompressed (their MD5s differ from the publisher's): the uncompressed sums decide."""
    spec = small(REGISTRY["fashion-mnist"])
    debian = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    blobs = write_layout(spec, debian, sample(spec), gz=True)
    spec = small(REGISTRY["fashion-mnist"], blobs, local_dirs=(str(debian),))
    assert sorted(p.name for p in debian.iterdir())[0] == "t10k-images-idx3-ubyte.gz"
    ds = load(spec, tmp_path / "cache")
    assert ds.spec.classes[int(ds.test_y[9])] == "Ankle boot"
    assert ds.checksums[spec.files["train_images"].name] == spec.files["train_images"].sha256


def test_debian_folder_with_other_files_is_not_trusted(tmp_path):
    spec = small(REGISTRY["fashion-mnist"])
    debian = tmp_path / "debian"
    blobs = write_layout(spec, debian, sample(spec), gz=True)
    spec = small(REGISTRY["fashion-mnist"], blobs, local_dirs=(str(debian),))
    write_layout(spec, debian, sample(spec, seed=7), gz=True)  # same layout, other images
    with pytest.raises(DataError, match="debian/train-images-idx3-ubyte.gz is damaged or replaced"):
        fetch(spec, tmp_path / "cache")


def test_mirrors_are_md5_checked(tmp_path, monkeypatch):
    spec = small(REGISTRY["fashion-mnist"])
    served = tmp_path / "served"
    blobs = write_layout(spec, served, sample(spec), gz=True)
    spec = small(REGISTRY["fashion-mnist"], blobs, mirrors=("http://mirror.test/",))
    seen = []

    def fake_download(url, md5, folder, fname, timeout=15.0):
        blob = (served / url.rsplit("/", 1)[1]).read_bytes()
        seen.append((fname, md5 == hashlib.md5(blob).hexdigest()))
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / fname).write_bytes(blob)
        return Path(folder) / fname

    monkeypatch.setattr(data, "_download", fake_download)
    assert len(load(spec, tmp_path / "cache").train_x) == N_TRAIN
    assert sorted(seen) == sorted((spec.files[r].name + ".gz", True) for r in ROLES)


def test_gz_files_put_in_the_cache_by_hand(tmp_path):
    spec = small(REGISTRY["fashion-mnist"])
    blobs = write_layout(spec, tmp_path / "cache" / "fashion-mnist", sample(spec), gz=True)
    spec = small(REGISTRY["fashion-mnist"], blobs)
    assert len(load(spec, tmp_path / "cache").test_x) == N_TEST


def test_fetch_from_a_folder_on_the_command_line(tmp_path, monkeypatch, capsys):
    from digitrec.cli.main import main

    spec = small(REGISTRY["emnist-letters"])
    write_layout(spec, tmp_path / "mine", sample(spec), gz=True)
    monkeypatch.setitem(REGISTRY, "emnist-letters", spec)
    assert main(["fetch", "--dataset", "emnist-letters", "--data-dir", str(tmp_path / "c"),
                 "--from", str(tmp_path / "mine")]) == 0
    assert f"emnist-letters: {N_TRAIN} training and {N_TEST} test images" in capsys.readouterr().out
    assert main(["fetch", "--dataset", "emnist-letters", "--from", str(tmp_path / "nowhere")]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err


def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    """The real files of `apt-get install dataset-fashion-mnist` match the registry's sums."""
    spec = REGISTRY["fashion-mnist"]
    if not Path(spec.local_dirs[0]).is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    ds = load(replace(spec, mirrors=()), tmp_path)
    assert ds.train_x.shape == (60_000, 28, 28) and torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert abs(ds.train_x.float().div(255).mean().item() - spec.mean) < 1e-4


# ---------------------------------------------------------------- letters models vs digits data


@pytest.fixture(scope="module")
def letters_run(tmp_path_factory):
    """`digitrec train --dataset emnist-letters` end to end, on a small fake of NIST's archive
    sitting in the cache: its run folder (the data folder is beside it)."""
    from digitrec.cli.main import main

    tmp = tmp_path_factory.mktemp("letters")
    letters, _, zpath = emnist_pair(tmp)
    (tmp / "data" / "emnist").mkdir(parents=True)
    zpath.rename(tmp / "data" / "emnist" / "gzip.zip")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(REGISTRY, "emnist-letters", letters)
        assert main(["train", "--dataset", "emnist-letters", "--data-dir", str(tmp / "data"), "--epochs", "1",
                     "--batch-size", "64", "--val-size", "52", "--device", "cpu", "--out", str(tmp / "run"),
                     "--quiet"]) == 0
    return tmp / "run"


def test_letters_checkpoint_carries_its_classes(letters_run):
    from digitrec.checkpoint import load_checkpoint

    meta = load_checkpoint(letters_run / "best.pt").meta
    assert meta["dataset"]["name"] == "emnist-letters" and meta["dataset"]["classes"][:3] == ["A", "B", "C"]
    assert meta["config"]["dataset"] == "emnist-letters"


def test_letters_model_on_digits_data_is_a_clear_error(letters_run, synth_dir, capsys):
    from digitrec.cli.main import main

    assert main(["evaluate", "--checkpoint", str(letters_run / "best.pt"), "--dataset", str(synth_dir)]) == 2
    err = capsys.readouterr().err
    assert "trained on emnist-letters (26 classes: A B C D E ...)" in err
    assert "the data is synthetic (10 classes: 0 1 2 3 4 ...)" in err and "--dataset emnist-letters" in err


def test_digits_model_on_letters_data_is_a_clear_error(synth_run, letters_run):
    from digitrec.checkpoint import CheckpointError
    from digitrec.evaluate import evaluate

    spec = small(REGISTRY["emnist-letters"])
    ds = load(spec, letters_run.parent / "data", fetch_missing=False)  # extracted by the training run
    with pytest.raises(CheckpointError, match=r"trained on synthetic \(10 classes.*data is emnist-letters \(26"):
        evaluate([synth_run / "best.pt"], data=ds, log=lambda *_: None)


def test_evaluate_on_another_dataset_with_the_same_classes(synth_run, tmp_path, capsys):
    """An MNIST-style model scored on other digits (as `--dataset emnist-digits` does): the
    report goes beside the run's own, which stays as it was."""
    from digitrec.cli.main import main

    other = make_idx_folder(tmp_path / "other", n_train=300, n_test=100, seed=3, meta={"name": "otherdigits"})
    before = (synth_run / "report.md").read_bytes() if (synth_run / "report.md").exists() else None
    assert main(["evaluate", "--checkpoint", str(synth_run / "best.pt"), "--dataset", str(other)]) == 0
    out = capsys.readouterr().out
    assert "evaluating models trained on synthetic on otherdigits" in out
    assert (synth_run / "on-otherdigits" / "report.md").exists()
    after = (synth_run / "report.md").read_bytes() if (synth_run / "report.md").exists() else None
    assert before == after
