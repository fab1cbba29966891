"""A node's root as the baked image leaves it, synthesized from the bake's side of the output
folder, then cloud-init's part of the first boot applied to it.

The image: every file the bake installs verbatim (packer/files), kubeadm, kubelet, kubectl,
crictl and systemctl as the stand-ins (tests/standins), containerd's CRI socket, the runtime's
images (kubeadm's list for the installed version, as `kubeadm config images pull` fetches it,
plus 50-images.sh's list), the pod network plugin's files: the Calico manifests of the release
rebuilt from the identities of their objects at the release tag
(tests/data/specs/calico-manifests-objects.json), flannel's release manifest from
tests/data/specs/flannel-manifests.json, with their SHA256SUMS, the held packages, the enabled units, the kernel modules and sysctls the image's
modules-load.d and sysctl.d set at boot, and no swap.

cloud-init (NoCloud, in its module order): write_files (not deferred), then users (the
default user, its home), then the deferred write_files, then runcmd as the shell script
cloud-init writes from it. Paths, modes, owners and encodings as cloud-init applies them; an
owner that does not exist yet is an error (cloud-init's write_files fails on it).
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shlex
import shutil
import socket
import sys
from pathlib import Path

import yaml

from . import seeds

TESTS = Path(__file__).resolve().parent.parent
SPECS = TESTS / "data" / "specs"
STANDINS = ("kubeadm", "kubelet", "kubectl", "crictl", "systemctl", "sleep", "apt-mark", "dpkg-query", "containerd",
            "helm")


class CloudInitError(Exception):
    """cloud-init would fail this module on this seed."""


def under(root: Path, path: str) -> Path:
    if not path.startswith("/") or ".." in Path(path).parts:
        raise CloudInitError(f"write_files: {path!r} is not an absolute path")
    return root / path.lstrip("/")


def synthesize_calico(release: str, folder: Path, names: list[str]) -> None:
    objects = json.loads((SPECS / "calico-manifests-objects.json").read_text())[release]
    crd = json.loads((SPECS / "calico-installation-crd-openapi.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        docs = []
        for api_version, kind, namespace, obj_name in objects[name]:
            meta = {"name": obj_name} | ({"namespace": namespace} if namespace else {})
            doc: dict = {"apiVersion": api_version, "kind": kind, "metadata": meta}
            if kind == "CustomResourceDefinition":
                plural, _, group = obj_name.partition(".")
                scope = crd["scope"] if obj_name == "installations.operator.tigera.io" else "Cluster"
                doc["spec"] = {"group": group, "names": {"plural": plural}, "scope": scope}
            docs.append(doc)
        (folder / name).write_text(yaml.safe_dump_all(docs))


def synthesize_flannel(release: str, folder: Path, names: list[str]) -> None:
    """The release's kube-flannel.yml rebuilt from tests/data/specs/flannel-manifests.json: every
    object, and in full what the first boot's kustomization patches (the ConfigMap's
    net-conf.json, the DaemonSet's containers)."""
    (name,) = names
    rel = json.loads((SPECS / "flannel-manifests.json").read_text())["releases"][release]
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for api_version, kind, namespace, obj_name in rel["objects"]:
        meta: dict = {"name": obj_name} | ({"namespace": namespace} if namespace else {})
        meta["labels"] = {"k8s-app": "flannel"}
        doc: dict = {"apiVersion": api_version, "kind": kind, "metadata": meta}
        if kind == "Namespace":
            meta["labels"] = rel["namespaceLabels"]
        elif kind == "ConfigMap":
            doc["data"] = {"cni-conf.json": json.dumps(rel["cniConf"], indent=2),
                           "net-conf.json": json.dumps(rel["netConf"], indent=2)}
        elif kind == "DaemonSet":
            doc["spec"] = {"selector": {"matchLabels": rel["selector"]},
                           "template": {"metadata": {"labels": rel["selector"]},
                                        "spec": {"hostNetwork": True, "tolerations": rel["tolerations"],
                                                 "initContainers": rel["initContainers"],
                                                 "containers": rel["containers"]}}}
        docs.append(doc)
    (folder / name).write_text(yaml.safe_dump_all(docs, sort_keys=False))


def synthesize_cni(plugin: str, release: str, folder: Path, names: list[str]) -> None:
    """The plugin's files as the bake stores them, with their SHA256SUMS."""
    SYNTHESIZE[plugin](release, folder, names)
    (folder / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def synthesize_cilium(version: str, folder: Path, names: list[str]) -> None:
    """The chart file the bake stores, rebuilt from what the helm stand-in reads of a chart: its
    Chart.yaml (name cilium, the release's version) and the chart's own values.schema.json
    (tests/data/specs/cilium-values-schema-<version>.json); an empty values.yaml."""
    import io
    import tarfile
    folder.mkdir(parents=True, exist_ok=True)
    chart = version.lstrip("v")
    files = {"cilium/Chart.yaml": yaml.safe_dump({"apiVersion": "v2", "name": "cilium", "version": chart,
                                                  "appVersion": chart, "kubeVersion": ">= 1.21.0-0"}).encode(),
             "cilium/values.yaml": b"{}\n",
             "cilium/values.schema.json": (SPECS / f"cilium-values-schema-{chart}.json").read_bytes()}
    for name in names:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for member, data in files.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        (folder / name).write_bytes(buf.getvalue())


SYNTHESIZE = {"calico": synthesize_calico, "cilium": synthesize_cilium, "flannel": synthesize_flannel}


def runtime_images(out: Path, kubernetes_version: str) -> list[str]:
    sys.path.insert(0, str(TESTS / "standins"))
    try:
        import kubeadm as kubeadm_standin  # the stand-in's table: what `kubeadm config images pull` pulls
    finally:
        sys.path.pop(0)
    kubeadms = kubeadm_standin.images_for(kubernetes_version)
    # 50-images.sh leaves kube-proxy out of kubeadm's list when the pod network replaces it
    if "grep -v '/kube-proxy:'" in (out / "packer" / "scripts" / "50-images.sh").read_text():
        kubeadms = [i for i in kubeadms if "/kube-proxy:" not in i]
    return sorted(set(kubeadms) | set(seeds.bake_images(out)))


def bake(out: Path, root: Path, python: str) -> dict:
    """The image's files under root (a fresh folder); returns what node.json needs of the image."""
    versions = seeds.versions_env(out)
    files = out / "packer" / "files"
    for src in sorted(files.rglob("*")):
        dest = root / src.relative_to(files)
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            dest.chmod(0o755 if "sbin" in src.parts or src.suffix == ".sh" else 0o644)
    for d in ("etc", "root", "home", "tmp", "proc", "sys", "dev", "run", "var/lib", "var/log", "usr", "opt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "root").chmod(0o700)
    (root / "tmp").chmod(0o1777)
    for link in ("bin", "sbin", "lib", "lib64"):
        if (Path("/") / link).is_symlink():
            (root / link).symlink_to(f"usr/{link}")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nadm:x:4:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/fstab").write_text("# /etc/fstab: the installer's root file system only (the bake removed swap)\n")
    # containerd runs: its CRI socket (the [grpc] address of the image's config.toml)
    sock_path = root / "run/containerd/containerd.sock"
    sock_path.parent.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(sock_path.parent)  # a socket's path is limited to 107 bytes; bind it by its name
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(sock_path.name)
        s.close()
    finally:
        os.chdir(here)
    images = runtime_images(out, versions["KUBERNETES_VERSION"])
    (root / "opt/bakery").mkdir(parents=True, exist_ok=True)
    (root / "opt/bakery/images.txt").write_text("".join(i + "\n" for i in images))
    expected = json.loads((files / "opt/bakery/node-check.json").read_text())
    installed_by_the_installer(root, expected)
    synthesize_cni(versions["CNI"], versions["CNI_VERSION"], root / expected["cniDir"].lstrip("/"), expected["cniAssets"])
    kubelet_unit = root / "usr/lib/systemd/system/kubelet.service"  # from the kubelet package
    kubelet_unit.parent.mkdir(parents=True, exist_ok=True)
    kubelet_unit.write_text("[Unit]\nDescription=kubelet (package)\n[Service]\nExecStart=/usr/bin/kubelet\n"
                            "[Install]\nWantedBy=multi-user.target\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "containerd.service").symlink_to("/usr/local/lib/systemd/system/containerd.service")
    (wants / "kubelet.service").symlink_to("/usr/lib/systemd/system/kubelet.service")
    # the kernel the image boots: modules-load.d and sysctl.d applied, no swap
    modules = [ln.strip() for f in sorted((root / "etc/modules-load.d").glob("*.conf"))
               for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for m in modules:
        (root / "sys/module" / m).mkdir(parents=True, exist_ok=True)
    packages, held = site_step(out, root)
    return {"kubernetesVersion": versions["KUBERNETES_VERSION"], "images": images,
            # 50-images installs helm when the pod network is installed with it (versions.env)
            "helmVersion": versions.get("HELM_VERSION"),
            "held": ["kubeadm", "kubelet", "kubectl", *held], "packages": packages, "modules": modules,
            "sysctls": {k.strip(): v.strip() for f in sorted((root / "etc/sysctl.d").glob("*.conf"))
                        for ln in f.read_text().splitlines() if "=" in ln and not ln.startswith("#")
                        for k, _, v in [ln.partition("=")]},
            "python": python}


def installed_by_the_installer(root: Path, expected: dict) -> None:
    """What the OS installer and the firmware leave that the node check looks for: the
    release's time daemon (05-prepare installs its package) and, on a UEFI image, the firmware
    interface in /sys and GRUB at the ESP's removable-media path (the installers put it there:
    debian-installer's grub-installer/force-efi-extra-removable, Ubuntu's grub-install)."""
    daemon = expected["timeDaemon"]["file"]
    target = Path(os.path.realpath(under(root, daemon)))  # /lib -> usr/lib, which may not exist yet
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("#!/bin/sh\nexit 0\n")
    target.chmod(0o755)
    platform = expected["platform"]
    if platform["firmware"] == "uefi":
        (root / "sys/firmware/efi").mkdir(parents=True)
        loader = Path(os.path.realpath(under(root, platform["efiBootFile"])))
        loader.parent.mkdir(parents=True, exist_ok=True)
        loader.write_bytes(b"MZ")


def site_step(out: Path, root: Path) -> tuple[dict[str, str], list[str]]:
    """What the bake's site steps leave, read from the scripts themselves (not from what the
    node check expects): 05-prepare's update-ca-certificates (the site's certificates it
    installed, appended to the system bundle, as update-ca-certificates does for
    /usr/local/share/ca-certificates), and 60-site's `apt_get install` and `apt-mark hold`
    lines. Returns (package -> version, for the dpkg-query stand-in; an unpinned one gets a
    version of the lab's) and the packages 60-site holds."""
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    local = sorted((root / "usr/local/share/ca-certificates").rglob("*.crt"))
    prepare = (out / "packer/scripts/05-prepare.sh").read_text()
    if local and "update-ca-certificates" in prepare:
        bundle.write_text("".join(f.read_text() for f in local))
    site = out / "packer/scripts/60-site.sh"
    packages: dict[str, str] = {}
    held: list[str] = []
    if site.exists():
        for line in site.read_text().splitlines():
            words = shlex.split(line) if line.startswith(("apt_get install", "apt-mark hold")) else []
            if words[:2] == ["apt_get", "install"]:
                packages.update((w.partition("=")[0], w.partition("=")[2] or "1.0-1")
                                for w in words[2:] if not w.startswith("-"))
            elif words[:2] == ["apt-mark", "hold"]:
                held += [w for w in words[2:] if not w.startswith(">")]
    return packages, held


def standin_wrappers(usr_upper: Path, python: str) -> None:
    """kubeadm, kubectl, ... in the node's /usr (an overlay over the host's): each runs its
    stand-in with the host's Python, mounted at the same path in the node."""
    (usr_upper / "bin").mkdir(parents=True, exist_ok=True)
    for tool in STANDINS:
        dest = usr_upper / "bin" / tool
        dest.write_text(f'#!/bin/sh\nexec {shlex.quote(python)} /.rehearsal/tests/standins/{tool.replace("-", "_")}.py "$@"\n')
        dest.chmod(0o755)


# -- cloud-init ---------------------------------------------------------------------------

def owner_ids(root: Path, owner: str) -> tuple[int, int]:
    user, _, group = owner.partition(":")
    users = {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/passwd").read_text().splitlines() if ln}
    groups = {ln.split(":")[0]: ln.split(":") for ln in (root / "etc/group").read_text().splitlines() if ln}
    if user not in users:
        raise CloudInitError(f"write_files: owner {user!r} does not exist when write_files runs "
                             "(cloud-init: 'getpwnam(): name not found'; use defer: true for users cloud-init creates)")
    gid = int(users[user][3]) if not group else int(groups[group][2]) if group in groups else -1
    if gid < 0:
        raise CloudInitError(f"write_files: group {group!r} does not exist")
    return int(users[user][2]), gid


def decode(item: dict) -> bytes:
    content = item.get("content", "")
    enc = (item.get("encoding") or "text/plain").lower()
    data = content.encode() if isinstance(content, str) else bytes(content)
    if enc in ("b64", "base64"):
        return base64.b64decode(data)
    if enc in ("gz", "gzip"):
        return gzip.decompress(data)
    if enc in ("gz+base64", "gzip+base64", "gz+b64", "gzip+b64"):
        return gzip.decompress(base64.b64decode(data))
    if enc in ("text/plain",):
        return data
    raise CloudInitError(f"write_files: unknown encoding {enc!r}")


def write_files(root: Path, items: list[dict]) -> int:
    for item in items:
        dest = under(root, str(item.get("path", "")))
        mode = item.get("permissions", "0644")
        if not isinstance(mode, str):
            raise CloudInitError(f"write_files: {item['path']}: permissions must be an octal string, got {mode!r}")
        uid, gid = owner_ids(root, item.get("owner", "root:root"))
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = decode(item)
        with open(dest, "ab" if item.get("append") else "wb") as f:
            f.write(data)
        dest.chmod(int(mode, 8))
        os.chown(dest, uid, gid)
    return len(items)


def users(root: Path, ud: dict) -> list[str]:
    made = []
    passwd, group = root / "etc/passwd", root / "etc/group"
    for u in ud.get("users") or []:
        if u == "default" or not isinstance(u, dict):
            continue
        name = u["name"]
        uid = 1000 + len(made)
        with open(passwd, "a") as f:
            f.write(f"{name}:x:{uid}:{uid}::/home/{name}:{u.get('shell', '/bin/sh')}\n")
        lines = group.read_text().splitlines()
        lines.append(f"{name}:x:{uid}:")
        for g in u.get("groups") or []:
            lines = [ln + ("," if not ln.endswith(":") else "") + name if ln.split(":")[0] == g else ln for ln in lines]
        group.write_text("\n".join(lines) + "\n")
        home = root / "home" / name
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, uid, uid)
        made.append(name)
    return made


def runcmd_script(ud: dict) -> str:
    """cloud-init's runcmd as the script it writes (cc_runcmd / util.shellify): a list is
    shell-quoted word by word, a string taken as it is; run by sh, not stopping at errors."""
    lines = ["#!/bin/sh"]
    for cmd in ud.get("runcmd") or []:
        lines.append(" ".join(shlex.quote(str(w)) for w in cmd) if isinstance(cmd, list) else str(cmd))
    return "\n".join(lines) + "\n"


def apply_cloud_init(root: Path, seed: seeds.Seed) -> int:
    ud = seed.user_data
    items = ud.get("write_files") or []
    n = write_files(root, [i for i in items if not i.get("defer")])
    users(root, ud)
    n += write_files(root, [i for i in items if i.get("defer")])
    hostname = seed.meta_data.get("local-hostname") or ud.get("hostname") or seed.name
    (root / "etc/hostname").write_text(f"{hostname}\n")
    script = root / "var/lib/cloud/instance/scripts/runcmd"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(runcmd_script(ud))
    script.chmod(0o700)
    return n
