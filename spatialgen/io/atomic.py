"""Atomic writes: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spatialgen.errors import InputError, OutputError


def _umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(target: str | Path) -> Path:
    """Fail early (before any work) if ``target`` cannot be written; creates missing parents."""
    target = Path(target)
    try:
        if target.is_symlink():  # write the file it points to: the rename would replace the link itself
            target = Path(os.path.realpath(target))
        if target.is_dir():
            raise OutputError(f"cannot write {target}: it is a directory")
        if target.exists() and not target.is_file():  # the rename would replace a device or FIFO with a file
            raise OutputError(f"cannot write {target}: it is not a regular file (a device, FIFO or socket)")
        if len(target.name.encode()) > 200:
            raise OutputError(f"cannot write {target}: the file name is too long")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(target.parent, os.W_OK):
            raise OutputError(f"cannot write {target}: permission denied")
        fd, probe = tempfile.mkstemp(prefix=".spatialgen-", suffix=".probe", dir=target.parent)  # what atomic_path will do
        os.close(fd)
        os.unlink(probe)
    except OutputError:
        raise
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot write {target}: a parent of it is a file, not a directory") from None
    except PermissionError:
        raise OutputError(f"cannot write {target}: permission denied") from None
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``target`` on success.

    The directory is created if missing. On any error the temporary file is removed and the
    target is left untouched, so a reader never sees a half-written file.
    """
    target = check_writable(target)
    try:
        fd, name = tempfile.mkstemp(prefix=".spatialgen-", suffix=".tmp" + target.suffix, dir=target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def require_file(path: str | Path, what: str = "input") -> Path:
    """An existing regular file (not a directory, FIFO or device), or a one-line InputError."""
    path = Path(path)
    try:
        if not path.exists():
            raise InputError(f"{what} not found: {path}")
        if not path.is_file():
            raise InputError(f"{what} {path} is not a regular file")
    except OSError as exc:
        raise InputError(f"cannot use {what} {str(path)[:80]}...: {exc.strerror or exc}") from None
    return path
