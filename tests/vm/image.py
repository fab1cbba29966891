"""The Debian 12 test disk the VM tests boot, built with debootstrap and cached by recipe.

Two layers, each cached under ``$BAKERY_VM_CACHE`` (default ``~/.cache/bakery-vm``) in a
folder named by a hash of its recipe, built in a temporary folder under a lock and renamed
into place only when complete (an interrupted build leaves nothing that looks finished):

1. ``rootfs-<hash>/``: ``debootstrap --variant=minbase`` of bookworm from Debian's mirror with
   PACKAGES, and a small initramfs (``MODULES=list``). Keyed by packages, suite, mirror and
   initramfs settings. About 3 minutes on a fresh machine; the .debs are kept in
   ``debs/`` so a rebuild does not download them again.
2. ``image-<hash>/``: a copy of the rootfs with the test configuration (cloud-init
   ``datasource_list: [ NoCloud, None ]`` and the speed-ups of VM-NOTES), the STAND-INS for
   kubeadm/kubelet/kubectl/crictl, and fake baked content (the Calico manifests under
   plan.CALICO_DIR and the other files plan.py says the image holds), packed into an ext4
   disk (``base.raw``, no partition table) with the kernel and initrd beside it. Keyed by
   layer 1's hash and every file written here. Seconds to rebuild.

THE STAND-INS ARE NOT KUBERNETES. kubeadm, kubelet, kubectl and crictl cannot be installed
offline, so the image has shell scripts under those names that append their argv (and a
copy of every file given with ``--config``/``-f``/``--filename``) to a record under
/var/lib/standin/ and exit 0. They never wait for anything: any waiting a join does is the
seed's own logic.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bakery import plan

from . import tool

SUITE = "bookworm"
MIRROR = os.environ.get("BAKERY_VM_MIRROR", "http://deb.debian.org/debian")
PACKAGES = (
    "systemd-sysv", "udev", "dbus", "linux-image-amd64", "initramfs-tools", "cloud-init",
    # named explicitly: debootstrap does not resolve the virtual package python3-cryptography needs
    "python3-cffi-backend",
    "iproute2", "ifupdown", "isc-dhcp-client", "kmod", "procps", "e2fsprogs",
    # what a baked node image has besides Kubernetes itself
    "containerd", "openssh-server", "sudo", "curl", "ca-certificates", "netcat-openbsd", "systemd-timesyncd",
)
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
DISK_SIZE = "3G"
BASE_HOSTNAME = "bakery-vm-base"

# What records a stand-in call (read back by tests/vm/disk.py's Standin helper).
STANDIN_DIR = "/var/lib/standin"

STANDIN_SCRIPT = r"""#!/bin/bash
# STAND-IN for {name}: installed by bakery's VM tests (tests/vm/image.py). This is NOT {name}.
# It records its arguments, $KUBECONFIG and copies of the files it was pointed at
# (--config F, -f F, --filename F; "-" means stdin) under {rec}/calls/NNN/ and exits 0.
set -u
rec={rec}
mkdir -p "$rec/calls"
n=1
while ! mkdir "$rec/calls/$(printf %03d "$n")" 2>/dev/null; do n=$((n + 1)); done
dir="$rec/calls/$(printf %03d "$n")"
echo {name} > "$dir/tool"
printf '%s\0' "$@" > "$dir/argv"
printf '%s' "${{KUBECONFIG:-}}" > "$dir/kubeconfig-env"
read -r up _ < /proc/uptime
echo "$up" > "$dir/uptime"
echo "$up {name} $*" >> "$rec/calls.log"
i=0
prev=
cfg=
for a in "$@"; do
  f=
  case "$prev" in --config|-f|--filename) f=$a ;; esac
  case "$a" in --config=*|--filename=*) f=${{a#*=}} ;; esac
  if [ -n "$f" ]; then
    i=$((i + 1))
    [ -n "$cfg" ] || cfg=$f
    if [ "$f" = - ]; then
      cat > "$dir/file$i"; printf 'file%s\t-\tstdin\n' "$i" >> "$dir/files"
    elif [ -e "$f" ]; then
      cp -r "$f" "$dir/file$i"; printf 'file%s\t%s\tcopied\n' "$i" "$f" >> "$dir/files"
    else
      printf 'file%s\t%s\tmissing\n' "$i" "$f" >> "$dir/files"
    fi
  fi
  prev=$a
done
{extra}exit 0
"""

# kubeadm init, like the real one, leaves an admin.conf and something answering on the API
# server's port (bindPort of the config, else 6443): a plain TCP listener (nc), so that a
# worker VM on the same virtual network sees the endpoint answer. It serves nothing.
STANDIN_EXTRA = {
    "kubeadm": r"""case "${1:-}" in
  version) echo "stand-in kubeadm (bakery VM test)" ;;
  init)
    port=$(sed -n 's/^ *bindPort: *\([0-9][0-9]*\).*/\1/p' "${cfg:-/dev/null}" 2>/dev/null | head -n 1)
    systemd-run --unit=standin-apiserver --quiet nc -dlk "${port:-6443}" || true
    install -d -m 0755 /etc/kubernetes
    [ -e /etc/kubernetes/admin.conf ] || {
      echo "# STAND-IN admin.conf written by the stand-in kubeadm init (bakery VM test)" > /etc/kubernetes/admin.conf
      chmod 0600 /etc/kubernetes/admin.conf
    } ;;
esac
""",
    "kubectl": 'case "${1:-}" in version) echo "stand-in kubectl (bakery VM test)";; esac\n',
    "kubelet": 'case "${1:-}" in --version) echo "Kubernetes stand-in";; esac\n',
    "crictl": "",
}

KUBELET_UNIT = """\
# STAND-IN kubelet service (bakery VM test): runs the stand-in once, records it, stays "active".
[Unit]
Description=STAND-IN kubelet (bakery VM test; not Kubernetes)

[Service]
Type=oneshot
ExecStart=/usr/bin/kubelet --standin-service
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""

# At shutdown (after cloud-init's final stage, before /run and the network go away) the image
# records the live state the first boot left, so the test can read it offline: cloud-init's own
# verdict (`cloud-init status --long`), addresses, routes, swap, hostname, failed units.
STATE_DIR = f"{STANDIN_DIR}/state"
STATE_SCRIPT = f"""#!/bin/sh
# bakery VM test image: record the live state at shutdown into {STATE_DIR}/ (not part of bakery).
d={STATE_DIR}
mkdir -p "$d"
cloud-init status --long > "$d/cloud-init-status.txt" 2>&1; echo $? > "$d/cloud-init-status.rc"
cp /run/cloud-init/result.json "$d/run-result.json" 2>/dev/null
ip -j addr > "$d/ip-addr.json"
ip -j route > "$d/ip-route.json"
hostname > "$d/hostname"
cat /proc/swaps > "$d/swaps"
systemctl --failed --no-legend --plain > "$d/failed-units.txt" 2>&1
lsmod > "$d/lsmod.txt"
sysctl -a > "$d/sysctl.txt" 2>/dev/null
sync
"""

# On the console once cloud-init's final stage has exited (its result is on disk by then).
CONSOLE_MARK = "bakery-vm-test: cloud-final is over"

STATE_UNIT = f"""\
# bakery VM test image: record the live state when the system shuts down.
[Unit]
Description=bakery VM test: record state at shutdown
After=cloud-final.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo "{CONSOLE_MARK}" > /dev/console'
ExecStop=/usr/local/sbin/standin-record-state
TimeoutStopSec=120

[Install]
WantedBy=cloud-init.target
"""

CLOUD_CFG = """\
# bakery VM test image: NoCloud seeds only, and the speed-ups of /work/shared/VM-NOTES.md
datasource_list: [ NoCloud, None ]
ssh_genkeytypes: [ed25519]
grub_dpkg: {enabled: false}
"""

FAKE_NOTE = "# STAND-IN written by bakery's VM test image (tests/vm/image.py), not the real file\n"


def _fake_baked_files() -> dict[str, tuple[bytes, int]]:
    """What a baked node image holds that a first boot may read (plan.py's paths), faked."""
    files: dict[str, tuple[bytes, int]] = {}
    manifests = sorted({m for release in _calico_releases() for m in release.manifests()})
    for name in manifests:
        body = (FAKE_NOTE + "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                f"  name: standin-{name.replace('.yaml', '').replace('_', '-').lower()}\n"
                "  namespace: default\ndata: {}\n")
        files[f"{plan.CALICO_DIR}/{name}"] = (body.encode(), 0o644)
    files[plan.IMAGES_LIST] = (FAKE_NOTE.encode(), 0o644)
    files[plan.VERSIONS_FILE] = ((FAKE_NOTE + "BAKERY_STANDIN=1\n").encode(), 0o644)
    return files


# The node check (issue 9), as the bake installs it: the program verbatim, the lab's
# expectations, and the kernel files a bake writes (rendered by bakery's own packer renderer),
# so the check runs for real at first boot. The test disk has no real kubeadm, crictl or
# pre-pulled images: those checks are listed in the check's own ignore file, the same
# mechanism an operator uses (like kubeadm's --ignore-preflight-errors); they are tested
# on captured outputs in tests/test_nodecheck.py instead.
NODE_CHECK_IGNORED = ("kubernetes-version", "kubernetes-held", "images", "containerd-socket")


def _node_check_files() -> dict[str, tuple[bytes, int]]:
    import hashlib as _h

    from bakery.guest import nodecheck
    from bakery.image import packer, steps
    from bakery.spec.pipeline import load_cluster

    root = Path(__file__).resolve().parents[2]
    cluster, _ = load_cluster(str(root / "examples" / "lab" / "cluster.yaml"))
    image_plan = plan.image_plan(cluster)
    files: dict[str, tuple[bytes, int]] = {
        plan.NODE_CHECK: (Path(nodecheck.__file__).read_bytes(), 0o755),
        plan.NODE_CHECK_EXPECTED: (json.dumps(plan.node_check_expectations(image_plan), indent=2).encode(), 0o644),
        "/etc/bakery/node-check.ignore": (("# bakery VM test image: what its stand-ins cannot prove\n"
                                           + "\n".join(NODE_CHECK_IGNORED) + "\n").encode(), 0o644),
    }
    rendered = {f.path: f.content for f in packer.render_packer(cluster, image_plan)}
    for path in (steps.MODULES_FILE, steps.SYSCTL_FILE):
        files[path] = (rendered[f"packer/files{path}"], 0o644)
    sums = "".join(f"{_h.sha256(body).hexdigest()}  {Path(name).name}\n"
                   for name, (body, _) in sorted(_fake_baked_files().items()) if name.startswith(plan.CALICO_DIR + "/"))
    files[f"{plan.CALICO_DIR}/SHA256SUMS"] = (sums.encode(), 0o644)
    return files


def _calico_releases():
    from bakery import versions

    return list(versions.CALICO.values())


def _config_files() -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {
        "/etc/cloud/cloud.cfg.d/90_bakery_vm_test.cfg": (CLOUD_CFG.encode(), 0o644),
        "/etc/fstab": (b"/dev/vda / ext4 rw,errors=remount-ro 0 1\n", 0o644),
        "/etc/hostname": (f"{BASE_HOSTNAME}\n".encode(), 0o644),
        "/etc/hosts": (f"127.0.0.1 localhost\n127.0.1.1 {BASE_HOSTNAME}\n".encode(), 0o644),
        "/etc/network/interfaces": (b"auto lo\niface lo inet loopback\n\n"
                                    b"source /etc/network/interfaces.d/*\n", 0o644),
        "/etc/default/locale": (b"LANG=C.UTF-8\n", 0o644),
        "/etc/machine-id": (b"", 0o444),
        "/etc/systemd/system/kubelet.service": (KUBELET_UNIT.encode(), 0o644),
        "/etc/systemd/system/standin-record-state.service": (STATE_UNIT.encode(), 0o644),
        "/usr/local/sbin/standin-record-state": (STATE_SCRIPT.encode(), 0o755),
    }
    for name, extra in STANDIN_EXTRA.items():
        script = STANDIN_SCRIPT.format(name=name, rec=STANDIN_DIR, extra=extra)
        files[f"/usr/bin/{name}"] = (script.encode(), 0o755)
    files.update(_fake_baked_files())
    files.update(_node_check_files())
    return files


def _digest(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=lambda b: hashlib.sha256(b).hexdigest())
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rootfs_recipe() -> dict:
    return {"suite": SUITE, "mirror": MIRROR, "packages": sorted(PACKAGES),
            "initramfs_modules": list(INITRAMFS_MODULES), "layout": 1}


def image_recipe() -> dict:
    files = {p: [hashlib.sha256(c).hexdigest(), m] for p, (c, m) in sorted(_config_files().items())}
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # how the files are laid down
    return {"rootfs": _digest(rootfs_recipe()), "files": files, "size": DISK_SIZE, "code": code}


def cache_root() -> Path:
    root = Path(os.environ.get("BAKERY_VM_CACHE", Path.home() / ".cache" / "bakery-vm"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd, *, log=None, timeout=1200, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if log is not None:
        log.write(f"$ {' '.join(map(str, cmd))}\n{out.stdout}{out.stderr}\n")
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n"
                           f"{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return out


def _cached(name: str, build) -> Path:
    """cache_root()/name, built by build(tmpdir) under a lock into a temp dir, then renamed."""
    root = cache_root()
    final = root / name
    if (final / "DONE").exists():
        return final
    with _lock(root / f"{name}.lock"):
        if (final / "DONE").exists():
            return final
        if final.exists():  # a half-finished folder from a crash before the rename finished
            shutil.rmtree(final)
        for stale in root.glob(f"{name}.tmp-*"):  # builds killed midway (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=root))
        try:
            build(tmp)
            (tmp / "DONE").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def _build_rootfs(tmp: Path) -> None:
    root = tmp / "root"
    debs = cache_root() / "debs"
    debs.mkdir(exist_ok=True)
    with open(tmp / "build.log", "w") as log:
        _run([tool("debootstrap"), "--variant=minbase", "--components=main", f"--cache-dir={debs}",
              "--include=" + ",".join(PACKAGES), SUITE, str(root), MIRROR], log=log, timeout=2400)
        (root / "etc/initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/initramfs-tools/conf.d/bakery-vm-test.conf").write_text("MODULES=list\n")
        with open(root / "etc/initramfs-tools/modules", "a") as fh:
            fh.write("\n".join(INITRAMFS_MODULES) + "\n")
        _run([tool("chroot"), str(root), "update-initramfs", "-u", "-k", "all"], log=log)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (root / junk).glob("*"):
            if p.is_file():
                p.unlink()
    (tmp / "recipe.json").write_text(json.dumps(rootfs_recipe(), indent=2) + "\n")


def rootfs() -> Path:
    """The cached debootstrap tree (layer 1); builds it when missing."""
    return _cached(f"rootfs-{_digest(rootfs_recipe())}", _build_rootfs) / "root"


@dataclass(frozen=True)
class BaseImage:
    """A bootable test disk: an ext4 filesystem image plus the kernel and initrd to boot it."""

    raw: Path
    kernel: Path
    initrd: Path
    recipe_hash: str


def _build_image(tmp: Path) -> None:
    src = rootfs()
    root = tmp / "root"
    with open(tmp / "build.log", "w") as log:
        _run(["cp", "-a", "--reflink=auto", str(src), str(root)], log=log)
        for key in (root / "etc/ssh").glob("ssh_host_*"):  # cloud-init makes the node's own
            key.unlink()
        for path, (content, mode) in _config_files().items():
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink():
                dest.unlink()
            dest.write_bytes(content)
            os.chmod(dest, mode)
        wants = root / "etc/systemd/system/cloud-init.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "standin-record-state.service").symlink_to("/etc/systemd/system/standin-record-state.service")
        dbus_id = root / "var/lib/dbus/machine-id"
        if dbus_id.exists() and not dbus_id.is_symlink():
            dbus_id.unlink()
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise RuntimeError(f"no kernel/initrd in {root}/boot")
        shutil.copy2(kernels[-1], tmp / "vmlinuz")
        shutil.copy2(initrds[-1], tmp / "initrd.img")
        _run(["truncate", "-s", DISK_SIZE, str(tmp / "base.raw")], log=log)
        _run([tool("mkfs.ext4"), "-q", "-F", "-L", "root", "-d", str(root), str(tmp / "base.raw")], log=log)
    shutil.rmtree(root)
    (tmp / "base.raw").chmod(0o444)
    (tmp / "recipe.json").write_text(json.dumps(image_recipe(), indent=2) + "\n")


def _prune_old_images(keep: str, max_age_days: float = 3.0) -> None:
    """Drop images of other recipes built more than a few days ago (the rootfs layer stays)."""
    now = time.time()
    for old in cache_root().glob("image-*"):
        done = old / "DONE"
        if old.name != keep and old.is_dir() and done.exists() \
                and now - done.stat().st_mtime > max_age_days * 86400:
            shutil.rmtree(old, ignore_errors=True)


def base_image() -> BaseImage:
    """The cached, bootable test image (layer 2), built (with layer 1) when missing."""
    h = _digest(image_recipe())
    folder = _cached(f"image-{h}", _build_image)
    _prune_old_images(keep=folder.name)
    return BaseImage(folder / "base.raw", folder / "vmlinuz", folder / "initrd.img", h)


if __name__ == "__main__":  # cd tests && python -m vm.image: build (or find) the image and say where
    t0 = time.monotonic()
    img = base_image()
    print(f"{img.raw} ({time.monotonic() - t0:.1f}s)")
