"""Output files that many processes share safely: names made from data, atomic writes, run locks.

Every writer of a results folder (`mfray simulate`, a sweep's actors, two sweeps pointed at the
same folder) goes through these three functions, so a half-written file is never published, an
id from the data never escapes the folder, and one run is never worked on twice at once.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

# Kept as is in file names; everything else is percent-encoded. "_" is encoded so the "__"
# that joins the parts of a run name can never come from an id.
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
_MAX_NAME = 120  # encoded ids longer than this are shortened (file names stop at 255 bytes)


def safe_name(text: str) -> str:
    """`text` as one file-name component: letters, digits, "-" and "." kept, every other
    character percent-encoded by its UTF-8 bytes, and a leading "." encoded too (no hidden
    files, no "." or ".."). Injective, so two ids never share a name. An encoding longer
    than 120 characters keeps its first 100 and appends "~" and 16 hex digits of the id's
    sha256 ("~" never occurs in an encoding, so shortened names cannot meet unshortened ones)."""
    if not text:
        raise ValueError("an empty id cannot name a file")
    out = []
    for i, ch in enumerate(text):
        if ch in _SAFE and not (i == 0 and ch == "."):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
    name = "".join(out)
    if len(name) > _MAX_NAME:
        name = f"{name[:100]}~{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"
    return name


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Publish `path` whole or not at all: `write(tmp)` fills a temp file named for this writer
    alone (pid and a random token), which then replaces `path` in one rename. Concurrent
    writers never share a temp file; the last rename wins with a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class RunBusy(RuntimeError):
    """Another process holds the lock of this run."""


@contextmanager
def run_lock(path: str | Path, wait: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on `path` (a `.lock` file) or raise RunBusy at once (`wait`: block
    until the holder lets go instead).

    flock, not an exclusive create: the kernel drops the lock when its holder dies (a killed
    actor never leaves a stale lock behind). The lock file may be removed by its holder once
    the run's output exists (`remove_lock`); a process that locked the file just before
    it was removed sees that the path no longer names the file it holds and tries again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunBusy(f"{path.name}: another process is running this (event, method, seed) in "
                              f"{path.parent}; wait for it, or write to another folder") from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # removed (or replaced) between our open and our lock: take the new one
    try:
        yield path
    finally:
        os.close(fd)


def remove_lock(path: str | Path) -> None:
    """Remove a run's lock file while holding it, once the run's output is published: later
    processes see the output and never need the lock again."""
    Path(path).unlink(missing_ok=True)
