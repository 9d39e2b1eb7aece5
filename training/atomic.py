"""Atomic writes: outputs appear whole or not at all, so a killed job never leaves half a result."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training.errors import NextbestError


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


RENAME_EXCHANGE = 2  # linux/fs.h


def _renameat2() -> Any:
    """libc's renameat2 (glibc 2.28+ on Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (renameat2 RENAME_EXCHANGE): at no moment does either
    name miss. False where the system or file system cannot (the caller falls back)."""
    if _RENAMEAT2 is None:
        return False
    done = _RENAMEAT2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


@contextmanager
def output_lock(target: Path) -> Iterator[None]:
    """An exclusive lock on `target`'s parent directory (flock; no lock file is left behind), held
    while `target` is replaced: writers that finish together swap one after the other (the last
    one's output wins, none fails)."""
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def check_writable(target: Path) -> None:
    """Fail now, in one line, if `target` (a file or directory to be replaced) cannot be written:
    its parent must be (or be creatable as) a writable directory. Called before the work starts."""
    target = Path(target)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NextbestError(f"{target}: cannot write here ({parent} is not a directory)")
    try:
        probe = tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent)
    except OSError as exc:
        raise NextbestError(f"{target}: cannot write in {parent} ({exc.strerror})") from None
    os.rmdir(probe)


@contextmanager
def atomic_directory(
    target: Path, before_swap: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Yield a temporary sibling of `target` to fill; on success it replaces `target` in one step.

    On Linux the two directories are exchanged atomically (renameat2), so readers always find a
    complete `target`, old or new; elsewhere the old one is moved aside first (a moment without
    `target`). A lock beside `target` serialises writers finishing together. The previous `target`
    stays complete until the swap; on an exception nothing changes. `before_swap(tmp)` runs under
    that lock, just before the swap: what it reads of `target` cannot be swapped away meanwhile.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise NextbestError(f"{target}: cannot write the output ({exc.strerror})") from None
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide the output from its readers
    try:
        yield tmp
        with output_lock(target):
            if before_swap is not None:
                before_swap(tmp)
            if target.is_dir() and exchange(tmp, target):
                pass  # tmp now holds the previous output, removed below
            else:
                _move_aside_and_rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_aside_and_rename(tmp: Path, target: Path) -> None:
    """The portable swap: previous output aside, new one in, previous one removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it is renamed onto `target` only if the block succeeds."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    except OSError as exc:
        raise NextbestError(f"{target}: cannot write the file ({exc.strerror})") from None
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~current_umask())  # as open() would have made it, not mkstemp's 0600
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
