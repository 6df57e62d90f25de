"""Writing what is new, never over what exists: a file or a numbered version folder appears whole or not at all.

- `write_new(path, write)`: a file, written under a temporary name and linked into place.
- `replace(path, write)`: a file written the same way and renamed over the old one, so a reader
  (or a process resumed after a kill) finds the old file or the new one, whole.
- `publish_version(base_dir, write)`: a folder `base_dir/<version>/` in TF Serving's layout,
  written under a hidden temporary name, flushed to disk and renamed into place, taking the next
  free number when another writer takes the one it wanted.
- `versions(base_dir)`: the version folders there, as TF Serving counts them.

This module does not import TensorFlow.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable

__all__ = [
    "TEMP_PREFIX",
    "check_new",
    "publish_version",
    "replace",
    "versions",
    "write_new",
]

# TF Serving parses version folder names as int64; only ASCII digits name a version.
_VERSION_NAME = re.compile(r"[0-9]+")
TEMP_PREFIX = ".tmp-"
"""Prefix of a version folder being written: hidden, and not a number, so TF Serving skips it."""
# With version=None, concurrent writers may pick the same number: the loser of the rename takes
# the next free one, this many times at most.
_MAX_RENAME_ATTEMPTS = 16


def check_new(path: str | os.PathLike[str]) -> pathlib.Path:
    """Returns `path` as a `pathlib.Path`.

    Raises:
      FileExistsError: If `path` exists.
    """
    path = pathlib.Path(path)
    if path.exists():
        raise _exists(path)
    return path


def write_new(path: str | os.PathLike[str], write: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """Writes a file through `write(temporary_path)` and links it to `path`.

    The temporary file sits in the same directory (so the link is on one file system) and is
    removed afterwards, whether or not the write succeeded.

    Raises:
      FileExistsError: If `path` exists, or appears while the file is being written.
    """
    path = check_new(path)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        write(partial)
        try:
            os.link(partial, path)  # fails if `path` appeared meanwhile
        except FileExistsError:
            raise _exists(path) from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def replace(path: str | os.PathLike[str], write: Callable[[pathlib.Path], object]) -> pathlib.Path:
    """Writes a file through `write(temporary_path)`, flushes it to disk and renames it to `path`.

    `path` is replaced if it exists; the rename is atomic, so `path` holds the old content or the
    new, whole, even when the process is killed meanwhile. The temporary file sits beside `path`,
    keeps its suffix (`.partial-<pid>-<name>`, so `write` may insist on one, as Keras's
    `save_weights` insists on `.weights.h5`) and is removed on failure.
    """
    path = pathlib.Path(path)
    partial = path.with_name(f".partial-{os.getpid()}-{path.name}")
    try:
        write(partial)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return path


def _exists(path: pathlib.Path) -> FileExistsError:
    return FileExistsError(f"{path} already exists; not overwriting it")


def versions(base_dir: str | os.PathLike[str]) -> dict[int, pathlib.Path]:
    """The entries of `base_dir` named by ASCII digits (TF Serving's versions), by number.

    Returns an empty dict when `base_dir` does not exist. `007` counts as version 7.
    """
    base_dir = pathlib.Path(base_dir)
    if not base_dir.is_dir():
        return {}
    return dict(sorted((int(p.name), p) for p in base_dir.iterdir() if _VERSION_NAME.fullmatch(p.name)))


def _raise_if_taken(base_dir: pathlib.Path, version: int) -> None:
    found = versions(base_dir).get(version)
    if found is not None:
        alias = "" if found.name == str(version) else f" (as {found.name!r})"
        raise FileExistsError(
            f"version {version} already exists in {base_dir}{alias}; choose another version or leave version=None"
        )


def publish_version(
    base_dir: str | os.PathLike[str],
    write: Callable[[pathlib.Path], object],
    *,
    version: int | None = None,
) -> pathlib.Path:
    """Writes a new version folder `base_dir/<version>/` through `write(folder)`, atomically.

    `write` fills a hidden temporary folder in `base_dir` (`.tmp-<version>-<random>`); its files
    are flushed to disk and the folder renamed to the version number, so a reader never sees
    half a version. On any failure (an exception, KeyboardInterrupt) the temporary folder is
    removed; a killed process can leave one, which TF Serving ignores.

    Args:
      base_dir: The parent folder; created if missing.
      write: Fills the folder it is given.
      version: The number to take. Defaults to `None`: one more than the highest existing.

    Returns:
      The new folder.

    Raises:
      FileExistsError: If `version` is taken (before `write` runs, and again at the rename),
        or with `version=None` no free number could be claimed after 16 attempts.
    """
    base_dir = pathlib.Path(base_dir)
    if version is not None:
        _raise_if_taken(base_dir, version)  # before the expensive part
    base_dir.mkdir(parents=True, exist_ok=True)
    label = "auto" if version is None else str(version)
    temp = pathlib.Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{label}-", dir=base_dir))
    # mkdtemp makes the folder private (0700); a model server running as another user must read it.
    temp.chmod(0o755)
    try:
        write(temp)
        _fsync_tree(temp)
        for _ in range(_MAX_RENAME_ATTEMPTS):
            if version is not None:
                _raise_if_taken(base_dir, version)  # taken while `write` ran
            target = max(versions(base_dir), default=0) + 1 if version is None else version
            final = base_dir / str(target)
            try:
                os.rename(temp, final)  # atomic; fails if `final` appeared and is not empty
            except OSError:
                if not final.exists():
                    raise
                continue  # another writer took this number: take the next (or fail, for a given one)
            _fsync_dir(base_dir)
            return final
        raise FileExistsError(
            f"could not claim a free version in {base_dir} after {_MAX_RENAME_ATTEMPTS} "
            "attempts: other exports keep taking them; pass version= explicitly"
        )
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _fsync_tree(path: pathlib.Path) -> None:
    """Flushes every file and folder under `path` to disk, so the rename publishes whole files."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(pathlib.Path(root))


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory; the files are synced
        pass
    finally:
        os.close(fd)
