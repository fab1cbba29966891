"""Every OS x firmware x builder combination, and arm64 on QEMU and Proxmox VE (issue 21),
rendered and checked against the plugins' HCL2 specs (tests/data/specs/packer-*.json) and
the rules the plugins apply when they prepare a source, which the specs cannot express.

The rules are the plugins' own, read at the tags the specs come from, and their hosts':
- virtualbox-iso v1.1.5 builder/virtualbox/iso/builder.go: firmware is "bios" or "efi";
- proxmox-iso v1.2.4 builder/proxmox/common/config.go: efi_config needs efi_storage_pool,
  efi_type is 2m or 4m; cloud_init_disk_type is ide, scsi or sata. bios passes through to
  qemu-server, which takes seabios or ovmf; the plugin does not pair bios = "ovmf" with an
  efi_config, bakery does (stricter: OVMF without an EFI disk keeps no boot entry); qemu-server
  gives an aarch64 guest no IDE bus (packer-plugin-proxmox #187, #263);
- qemu v1.1.4 builder/qemu/config.go and step_run.go: efi_boot takes its code and variable
  files; a `-device` in qemuargs replaces the plugin's devices but the NIC, so every CD drive
  the plugin attaches (drive ids cdrom0, cdrom1 with cdrom_interface virtio-scsi) needs its
  scsi-cd there.
"""
from __future__ import annotations

import pytest
from test_packer import variant_text

from bakery import versions
from bakery.providers import qemu as qemu_provider

from hclspec import check_packer_dir, labelled, value

BUILDERS = ("virtualbox-iso", "proxmox-iso", "qemu")
CASES = ([(os, "amd64", fw, b) for os in versions.OS_RELEASES for fw in versions.FIRMWARES for b in BUILDERS]
         + [(os, "arm64", "uefi", b) for os in versions.OS_RELEASES for b in ("proxmox-iso", "qemu")])


def text_for(os: str, arch: str, firmware: str, builder: str) -> str:
    return variant_text(os=os, builders=(builder,), image_extra=f"\n    arch: {arch}\n    firmware: {firmware}")


def plugin_rules(btype: str, body: dict, arch: str, cd_content: bool) -> list[str]:
    """What the plugin's Prepare (and the hypervisor) refuse, for the attributes issue 21 adds."""
    errors = []
    if btype == "virtualbox-iso":
        if body.get("firmware", "bios") not in ("bios", "efi"):
            errors.append("firmware can only be bios or efi")
    elif btype == "proxmox-iso":
        if body.get("bios", "seabios") not in ("seabios", "ovmf"):
            errors.append("bios must be seabios or ovmf")
        efi = (body.get("efi_config") or [{}])[0]
        efi = {k: value(v) for k, v in efi.items() if not k.startswith("__")}
        if efi and not efi.get("efi_storage_pool"):
            errors.append("efi_storage_pool not set for efi_config")
        if efi.get("efi_type", "4m") not in ("2m", "4m"):
            errors.append("efi_type must be 2m or 4m")
        if (body.get("bios") == "ovmf") != bool(efi):
            errors.append("OVMF keeps its variables on the EFI disk efi_config makes (and only OVMF needs one)")
        if body.get("cloud_init_disk_type", "ide") not in ("ide", "scsi", "sata"):
            errors.append("cloud_init_disk_type must be ide, scsi or sata")
        buses = [body.get("cloud_init_disk_type", "ide")]
        buses += [{k: value(v) for k, v in b.items()}.get("type", "ide")
                   for key in ("boot_iso", "additional_iso_files") for b in body.get(key) or []]
        if arch == "arm64" and "ide" in buses:
            errors.append("Bus 'ide.1' not found: an aarch64 guest has no IDE")
    else:
        if body.get("efi_boot") and not (body.get("efi_firmware_code") and body.get("efi_firmware_vars")):
            errors.append("efi_boot without explicit firmware files uses the 2 MB OVMF defaults, gone from current hosts")
        if arch == "arm64":
            if body.get("qemu_binary") != "qemu-system-aarch64" or body.get("machine_type") != "virt":
                errors.append("arm64 needs qemu-system-aarch64 and the virt machine")
            if not body.get("cpu_model"):
                errors.append("virt's default CPU under TCG is the 32-bit cortex-a15")
            if not body.get("efi_boot"):
                errors.append("virt boots UEFI firmware only")
            devices = [a[1] for a in body.get("qemuargs") or [] if a[0] == "-device"]
            if devices:
                cds = ["cdrom0", "cdrom1"] if cd_content else ["cdrom0"]
                if body.get("cdrom_interface") == "virtio-scsi":
                    missing = [d for d in cds if not any(x.startswith("scsi-cd") and f"drive={d}" in x for x in devices)]
                    if missing or not any(x.startswith("virtio-scsi-pci") for x in devices):
                        errors.append(f"qemuargs -device drops the plugin's virtio-scsi CD devices: {missing}")
                if not any(x.startswith("usb-kbd") for x in devices):
                    errors.append("no keyboard for the boot command on virt")
    return errors


@pytest.mark.parametrize("os,arch,firmware,builder", CASES, ids=lambda x: str(x))
def test_every_platform_renders_what_its_builder_accepts(renders, os, arch, firmware, builder):
    out = renders.text(text_for(os, arch, firmware, builder))
    merged, errors = check_packer_dir(out / "packer")
    assert errors == []
    (labels, body), = labelled(merged.get("source"), 2)
    assert labels[0] == builder
    body = {k: (v if k in ("efi_config", "boot_iso", "additional_iso_files") else value(v)) for k, v in body.items()}
    assert plugin_rules(builder, body, arch, cd_content="cd_content" in body) == []
    uefi = firmware == "uefi"
    if builder == "virtualbox-iso":
        assert body["firmware"] == ("efi" if uefi else "bios")
    elif builder == "proxmox-iso":
        assert body["bios"] == ("ovmf" if uefi else "seabios")
    else:
        assert bool(body.get("efi_boot")) == uefi
    # the ISO for the architecture, and an image name that says it
    variables = {labels[0]: b for labels, b in labelled(merged.get("variable"), 1)}
    urls = value(variables["iso_urls"]["default"])
    assert all(arch in u.rsplit("/", 1)[1] for u in urls), urls
    versions_env = (out / "packer/files/opt/bakery/versions.env").read_text()
    assert ("-arm64-" in versions_env) == (arch == "arm64")


def test_the_platform_rules_can_fail():
    """Each rule above refuses the input it is about."""
    assert plugin_rules("virtualbox-iso", {"firmware": "uefi"}, "amd64", True)
    assert plugin_rules("proxmox-iso", {"bios": "ovmf"}, "amd64", True)
    assert plugin_rules("proxmox-iso", {"bios": "ovmf", "efi_config": [{"efi_type": '"4m"'}]}, "amd64", True)
    assert plugin_rules("proxmox-iso", {"cloud_init_disk_type": "scsi", "bios": "ovmf",
                                        "efi_config": [{"efi_storage_pool": '"x"'}],
                                        "boot_iso": [{"type": '"ide"'}]}, "arm64", True)
    assert plugin_rules("qemu", {"efi_boot": True}, "amd64", True)
    good = dict(qemu_provider.ARM64, efi_boot=True, efi_firmware_code="c", efi_firmware_vars="v",
                cdrom_interface="virtio-scsi", qemuargs=qemu_provider.arm64_qemuargs(True))
    assert plugin_rules("qemu", good, "arm64", True) == []
    assert plugin_rules("qemu", dict(good, qemuargs=qemu_provider.arm64_qemuargs(False)), "arm64", True)
    assert plugin_rules("qemu", dict(good, cpu_model=""), "arm64", True)


@pytest.mark.parametrize("os,builders", [("ubuntu-24.04", "[virtualbox-iso]"), ("debian-13", None)])
def test_arm64_on_virtualbox_and_bios_on_arm64_are_refused(tmp_path, os, builders):
    from conftest import bakery_forked

    src = tmp_path / "c.yaml"
    text = variant_text(os=os, image_extra="\n    arch: arm64")
    if builders is None:  # the default builders include virtualbox-iso
        text = text.replace("    builders: [virtualbox-iso, proxmox-iso, qemu]\n", "")
    src.write_text(text)
    r = bakery_forked("validate", str(src))
    assert r.returncode == 2 and "error[arch-builder]" in r.stderr, r.stderr
    assert "virtualbox-iso" in r.stderr and "Traceback" not in r.stderr
    src.write_text(variant_text(os=os, builders=("qemu",), image_extra="\n    arch: arm64\n    firmware: bios"))
    r = bakery_forked("validate", str(src))
    assert r.returncode == 2 and "error[arch-firmware]" in r.stderr, r.stderr


@pytest.mark.parametrize("os,arch,firmware", [("debian-13", "amd64", "uefi"), ("ubuntu-26.04", "arm64", "uefi"),
                                              ("debian-12", "amd64", "bios")])
def test_uefi_images_keep_grub_at_the_removable_path(renders, os, arch, firmware):
    """05-prepare makes sure of what the node check's `firmware` verifies, with GRUB's own tools
    (grub2's debconf question and grub-install's --force-extra-removable)."""
    import json

    out = renders.text(text_for(os, arch, firmware, "qemu"))
    prepare = (out / "packer/scripts/05-prepare.sh").read_text()
    exp = json.loads((out / "packer/files/opt/bakery/node-check.json").read_text())["platform"]
    # the UEFI spec's removable-media file names (3.5.1.1), grub-install's targets and Debian's
    # grub2 package names, written out here rather than read from bakery's table
    loader, target, package = {"amd64": ("/boot/efi/EFI/BOOT/BOOTX64.EFI", "x86_64-efi", "grub-efi-amd64"),
                               "arm64": ("/boot/efi/EFI/BOOT/BOOTAA64.EFI", "arm64-efi", "grub-efi-arm64")}[arch]
    if firmware == "uefi":
        assert exp["efiBootFile"] == loader
        assert f"grub-install --target={target} --efi-directory=/boot/efi --force-extra-removable" in prepare
        assert f"'{package} grub2/force_efi_extra_removable boolean true'" in prepare
        assert f"test -e {loader}\n" in prepare
    else:
        assert "efiBootFile" not in exp and "grub-install" not in prepare


def test_the_schema_offers_what_the_catalog_has():
    """spec.os, spec.image.arch and spec.image.firmware accept exactly the releases,
    architectures and firmwares bakery/versions.py knows (null: the default)."""
    from bakery.resources import cluster_schema

    spec = cluster_schema()["properties"]["spec"]["properties"]
    image = spec["image"]["properties"]
    assert set(spec["os"]["enum"]) == set(versions.OS_RELEASES)
    assert set(image["arch"]["enum"]) == set(versions.ARCHES) and image["arch"]["default"] == versions.DEFAULT_ARCH
    assert image["firmware"]["enum"] == [*versions.FIRMWARES, None] and image["firmware"]["default"] is None
    # every release offers every architecture, and its default firmware is one of them
    for r in versions.OS_RELEASES.values():
        assert {a for a, _ in r.isos} == set(versions.ARCHES), r.name
        assert r.default_firmware in versions.FIRMWARES
