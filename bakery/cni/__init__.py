"""The pod network plugin (spec.cni): one module per plugin bakery can install, and this
registry. A plugin module says what the plugin is for a cluster, and nothing of where
things go on the node (bakery.plan and bakery.seed decide that):

- ``TITLE``: its name for people ("Calico");
- ``CONFIG_FILE``: the name of the document the first boot installs it with;
- ``version(cni)``, ``images(cni)``: its release, and every image its pods run, pre-pulled
  by the bake;
- ``assets(cni)``: (file name, upstream URL) of each file the bake stores for the first
  boot (manifests, a chart), checksummed in the image;
- ``replaces_kube_proxy(cni)``: kubeadm skips its kube-proxy addon and the image has no
  kube-proxy image;
- ``settings(cni)``: what else of spec.cni decides what the install makes (recorded in the
  output folder's manifest, compared by the next render);
- ``config(cluster)``: the document, from the cluster's pod range, node network and API
  endpoint;
- ``describe(cluster)``: one line for `bakery explain` and the README;
- ``asset_sha256(cni)``: {file name: sha256} the bake verifies stored files against, where
  upstream publishes a digest (a chart repository's index.yaml);
- ``helm_version(cni)``: the Helm release the bake installs when the plugin is installed with
  Helm, else None.
"""
from __future__ import annotations

from types import ModuleType

from ..spec.model import Cluster, CniSettings
from . import calico, cilium, flannel

PLUGINS: dict[str, ModuleType] = {"calico": calico, "cilium": cilium, "flannel": flannel}


def plugin(cni: CniSettings) -> ModuleType:
    return PLUGINS[cni.name]


def title(cni: CniSettings) -> str:
    """"Calico v3.32.1": the plugin and its release."""
    mod = plugin(cni)
    return f"{mod.TITLE} {mod.version(cni)}"


def installed(cni: CniSettings) -> dict:
    """What the init node's first boot installs, as the output folder's manifest records it."""
    mod = plugin(cni)
    return {"plugin": cni.name, "version": mod.version(cni), **mod.settings(cni)}


def describe(cluster: Cluster) -> str:
    return str(plugin(cluster.cni).describe(cluster))
