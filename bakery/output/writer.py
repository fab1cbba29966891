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
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import fsafe
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
    link: str | None = None  # a symbolic link with this text, not a file (content is empty)

    @property
    def mode(self) -> int:
        if self.secret:
            return SECRET_MODE
        return EXEC_MODE if self.executable else FILE_MODE

    def entry(self) -> dict:
        """The file in manifest.json: its hash, size and mode, or a link's text; never its content."""
        if self.link is not None:
            return {"path": self.path, "kind": self.kind, "node": self.node, "role": self.role, "link": self.link}
        return {"path": self.path, "kind": self.kind, "node": self.node, "role": self.role,
                "sha256": hashlib.sha256(self.content).hexdigest(), "size": len(self.content),
                "mode": f"{self.mode:04o}"}


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


def _open_same(prev: str, f: OutputFile) -> int | None:
    """An open descriptor of the previous tree's file if it is exactly this one (bytes and
    mode) and a plain file of this user's with one name; else None. Opened without
    following a link or blocking on a pipe, and checked on the descriptor (fstat), so what
    was checked is what gets linked (through /proc/self/fd) however the path changes."""
    try:
        fd = os.open(prev, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1
                and st.st_size == len(f.content) and stat.S_IMODE(st.st_mode) == f.mode
                and fsafe.read_fd(fd, len(f.content)) == f.content):
            return fd
    except (OSError, fsafe.TooLarge):
        pass
    os.close(fd)
    return None


def _link_same(prev: str, f: OutputFile, target: str) -> bool:
    """Hard-link the previous tree's identical file at target (see _open_same)."""
    fd = _open_same(prev, f)
    if fd is None:
        return False
    try:
        # linkat(AT_FDCWD, "/proc/self/fd/N", dirfd, name, AT_SYMLINK_FOLLOW), as open(2) shows
        # for O_TMPFILE; CPython calls linkat (not link) only when a dir_fd is given.
        folder, name = os.path.split(target)
        parent = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=parent, follow_symlinks=True)
        finally:
            os.close(parent)
        return True
    except OSError:
        return False  # no /proc, another filesystem, or links not allowed: write it
    finally:
        os.close(fd)


def _parents(path: str) -> list[str]:
    """'a/b/c' -> ['a/b', 'a', '']: every folder above a relative path, nearest first."""
    out = []
    while path:
        path = path.rpartition("/")[0]
        out.append(path)
    return out


class Tree:
    """The new tree being built under root, private (0700) until it is swapped in. Files are
    written by put(), in this process or in a forked render worker (output.fanout), which
    makes the folders it needs; the process that swaps the tree is told of those files by
    note(), so that finish() knows every folder and which of them hold a secret. Paths are
    relative, '/'-separated strings ('' is the root)."""

    def __init__(self, root: Path, previous: Path | None = None):
        self.root = root
        self.previous = previous  # the tree being replaced: identical files are hard-linked from it
        self.made = {""}
        self.secret_dirs: set[str] = set()
        self.seen: set[str] = set()
        root.mkdir(mode=SECRET_DIR_MODE)
        os.chmod(root, SECRET_DIR_MODE)

    def note(self, path: str, secret: bool) -> None:
        """A file of the tree, written (by put, here or in a worker): remember its folders."""
        if path in self.seen:  # pragma: no cover - a bug in a renderer, not user input
            raise AssertionError(f"two renderers wrote {path}")
        self.seen.add(path)
        folders = _parents(path)
        self.made.update(folders)
        if secret:
            self.secret_dirs.update(folders)

    def _mkdirs(self, path: str) -> None:
        """The file's folders, 0700 for now. One a sibling worker made meanwhile is fine: in a
        private tree only this render's processes make anything."""
        missing = []
        for parent in _parents(path):
            if parent in self.made:
                break
            missing.append(parent)
        for parent in reversed(missing):
            folder = os.path.join(self.root, parent)
            try:
                os.mkdir(folder, SECRET_DIR_MODE)
                os.chmod(folder, SECRET_DIR_MODE)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(folder).st_mode):  # pragma: no cover - a bug
                    raise
            self.made.add(parent)

    def put(self, f: OutputFile) -> None:
        """Write one file and note it."""
        self.write(f)
        self.note(f.path, f.secret)

    def write(self, f: OutputFile) -> None:
        """Write one file (or link), with its folders; the caller notes it (in a worker: the
        parent, from what the worker returns). A file identical to the previous tree's is
        hard-linked instead of written: the swap then frees nothing on disk for it, and an
        unchanged render costs links, not writes."""
        self._mkdirs(f.path)
        target = os.path.join(self.root, f.path)
        if f.link is not None:
            os.symlink(f.link, target)
            return
        if self.previous is not None and _link_same(os.path.join(self.previous, f.path), f, target):
            return
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, f.mode)
        try:
            os.fchmod(fd, f.mode)
            fsafe.write_all(fd, f.content)
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Open every folder that holds no secret up to 0755."""
        for d in self.made - self.secret_dirs:
            os.chmod(os.path.join(self.root, d), DIR_MODE)


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


def write_tree(dest: Path, files: Iterable[OutputFile] | Callable[[Tree], None],
               before_swap: Callable[[], None] | None = None, after_swap: Callable[[], None] | None = None) -> None:
    """Replace dest with exactly these files, atomically. ``files``: the files (consumed as
    they come: a render of thousands of nodes never holds them all in memory), or a function
    that puts them into the new Tree itself (a render with forked workers). ``before_swap``
    runs once the new tree is on disk, right before it is swapped in, and ``after_swap`` right
    after, with signals held over all three: a file that must change with the tree (an
    external secrets bundle) is renamed in before_swap; after_swap records what completed
    (fsafe.completed)."""
    dest = dest.absolute()
    fsafe.makedirs(dest.parent)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"  # a fresh name: nothing planted under it
    tmp = dest.parent / f".{dest.name}.new-{tag}"
    old = dest.parent / f".{dest.name}.old-{tag}"
    try:
        tree = Tree(tmp, dest if dest.is_dir() and not dest.is_symlink() else None)
        if callable(files):
            files(tree)
        else:
            for f in files:
                tree.put(f)
        tree.finish()
        _sync_tree(tmp)
        if dest.exists() and (not dest.is_dir() or dest.is_symlink()):
            raise EnvError(f"{dest} exists and is not a folder; move it away or pick another --out")
        with fsafe.signals_held():
            if before_swap is not None:
                before_swap()
            _swap(tmp, dest, old)
            if after_swap is not None:
                after_swap()
        fsafe.fsync_dir(dest.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange, the old tree
        shutil.rmtree(old, ignore_errors=True)


def _swap(tmp: Path, dest: Path, old: Path) -> None:
    """Put the tree at tmp in dest's place: one exchange (the old tree then sits at tmp), or
    one rename when dest does not exist yet. Removing the old tree is the caller's."""
    if not dest.exists():
        os.rename(tmp, dest)
    elif not _exchange(tmp, dest):  # pragma: no cover - non-Linux fallback: two renames
        os.rename(dest, old)
        os.rename(tmp, dest)


def clean_stale(dest: Path) -> None:
    """Remove temporary trees left by killed renders (they never replaced anything; on
    Linux the swap is one exchange, so no leftover is ever a tree to put back). Only folders
    of this user's are removed; anything else under those names is left alone."""
    for pattern in (f".{dest.name}.new-*", f".{dest.name}.old-*"):
        for stale in dest.parent.glob(pattern):
            try:
                st = stale.lstat()
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                shutil.rmtree(stale, ignore_errors=True)


def lock_path(dest: Path) -> Path:
    """The lock file of an output folder: beside it, since the folder itself is swapped."""
    dest = dest.absolute()
    return dest.parent / f".{dest.name}.lock"


@contextlib.contextmanager
def locked(dest: Path, timeout: float = 60.0) -> Iterator[None]:
    """One render per output folder at a time; the second waits up to `timeout` seconds."""
    dest = dest.absolute()
    fsafe.makedirs(dest.parent)
    with fsafe.locked(lock_path(dest), f"{dest}", timeout):
        yield


def read_file(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes if it holds at most ``limit`` of them; None otherwise (missing,
    a folder, a pipe or device, larger): for comparing with what a render would write."""
    try:
        return fsafe.read_regular(path, limit)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, fsafe.NotRegular, fsafe.TooLarge):
        return None


def list_tree(root: Path) -> list[str]:
    """Relative paths of every file below root."""
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
