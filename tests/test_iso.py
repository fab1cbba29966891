"""bakery's seed ISO writer (bakery/deliver/iso.py) against its judges.

- pycdlib, which wrote bakery's seeds until issue 22: for any seed, the writer's bytes are
  exactly pycdlib 1.x's for the same files and dates (so a render after the change keeps
  every seed.iso, and the manifest's hashes, as they were).
- xorriso: reads the volume id, every file by its Rock Ridge, Joliet and ISO 9660 name, and
  finds no error in the image's structures (-check_media).
- cloud-init in a booted VM reads a rendered seed.iso: tests/test_vm_boot.py.
"""
from __future__ import annotations

import io
import random
import re
import subprocess
import time

import pytest

from bakery.deliver import handoff, iso

from conftest import need

EPOCH = handoff.ISO_EPOCH
SIZES = (0, 1, 2, 2047, 2048, 2049, 4095, 4096, 4097)


class _Clock:
    """pycdlib's `time` while an oracle image is made: it reads `epoch`, local time is UTC."""

    def __init__(self, epoch: float):
        self.epoch = epoch

    def time(self) -> float:
        return self.epoch

    def localtime(self, secs=None):
        return time.gmtime(self.epoch if secs is None else secs)

    def __getattr__(self, name):
        return getattr(time, name)


def pycdlib_seed(files: dict[str, bytes], epoch: float, monkeypatch) -> bytes:
    """The seed as bakery made it with pycdlib before issue 22 (same calls, same names)."""
    pytest.importorskip("pycdlib")
    import pycdlib.dates
    import pycdlib.headervd
    import pycdlib.pycdlib
    import pycdlib.utils

    with monkeypatch.context() as m:
        for module in (pycdlib.dates, pycdlib.headervd, pycdlib.pycdlib, pycdlib.utils):
            m.setattr(module, "time", _Clock(epoch))
        image = pycdlib.PyCdlib()
        image.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="CIDATA", sys_ident="LINUX",
                  app_ident_str="BAKERY")
        for name in sorted(files):
            image.add_fp(io.BytesIO(files[name]), len(files[name]), "/" + name.upper().replace("-", "_") + ".;1",
                         rr_name=name, joliet_path="/" + name)
        out = io.BytesIO()
        image.write_fp(out)
        image.close()
    return out.getvalue()


def _random_seeds(rnd: random.Random, names: list[str], count: int):
    for _ in range(count):
        chosen = rnd.sample(names, rnd.randint(1, len(names)))
        yield {n: rnd.randbytes(rnd.choice(SIZES + (rnd.randint(0, 120_000),))) for n in chosen}


def test_the_bytes_are_pycdlibs_for_every_seed(monkeypatch):
    rnd = random.Random(22)
    names = ["user-data", "meta-data", "network-config", "vendor-data"]
    for files in _random_seeds(rnd, names, 150):
        assert iso.nocloud_iso(files, epoch=EPOCH) == pycdlib_seed(files, EPOCH, monkeypatch), \
            {n: len(b) for n, b in files.items()}


def test_the_bytes_are_pycdlibs_whatever_the_names_sort_like(monkeypatch):
    """'-' becomes '_' in the ISO 9660 name, which sorts after the letters there and before
    them in Joliet: the data follows the ISO 9660 order in both."""
    rnd = random.Random(9660)
    names = ["a", "ab", "a-b", "a0", "b", "z", "x-y-z", "abcdefghijklmnopqrstuvwxyz0123", "seed"]
    for files in _random_seeds(rnd, names, 60):
        assert iso.nocloud_iso(files, epoch=EPOCH) == pycdlib_seed(files, EPOCH, monkeypatch), sorted(files)


@pytest.mark.parametrize("epoch", [EPOCH, 1_700_000_000.7, 4_102_444_799.0])
def test_the_dates_are_pycdlibs(epoch, monkeypatch):
    files = {"user-data": b"#cloud-config\n", "meta-data": b"instance-id: a\n"}
    assert iso.nocloud_iso(files, epoch=epoch) == pycdlib_seed(files, epoch, monkeypatch)


def test_a_rendered_seed_is_the_one_pycdlib_made(monkeypatch):
    """What render writes (handoff.seed_iso: the volume id, the fixed epoch) for real seed
    files, not only random bytes."""
    files = {"user-data": b"#cloud-config\nhostname: k8s-master\n" * 700, "meta-data": b"instance-id: i-1\n",
             "network-config": b"network:\n  version: 2\n"}
    assert handoff.seed_iso(files) == pycdlib_seed(files, EPOCH, monkeypatch)


def test_xorriso_reads_every_name_and_finds_no_error(tmp_path):
    xorriso = need("xorriso")
    files = {"user-data": b"u" * 5000, "meta-data": b"instance-id: x\n", "network-config": b"", "vendor-data": b"v"}
    image = tmp_path / "seed.iso"
    image.write_bytes(iso.nocloud_iso(files, epoch=EPOCH))
    info = subprocess.run([xorriso, "-indev", str(image), "-pvd_info"], capture_output=True, text=True,
                          check=True).stdout
    assert re.search(r"^Volume Id\s*:\s*CIDATA$", info, re.M), info
    assert re.search(r"^App Id\s*:\s*BAKERY$", info, re.M), info
    check = subprocess.run([xorriso, "-abort_on", "NEVER", "-indev", str(image), "-check_media", "--"],
                           capture_output=True, text=True)
    assert check.returncode == 0 and "Media check" in check.stderr + check.stdout, check.stderr
    assert not re.search(r"\b(FAILURE|SORRY|MISHAP)\b", check.stderr), check.stderr
    # Rock Ridge names (xorriso's default), then Joliet's alone, then the bare ISO 9660 names
    # (level 3: upper case, '_' for '-'; xorriso drops the ';1')
    for read_fs, names in (("any", sorted(files)), ("norock", sorted(files)),
                           ("ecma119", sorted(n.upper().replace("-", "_") for n in files))):
        dest = tmp_path / read_fs
        r = subprocess.run([xorriso, "-read_fs", read_fs, "-osirrox", "on", "-indev", str(image), "-extract", "/",
                            str(dest)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in dest.iterdir()) == names, read_fs
        for n, stored in zip(names, sorted(files), strict=True):
            assert (dest / n).read_bytes() == files[stored], (read_fs, n)


@pytest.mark.parametrize("name", ["User-data", "user_data", "", "-x", "a" * 31, "../x", "user data"])
def test_a_name_no_seed_has_is_refused(name):
    with pytest.raises(ValueError, match="not a seed file name"):
        iso.nocloud_iso({name: b"x"}, epoch=EPOCH)


def test_more_records_than_one_block_are_refused():
    files = {f"{i:02d}" + "x" * 28: b"" for i in range(40)}
    with pytest.raises(ValueError, match="one block"):
        iso.nocloud_iso(files, epoch=EPOCH)
