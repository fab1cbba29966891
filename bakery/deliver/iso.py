"""A NoCloud seed as an ISO 9660 image: a handful of small files at the root of a volume
labelled CIDATA, with Joliet and Rock Ridge names, every date fixed.

The layout is the one pycdlib 1.x writes for `new(interchange_level=3, joliet=3,
rock_ridge="1.09")` and files added at the root (pycdlib made bakery's seeds until issue 22;
tests/test_iso.py holds this writer to pycdlib's bytes, xorriso and the kernel's isofs, through
cloud-init in the VM tests, read it), written in one pass instead of through pycdlib's object
model, which was most of a render's time per node. Sources of the structures, by section:
ECMA-119 (ISO 9660) 8.4 (primary volume descriptor), 8.5 (supplementary: Joliet's escape
sequences %/E for UCS-2 level 3), 8.3 (terminator), 9.1 (directory record), 9.4 (path table);
IEEE P1282 (RRIP 1.09) 4.1.1 PX, 4.1.4 NM, 4.1.6 TF; IEEE P1281 (SUSP 1.09) 5.1 CE, 5.3 SP,
5.5 ER; RRIP 1.09's 'RR' entry (dropped in 1.12) lists the entries present.

Blocks, for n files: 0-15 system area, 16 primary descriptor, 17 Joliet's supplementary
descriptor, 18 terminator, 19 pycdlib's version descriptor (zeros), 20/22 the primary's
L and M path tables, 24/26 Joliet's (two blocks each), 28 the root directory, 29 Joliet's
root directory, 30 the Rock Ridge continuation area (its ER entry), then each file's data
from block 31, in the order of the ISO 9660 names, each starting on a block.
"""
from __future__ import annotations

import re
import struct
import time

BLOCK = 2048
# pycdlib's fixed layout for one root directory (see the module's docstring)
_PVD, _SVD, _TERMINATOR = 16, 17, 18
_PATH_TABLES = {"iso": (20, 22), "joliet": (24, 26)}
_ROOT = {"iso": 28, "joliet": 29}
_CE_BLOCK = 30
_FIRST_DATA = 31

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,29}\Z")  # what a NoCloud seed's files are called

_ER = (b"RRIP_1991A",
       b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS",
       b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY "
       b"VOLUME DESCRIPTOR FOR CONTACT INFORMATION.")
_DIR_MODE = 0o40555  # pycdlib's Rock Ridge modes
_FILE_MODE = 0o100444


def _both16(n: int) -> bytes:
    return struct.pack("<H", n) + struct.pack(">H", n)


def _both32(n: int) -> bytes:
    return struct.pack("<I", n) + struct.pack(">I", n)


def _record_date(tm: time.struct_time) -> bytes:
    """ECMA-119 9.1.5: years since 1900, month, day, hour, minute, second, GMT offset 0."""
    return bytes((tm.tm_year - 1900, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, 0))


def _volume_date(tm: time.struct_time) -> bytes:
    """ECMA-119 8.4.26.1: 16 digits (hundredths 00), then the GMT offset 0."""
    return time.strftime("%Y%m%d%H%M%S00", tm).encode() + b"\0"


def _pad(text: str, size: int, joliet: bool) -> bytes:
    """A space-padded identifier: a-characters, or UCS-2 big-endian (Joliet) with a zero byte
    where the field's size is odd."""
    if not joliet:
        return text.encode("ascii").ljust(size, b" ")
    return text.ljust(size // 2).encode("utf-16-be") + b"\0" * (size % 2)


def _rr_px(mode: int, links: int) -> bytes:
    # RRIP 1.09 4.1.1: mode, links, uid, gid (both-endian; 1.12 adds a serial number, 1.09 has none)
    return b"PX\x24\x01" + _both32(mode) + _both32(links) + _both32(0) + _both32(0)


def _rr_tf(date: bytes) -> bytes:
    # RRIP 1.09 4.1.6: modify, access, attributes (flags 0x0e), short form
    return b"TF\x1a\x01\x0e" + date * 3


def _record(extent: int, size: int, date: bytes, flags: int, ident: bytes, system_use: bytes = b"") -> bytes:
    """ECMA-119 9.1: a directory record, with an odd identifier padded, the system use area
    after it and the whole record padded to an even length."""
    head = 33 + len(ident)
    pad = b"\0" if head % 2 else b""
    length = head + len(pad) + len(system_use)
    trail = b"\0" if length % 2 else b""
    return (bytes((length + len(trail), 0)) + _both32(extent) + _both32(size) + date + bytes((flags, 0, 0))
            + _both16(1) + bytes((len(ident),)) + ident + pad + system_use + trail)


def _descriptor(kind: int, *, blocks: int, path_tables: tuple[int, int], root: bytes, joliet: bool,
                volume: str, system: str, application: str, vdate: bytes) -> bytes:
    """ECMA-119 8.4 (kind 1) and 8.5 (kind 2: Joliet, escape sequence %/E)."""
    escapes = b"%/E".ljust(32, b"\0") if joliet else b"\0" * 32
    lpath, mpath = path_tables
    body = (bytes((kind,)) + b"CD001\x01\0" + _pad(system, 32, joliet) + _pad(volume, 32, joliet) + b"\0" * 8
            + _both32(blocks) + escapes + _both16(1) + _both16(1) + _both16(BLOCK) + _both32(10)
            + struct.pack("<I", lpath) + b"\0" * 4 + struct.pack(">I", mpath) + b"\0" * 4 + root
            + _pad("", 128, joliet) * 3 + _pad(application, 128, joliet) + _pad("", 37, joliet) * 3
            + vdate * 2 + b"0" * 16 + b"\0" + vdate + b"\x01\0" + b" " * 512)
    return body.ljust(BLOCK, b"\0")


def _path_table(extent: int, big_endian: bool) -> bytes:
    """ECMA-119 9.4: the root's one entry (directory number 1, its own parent)."""
    order = ">" if big_endian else "<"
    return b"\x01\0" + struct.pack(order + "I", extent) + struct.pack(order + "H", 1) + b"\0\0"


def nocloud_iso(files: dict[str, bytes], *, epoch: float, volume: str = "CIDATA", system: str = "LINUX",
                application: str = "BAKERY") -> bytes:
    """The image of these files at the root, every date `epoch` (UTC, seconds; pycdlib read
    0 as "no date" and wrote zeros, so 0 is not pycdlib's layout). A file's name is its Rock
    Ridge and Joliet name; its ISO 9660 name is the name upper-cased with '-' as '_' (level
    3, version 1), which is what pycdlib was given."""
    for name in files:
        if not _NAME.match(name):
            raise ValueError(f"seed ISO: {name!r} is not a seed file name ([a-z0-9-], at most 30)")
    tm = time.gmtime(epoch)
    date, vdate = _record_date(tm), _volume_date(tm)
    iso_names = {name: name.upper().replace("-", "_").encode() + b".;1" for name in files}
    order = sorted(files, key=lambda n: iso_names[n])  # ECMA-119 9.3: records sorted by identifier
    extents, at = {}, _FIRST_DATA
    for name in order:
        extents[name] = at if files[name] else 0  # an empty file has no extent (ECMA-119 6.8.1.1)
        at += -(-len(files[name]) // BLOCK)
    blocks = at
    ce = b"CE\x1c\x01" + _both32(_CE_BLOCK) + _both32(0) + _both32(len(_ER_ENTRY))
    iso_root = _ROOT["iso"]
    dot_use = b"SP\x07\x01\xbe\xef\0" + b"RR\x05\x01\x81" + _rr_px(_DIR_MODE, 2) + _rr_tf(date) + ce
    dotdot_use = b"RR\x05\x01\x81" + _rr_px(_DIR_MODE, 2) + _rr_tf(date)
    iso_dir = [_record(iso_root, BLOCK, date, 2, b"\0", dot_use), _record(iso_root, BLOCK, date, 2, b"\1", dotdot_use)]
    for name in order:
        raw = name.encode()
        use = b"RR\x05\x01\x89" + b"NM" + bytes((5 + len(raw), 1, 0)) + raw + _rr_px(_FILE_MODE, 1) + _rr_tf(date)
        iso_dir.append(_record(extents[name], len(files[name]), date, 0, iso_names[name], use))
    jroot = _ROOT["joliet"]
    joliet_dir = [_record(jroot, BLOCK, date, 2, b"\0"), _record(jroot, BLOCK, date, 2, b"\1")]
    for name in sorted(files, key=lambda n: n.encode("utf-16-be")):
        joliet_dir.append(_record(extents[name], len(files[name]), date, 0, name.encode("utf-16-be")))
    iso_bytes, joliet_bytes = b"".join(iso_dir), b"".join(joliet_dir)
    if len(iso_bytes) > BLOCK or len(joliet_bytes) > BLOCK:
        raise ValueError("seed ISO: the root directory holds one block of records")
    image = bytearray(blocks * BLOCK)

    def put(block: int, data: bytes) -> None:
        image[block * BLOCK:block * BLOCK + len(data)] = data

    for kind, which, block in ((1, "iso", _PVD), (2, "joliet", _SVD)):
        root = _record(_ROOT[which], BLOCK, date, 2, b"\0")
        put(block, _descriptor(kind, blocks=blocks, path_tables=_PATH_TABLES[which], root=root,
                               joliet=which == "joliet", volume=volume, system=system,
                               application=application, vdate=vdate))
        lpath, mpath = _PATH_TABLES[which]
        put(lpath, _path_table(_ROOT[which], big_endian=False))
        put(mpath, _path_table(_ROOT[which], big_endian=True))
    put(_TERMINATOR, b"\xffCD001\x01")
    put(iso_root, iso_bytes)
    put(jroot, joliet_bytes)
    put(_CE_BLOCK, _ER_ENTRY)
    for name in order:
        if files[name]:
            put(extents[name], files[name])
    return bytes(image)


# SUSP 1.09 5.5: the ER entry naming RRIP 1.09 (identifier, descriptor, source, version 1)
_ER_ENTRY = (b"ER" + bytes((8 + sum(map(len, _ER)), 1)) + bytes(map(len, _ER)) + b"\x01" + b"".join(_ER))
