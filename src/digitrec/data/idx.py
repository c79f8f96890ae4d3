"""The IDX format of MNIST and its relatives: a big-endian header, then raw unsigned bytes."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DataError
from ..util import atomic_write_bytes

IDX_DTYPES = {0x08: torch.uint8}  # MNIST-format files only use unsigned bytes


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


def idx_bytes(array: torch.Tensor) -> bytes:
    """A uint8 tensor as the bytes of an IDX file."""
    array = array.to(torch.uint8).contiguous()
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file, atomically."""
    atomic_write_bytes(Path(path), idx_bytes(array))
