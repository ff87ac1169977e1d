"""File output, one rule for every output flag: never an input, never an existing file without
``--overwrite``, created exclusively, written whole.

Every output of a run is first written into the run's *staging folder*, a hidden
``.clvflow-staging-<pid>-<random>`` folder beside the outputs (the same file system, so moving in
is a rename), locked with ``flock`` while the run lives. :meth:`Outputs.commit` moves all of them
in together at the end: a new output with ``os.link``/``renameat2(RENAME_NOREPLACE)`` (so of two
runs creating the same file the second refuses instead of the last winning), an existing one with
``--overwrite`` by an atomic rename (a folder by an atomic swap where the system has one). A run
killed before its commit leaves only its staging folder, which the next run writing to that
folder removes (its lock is free then); it never touches a staging folder whose run is alive.

CSV outputs are meant for spreadsheets: a text cell starting with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return gets a leading ``'`` so that no spreadsheet runs it as a formula (OWASP's
"CSV injection" advice); :func:`read_table` takes it off again. Parquet keeps the raw values.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from clvflow.core.errors import InputError
from clvflow.data.datasets import is_embedded

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".parquet")
#: Name prefix of a run's staging folder (followed by its pid and a random part).
STAGING_PREFIX = ".clvflow-staging-"
_LOCK = ".lock"
#: Inside a staging folder: what a replacement moved aside (put back if the run died there).
_ASIDE = ".aside"


# ---- the output rule ---------------------------------------------------------------------------


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)  # a hard link to an input is the input
    return False


def check_output_path(
    path: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    suffixes: tuple[str, ...] = TABLE_SUFFIXES,
    flag: str = "--output",
) -> Path:
    """Validate an output file path before any work is done (the rule every output flag follows).

    Args:
        inputs: the run's input files and folders (e.g. a model bundle); None entries and the
            embedded ``cdnow`` data are skipped.

    Raises:
        InputError: another suffix, the path is an input or inside an input folder, it exists
            without ``overwrite``, or it is a folder. Its parent folder is created if missing.
    """
    out = Path(path)
    if not out.name.lower().endswith(suffixes):
        raise InputError(f"{flag} {out}: must end in {' or '.join(suffixes)}")
    for given in inputs:
        if given is None or str(given) == "" or is_embedded(given):
            continue
        src = Path(given)
        if _same(src, out):
            raise InputError(f"{flag} {out}: is an input file; choose another output path")
        if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
            raise InputError(f"{flag} {out}: is inside the input {src}; choose another path")
    if out.is_dir():
        raise InputError(f"{flag} {out}: is a folder; give a file path")
    if out.exists() and not overwrite:
        raise InputError(f"{flag} {out}: already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def current_umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---- renames: exclusive, swapping ------------------------------------------------------------

_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux ``renameat2``; False where the system or file system does not have it."""
    if not sys.platform.startswith("linux"):
        return False
    func = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if func is None:
        return False
    at_fdcwd = -100
    if func(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def move_new(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist (FileExistsError otherwise)."""
    if _renameat2(src, dst, _RENAME_NOREPLACE):
        return
    if src.is_dir():
        if dst.exists():  # an empty folder appearing just now would be replaced: harmless
            raise FileExistsError(errno.EEXIST, "exists", str(dst))
        os.rename(src, dst)
        return
    os.link(src, dst)  # fails if dst exists: exclusive creation
    os.unlink(src)


def replace_folder(staged: Path, target: Path, aside: Path) -> None:
    """Put the folder ``staged`` at ``target``, replacing what is there, never leaving ``target``
    missing: an atomic swap (Linux ``RENAME_EXCHANGE``), else the old folder is renamed into
    ``aside`` (a run's staging folder, which puts it back if the run dies before the new one is in)
    and the new one renamed in. The old folder is deleted afterwards."""
    if not target.exists():
        move_new(staged, target)
        return
    if _renameat2(staged, target, _RENAME_EXCHANGE):
        shutil.rmtree(staged)  # the old folder, now at staged
        return
    aside.mkdir(exist_ok=True)
    old = aside / target.name
    os.rename(target, old)
    try:
        os.rename(staged, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


# ---- folders clvflow wrote -------------------------------------------------------------------


def write_folder_marker(folder: Path, marker: str) -> None:
    """List every file under ``folder`` in its ``marker`` JSON: the folder is clvflow's, and
    :func:`check_owned_folder` may replace it (nothing else is ever deleted)."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    (folder / marker).write_text(json.dumps({"files": files}, indent=1) + "\n")


def check_owned_folder(output_dir: Path, overwrite: bool, marker: str, what: str) -> None:
    """Raise FileExistsError unless ``output_dir`` is absent, empty, or (with ``overwrite``)
    ``what`` clvflow wrote that holds nothing else (every file listed in its ``marker``, from
    :func:`write_folder_marker`): ``--overwrite`` never deletes a file clvflow did not write
    there (an input, the scores, notes)."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a directory")
    present = {p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*")}
    if not present:
        return
    if not overwrite:
        raise FileExistsError(
            f"{output_dir} is not empty; pass overwrite=True (--overwrite) to replace {what} "
            "clvflow wrote there"
        )
    try:
        ours = set(json.loads((output_dir / marker).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        ours = set()
    foreign = sorted(present - ours - {marker})
    if foreign or marker not in present:
        shown = ", ".join(foreign[:5]) or f"(no clvflow marker {marker})"
        raise FileExistsError(
            f"{output_dir} holds files clvflow did not write ({shown}); refusing to replace "
            "it even with overwrite: choose another folder or move them"
        )


# ---- staging folders -------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(folder: Path) -> bool:
    """True when the run that made ``folder`` is gone (its lock is free, or it died before
    taking it)."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except FileNotFoundError:
        pid = folder.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        return pid.isdigit() and not _pid_alive(int(pid))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # held: the run is alive
    finally:
        os.close(fd)
    return True


def clean_stale_staging(parent: Path) -> None:
    """Remove the staging folders in ``parent`` left by runs that died (e.g. ``kill -9``); put
    back any output such a run had moved aside to replace it and not yet replaced."""
    if not parent.is_dir():
        return
    for folder in sorted(parent.glob(STAGING_PREFIX + "*")):
        if not folder.is_dir() or folder.is_symlink() or not _is_stale(folder):
            continue
        aside = folder / _ASIDE
        for old in sorted(aside.iterdir()) if aside.is_dir() else ():
            target = parent / old.name
            if not target.exists() and not target.is_symlink():
                os.rename(old, target)
                log.warning("%s: restored (a run died while replacing it)", target)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left by a run that did not finish", folder)


class Staging:
    """A run's staging folders, one per output folder (created on first use, stale ones of dead
    runs removed then); :meth:`close` deletes them."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}
        self._locks: list[int] = []

    def folder(self, parent: Path) -> Path:
        """This run's staging folder inside ``parent``."""
        parent = parent.absolute()
        if parent not in self._folders:
            parent.mkdir(parents=True, exist_ok=True)
            clean_stale_staging(parent)
            folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent))
            fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel when this process ends
            self._folders[parent] = folder
            self._locks.append(fd)
        return self._folders[parent]

    def path(self, final: Path) -> Path:
        """Where ``final`` is written before the commit."""
        return self.folder(final.parent) / final.name

    def aside(self, final: Path) -> Path:
        """Where an output being replaced waits until its replacement is in."""
        return self.folder(final.parent) / _ASIDE

    def close(self) -> None:
        for folder in self._folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        for fd in self._locks:
            os.close(fd)
        self._folders.clear()
        self._locks.clear()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- CSV for spreadsheets --------------------------------------------------------------------

#: A CSV text cell starting with one of these is written with a leading ``'``.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


#: Cells that get (on writing) or lose (on reading) the leading ``'``.
_ESCAPED = r"[=+\-@\t\r]|'[=+\-@\t\r']"
_UNESCAPE = r"'[=+\-@\t\r']"


def _map_text(
    df: pd.DataFrame, pattern: str, change: Callable[[pd.Series], pd.Series]
) -> pd.DataFrame:
    """``df`` with ``change`` applied to the text cells that start with ``pattern``."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = s.cat.categories.to_series()
            if pd.api.types.is_string_dtype(cats):
                hit = cats.str.match(pattern, na=False)
                renamed = cats.where(~hit, change(cats)).to_numpy()
                # pandas takes any list-like here; pandas-stubs lists Sequence but not ndarray
                out[col] = s.cat.rename_categories(renamed)  # type: ignore[arg-type]
            continue
        if s.dtype != object and not pd.api.types.is_string_dtype(s):
            continue
        if s.dtype == object:  # may mix text with other values: only text cells change
            is_text = s.map(lambda v: isinstance(v, str)).astype(bool)
            text = s.where(is_text, "").astype("str")
        else:
            is_text, text = s.notna(), s
        hit = is_text & text.str.match(pattern, na=False)
        if hit.any():
            out[col] = s.where(~hit, change(text))
    return out


def escape_csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells as written to CSV: ``'`` before a leading ``= + - @``, tab or CR (and before a
    leading ``'`` followed by one of those or another ``'``, so that reading back is exact)."""
    return _map_text(df, _ESCAPED, lambda s: "'" + s)


def unescape_csv_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`escape_csv_cells`."""
    return _map_text(df, _UNESCAPE, lambda s: s.str.slice(1))


def _write_table_to(df: pd.DataFrame, path: Path, final: Path) -> None:
    if final.suffix.lower() == ".parquet":
        df.to_parquet(path, index=False)
    else:
        escape_csv_cells(df).to_csv(path, index=False)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.csv``, ``.csv.gz`` or ``.parquet`` table (``customer_id`` as text; CSV cells
    escaped against formulas by clvflow restored).

    Raises:
        InputError: no such file, or another type.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.suffix.lower() == ".parquet":
        return pd.read_parquet(p)
    if p.name.lower().endswith((".csv", ".csv.gz")):
        return unescape_csv_cells(pd.read_csv(p, dtype={"customer_id": "str"}))
    raise InputError(f"{p}: unsupported file type; use .csv, .csv.gz or .parquet")


# ---- a run's outputs -------------------------------------------------------------------------


class Outputs:
    """Every output of one command: checked when declared (before any work), written into the
    run's staging folders, moved in together by :meth:`commit`. Use as a context manager: leaving
    it without a commit (an error) publishes nothing and removes the staged files."""

    def __init__(self, *, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
        self.overwrite = overwrite
        self.inputs = tuple(inputs)
        self._planned: list[tuple[Path, str, Callable[[Path, bool], None] | None]] = []
        self._staging = Staging()

    def _declare(self, out: Path, flag: str, check: Callable[[Path, bool], None] | None) -> None:
        for other, other_flag, other_check in self._planned:
            a, b = out.resolve(), other.resolve()
            if a == b or (other_check and a.is_relative_to(b)) or (check and b.is_relative_to(a)):
                raise InputError(f"{flag} {out}: clashes with {other_flag} {other}")
        self._planned.append((out, flag, check))

    def file(
        self, path: str | Path | None, flag: str, suffixes: tuple[str, ...] = TABLE_SUFFIXES
    ) -> Path | None:
        """Declare an output file (None: not asked for); the path it will have."""
        if path is None or str(path) == "":
            return None
        out = check_output_path(
            path, overwrite=self.overwrite, inputs=self.inputs, suffixes=suffixes, flag=flag
        )
        self._declare(out, flag, None)
        return out

    def required_file(
        self, path: str | Path, flag: str, suffixes: tuple[str, ...] = TABLE_SUFFIXES
    ) -> Path:
        """:meth:`file` for an output the command always writes: an empty path is an error."""
        out = self.file(path, flag, suffixes)
        if out is None:
            raise InputError(f"{flag}: an empty path; give the file to write")
        return out

    def folder(
        self, path: str | Path | None, flag: str, check: Callable[[Path, bool], None]
    ) -> Path | None:
        """Declare an output folder; ``check(path, overwrite)`` raises FileExistsError when it
        may not be replaced (run now and again at the commit)."""
        if path is None or str(path) == "":
            return None
        out = Path(path)
        for given in self.inputs:
            if given is not None and str(given) != "" and not is_embedded(given):
                src = Path(given).resolve()
                if src.is_relative_to(out.resolve()) or out.resolve().is_relative_to(src):
                    raise InputError(f"{flag} {out}: holds or is an input ({given})")
        try:
            check(out, self.overwrite)
        except FileExistsError as err:
            raise InputError(f"{flag}: {err}") from None
        self._declare(out, flag, check)
        return out

    def required_folder(
        self, path: str | Path, flag: str, check: Callable[[Path, bool], None]
    ) -> Path:
        """:meth:`folder` for an output the command always writes: an empty path is an error."""
        out = self.folder(path, flag, check)
        if out is None:
            raise InputError(f"{flag}: an empty path; give the folder to write")
        return out

    def staged(self, final: Path) -> Path:
        """Where to write ``final`` (a declared output) before the commit."""
        return self._staging.path(final)

    def write_table(self, df: pd.DataFrame, final: Path) -> None:
        """Stage a DataFrame as ``.csv`` (escaped for spreadsheets) or ``.parquet``."""
        _write_table_to(df, self.staged(final), final)

    def write(self, final: Path, write: Callable[[Path], None]) -> None:
        """Stage ``final`` by calling ``write(staged path)``."""
        write(self.staged(final))

    def commit(self) -> None:
        """Move every staged output in. Without ``overwrite`` each is created exclusively: if
        one appeared meanwhile (another run), the ones already moved are taken back and
        InputError says so; with ``overwrite`` each replaces its old version atomically."""
        done: list[tuple[Path, Path]] = []
        for final, flag, check in self._planned:
            staged = self.staged(final)
            if not staged.exists():
                continue  # not produced (e.g. no drift table)
            try:
                if check is not None:
                    check(final, self.overwrite)
                if staged.is_dir():  # check() said what may be replaced: an empty folder...
                    replace_folder(staged, final, self._staging.aside(final))
                elif not self.overwrite:
                    move_new(staged, final)
                else:
                    os.replace(staged, final)
            except FileExistsError:
                for moved, back in reversed(done):
                    with contextlib.suppress(OSError):
                        os.rename(moved, back)
                raise InputError(
                    f"{flag} {final}: was created or changed by another run while this one "
                    "worked; nothing of this run was written (choose another path, or pass "
                    "--overwrite to replace it)"
                ) from None
            done.append((final, staged))

    def close(self) -> None:
        self._staging.close()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a staged file then rename it to ``path`` (replacing it).

    An interrupted or failing write leaves no partial file at ``path``.
    """
    out = Path(path)
    with Staging() as staging:
        tmp = staging.path(out)
        write(tmp)
        os.replace(tmp, out)
    return out


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame to ``.csv`` (escaped for spreadsheets) or ``.parquet`` atomically."""
    out = Path(path)
    return atomic_write(out, lambda tmp: _write_table_to(df, tmp, out))
