"""Issue 16: hostile cluster files. A table-driven corpus of bad cluster files, each of which
must be refused as bakery refuses bad input: exit 2, one line naming file:line:col (where the
file has one) and the check ID, no traceback, no raw control character, nothing written.

Every case runs in-process through the functions `bakery validate` and `bakery render` call
(spec.pipeline.check_file; Diagnostic.__str__ is the line the CLI prints), and a
representative subset, FIFOs and devices included, through the real command line with a
timeout. pytest's count of test_corpus_case is the number of attacks tried.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT

# -- a complete cluster, one scalar per line, so every value's line and column are known --------

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host"
BASE: dict = {
    "apiVersion": "bakery.dev/v1alpha1",
    "kind": "Cluster",
    "metadata": {"name": "lab"},
    "spec": {
        "kubernetes": {"version": '"1.36.3"', "packageSource": "pkgs.k8s.io"},
        "containerd": {"version": '"2.2.7"'},
        "os": "ubuntu-24.04",
        "network": {"nodeCidr": "192.168.56.0/24", "gateway": "192.168.56.1", "nameservers": ["192.168.56.1"],
                    "podCidr": "10.244.0.0/16", "serviceCidr": "10.96.0.0/12", "dnsDomain": "cluster.local",
                    "nodeInterface": "enp0s8", "natInterface": "enp0s3"},
        "cni": {"calico": {"version": "v3.32.1", "encapsulation": "IPIP", "mtu": "1450"}},
        "controlPlane": {"endpoint": "192.168.56.30:6443", "vip": "null", "kubeVip": {"version": "v1.0.0"}},
        "bootstrap": {"tokenTTL": "24h", "joinTimeout": "15m"},
        "secrets": {"keyAlgorithm": "ecdsa-p256", "caValidityDays": "3650", "adminCertValidityDays": "365"},
        "access": {"user": "kube", "sshAuthorizedKeys": [KEY]},
        "image": {
            "builders": ["virtualbox-iso", "proxmox-iso", "qemu"],
            "cpus": "2", "memoryMiB": "4096", "diskSizeMiB": "20480", "buildUser": "packer",
            "iso": {"url": "https://mirror.example/ubuntu.iso", "checksum": "sha256:" + "0" * 64},
            "virtualbox": {"hostOnlyInterface": "vboxnet0"},
            "proxmox": {"url": "https://pve.example:8006/api2/json", "tokenId": "root@pam!packer", "node": "pve",
                        "isoStorage": "local", "diskStorage": "local-lvm", "snippetStorage": "local",
                        "bridge": "vmbr0", "templateVmId": "9000", "firstVmId": "9100",
                        "insecureSkipTlsVerify": "false"},
            "qemu": {"accelerator": "kvm"},
        },
        "nodes": [
            {"name": "cp1", "role": "control-plane", "address": "192.168.56.30", "mac": '"08:00:27:aa:bb:01"',
             "interface": "enp0s8", "cpus": "2", "memoryMiB": "2048", "vmId": "9100", "generation": "0",
             "labels": {"example.com/zone": "a"},
             "taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]},
            {"name": "w1", "role": "worker", "address": "192.168.56.31"},
        ],
    },
}


def emit(overrides: dict[tuple, str] | None = None, extra_keys: dict[tuple, str] | None = None
         ) -> tuple[str, dict[tuple, tuple[int, int]], dict[tuple, tuple[int, int]]]:
    """BASE as YAML text with `overrides` (path -> YAML source of the value) and `extra_keys`
    (path of a mapping -> 'key: value' line added to it); returns the text and the (line,
    column) of every value and of every key."""
    overrides, extra_keys = overrides or {}, extra_keys or {}
    lines: list[str] = []
    values: dict[tuple, tuple[int, int]] = {}
    keys: dict[tuple, tuple[int, int]] = {}

    def scalar(path, value):
        return overrides.get(path, value)

    def mapping(d: dict, path: tuple, indent: int, first_prefix: str | None = None):
        items = list(d.items())
        for n, (k, v) in enumerate(items):
            prefix = first_prefix if (n == 0 and first_prefix is not None) else " " * indent
            p = path + (k,)
            keys[p] = (len(lines) + 1, len(prefix) + 1)
            if isinstance(v, dict):
                lines.append(f"{prefix}{k}:")
                mapping(v, p, indent + 2)
            elif isinstance(v, list):
                lines.append(f"{prefix}{k}:")
                sequence(v, p, indent + 2)
            else:
                values[p] = (len(lines) + 1, len(prefix) + len(k) + 3)
                lines.append(f"{prefix}{k}: {scalar(p, v)}")
        if path in extra_keys:
            keys[path + ("<extra>",)] = (len(lines) + 1, indent + 1)
            lines.append(" " * indent + extra_keys[path])

    def sequence(items: list, path: tuple, indent: int):
        for i, v in enumerate(items):
            p = path + (i,)
            if isinstance(v, dict):
                mapping(v, p, indent + 2, first_prefix=" " * indent + "- ")
            else:
                values[p] = (len(lines) + 1, indent + 3)
                lines.append(f"{' ' * indent}- {scalar(p, v)}")

    mapping(BASE, (), 0)
    return "\n".join(lines) + "\n", values, keys


def base_value(path: tuple) -> str:
    v: object = BASE
    for part in path:
        v = v[part]  # type: ignore[index]
    assert isinstance(v, str)
    return v.strip('"')


# every field the schema checks with a pattern, by its path in BASE
PATTERN_FIELDS = [
    ("metadata", "name"), ("spec", "kubernetes", "version"), ("spec", "containerd", "version"),
    ("spec", "network", "nodeCidr"), ("spec", "network", "gateway"), ("spec", "network", "nameservers", 0),
    ("spec", "network", "podCidr"), ("spec", "network", "serviceCidr"), ("spec", "network", "dnsDomain"),
    ("spec", "network", "nodeInterface"), ("spec", "network", "natInterface"),
    ("spec", "cni", "calico", "version"), ("spec", "controlPlane", "endpoint"),
    ("spec", "controlPlane", "kubeVip", "version"), ("spec", "bootstrap", "tokenTTL"),
    ("spec", "bootstrap", "joinTimeout"), ("spec", "access", "user"), ("spec", "access", "sshAuthorizedKeys", 0),
    ("spec", "image", "buildUser"), ("spec", "image", "iso", "url"), ("spec", "image", "iso", "checksum"),
    ("spec", "image", "virtualbox", "hostOnlyInterface"), ("spec", "image", "proxmox", "url"),
    ("spec", "image", "proxmox", "tokenId"), ("spec", "image", "proxmox", "node"),
    ("spec", "image", "proxmox", "isoStorage"), ("spec", "image", "proxmox", "diskStorage"),
    ("spec", "image", "proxmox", "snippetStorage"), ("spec", "image", "proxmox", "bridge"),
    ("spec", "nodes", 0, "name"), ("spec", "nodes", 0, "address"), ("spec", "nodes", 0, "mac"),
    ("spec", "nodes", 0, "interface"), ("spec", "nodes", 0, "labels", "example.com/zone"),
    ("spec", "nodes", 0, "taints", 0, "key"), ("spec", "nodes", 0, "taints", 0, "value"),
]
# every integer field, with its schema maximum. memoryMiB: 4 TiB, Proxmox's cap (qemu-server,
# PVE/QemuServer/Memory.pm get_max_mem); diskSizeMiB: 16 TiB, a bound rather than a platform's
# limit; VM ids: pve-common's pve-vmid, 100 to 999,999,999.
INTEGER_FIELDS = {
    ("spec", "cni", "calico", "mtu"): 9000, ("spec", "secrets", "caValidityDays"): 36500,
    ("spec", "secrets", "adminCertValidityDays"): 3650, ("spec", "image", "cpus"): 512,
    ("spec", "image", "memoryMiB"): 4194304, ("spec", "image", "diskSizeMiB"): 16777216,
    ("spec", "image", "proxmox", "templateVmId"): 999999999, ("spec", "image", "proxmox", "firstVmId"): 999999999,
    ("spec", "nodes", 0, "cpus"): 512, ("spec", "nodes", 0, "memoryMiB"): 4194304,
    ("spec", "nodes", 0, "vmId"): 999999999, ("spec", "nodes", 0, "generation"): 999999,
}


def dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- the corpus ----------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    check: str
    content: bytes | None = None  # the file's bytes; None: `make` builds the path
    make: str = ""  # "fifo", "dev:/dev/zero", "loop", "dangling", "dir", "huge"
    at: tuple[int, int] | None = None  # the exact line and column, where the file has them
    positioned: bool = True  # the line names file:line:col
    says: str = ""  # a fragment the line must hold


def value_case(id_: str, path: tuple, source: str, check: str, says: str = "", key: bool = False) -> Case:
    text, values, keys = emit({path: source})
    return Case(id_, check, text.encode(), at=(keys if key else values)[path], says=says)


def text_case(id_: str, check: str, text: str, at: tuple[int, int] | None = None, says: str = "") -> Case:
    return Case(id_, check, text.encode("utf-8", "surrogatepass"), at=at, says=says)


CASES: list[Case] = []

# 3. a trailing newline in every field a pattern checks (double-quoted "\n", and a block scalar)
for path in PATTERN_FIELDS:
    CASES.append(value_case(f"newline-end-{dotted(path)}", path, json.dumps(base_value(path) + "\n"),
                            "control-character", "U+000A (LF), at its end"))
CASES.append(value_case("newline-block-scalar-name", ("metadata", "name"), "|\n    lab", "control-character",
                        "U+000A (LF)"))
# 3. every class of control character in a value: C0, DEL, C1, line/paragraph separators, format
for esc, name in [("\\0", "U+0000 (NUL)"), ("\\a", "U+0007 (BEL)"), ("\\b", "U+0008 (BS)"), ("\\t", "U+0009 (HT)"),
                  ("\\v", "U+000B (VT)"), ("\\f", "U+000C (FF)"), ("\\r", "U+000D (CR)"), ("\\e", "U+001B (ESC)"),
                  ("\\x1f", "U+001F (US)"), ("\\x7f", "U+007F (DEL)"), ("\\N", "U+0085 (NEL)"),
                  ("\\x9b", "U+009B (CSI)"), ("\\L", "U+2028 (LINE SEPARATOR)"),
                  ("\\P", "U+2029 (PARAGRAPH SEPARATOR)"), ("\\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
                  ("\\u200b", "U+200B (ZERO WIDTH SPACE)"), ("\\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)")]:
    CASES.append(value_case(f"control-in-name-{name.split()[0]}", ("metadata", "name"), f'"la{esc}b"',
                            "control-character", f"{name}, at character 3"))
# the ISO URL is the one string whose pattern takes any character but whitespace and quotes
CASES.append(value_case("control-in-url-ESC", ("spec", "image", "iso", "url"),
                        '"https://mirror.example/\\e[2J.iso"', "control-character", "U+001B (ESC)"))
CASES.append(value_case("control-in-url-DEL", ("spec", "image", "proxmox", "url"),
                        '"https://pve.example/\\x7f"', "control-character", "U+007F (DEL)"))
CASES.append(value_case("tab-inside-plain-value", ("spec", "nodes", 1, "name"), "w\t1", "control-character",
                        "U+0009 (HT)"))
# ... and in a mapping key (an unknown one, and a label key)
_t, _v, _k = emit(extra_keys={("spec", "image"): '"cp\\eus": 2'})
CASES.append(Case("control-in-key", "control-character", _t.encode(), at=_k[("spec", "image", "<extra>")],
                  says="key 'cp\\x1bus' in spec.image holds a control character, U+001B (ESC)"))
_t, _v, _k = emit(extra_keys={("spec", "nodes", 0, "labels"): '"zone\\n": b'})
CASES.append(Case("newline-in-label-key", "control-character", _t.encode(),
                  at=_k[("spec", "nodes", 0, "labels", "<extra>")], says="U+000A (LF)"))

# 11. raw control characters in the text itself: the right character at the right place, escaped
_text, _values, _ = emit()
_name_line, _name_col = _values[("metadata", "name")]
_lines = _text.split("\n")
for raw, name in [("\x01", "U+0001 (SOH)"), ("\x07", "U+0007 (BEL)"), ("\x08", "U+0008 (BS)"),
                  ("\x0b", "U+000B (VT)"), ("\x0c", "U+000C (FF)"), ("\x1b", "U+001B (ESC)"),
                  ("\x7f", "U+007F (DEL)"), ("\x9b", "U+009B (CSI)"), ("\ufffe", "U+FFFE"), ("\uffff", "U+FFFF")]:
    lines = list(_lines)
    lines[_name_line - 1] = lines[_name_line - 1].replace("lab", f"la{raw}b")
    CASES.append(text_case(f"raw-{name.split()[0]}-in-value", "control-character", "\n".join(lines),
                           at=(_name_line, _name_col + 2), says=name))
_lines_c = list(_lines)
_lines_c.insert(2, "# a comment with \x1b[31mcolour\x1b[0m")
CASES.append(text_case("raw-ESC-in-comment", "control-character", "\n".join(_lines_c), at=(3, 18),
                       says="U+001B (ESC)"))
_lines_k = list(_lines)
_lines_k[_name_line - 1] = _lines_k[_name_line - 1].replace("name", "na\x00me")
CASES.append(text_case("raw-NUL-in-key", "file-binary", "\n".join(_lines_k), at=(1, 1)))
CASES.append(text_case("raw-NUL-after-8KiB", "control-character",
                       "# " + "x" * 9000 + "\n" + _text.replace("name: lab", "name: l\x00ab"),
                       at=(_name_line + 1, _name_col + 1), says="U+0000 (NUL)"))
CASES.append(Case("surrogate-in-value", "file-encoding",
                  _text.replace("name: lab", "name: la\ud800b").encode("utf-8", "surrogatepass"),
                  at=(_name_line, _name_col + 2), says="not UTF-8"))
CASES.append(text_case("tab-indentation", "yaml-syntax", _text.replace("\n  name: lab", "\n\tname: lab"),
                       at=(_name_line, 1), says="a tab character"))

# 10. numbers where integers are meant: YAML 1.1's other forms, fractions, the unbounded
for n, (path, maximum) in enumerate(INTEGER_FIELDS.items()):
    form, read = [("010", "an octal number, 8"), ("0x10", "a hexadecimal number, 16"),
                  ("1:10:00", "a base-60 (sexagesimal) number, 4200"), ("0b11", "a binary number, 3"),
                  ("1_000", "a number with its underscores left out, 1000")][n % 5]
    CASES.append(value_case(f"{form}-in-{dotted(path)}", path, form, "number-form", read))
    CASES.append(value_case(f"5000-digits-in-{dotted(path)}", path, "9" * 5000, "number-too-large",
                            "a number 5,000 characters long"))
    CASES.append(value_case(f"above-maximum-{dotted(path)}", path, str(maximum + 1), "schema-maximum",
                            f"greater than the maximum of {maximum}"))
    CASES.append(value_case(f"fraction-in-{dotted(path)}", path, f"{maximum}.0", "schema-type",
                            f"YAML read {maximum}.0 as a decimal number; write {maximum}"))
CASES.append(value_case("fraction-2.5-cpus", ("spec", "image", "cpus"), "2.5", "schema-type", "a whole number"))
CASES.append(value_case("negative-octal-generation", ("spec", "nodes", 0, "generation"), "-010", "number-form",
                        "an octal number, -8"))
CASES.append(value_case("inf-cpus", ("spec", "image", "cpus"), ".inf", "schema-type", "not number inf"))
CASES.append(value_case("5000-digit-name", ("metadata", "name"), "9" * 5000, "number-too-large",
                        "takes a number that large; if it is text, quote it"))
CASES.append(value_case("impossible-date", ("spec", "kubernetes", "version"), "2024-13-45", "yaml-value",
                        'YAML reads 2024-13-45 as a date'))
CASES.append(value_case("duration-beyond-go", ("spec", "bootstrap", "tokenTTL"), "9999999999h", "duration-range"))
CASES.append(value_case("duration-5000-digits", ("spec", "bootstrap", "tokenTTL"), "9" * 5000 + "h",
                        "schema-maxlength", "longer than the maximum of 32 characters"))
CASES.append(value_case("version-5000-digits", ("spec", "kubernetes", "version"), '"1.' + "3" * 5000 + '.0"',
                        "schema-maxlength"))
CASES.append(value_case("vmid-beyond-proxmox", ("spec", "image", "proxmox", "firstVmId"), "999999999",
                        "vmid-range", "node w1 would get Proxmox VM id 1000000000, above Proxmox's largest"))
CASES[-1].at = emit()[1][("spec", "nodes", 1, "name")]  # the node whose id is too large

# 12. a string field that YAML read as something else: say what it read, and to quote it
for path, source, says in [
    (("spec", "kubernetes", "version"), "1.36", 'YAML read 1.36 as a number; quote it: "1.36"'),
    (("spec", "kubernetes", "version"), "1.30", 'YAML read 1.30 as the number 1.3; quote it: "1.30"'),
    (("spec", "containerd", "version"), "2.2", 'YAML read 2.2 as a number; quote it: "2.2"'),
    (("metadata", "name"), "yes", 'YAML read yes as the boolean true; quote it: "yes"'),
    (("metadata", "name"), "off", 'YAML read off as the boolean false; quote it: "off"'),
    (("metadata", "name"), "~", 'YAML read ~ as nothing (null); quote it: "~"'),
    (("metadata", "name"), "010", 'YAML read 010 as the number 8; quote it: "010"'),
    (("metadata", "name"), "2024-01-01", 'YAML read 2024-01-01 as a date; quote it: "2024-01-01"'),
    (("spec", "nodes", 0, "mac"), "52:54:00:12:34:56",
     'YAML read 52:54:00:12:34:56 as the number 41135085296; quote it: "52:54:00:12:34:56"'),
    (("spec", "nodes", 0, "labels", "example.com/zone"), "true", 'YAML read true as the boolean true; quote it'),
    (("spec", "network", "nameservers", 0), "1.1", 'YAML read 1.1 as a number; quote it: "1.1"'),
]:
    CASES.append(value_case(f"yaml-read-{source}-as-{dotted(path)}", path, source, "schema-type", says))

# 4. and 17. the file itself
CASES += [
    Case("fifo", "file-not-regular", make="fifo", positioned=False, says="is a named pipe, not a regular file"),
    Case("dev-zero", "file-not-regular", make="dev:/dev/zero", positioned=False, says="a character device"),
    Case("dev-urandom", "file-not-regular", make="dev:/dev/urandom", positioned=False, says="a character device"),
    Case("dev-null", "file-not-regular", make="dev:/dev/null", positioned=False, says="a character device"),
    Case("symlink-to-dev-zero", "file-not-regular", make="link:/dev/zero", positioned=False),
    Case("symlink-loop", "file-symlink-loop", make="loop", positioned=False, says="symlink loop"),
    Case("dangling-symlink", "file-missing", make="dangling", positioned=False, says="which does not exist"),
    Case("directory", "file-directory", make="dir", positioned=False),
    Case("huge-sparse-file", "file-too-large", make="huge", at=(1, 1)),
    Case("utf16-le-bom", "file-encoding", _text.encode("utf-16"), at=(1, 1), says="UTF-16 (little-endian)"),
    Case("utf16-le", "file-encoding", _text.encode("utf-16-le"), at=(1, 1), says="UTF-16 (little-endian)"),
    Case("utf16-be-bom", "file-encoding", b"\xfe\xff" + _text.encode("utf-16-be"), at=(1, 1),
         says="UTF-16 (big-endian)"),
    Case("utf16-be", "file-encoding", _text.encode("utf-16-be"), at=(1, 1), says="UTF-16 (big-endian)"),
    Case("utf32-le-bom", "file-encoding", _text.encode("utf-32"), at=(1, 1), says="UTF-32 (little-endian)"),
    Case("utf32-le", "file-encoding", _text.encode("utf-32-le"), at=(1, 1), says="UTF-32 (little-endian)"),
    Case("utf32-be-bom", "file-encoding", b"\x00\x00\xfe\xff" + _text.encode("utf-32-be"), at=(1, 1),
         says="UTF-32 (big-endian)"),
    Case("utf32-be", "file-encoding", _text.encode("utf-32-be"), at=(1, 1), says="UTF-32 (big-endian)"),
    Case("latin1", "file-encoding", _text.replace("# ", "").replace("lab", "läb").encode("latin-1"),
         at=(_name_line, _name_col + 1), says="not UTF-8"),
    Case("binary-elf", "file-binary", b"\x7fELF\x02\x01\x01\x00" + bytes(200), at=(1, 1)),
    # the root mapping is the first level, the 64th '[' the 65th
    Case("deep-flow-nesting", "yaml-too-deep", b"a: " + b"[" * 100_000 + b"]" * 100_000, at=(1, 3 + 63 + 1)),
    Case("deep-block-nesting", "yaml-too-deep", b"- " * 100_000 + b"x\n", at=(1, 2 * 64 + 1)),
    Case("recursive-alias", "yaml-too-deep", b"a: &a [*a]\n"),
    Case("300k-keys", "yaml-too-large", b"".join(b"k%d: 1\n" % i for i in range(300_000)),
         says="the file holds more than 200,000 values"),
    Case("300k-list", "yaml-too-large", b"a: [" + b"1," * 300_000 + b"]", says="the file holds more than"),
    Case("alias-bomb", "yaml-too-large", (ROOT / "tests/data/bad/yaml-bomb.yaml").read_bytes(),
         says="anchors and aliases"),
    Case("alias-bomb-of-text", "yaml-too-large",
         b"a: &a '" + b"x" * 1_000_000 + b"'\nb: &b [" + b"*a," * 100 + b"]\nc: [" + b"*b," * 400 + b"]\n",
         says="characters of text"),
    Case("10MB-name", "schema-format", _text.replace("name: lab", "name: " + "a" * 10_000_000).encode(),
         at=(_name_line, _name_col), says="aaaa…', not an RFC 1123 label"),
]

IDS = [c.id for c in CASES]
assert len(IDS) == len(set(IDS)), "duplicate case ids"


def materialize(case: Case, folder: Path) -> Path:
    path = folder / "cluster.yaml"
    if case.content is not None:
        path.write_bytes(case.content)
    elif case.make == "fifo":
        os.mkfifo(path)
    elif case.make.startswith("dev:"):
        return Path(case.make[4:])
    elif case.make.startswith("link:"):
        path.symlink_to(case.make[5:])
    elif case.make == "loop":
        path.symlink_to(folder / "other.yaml")
        (folder / "other.yaml").symlink_to(path)
    elif case.make == "dangling":
        path.symlink_to(folder / "nowhere.yaml")
    elif case.make == "dir":
        path.mkdir()
    elif case.make == "huge":
        with open(path, "wb") as f:
            f.truncate(33 * 1024 * 1024)  # sparse: 33 MiB that st_size reports and reads return
    else:  # pragma: no cover
        raise AssertionError(case.make)
    return path


def diagnostics_of(path: Path) -> list:
    """What `bakery validate` reports for the file: the diagnostics the CLI prints, one line each."""
    from bakery.errors import InputError
    from bakery.spec.pipeline import check_file

    try:
        loaded = check_file(str(path))
    except InputError as exc:
        return exc.diagnostics
    return loaded.report.errors


def assert_clean_line(line: str) -> None:
    assert line.isprintable(), f"a raw control character in: {line!r}"
    assert len(line) < 2000, f"a line of {len(line):,} characters"


def assert_refused(case: Case, path: Path, lines: list[str]) -> None:
    assert lines, f"{case.id}: accepted"
    for line in lines:
        assert_clean_line(line)
    mine = [line for line in lines if f"error[{case.check}]" in line]
    assert mine, f"{case.id}: expected {case.check}, got {lines}"
    line = mine[0]
    if case.positioned:
        m = re.match(re.escape(str(path)) + r":(\d+):(\d+): error\[", line)
        assert m, f"{case.id}: no file:line:col in {line!r}"
        if case.at:
            assert (int(m.group(1)), int(m.group(2))) == case.at, f"{case.id}: {line!r}, expected {case.at}"
    else:
        assert str(path) in line, line
    assert case.says in line, f"{case.id}: {case.says!r} not in {line!r}"


def test_the_base_cluster_is_valid(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(emit()[0])
    assert diagnostics_of(path) == []


def test_corpus_is_large_and_covers_every_item():
    assert len(CASES) >= 60
    checks = {c.check for c in CASES}
    assert {"control-character", "number-form", "number-too-large", "file-not-regular", "file-symlink-loop",
            "file-encoding", "yaml-too-large", "yaml-too-deep", "schema-type"} <= checks


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus_case(case: Case, tmp_path):
    """One attack: refused with one clean line naming the place and the check."""
    path = materialize(case, tmp_path)
    # in a thread, so that a loader that blocks (a FIFO without a writer) fails the case, not the run
    result: list = []
    worker = threading.Thread(target=lambda: result.append([str(d) for d in diagnostics_of(path)]), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), f"{case.id}: still reading after 20 s"
    assert result, f"{case.id}: the loader raised instead of reporting (see the thread's traceback)"
    assert_refused(case, path, result[0])


# -- the real command line, for a representative subset -------------------------------------------

CLI_CASES = ["newline-end-metadata.name", "newline-end-spec.nodes[0].address", "control-in-name-U+001B",
             "control-in-key", "raw-U+001B-in-value", "raw-NUL-after-8KiB", "010-in-spec.cni.calico.mtu",
             "5000-digits-in-spec.image.cpus", "yaml-read-1.36-as-spec.kubernetes.version", "fifo", "dev-zero",
             "dev-urandom", "symlink-loop", "utf16-le", "deep-flow-nesting", "alias-bomb"]


def bakery_cli(*args, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """`python -m bakery ARGS` in a new interpreter (bytes, so that nothing is decoded away),
    with this checkout first on the path whatever the working folder."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "bakery", *map(str, args)], capture_output=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in CLI_CASES], ids=lambda c: c.id)
def test_cli_refuses(case: Case, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = materialize(case, work)
    before = sorted(p.name for p in work.iterdir())
    out = tmp_path / "out"
    for args in (["validate", path], ["render", path, "--out", out]):
        start = time.monotonic()
        r = bakery_cli(*args, cwd=work)
        assert time.monotonic() - start < 15, f"{args[0]} {case.id} took {time.monotonic() - start:.0f}s"
        assert r.returncode == 2, (args[0], r.stdout, r.stderr)
        assert b"Traceback" not in r.stderr
        stderr = r.stderr.decode("utf-8")  # strict: bakery writes UTF-8, nothing half-escaped
        lines = stderr.splitlines()
        assert not any(b in r.stderr + r.stdout for b in [bytes([c]) for c in range(32) if c != 10] + [b"\x7f"])
        errors = [line for line in lines if "error[" in line]
        assert_refused(case, path, errors)
    assert not out.exists(), "render wrote its output folder"
    assert sorted(p.name for p in work.iterdir()) == before, "something was written beside the file"
    assert not (work / "outputs").exists()


def test_fifo_with_a_writer_that_never_ends_is_refused_at_once(tmp_path):
    """A FIFO someone writes to forever: refused without reading a byte, in a second."""
    fifo = tmp_path / "cluster.yaml"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"exec yes 'a: b' > '{fifo}'"], stderr=subprocess.DEVNULL)
    try:
        start = time.monotonic()
        r = bakery_cli("validate", fifo, cwd=tmp_path, timeout=20)
        assert time.monotonic() - start < 10
        assert r.returncode == 2 and b"error[file-not-regular]" in r.stderr, r.stderr
    finally:
        writer.kill()
        writer.wait()


# -- the pieces under the corpus ------------------------------------------------------------------

def _patterns(schema, path="$"):
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            yield path, schema["pattern"]
        for k, v in schema.items():
            yield from _patterns(v, f"{path}.{k}")


def test_every_schema_pattern_refuses_a_trailing_newline_by_itself():
    """The ECMA-262 reading of the schema's patterns, without the control-character pass: a
    valid value passes, the same with a final newline does not (Python's `$` let it pass)."""
    from jsonschema import Draft202012Validator

    from bakery.resources import cluster_schema
    from bakery.spec import validate

    schema = cluster_schema()
    seen = 0
    for path in PATTERN_FIELDS:
        sub = schema
        for part in path:
            sub = sub["items"] if isinstance(part, int) else (
                sub.get("properties", {}).get(part) or sub["additionalProperties"])
        good = base_value(path)
        ours = validate.validator_class()(sub)
        assert ours.is_valid(good), (path, good)
        assert not ours.is_valid(good + "\n"), path
        assert Draft202012Validator(sub).is_valid(good + "\n"), path  # what Python's `$` let through
        seen += 1
    assert seen == len(PATTERN_FIELDS)
    # keys too: propertyNames goes through the same keyword
    labels = schema["properties"]["spec"]["properties"]["nodes"]["items"]["properties"]["labels"]
    assert not validate.validator_class()(labels).is_valid({"zone\n": "a"})


def test_code_matches_names_to_their_true_end():
    from bakery.spec.checks import DNS_SUBDOMAIN

    assert DNS_SUBDOMAIN.fullmatch("api.example.com")
    assert not DNS_SUBDOMAIN.fullmatch("api.example.com\n") and not DNS_SUBDOMAIN.match("api\n")


def test_every_schema_pattern_translates():
    from bakery.resources import cluster_schema
    from bakery.spec.validate import ecma_to_python

    found = list(_patterns(cluster_schema()))
    assert len(found) >= 30
    for where, pattern in found:
        translated = ecma_to_python(pattern)
        assert "$" not in translated.replace("\\$", ""), where
        re.compile(translated)


# Cases of the JSON-Schema-Test-Suite, tests/draft2020-12/optional/ecmascript-regex.json (the
# semantics of ECMA-262 patterns that Python's re does not share), as (pattern, string, valid).
ECMA_CASES = [
    ("^abc$", "abc\n", False), ("^abc$", "abc", True),
    ("^\\d$", "0", True), ("^\\d$", "\u07c0", False), ("^\\D$", "\u07c0", True), ("^\\D$", "0", False),
    ("^\\w$", "a", True), ("^\\w$", "\u00e9", False), ("^\\W$", "\u00e9", True),
    ("^\\s$", " ", True), ("^\\s$", "\t", True), ("^\\s$", "\u000b", True), ("^\\s$", "\u00a0", True),
    ("^\\s$", "\ufeff", True), ("^\\s$", "\u2029", True), ("^\\s$", "\u2003", True), ("^\\s$", "\u0001", False),
    ("^\\s$", "\u2013", False), ("^\\S$", "\ufeff", False), ("^\\S$", "\u0001", True),
    ("^\\d+$", "42", True), ("^\\d+$", "\u09ea\u09e8", False), ("[a-z]cole", "l'\u00e9cole", False),
    # and `.`, which stops at ECMA's line terminators (ECMA-262 22.2.2.9)
    ("^a.b$", "a\u2028b", False), ("^a.b$", "a\rb", False), ("^a.b$", "axb", True),
]


@pytest.mark.parametrize(("pattern", "text", "valid"), ECMA_CASES)
def test_patterns_have_ecma_262_semantics(pattern, text, valid):
    from bakery.spec.validate import validator_class

    assert validator_class()({"pattern": pattern}).is_valid(text) is valid


def test_untranslatable_escapes_are_refused():
    from bakery.spec.validate import ecma_to_python

    for pattern in ("\\bword", "[\\D]", "\\p{Letter}", "[]", "a[^]"):
        with pytest.raises(ValueError):
            ecma_to_python(pattern)


def test_a_multiline_field_takes_newlines_and_tabs_only():
    """The control-character pass is general: a field the schema marks x-multiline takes LF and
    HT (no field does today), but no other control character."""
    from bakery.spec import validate
    from bakery.spec.loader import load_text

    schema = {"type": "object", "properties": {"notes": {"type": "string", "x-multiline": True},
                                               "name": {"type": "string"}}}
    doc = load_text('notes: "one\\ntwo\\tthree"\nname: "a\\nb"\n')
    found, values, _ = validate._prepass(doc, schema)
    assert values == {("name",)} and [d.check for d in found] == ["control-character"]
    doc = load_text('notes: "one\\etwo"\n')
    found, values, _ = validate._prepass(doc, schema)
    assert values == {("notes",)}


def test_every_integer_in_the_schema_is_bounded():
    from bakery.resources import cluster_schema

    def walk(s, path="$"):
        if isinstance(s, dict):
            types = s.get("type") if isinstance(s.get("type"), list) else [s.get("type")]
            if "integer" in types:
                yield path, s
            for k, v in s.items():
                yield from walk(v, f"{path}.{k}")

    found = list(walk(cluster_schema()))
    assert len(found) == len(INTEGER_FIELDS)
    for path, s in found:
        assert "minimum" in s and "maximum" in s, path


def test_a_number_read_right_is_kept():
    """The refusals stop at what is wrong: decimal integers, and quoted numbers in strings, pass."""
    from bakery.spec.loader import load_text
    from bakery.spec.validate import schema_diagnostics

    text, _, _ = emit({("spec", "image", "cpus"): "+4", ("spec", "nodes", 0, "generation"): "0",
                       ("spec", "nodes", 0, "labels", "example.com/zone"): '"010"'})
    assert schema_diagnostics(load_text(text)) == []


def test_diagnostics_never_print_a_raw_control_character():
    from bakery.errors import Diagnostic, EnvError, Position

    d = Diagnostic("x", "bad \x1b[31mred\x07", Position("a\nb.yaml", 1, 2), hint="\u202etxt")
    assert str(d) == "a\\nb.yaml:1:2: error[x]: bad \\x1b[31mred\\x07; \\u202etxt"
    assert str(EnvError("one\x1b\ntwo")) == "one\\x1b\ntwo"

