"""pytest fixtures for the VM tests (import them into a test module: `from vm.fixtures import *`)."""
from __future__ import annotations

import os
import time

import pytest

from . import missing_tools
from .image import BaseImage, base_image, cache_root
from .qemu import VM, accel_name, kill_all

__all__ = ["vm_image", "vm_factory", "say", "TIMINGS"]

TIMINGS: dict[str, float] = {}  # "image": seconds to build or find the cached test image


def say(capsys, text: str) -> None:
    """Print to the terminal even while pytest captures output (timings belong in the log)."""
    with capsys.disabled():
        print(f"\n[vm] {text}", flush=True)


@pytest.fixture(scope="session")
def vm_image() -> BaseImage:
    missing = missing_tools()
    if missing:
        pytest.skip(f"VM tests need {', '.join(missing)} (.ci/run installs qemu-system-x86, "
                    "qemu-utils, debootstrap, e2fsprogs)")
    try:
        import pycdlib  # noqa: F401
    except ImportError:
        pytest.skip("VM tests need pycdlib (pip install -e '.[test]')")
    if os.geteuid() != 0 and not any(cache_root().glob("image-*/DONE")):
        pytest.skip("building the VM test image needs root (debootstrap, chroot)")
    t0 = time.monotonic()
    image = base_image()
    TIMINGS["image"] = time.monotonic() - t0
    return image


@pytest.fixture
def vm_factory(vm_image, tmp_path, capsys):
    """make(name, seed_iso, **kw) -> VM (not started). Every VM is killed when the test ends."""
    made: list[VM] = []

    def make(name: str, seed_iso, **kw) -> VM:
        vm = VM(name=name, image=vm_image, seed_iso=seed_iso, workdir=tmp_path / "vms", **kw)
        made.append(vm)
        return vm

    try:
        yield make
    finally:
        for vm in made:
            vm.kill()
        kill_all()
        for vm in made:
            if vm.elapsed:
                say(capsys, f"{vm.name}: {vm.elapsed:.0f}s under {accel_name()}")
