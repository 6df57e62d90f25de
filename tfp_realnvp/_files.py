"""Writing a new file, never over an existing one: the file appears complete or not at all."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

__all__ = [
    "check_new",
    "write_new",
]


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
        os.link(partial, path)  # fails if `path` appeared meanwhile
    except FileExistsError:
        raise _exists(path) from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def _exists(path: pathlib.Path) -> FileExistsError:
    return FileExistsError(f"{path} already exists; not overwriting it")
