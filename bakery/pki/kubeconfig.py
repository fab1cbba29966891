"""admin.conf: the cluster's admin kubeconfig, from the bundle's CA and admin certificate."""
from __future__ import annotations

from ..output.writer import OutputFile
from ..spec.model import Cluster
from ..templating import dump_yaml
from .bundle import Bundle


def admin_kubeconfig(cluster: Cluster, bundle: Bundle) -> str:
    user = "kubernetes-admin"
    context = f"{user}@{cluster.name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": cluster.name,
            "cluster": {
                "certificate-authority-data": bundle.b64(bundle.ca.certificate),
                "server": f"https://{cluster.control_plane.endpoint}",
            },
        }],
        "contexts": [{"name": context, "context": {"cluster": cluster.name, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": bundle.b64(bundle.admin.certificate),
                "client-key-data": bundle.b64(bundle.admin.key),
            },
        }],
    }
    return dump_yaml(doc)


def render_cluster_files(cluster: Cluster, bundle: Bundle) -> list[OutputFile]:
    return [OutputFile("admin.conf", admin_kubeconfig(cluster, bundle).encode(), kind="kubeconfig", secret=True)]
