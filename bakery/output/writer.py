"""Write an output tree atomically, under a lock.

The whole tree is built in a temporary folder beside the destination, synced, then
swapped in with one rename (Linux renameat2(RENAME_EXCHANGE) when the destination exists),
so a render killed at any moment leaves either the old tree or the new one, never a mix.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvError

FILE_MODE = 0o644
SECRET_MODE = 0o600
EXEC_MODE = 0o755
DIR_MODE = 0o755
SECRET_DIR_MODE = 0o700


@dataclass(frozen=True)
class OutputFile:
    path: str  # relative, posix
    content: bytes
    kind: str = "other"
    node: str | None = None
    role: str | None = None
    secret: bool = False
    executable: bool = False

    @property
    def mode(self) -> int:
        if self.secret:
            return SECRET_MODE
        return EXEC_MODE if self.executable else FILE_MODE


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]


def write_file_atomic(path: Path, content: bytes, mode: int) -> None:
    """write-temp, fsync, rename: the file is either old or new, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # independent of the umask
        _write_all(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


_RENAME_EXCHANGE = 2
_libc: ctypes.CDLL | bool | None = None  # None: not probed yet; False: unsupported


def _load_libc():
    """glibc with renameat2 and syncfs (Linux), or False."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.renameat2  # noqa: B018 - probe
            _libc.syncfs  # noqa: B018 - probe
        except (OSError, AttributeError):
            _libc = False
    return _libc


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where unsupported."""
    if not _load_libc():
        return False
    AT_FDCWD = -100
    rc = _load_libc().renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _same_file(prev: Path, f: OutputFile) -> bool:
    """Whether the previous tree's file is exactly this one: bytes and mode."""
    try:
        st = os.lstat(prev)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != len(f.content) or stat.S_IMODE(st.st_mode) != f.mode:
        return False
    try:
        with open(prev, "rb") as fh:
            return fh.read(len(f.content) + 1) == f.content
    except OSError:
        return False


def _build_tree(root: Path, files: Iterable[OutputFile], previous: Path | None = None) -> None:
    """Write the tree under root, consuming `files` as they come (a render of thousands of
    nodes never holds them all in memory). Folders start 0700 and open up to 0755 at the
    end unless they hold a secret; the tree is private until it is swapped in anyway.
    A file identical to the previous tree's is hard-linked instead of written: the swap then
    frees nothing on disk for it, and an unchanged render costs links, not writes."""
    root.mkdir(mode=SECRET_DIR_MODE)
    os.chmod(root, SECRET_DIR_MODE)
    made = {Path(".")}
    secret_dirs: set[Path] = set()
    seen: set[str] = set()
    for f in files:
        if f.path in seen:  # pragma: no cover - a bug in a renderer, not user input
            raise AssertionError(f"two renderers wrote {f.path}")
        seen.add(f.path)
        target = root / f.path
        rel_parent = Path(f.path).parent
        if rel_parent not in made:
            for parent in reversed(Path(f.path).parents):
                if parent not in made:
                    (root / parent).mkdir(mode=SECRET_DIR_MODE)
                    os.chmod(root / parent, SECRET_DIR_MODE)
                    made.add(parent)
        if f.secret:
            secret_dirs.add(rel_parent)
            secret_dirs.update(rel_parent.parents)
        if previous is not None and _same_file(previous / f.path, f):
            try:
                os.link(previous / f.path, target)
                continue
            except OSError:
                pass  # another filesystem, or links not allowed: write it
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f.mode)
        try:
            os.fchmod(fd, f.mode)
            _write_all(fd, f.content)
        finally:
            os.close(fd)
    for d in made:
        if d not in secret_dirs:
            os.chmod(root / d, DIR_MODE)


def _sync_tree(root: Path) -> None:
    """Put the whole new tree on disk before it replaces the old one: one syncfs(2) of its
    filesystem (a per-file fsync costs a disk flush, and on a 'discard' mount a TRIM on
    every later unlink, per file)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = _load_libc()
        if libc and libc.syncfs(fd) == 0:
            return
        os.sync()
    finally:
        os.close(fd)


def write_tree(dest: Path, files: Iterable[OutputFile]) -> None:
    """Replace dest with exactly these files, atomically."""
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.new-{os.getpid()}"
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        previous = dest if dest.is_dir() and not dest.is_symlink() else None
        _build_tree(tmp, files, previous)
        _sync_tree(tmp)
        if dest.exists():
            if not dest.is_dir() or dest.is_symlink():
                raise EnvError(f"{dest} exists and is not a folder; move it away or pick another --out")
            if _exchange(tmp, dest):
                shutil.rmtree(tmp)  # tmp now holds the old tree
            else:  # pragma: no cover - non-Linux fallback: two renames
                os.rename(dest, old)
                os.rename(tmp, dest)
                shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
        _fsync_dir(dest.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale(dest: Path) -> None:
    """Remove temporary trees left by killed renders (they never replaced anything)."""
    for stale in dest.parent.glob(f".{dest.name}.new-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in dest.parent.glob(f".{dest.name}.old-*"):
        if dest.exists():
            shutil.rmtree(stale, ignore_errors=True)
        else:  # pragma: no cover - killed between the two renames of the fallback
            os.rename(stale, dest)


@contextlib.contextmanager
def locked(dest: Path, timeout: float = 60.0) -> Iterator[None]:
    """One render per output folder at a time; the second waits up to `timeout` seconds."""
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.parent / f".{dest.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    raise EnvError(f"{dest} is being rendered by {holder} (lock {lock_path}); "
                                   "wait for it or stop it") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def list_tree(root: Path) -> list[str]:
    """Relative paths of every file below root."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
