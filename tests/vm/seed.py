"""NoCloud seed ISOs for the test VMs, written with pycdlib (volume id CIDATA, Joliet + Rock Ridge).

The seed's user-data, meta-data and network-config are bakery's output and go on the ISO
byte for byte. To make the VM power off when its first boot is done, the test adds a
separate ``vendor-data`` file (POWEROFF_VENDOR_DATA): cloud-init merges vendor-data under
user-data, so bakery's user-data stays untouched. (A runcmd ``poweroff`` would kill
cloud-init's final stage before it records its result; power_state waits for it.)
"""
from __future__ import annotations

import io
from pathlib import Path

POWEROFF_VENDOR_DATA = b"#cloud-config\npower_state: {mode: poweroff, delay: now, condition: true}\n"

SEED_FILES = ("user-data", "meta-data", "network-config")


def write_iso(dest: Path, files: dict[str, bytes]) -> Path:
    """Write an ISO 9660 image with volume id CIDATA holding files (name -> content)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="CIDATA")
    try:
        for name, content in sorted(files.items()):
            iso9660 = "/" + name.upper().replace("-", "_") + ".;1"
            iso.add_fp(io.BytesIO(content), len(content), iso9660, rr_name=name, joliet_path="/" + name)
        iso.write(str(dest))
    finally:
        iso.close()
    return dest


def seed_iso(dest: Path, seed_dir: Path | None = None, *, files: dict[str, bytes] | None = None,
             poweroff: bool = True) -> Path:
    """A NoCloud ISO from a rendered node folder (seed_dir/{user-data,meta-data,network-config})
    or from files; with poweroff, plus POWEROFF_VENDOR_DATA as vendor-data."""
    content: dict[str, bytes] = {}
    if seed_dir is not None:
        for name in SEED_FILES:
            path = Path(seed_dir) / name
            if path.exists():
                content[name] = path.read_bytes()
        if "user-data" not in content or "meta-data" not in content:
            raise FileNotFoundError(f"{seed_dir} has no user-data/meta-data")
    content.update(files or {})
    if poweroff:
        if "vendor-data" in content:
            raise ValueError("the seed already has a vendor-data file")
        content["vendor-data"] = POWEROFF_VENDOR_DATA
    return write_iso(Path(dest), content)


def read_iso(path: Path) -> dict[str, bytes]:
    """The files of an ISO by their Rock Ridge names (to check what was written)."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = {}
        for child in iso.list_children(rr_path="/"):
            if child.is_dot() or child.is_dotdot():
                continue
            name = child.rock_ridge.name().decode()
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path="/" + name)
            out[name] = buf.getvalue()
        return out
    finally:
        iso.close()
