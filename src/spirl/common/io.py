"""Atomic, deterministic file writes: a killed job never leaves a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# A fixed timestamp for archive members, so identical arrays give byte-identical files.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    """The process umask (read by setting it and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def read_json_if_exists(path: str | Path) -> Any:
    """Read a JSON file, or None if there is none (e.g. the record of a job that has not run)."""
    return read_json(path) if Path(path).is_file() else None


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], compresslevel: int = 6) -> None:
    """Write arrays as a deflate-compressed .npz (readable by np.load), atomically and deterministically.

    Unlike np.savez_compressed, member timestamps are fixed, so equal arrays give equal bytes.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                # ZipFile.open(ZipInfo) ignores the archive's level: set it on the member
                # (the attribute is `_compresslevel` up to Python 3.12, `compress_level` after).
                for attr in ("compress_level", "_compresslevel"):
                    if hasattr(info, attr):
                        setattr(info, attr, compresslevel)
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.ascontiguousarray(arrays[name]), allow_pickle=False)
