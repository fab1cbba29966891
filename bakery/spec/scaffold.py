"""`bakery init`: a first cluster.yaml that passes `validate --strict`, with the user's SSH
public key so that the nodes can be logged in to.

The key is looked up where OpenSSH's ssh-keygen writes it by default, in this order:
~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub; the first that holds one valid public key
line is taken. Only files named *.pub are opened (a link is followed only to another *.pub),
at most 16 KiB of each, and nothing read is ever printed except the key's type and comment.
"""
from __future__ import annotations

import base64
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

KEY_FILES = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")
MAX_PUB_BYTES = 16 * 1024


@dataclass(frozen=True)
class FoundKey:
    path: Path | None  # None: no key was taken
    line: str | None  # the normalized public key line
    notes: tuple[str, ...]  # why other candidates were passed over, one line each


def _schema_key_pattern() -> re.Pattern:
    """The pattern cluster.yaml's schema gives spec.access.sshAuthorizedKeys items, so that
    what init writes is exactly what validate accepts."""
    from ..resources import cluster_schema
    from .validate import compiled

    access = cluster_schema()["properties"]["spec"]["properties"]["access"]["properties"]
    return compiled(access["sshAuthorizedKeys"]["items"]["pattern"])  # with ECMA-262's meaning, as validate


COMMENT_RE = re.compile(r"[A-Za-z0-9@._+:-]{1,100}")


def public_key_line(text: str) -> str | None:
    """One OpenSSH public key line (type, base64 blob, optional comment) in the form the
    schema accepts, or None. The blob must decode and name the same key type as the line; a
    comment the schema would refuse (spaces, other characters) is dropped."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        return None
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        return None
    kind, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
        (n,) = struct.unpack(">I", raw[:4])
        if raw[4:4 + n].decode("ascii") != kind:
            return None
    except (ValueError, struct.error, UnicodeDecodeError):
        return None
    line = f"{kind} {blob}"
    if len(parts) == 3 and COMMENT_RE.fullmatch(parts[2]):
        line += f" {parts[2]}"
    return line if _schema_key_pattern().fullmatch(line) else None


def find_public_key(home: Path) -> FoundKey:
    notes = []
    for name in KEY_FILES:
        path = home / ".ssh" / name
        if not path.exists():
            continue
        shown = f"~/.ssh/{name}"
        if path.is_symlink() and not path.resolve().name.endswith(".pub"):
            notes.append(f"{shown} is a link to a file not named *.pub: not read")
            continue
        if not path.is_file():
            notes.append(f"{shown} is not a regular file: skipped")
            continue
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_PUB_BYTES + 1)
        except OSError as exc:
            notes.append(f"{shown} cannot be read ({exc.strerror}): skipped")
            continue
        try:
            text = data.decode("utf-8") if len(data) <= MAX_PUB_BYTES else ""
        except UnicodeDecodeError:
            text = ""
        line = public_key_line(text)
        if line is None:
            # never quote it: a misnamed private key must not reach a terminal or a log
            notes.append(f"{shown} does not hold one OpenSSH public key line: skipped (not shown)")
            continue
        return FoundKey(path, line, tuple(notes))
    return FoundKey(None, None, tuple(notes))


def describe(key: FoundKey) -> list[str]:
    """What init says about the key, one line each (type and comment only)."""
    out = list(key.notes)
    if key.line:
        assert key.path is not None  # a key line is only ever taken from a file
        kind, _, comment = (key.line.split(" ", 2) + [""])[:3]
        out.append(f"took the SSH public key ~/.ssh/{key.path.name} ({kind}{' ' + comment if comment else ''}) "
                   f"for spec.access.sshAuthorizedKeys: log in as kube@<node address>")
    else:
        out.append("no SSH public key found (~/.ssh/" + ", ".join(KEY_FILES) + "): to log in to the nodes, "
                   "make one (ssh-keygen -t ed25519) and add its line to spec.access.sshAuthorizedKeys")
    return out


def cluster_yaml(key: FoundKey) -> str:
    from ..templating import render_template

    return render_template("init/cluster.yaml.j2", ssh_authorized_keys=[key.line] if key.line else [])
