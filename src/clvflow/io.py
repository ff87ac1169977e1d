"""File output: atomic writes (temp file + rename) that never clobber inputs by accident."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from clvflow.ingest import InputError

TABLE_SUFFIXES = (".csv", ".parquet")


def check_output_path(
    path: str | Path, *, overwrite: bool = False, inputs: tuple[str | Path, ...] = ()
) -> Path:
    """Validate an output table path before any work is done.

    Raises:
        InputError: unsupported suffix, output equals an input, exists without ``overwrite``,
            or its folder does not exist.
    """
    out = Path(path)
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{out}: output must end in {' or '.join(TABLE_SUFFIXES)}")
    for given in inputs:
        if str(given) != "cdnow" and Path(given).resolve() == out.resolve():
            raise InputError(f"{out}: is an input file; choose another output path")
    if out.exists() and not overwrite:
        raise InputError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    return out


def current_umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` then rename it into place.

    An interrupted or failing write leaves no partial file at ``path``.
    """
    out = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; an output follows the umask
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame to ``.csv`` or ``.parquet`` atomically."""
    if Path(path).suffix.lower() == ".parquet":
        return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
