"""What a rendered output folder says, read as the consumers read it: each node's NoCloud seed
(user-data, meta-data, network-config) and the bake's side (packer/files, packer/scripts).
Nothing here checks the folder's manifest: the rehearsal plays what the seeds say."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

VALUES_FILE = "/etc/bakery/firstboot.env"
KUBEADM_FILE = "/etc/bakery/kubeadm.yaml"


class SeedError(Exception):
    """A seed cloud-init itself would not take (reported as the node's failure)."""


@dataclass
class Interface:
    name: str
    mac: str | None
    addresses: list[str]  # with prefix, e.g. 192.168.56.11/24
    dhcp: bool
    gateway: str | None
    gateway_metric: int  # the static default route's metric (netplan: 0 unless given)


@dataclass
class Seed:
    name: str  # the folder under nodes/
    user_data: dict
    meta_data: dict
    interfaces: list[Interface]
    values: dict[str, str] = field(default_factory=dict)

    @property
    def action(self) -> str:
        """From the node's values; without them, from its kubeadm configuration's kinds."""
        if "ACTION" in self.values:
            return self.values["ACTION"]
        for f in self.user_data.get("write_files") or []:
            if f.get("path") == KUBEADM_FILE:
                kinds = {d.get("kind"): d for d in yaml.safe_load_all(str(f.get("content", ""))) if isinstance(d, dict)}
                if "InitConfiguration" in kinds:
                    return "init"
                join = kinds.get("JoinConfiguration") or {}
                return "join-control-plane" if join.get("controlPlane") is not None else "join-worker"
        return ""

    @property
    def join_after(self) -> str:
        return self.values.get("JOIN_AFTER", "")

    @property
    def address(self) -> str:
        return self.values.get("NODE_ADDRESS", "")


def parse_values(text: str) -> dict[str, str]:
    """NAME=value lines of the values file, unquoted as the shell would (arrays kept raw)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if not m:
            continue
        raw = m.group(2)
        if raw.startswith("("):
            out[m.group(1)] = " ".join(shlex.split(raw.strip("()")))
        else:
            words = shlex.split(raw, comments=True)
            out[m.group(1)] = words[0] if words else ""
    return out


def interfaces(network_config: dict) -> list[Interface]:
    net = network_config.get("network", network_config)
    if net.get("version") != 2:
        raise SeedError("network-config: the lab reads version 2 only")
    out = []
    for key, eth in (net.get("ethernets") or {}).items():
        match = eth.get("match") or {}
        gw, metric = eth.get("gateway4"), 0
        for r in eth.get("routes") or []:
            if r.get("to") in ("default", "0.0.0.0/0"):
                gw, metric = r.get("via"), int(r.get("metric", 0))
        out.append(Interface(eth.get("set-name") or key, match.get("macaddress"), list(eth.get("addresses") or []),
                             bool(eth.get("dhcp4")), gw, metric))
    return out


def read_seed(folder: Path) -> Seed:
    try:
        ud_text = (folder / "user-data").read_text()
        if not ud_text.startswith("#cloud-config\n"):
            raise SeedError("user-data does not start with #cloud-config")
        ud = yaml.safe_load(ud_text) or {}
        md = yaml.safe_load((folder / "meta-data").read_text()) or {}
        nc = yaml.safe_load((folder / "network-config").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SeedError(f"the seed does not load: {e}") from None
    seed = Seed(folder.name, ud, md, interfaces(nc))
    for f in ud.get("write_files") or []:
        if f.get("path") == VALUES_FILE:
            seed.values = parse_values(str(f.get("content", "")))
    return seed


def read_seeds(out: Path) -> list[Seed]:
    return [read_seed(d) for d in sorted((out / "nodes").iterdir()) if d.is_dir()]




def bake_images(out: Path) -> list[str]:
    """The images the bake pulls besides kubeadm's: the `images=(...)` list of 50-images.sh."""
    text = (out / "packer" / "scripts" / "50-images.sh").read_text()
    m = re.search(r"^images=\(\n(.*?)^\)", text, re.M | re.S)
    return shlex.split(m.group(1)) if m else []


def versions_env(out: Path) -> dict[str, str]:
    return parse_values((out / "packer" / "files" / "opt" / "bakery" / "versions.env").read_text())
