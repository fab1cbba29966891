"""What the last render left in an output folder (issue 22): the key of everything that
decided its bytes, and how each of its files, links and folders looked on disk right after
the swap. It is kept beside the folder (``.<name>.state``, like the lock), never in it, so the
tree stays byte-for-byte what a render makes.

A render whose key is the recorded one, of a folder that is still exactly as recorded (the
same paths; each file's mode, size, modification and change times, inode, device and link
count; each link's text; each folder's mode), has nothing to write: a full render would make
the same bytes, hard-link every file back (writer._link_same) and swap in an identical tree.
Anything else (another key, a file edited, added, removed or replaced, an unreadable or
foreign record) makes the full render, which removes the record before its swap and writes
it after. The record is a cache: losing it costs one full render (and the secrets bundle's
full key check), never a wrong tree. The change time (ctime) is the kernel's: an edit that
puts the modification time back (touch -r, rsync --inplace --times) still moves it.
As with git's index, an edit within the filesystem's timestamp tick of the render's own
write (a few milliseconds on ext4) that keeps the size and inode would go unnoticed.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from .. import fsafe

STATE_MAX = 256 << 20
_VERSION = 1


def state_path(dest: Path) -> Path:
    dest = dest.absolute()
    return dest.parent / f".{dest.name}.state"


def snapshot(dest: Path) -> dict | None:
    """The tree as it is on disk (None when dest is not a folder of this user's)."""
    try:
        st = os.lstat(dest)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None
    files: dict[str, list[int]] = {}
    links: dict[str, str] = {}
    dirs: dict[str, int] = {".": stat.S_IMODE(st.st_mode)}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(dest / rel if rel else dest) as it:
            for entry in it:
                path = f"{rel}/{entry.name}" if rel else entry.name
                s = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(s.st_mode):
                    dirs[path] = stat.S_IMODE(s.st_mode)
                    stack.append(path)
                elif stat.S_ISLNK(s.st_mode):
                    links[path] = os.readlink(dest / path)
                elif stat.S_ISREG(s.st_mode):
                    files[path] = [stat.S_IMODE(s.st_mode), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino,
                                   s.st_dev, s.st_nlink]
                else:
                    return None  # a FIFO or a device: no render made that
    return {"files": files, "links": links, "dirs": dirs}


def load(dest: Path) -> dict:
    """The record beside dest ({} when there is none, or none of this user's, or it is unreadable)."""
    try:
        doc = json.loads(_read_own(state_path(dest)))
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) and doc.get("version") == _VERSION else {}


def checked_keys(doc: dict) -> frozenset[str]:
    """The digests (pki.bundle.key_digest) of the private keys the recorded render read or
    made, each of which passed the bundle's full key check then: the same key text passes it
    again. The record is this user's own file (load), written only by bakery."""
    keys = doc.get("checkedKeys")
    return frozenset(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else frozenset()


def unchanged(doc: dict, dest: Path, key: str) -> int | None:
    """The number of files (and links) of dest when the last render recorded this key (doc:
    load()) and the tree is still as recorded; None otherwise."""
    if doc.get("key") != key:
        return None
    try:
        now = snapshot(dest)
    except OSError:
        return None
    if now is None or now != doc.get("tree"):
        return None
    return len(now["files"]) + len(now["links"])


def _read_own(path: Path) -> bytes:
    """The record's bytes: a regular file of this user's, never through a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(f"{path} is not a regular file of this user's")
        return fsafe.read_fd(fd, STATE_MAX)
    finally:
        os.close(fd)


def forget(dest: Path) -> None:
    """Remove the record (before a swap: a tree swapped in without its record is rendered
    in full next time). A file under that name that is not this user's is left alone: it is
    never read as a record (_read_own), and in a shared sticky folder it cannot be removed, so
    it must not stop the render."""
    path = state_path(dest)
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if os.lstat(path).st_uid == os.geteuid():
            os.unlink(path)


def record(dest: Path, key: str, checked: list[str]) -> None:
    """Write the record of the tree just swapped in, with the digests of the bundle's keys
    (checked_keys); a failure only costs the next render its shortcuts."""
    with contextlib.suppress(OSError):
        tree = snapshot(dest)
        if tree is not None:
            doc = {"version": _VERSION, "key": key, "checkedKeys": checked, "tree": tree}
            fsafe.write_atomic(state_path(dest), json.dumps(doc, separators=(",", ":")).encode(), 0o600)
