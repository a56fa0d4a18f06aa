"""Writing a file the user named (`--report PATH`) without ever replacing what is there.

A regular file or a new path is written to a temp file beside it and renamed over it, so a reader never
sees half a report. Anything else that exists is written through (a character device, /dev/stdout) or
refused (a directory, a FIFO nobody reads, a socket): renaming over it would replace a host device.
A symlink is followed, never replaced.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import UsageError

_WRITE_THROUGH = (stat.S_ISCHR, stat.S_ISBLK)


class UnwritableOutput(UsageError):
    def __init__(self, path: Path, why: str):
        super().__init__(f"cannot write {path}: {why}")


def check_writable(path: Path) -> None:
    """Fail now, before any work, if `path` could not be written at the end."""
    target = _target(path)
    if target.exists():
        mode = target.stat().st_mode
        if stat.S_ISREG(mode):
            _try(path, lambda: os.close(os.open(target, os.O_WRONLY | os.O_APPEND)))
            _check_directory(path, target.parent)
        elif any(kind(mode) for kind in _WRITE_THROUGH):
            _try(path, lambda: os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK)))
        else:
            raise UnwritableOutput(path, "it exists and is not a regular file or a device")
        return
    directory = target.parent
    while not directory.exists():  # written with its missing parents
        directory = directory.parent
    if not directory.is_dir():
        raise UnwritableOutput(path, f"{directory} is not a directory")
    _check_directory(path, directory)


def write_text(path: Path, text: str) -> None:
    target = _target(path)
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        check_writable(path)
        _try(path, lambda: target.write_text(text, encoding="utf-8"))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _target(path: Path) -> Path:
    """What the path names once symlinks are followed (a dangling link names its target, to be created)."""
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # realpath stops at a link it cannot resolve: a loop
        raise UnwritableOutput(path, "a loop of symbolic links")
    return target


def _check_directory(path: Path, directory: Path) -> None:
    def probe() -> None:
        with tempfile.TemporaryFile(dir=directory):
            pass

    _try(path, probe)


def _try(path: Path, action) -> None:
    try:
        action()
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise UnwritableOutput(path, "no space left on the device") from e
        raise UnwritableOutput(path, e.strerror or str(e)) from e


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
