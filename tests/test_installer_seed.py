"""The installer's seed on a CIDATA CD or over Packer's HTTP server, and Proxmox's installer ISO
in place (issue 19), checked against the plugins' HCL2 specs, the plugins' own rules, cloud-init's
NoCloud datasource and xorriso as Packer runs it."""
from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from test_packer import FAKE_HASH, grub_commands, local_values, templatefile, typed, variant_text

from conftest import bakery_forked, need
from hclspec import check_body, check_packer_dir, labelled, load_spec, value

UBUNTU = ("ubuntu-22.04", "ubuntu-24.04")
OSES = (*UBUNTU, "debian-12")
BUILDERS = ("virtualbox-iso", "proxmox-iso", "qemu")
# None: installerSeed not written (the default, cdrom)
SEEDS = (None, "cdrom", "http")
ISO_FILE = "local:iso/ubuntu-24.04.3-live-server-amd64.iso"


def cluster_text(os: str, seed: str | None = None, proxmox: str = "") -> str:
    extra = f"\n    installerSeed: {seed}" if seed else ""
    if proxmox:
        extra += "\n    proxmox:\n" + textwrap.indent(proxmox, "      ")
    return variant_text(os=os, image_extra=extra)


def packer_of(renders, os, seed=None, proxmox="") -> Path:
    return renders.text(cluster_text(os, seed, proxmox)) / "packer"


def sources(merged) -> dict:
    return {labels[0]: body for labels, body in labelled(merged.get("source"), 2)}


def blocks(body, name) -> list[dict]:
    return [{k: value(v) for k, v in b.items() if not k.startswith("__")} for b in body.get(name, [])]


def cd_expected(os, seed) -> bool:
    """The medium the test expects: the CD unless http is asked for."""
    return seed != "http"


CASES = [(os, seed) for os in OSES for seed in SEEDS]


# --- HCL against the plugins' specs --------------------------------------------------------

@pytest.mark.parametrize("os,seed", CASES)
def test_every_builder_carries_the_seed_its_way(renders, os, seed):
    pdir = packer_of(renders, os, seed)
    merged, errors = check_packer_dir(pdir)
    assert errors == []
    src = sources(merged)
    assert set(src) == set(BUILDERS)
    cd = cd_expected(os, seed)
    loc = local_values(merged)
    assert ("cd_content" in loc, "http_content" in loc) == (cd, not cd)
    for builder, body in src.items():
        attrs = {k: value(v) for k, v in body.items() if not k.startswith("__")}
        extra_isos = blocks(body, "additional_iso_files")
        if not cd:
            assert attrs["http_content"] == "${local.http_content}"
            assert "cd_content" not in attrs and "cd_files" not in attrs and not extra_isos
            continue
        assert "http_content" not in attrs and "http_directory" not in attrs, builder
        if builder == "proxmox-iso":
            # the builder's own CD attributes would be ignored: proxmox-iso's CDs are ISO blocks
            assert "cd_content" not in attrs
            (iso,) = extra_isos
            assert iso == {"type": "ide", "cd_content": "${local.cd_content}", "cd_label": "cidata",
                           "iso_storage_pool": "${var.proxmox_iso_storage}", "unmount": True}
            assert proxmox_prepare_errors(iso, "additional_iso_files") == []
        else:
            assert attrs["cd_content"] == "${local.cd_content}" and attrs["cd_label"] == "cidata"


def test_the_spec_check_can_fail(renders):
    """The judge: proxmox's deprecated `device`, a misspelt attribute, a list for a string."""
    merged, _ = check_packer_dir(packer_of(renders, "ubuntu-24.04"))
    body = sources(merged)["proxmox-iso"]
    spec = load_spec("packer-proxmox-iso.json")["spec"]
    iso = dict(body["additional_iso_files"][0], device='"ide3"')
    errors = check_body({**body, "additional_iso_files": [iso]}, spec, "proxmox")
    assert errors and "deprecated" in errors[0]
    vbox = load_spec("packer-virtualbox-iso.json")["spec"]
    assert check_body({"cd_contents": "${local.cd_content}"}, vbox, "vbox")
    assert check_body({"cd_label": "[]"}, vbox, "vbox") == [] and check_body({"cd_label": ["a"]}, vbox, "vbox")


# --- the plugin's own rules (packer-plugin-proxmox builder/proxmox/{iso,common}/config.go) ----

def proxmox_prepare_errors(iso: dict, where: str) -> list[str]:
    """What proxmox-iso's Prepare refuses in a boot_iso / additional_iso_files block (v1.2.x):
    exactly one of iso_file, iso_url(s), cd_files/cd_content; iso_download_pve only with an
    iso_url(s); iso_url(s) and cd_files/cd_content need iso_storage_pool; type ide|sata|scsi."""
    errors = []
    urls = bool(iso.get("iso_urls") or iso.get("iso_url"))
    cd = bool(iso.get("cd_files") or iso.get("cd_content"))
    if sum([bool(iso.get("iso_file")), urls, cd]) != 1:
        errors.append(f"{where}: one of iso_file, iso_url, or cd_files/cd_content")
    if iso.get("iso_download_pve") and not urls:
        errors.append(f"{where}: iso_download_pve can only be used together with iso_url")
    if (urls or cd) and not iso.get("iso_storage_pool"):
        errors.append(f"{where}: iso_storage_pool must be specified")
    if iso.get("type", "ide") not in ("ide", "sata", "scsi"):
        errors.append(f"{where}: type must be ide, sata or scsi")
    if urls and not iso.get("iso_checksum"):
        errors.append(f"{where}: iso_checksum is required")  # packer-plugin-sdk ISOConfig.Prepare
    return errors


def test_the_plugin_rules_refuse_what_the_plugin_refuses():
    good = {"type": "ide", "iso_urls": ["u"], "iso_checksum": "sha256:x", "iso_storage_pool": "local"}
    assert proxmox_prepare_errors(good, "b") == []
    assert proxmox_prepare_errors({**good, "iso_file": ISO_FILE}, "b")
    assert proxmox_prepare_errors({"iso_file": ISO_FILE, "iso_download_pve": True}, "b")
    assert proxmox_prepare_errors({**good, "iso_storage_pool": ""}, "b")
    assert proxmox_prepare_errors({"cd_content": {"a": "b"}}, "b")
    assert proxmox_prepare_errors({**good, "type": "virtio"}, "b")


@pytest.mark.parametrize("px,expect", [
    ("", {"iso_urls": "${var.iso_urls}", "iso_checksum": "${var.iso_checksum}",
          "iso_storage_pool": "${var.proxmox_iso_storage}"}),
    ("isoDownload: pve", {"iso_urls": "${var.iso_urls}", "iso_checksum": "${var.iso_checksum}",
                          "iso_storage_pool": "${var.proxmox_iso_storage}", "iso_download_pve": True}),
    (f'isoFile: "{ISO_FILE}"', {"iso_file": ISO_FILE}),
    (f'isoFile: "{ISO_FILE}"\nisoDownload: upload', {"iso_file": ISO_FILE}),
])
@pytest.mark.parametrize("os", ["ubuntu-24.04", "debian-12"])
def test_proxmox_boot_iso_in_place(renders, os, px, expect):
    merged, errors = check_packer_dir(packer_of(renders, os, proxmox=px))
    assert errors == []
    (boot,) = blocks(sources(merged)["proxmox-iso"], "boot_iso")
    assert boot == {"type": "ide", **expect, "unmount": True}
    assert proxmox_prepare_errors(boot, "boot_iso") == []
    # the catalog's checksum is the one Packer (upload) or the Proxmox node (pve) checks
    variables = {labels[0]: body for labels, body in labelled(merged.get("variable"), 1)}
    assert re.fullmatch(r"sha256:[0-9a-f]{64}|file:https://\S+", value(variables["iso_checksum"]["default"]))


# --- boot commands ---------------------------------------------------------------------------

NOCLOUD_CMDLINE = """
import json, sys
from cloudinit.sources.DataSourceNoCloud import parse_cmdline_data
fill = {}
found = parse_cmdline_data("ds=nocloud", fill, sys.argv[1])  # the idstr DataSourceNoCloud passes
print(json.dumps([found, fill]))
"""


def nocloud_reads(cmdline: str) -> tuple[bool, dict]:
    """cloud-init's own parse of the kernel command line (DataSourceNoCloud.parse_cmdline_data)."""
    script = need("cloud-init")
    python = Path(script).read_text().splitlines()[0].removeprefix("#!").split()
    r = subprocess.run([*python, "-c", NOCLOUD_CMDLINE, cmdline], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    found, fill = json.loads(r.stdout)
    return found, fill


@pytest.mark.parametrize("os", UBUNTU)
@pytest.mark.parametrize("seed", SEEDS)
def test_ubuntu_boot_command_points_at_the_seed(renders, os, seed):
    boot = value(local_values(check_packer_dir(packer_of(renders, os, seed))[0])["boot_command"])
    assert boot[0] == "c<wait>"  # GRUB's command line
    lines = [line.replace("<wait>", "") for line in typed(boot[1:]).split("<enter>")]
    (words,) = grub_commands(next(line for line in lines if line.startswith("linux ")))
    cmdline = " ".join(words[2:])
    assert words[-1] == "---" and "autoinstall" in words
    found, fill = nocloud_reads(cmdline)
    assert found is True
    if cd_expected(os, seed):
        # no seed address: cloud-init looks for a file system labelled cidata
        assert fill == {} and not any("HTTP" in b for b in boot), boot
    else:
        assert fill == {"seedfrom": "http://10.0.2.2:8123/"}


def test_debian_boot_command_over_http(renders):
    boot = value(local_values(check_packer_dir(packer_of(renders, "debian-12", "http"))[0])["boot_command"])
    words = typed(boot).removeprefix("<esc><wait>").removesuffix("<enter>").split()
    assert words[0] == "auto" and "preseed/url=http://10.0.2.2:8123/preseed.cfg" in words


def debian_cd_cmdline(pdir: Path) -> tuple[str, str]:
    """(label, parameters) typed at the Debian ISO's isolinux prompt for the CD seed."""
    boot = value(local_values(check_packer_dir(pdir)[0])["boot_command"])
    assert boot[0] == "<esc><wait>" and len(boot) == 2, boot
    line = typed(boot[1:])
    assert line.endswith(" <enter>") and line.count("<") == 1, line
    label, _, params = line.removesuffix(" <enter>").partition(" ")
    return label, params


@pytest.mark.parametrize("seed", [None, "cdrom"])
def test_debian_boot_command_loads_the_cd_seed(renders, seed):
    """The shape the kernel and the installer need (what it does: tests/test_vm_debian_seed.py)."""
    label, params = debian_cd_cmdline(packer_of(renders, "debian-12", seed))
    assert label == "install"
    # one quoted value; inside it no quote, newline or `---`, which the kernel, env2debconf
    # (busybox ash's `set` output, single-quoted) and the installer's user-params would split
    m = re.fullmatch(r'priority=critical preseed/early_command="([^"\n]+)"', params)
    assert m, params
    assert "'" not in m.group(1) and "---" not in m.group(1)
    # no word with a dot: the installer's S02module-params would take it for a module parameter
    assert not [w for w in params.split() if "." in w.partition("=")[0]], params
    assert "/media/preseed " in m.group(1) and "debconf-set-selections" in m.group(1)
    # the x86 kernel's command line holds 2048 bytes; the Debian entry's own append line
    # (vga=788 initrd=/install.amd/initrd.gz --- quiet) is about 60
    assert len(params) < 1500


# --- the CD holds what HTTP served, and no secret --------------------------------------------

@pytest.mark.parametrize("os", OSES)
def test_the_cd_holds_what_http_served(renders, os):
    cd_dir, http_dir = packer_of(renders, os), packer_of(renders, os, "http")
    cd = local_values(check_packer_dir(cd_dir)[0])["cd_content"]
    http = local_values(check_packer_dir(http_dir)[0])["http_content"]
    # file names on the CD, URL paths over HTTP; the same templatefile() calls
    # (Debian's is `preseed` on the CD: the loader's words hold no dot, see installer.py)
    names = {"/preseed.cfg": "preseed"}
    assert {k.strip('"'): v for k, v in cd.items()} == {names.get(k.strip('"'), k.strip('"').lstrip("/")): v
                                                         for k, v in http.items()}
    files = ("user-data.pkrtpl", "meta-data") if os in UBUNTU else ("preseed.cfg.pkrtpl",)
    assert set(cd) == ({'"user-data"', '"meta-data"'} if os in UBUNTU else {'"preseed"'})
    assert sorted(p.name for p in (cd_dir / "installer").iterdir()) == sorted(files)
    for name in files:
        assert (cd_dir / "installer" / name).read_bytes() == (http_dir / "installer" / name).read_bytes()


HASH = re.compile(r"\$(2[abxy]|1|5|6|y|gy|7)\$[./0-9A-Za-z$]{8,}")


@pytest.mark.parametrize("os,seed", CASES)
def test_no_password_or_hash_in_any_rendered_file(renders, os, seed):
    root = packer_of(renders, os, seed).parent
    for path in root.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            assert not HASH.search(text), path
    seed_file = next((root / "packer" / "installer").glob("*.pkrtpl"))
    assert "${password_hash}" in seed_file.read_text()
    assert HASH.search(FAKE_HASH), "the judge finds a bcrypt hash"


# --- the CD as Packer builds it, read by cloud-init ------------------------------------------

READ_SEED = """
import json, sys
from cloudinit import util
# DataSourceNoCloud._get_data: what it reads from the mounted file system of the seed
print(json.dumps(util.pathprefix2dict(sys.argv[1], required=["user-data", "meta-data"],
                                      optional=["vendor-data", "network-config"]), default=bytes.decode))
"""


def packer_cd(pdir: Path, tmp_path: Path) -> Path:
    """The seed CD as Packer builds it from cd_content: each file through templatefile() with the
    variables of a real build, then xorriso as packer-plugin-sdk runs it
    (multistep/commonsteps/step_create_cdrom.go: xorriso's genisoimage mode)."""
    xorriso = need("xorriso")
    cd = local_values(check_packer_dir(pdir)[0])["cd_content"]
    src = tmp_path / "cd"
    src.mkdir()
    for key, expr in cd.items():
        name = key.strip('"')
        m = re.search(r'(templatefile|file)\("\$\{path\.root\}/([^"]+)"', expr)
        text = (pdir / m.group(2)).read_text()
        if m.group(1) == "templatefile":
            proxy = "null" if name == "user-data" else ""
            text = templatefile(text, build_user="packer", password_hash=FAKE_HASH, proxy=proxy)
        (src / name).write_text(text)
    iso = tmp_path / "cidata.iso"
    r = subprocess.run([xorriso, "-as", "genisoimage", "-rock", "-joliet", "-volid", "cidata", "-output", str(iso),
                        str(src)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return iso


def read_as_nocloud(iso: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """cloud-init's NoCloud reading of the CD: found by its label as util.find_devs_with
    ("LABEL=cidata") finds it (blkid's LABEL token), then its files as _get_data reads them."""
    xorriso, blkid = need("xorriso"), need("blkid")
    r = subprocess.run([blkid, "-t", "LABEL=cidata", "-o", "device", str(iso)], capture_output=True, text=True)
    assert r.stdout.strip() == str(iso), r.stderr
    out = tmp_path / "mnt"
    r = subprocess.run([xorriso, "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    script = need("cloud-init")
    python = Path(script).read_text().splitlines()[0].removeprefix("#!").split()
    return subprocess.run([*python, "-c", READ_SEED, str(out)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("os", UBUNTU)
def test_cidata_iso_built_as_packer_does_is_a_nocloud_seed(renders, os, tmp_path):
    pdir = packer_of(renders, os)
    r = read_as_nocloud(packer_cd(pdir, tmp_path), tmp_path)
    assert r.returncode == 0, r.stderr
    seed = json.loads(r.stdout)
    assert yaml.safe_load(seed["meta-data"]) == {"instance-id": yaml.safe_load((pdir / "installer" / "meta-data")
                                                                              .read_text())["instance-id"]}
    doc = yaml.safe_load(seed["user-data"])
    assert seed["user-data"].startswith("#cloud-config\n")
    assert doc["autoinstall"]["identity"]["password"] == FAKE_HASH


def test_debian_seed_cd_is_passed_over_by_the_installed_cloud_init(renders, tmp_path):
    """The CD stays attached while the bake runs; the installed Debian's cloud-init must not
    take the preseed CD for a datasource. NoCloud needs meta-data, which the CD lacks."""
    r = read_as_nocloud(packer_cd(packer_of(renders, "debian-12"), tmp_path), tmp_path)
    assert r.returncode != 0 and "Missing required files" in r.stderr, (r.stdout, r.stderr)


# --- validation ------------------------------------------------------------------------------

def _validate(tmp_path, text):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path, bakery_forked("validate", path, cwd=tmp_path)


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_iso_file_and_pve_download_refused_at_the_line(tmp_path):
    text = cluster_text("ubuntu-24.04", proxmox=f'isoFile: "{ISO_FILE}"\nisoDownload: pve')
    path, r = _validate(tmp_path, text)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{path}:{_line(text, 'isoDownload: pve')}:20: error[proxmox-iso-source]: " in r.stderr, r.stderr


def test_cdrom_seed_for_debian_validates(tmp_path):
    for seed in (None, "cdrom", "http"):
        _, r = _validate(tmp_path, cluster_text("debian-12", seed))
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("bad", ["local:iso/../x.iso", "local:images/x.iso", "local:iso/x.img", "iso/x.iso",
                                 "local:iso/x.iso\n", "local:iso/a b.iso"])
def test_iso_file_must_be_a_volume_id(tmp_path, bad):
    _, r = _validate(tmp_path, cluster_text("ubuntu-24.04", proxmox=f"isoFile: {json.dumps(bad)}"))
    assert r.returncode == 2 and "isoFile" in r.stderr, r.stderr
