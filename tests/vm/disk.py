"""Read a test VM's disk after it powered off: no mount, no loop device, no root needed.

``qemu-img convert -O raw overlay.qcow2 disk.raw`` flattens the overlay and its base into
one ext4 image; debugfs (e2fsprogs) reads files (``cat``), their mode and owner (``stat``)
and folders (``ls -p``) from it. ``find_bytes`` scans the whole raw disk, free blocks and
all, for a byte string (a private key must not be anywhere, not even in a deleted file).
"""
from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import tool
from .image import STANDIN_DIR


@dataclass(frozen=True)
class Stat:
    path: str
    type: str  # "regular", "directory", "symlink", ...
    mode: int  # permission bits, e.g. 0o600
    uid: int
    gid: int
    size: int


class Disk:
    def __init__(self, overlay: Path, raw: Path | None = None):
        self.raw = raw or overlay.with_suffix(".raw")
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(overlay), str(self.raw)],
                       check=True, capture_output=True, timeout=600)

    def _debugfs(self, request: str) -> subprocess.CompletedProcess:
        return subprocess.run([tool("debugfs"), "-R", request, str(self.raw)], capture_output=True, timeout=120)

    def stat(self, path: str) -> Stat | None:
        out = self._debugfs(f"stat {path}")
        text = out.stdout.decode(errors="replace")
        m = re.search(r"Type: (\S+)\s+Mode:\s+(\d+)", text)
        if not m:
            return None
        owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", text)
        size = re.search(r"Size: (\d+)", text)
        return Stat(path, m.group(1), int(m.group(2), 8) & 0o7777, int(owner.group(1)), int(owner.group(2)),
                    int(size.group(1)) if size else 0)

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def cat(self, path: str) -> bytes:
        st = self.stat(path)
        if st is None:
            raise FileNotFoundError(f"{path} is not on the VM's disk")
        if st.type == "symlink":
            raise IsADirectoryError(f"{path} is a symlink; read its target")
        return self._debugfs(f"cat {path}").stdout

    def text(self, path: str) -> str:
        return self.cat(path).decode(errors="replace")

    def read(self, path: str, default: bytes | None = None) -> bytes | None:
        try:
            return self.cat(path)
        except FileNotFoundError:
            return default

    def ls(self, path: str) -> list[str]:
        """Names in a folder (without . and ..); [] when it does not exist."""
        out = self._debugfs(f"ls -p {path}").stdout.decode(errors="replace")
        names = []
        for line in out.splitlines():
            parts = line.split("/")
            if len(parts) >= 6 and parts[5] not in ("", ".", ".."):
                names.append(parts[5])
        return sorted(names)

    def json(self, path: str):
        return json.loads(self.cat(path))

    def find_bytes(self, needle: bytes, limit: int = 1000) -> list[int]:
        """Offsets of needle anywhere on the raw disk (files, metadata, free blocks)."""
        hits: list[int] = []
        with open(self.raw, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos = mm.find(needle)
            while pos != -1 and len(hits) < limit:
                hits.append(pos)
                pos = mm.find(needle, pos + 1)
        return hits

    def read_at(self, offset: int, length: int) -> bytes:
        with open(self.raw, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def private_keys(self) -> list[tuple[int, bytes]]:
        return private_key_blocks(self.raw)

    def remove(self) -> None:
        self.raw.unlink(missing_ok=True)


@dataclass(frozen=True)
class Call:
    """One recorded call of a stand-in (kubeadm, kubelet, kubectl, crictl)."""

    seq: int
    tool: str
    argv: tuple[str, ...]
    uptime: float
    files: dict  # original path ("-" for stdin) -> content (bytes) of the copy the stand-in kept
    kubeconfig_env: str  # $KUBECONFIG the stand-in saw

    def file(self, path: str) -> bytes:
        return self.files[path]


def standin_calls(disk: Disk) -> list[Call]:
    """Every stand-in call recorded on the disk, in the order they were made."""
    calls = []
    base = f"{STANDIN_DIR}/calls"
    for entry in disk.ls(base):
        d = f"{base}/{entry}"
        seq, tool = entry, disk.text(f"{d}/tool").strip()
        argv = disk.read(f"{d}/argv", b"")
        args = tuple(a.decode() for a in argv.split(b"\0")[:-1])
        uptime = float(disk.text(f"{d}/uptime").strip() or 0)
        files = {}
        index = disk.read(f"{d}/files", b"").decode()
        for line in index.splitlines():
            saved, original, status = line.split("\t")
            if status == "missing":
                files[original] = None
                continue
            st = disk.stat(f"{d}/{saved}")
            if st and st.type == "directory":
                files[original] = {n: disk.cat(f"{d}/{saved}/{n}") for n in disk.ls(f"{d}/{saved}")}
            else:
                files[original] = disk.cat(f"{d}/{saved}")
        env = disk.read(f"{d}/kubeconfig-env", b"").decode()
        calls.append(Call(int(seq), tool, args, uptime, files, env))
    return sorted(calls, key=lambda c: c.seq)


PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\r?\n([A-Za-z0-9+/=\r\n:,\-]{40,}?)-----END \1-----")


def private_key_blocks(raw: Path) -> list[tuple[int, bytes]]:
    """Every PEM or OpenSSH private key with a body anywhere on a raw disk (free blocks too):
    (offset, the block). A bare marker string in a program does not count."""
    blocks = []
    with open(raw, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = mm.find(b"-----BEGIN ")
        while pos != -1:
            m = PEM_PRIVATE_KEY.match(mm[pos:pos + 16384])
            if m:
                blocks.append((pos, m.group(0)))
            pos = mm.find(b"-----BEGIN ", pos + 1)
    return blocks


@functools.cache
def baseline_private_keys(base_raw: Path) -> frozenset[str]:
    """sha256 of each private key already in the base image: Debian's own (e.g. the self-test
    keys inside libgnutls), there before any seed. Cached beside the image."""
    cache = base_raw.parent / "private-keys.json"
    if cache.exists():
        return frozenset(json.loads(cache.read_text()))
    found = sorted({hashlib.sha256(b).hexdigest() for _, b in private_key_blocks(base_raw)})
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(found) + "\n")
    os.replace(tmp, cache)
    return frozenset(found)
