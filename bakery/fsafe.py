"""File-system primitives that hold up in a folder someone else can write to.

Every file bakery creates in a folder it did not just make itself is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under a fresh random name, then renamed into place: a
symlink or a file planted under the name bakery will use is never opened, let alone
truncated or written (open(2): with O_EXCL, "if pathname already exists, the call fails";
O_NOFOLLOW, "if the trailing component is a symbolic link, the open fails"). A temporary
file never outlives the call that made it. Reads are bounded and refuse anything but a
regular file (a FIFO, a device, /dev/zero), so no input can hang bakery or grow its memory
without bound. Folders are made with explicit modes, whatever the umask.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import secrets
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import EnvError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegular(ValueError):
    """The path is not a regular file (a FIFO, a device, a socket, a folder)."""

    def __init__(self, path: Path, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path, self.kind = path, kind


class TooLarge(ValueError):
    """The file holds more than the limit."""

    def __init__(self, path: Path, limit: int):
        super().__init__(f"{path} holds more than {limit:,} bytes")
        self.path, self.limit = path, limit


def file_kind(mode: int) -> str:
    """What a st_mode is, in words, for messages."""
    for test, word in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return word
    return "not a regular file"  # pragma: no cover


class NotOwn(ValueError):
    """The file belongs to another user."""

    def __init__(self, path: Path, uid: int):
        super().__init__(f"{path} belongs to another user (uid {uid})")
        self.path, self.uid = path, uid


def read_regular(path: str | os.PathLike, limit: int, *, own: bool = False) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them. Opens without blocking (a FIFO
    with no writer would block open(2) itself), checks the opened file with fstat (no race
    between a check and the open) and reads at most limit + 1 bytes whatever st_size says.
    With ``own``, only a file of this user's. Raises NotRegular, NotOwn, TooLarge, or
    OSError (missing, permission, a symlink loop)."""
    p = Path(path)
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegular(p, file_kind(st.st_mode))
        if own and st.st_uid != os.geteuid():
            raise NotOwn(p, st.st_uid)
        try:
            return read_fd(fd, limit)
        except TooLarge:
            raise TooLarge(p, limit) from None
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from an open file, whatever its size claims; TooLarge if it
    holds more."""
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise TooLarge(Path(f"/proc/self/fd/{fd}"), limit)
    return b"".join(chunks)


def makedirs(path: str | os.PathLike, mode: int = 0o755) -> None:
    """Make ``path`` and any missing parent, each new one with exactly ``mode`` (mkdir(2)
    applies the umask, so each is chmod-ed after; folders that exist are left alone)."""
    p = Path(path).absolute()
    missing = []
    while not p.exists() and not p.is_symlink():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: not ours to chmod
        os.chmod(d, mode)


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]


def create_exclusive(folder: Path, stem: str, mode: int) -> tuple[int, Path]:
    """A new file in ``folder`` named ``.{stem}.tmp-<random>``, created O_EXCL|O_NOFOLLOW
    with ``mode`` (fchmod-ed, independent of the umask). Returns (fd, path)."""
    for _ in range(100):
        tmp = folder / f".{stem}.tmp-{secrets.token_hex(6)}"
        try:
            fd = os.open(tmp, _CREATE, mode)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))  # pragma: no cover


def link_target(path: Path) -> Path:
    """Where a symlink finally points, as an absolute path (the target must exist and be a
    regular file owned by this user: bakery writes through a link only to its own file)."""
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise EnvError(f"{path} is a symbolic link to {real}, which does not exist; point it at an existing "
                       "file or remove it") from None
    if not stat.S_ISREG(st.st_mode):
        raise EnvError(f"{path} is a symbolic link to {real}, which is {file_kind(st.st_mode)}")
    if st.st_uid != os.geteuid():
        raise EnvError(f"{path} is a symbolic link to {real}, which belongs to another user; bakery writes only "
                       "files of yours")
    return real


def write_atomic(path: str | os.PathLike, content: bytes, mode: int, *, through_links: bool = False,
                 dir_mode: int = 0o755) -> Path:
    """Replace ``path`` with ``content``: a fresh exclusive temp file, fsync, rename. A reader
    sees the old file or the new one, never a mix, and a failure leaves no temporary file.
    With ``through_links``, a symlink at ``path`` is kept and its (existing, own) target is
    replaced instead; otherwise a symlink at ``path`` is itself replaced, never followed.
    Returns the path written."""
    path = Path(path)
    if through_links and path.is_symlink():
        path = link_target(path)
    makedirs(path.parent, dir_mode)
    fd, tmp = create_exclusive(path.parent, path.name, mode)
    try:
        try:
            write_all(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


_completed: list[str] = []


def record_completed(lines: list[str]) -> None:
    """Say what this process has finished for good (a tree swapped in, a bundle renamed),
    in the words to show the user if a Ctrl-C arrives before the command's own report."""
    _completed.extend(lines)


def completed() -> list[str]:
    """What this process finished for good so far (see record_completed)."""
    return list(_completed)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP over a few renames that belong together: a signal
    that arrives meanwhile is delivered when the block ends (signal(7), "blocked signals
    remain pending"). SIGKILL cannot be held; the caller's recovery covers it."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# -- locks ----------------------------------------------------------------------------------

def _open_lock(path: Path) -> int:
    """Open (or make) a lock file without following a link, and only if it is a plain file
    of this user's with one name: a planted link or hard link is refused, never written."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        what = {errno.ELOOP: "is a symbolic link", errno.EISDIR: "is a folder", errno.ENXIO: "is a socket",
                errno.EACCES: "cannot be opened (permission denied: someone else's?)"}.get(exc.errno or 0)
        if what:
            raise EnvError(f"the lock file {path} {what}; bakery does not follow or write it. Remove it "
                           "(someone with write access to that folder may have planted it)") from None
        raise
    st = os.fstat(fd)
    why = ("is not a regular file" if not stat.S_ISREG(st.st_mode) else
           "belongs to another user" if st.st_uid != os.geteuid() else
           "has other names (hard links)" if st.st_nlink != 1 else "")
    if why:
        os.close(fd)
        raise EnvError(f"the lock file {path} {why}; bakery does not write it. Remove it "
                       "(someone with write access to that folder may have planted it)")
    return fd


def lock_holder(fd: int) -> str:
    """Which process holds the flock on this open file, from the kernel's table of locks
    (/proc/locks: "ID: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END", proc(5)), with its
    command line; the pid written in the file may be stale, the kernel's is not."""
    st = os.fstat(fd)
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return "another process"
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want:
            pid = parts[4]
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmd = ""
            cmd = "".join(c if c.isprintable() else "?" for c in cmd.strip())[:120]
            return f"pid {pid}" + (f" ({cmd})" if cmd else "")
    return "another process"


def check_timeout(timeout: float) -> float:
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"a lock timeout must be a finite number of seconds >= 0, not {timeout}")
    return timeout


@contextlib.contextmanager
def locked(path: Path, what: str, timeout: float = 60.0) -> Iterator[None]:
    """Hold an exclusive flock on the lock file ``path`` (made 0600 if missing) while the
    body runs; wait up to ``timeout`` seconds for another holder, then fail naming it."""
    check_timeout(timeout)
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise EnvError(f"{what} is in use by {lock_holder(fd)} (lock {path}); wait for it or "
                                   "stop it") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)  # a plain file of ours with one name: checked by _open_lock
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
