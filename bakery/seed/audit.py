"""The API server's audit log (spec.kubernetes.auditPolicy), on control-plane nodes only: the
Policy file (the user's, or bakery's default below), the kube-apiserver flags that name it and
the log, and the static pod's volumes for both.

Every control-plane node gets the files: a joining control-plane node's API server is made from
the ClusterConfiguration kubeadm init stored in the cluster (the kubeadm-config ConfigMap), so
its flags and volumes name these paths too. Policy fields: audit.k8s.io/v1
(k8s.io/apiserver/pkg/apis/audit/v1/types.go: Policy.rules, omitStages; PolicyRule.level,
verbs, resources[].group/resources, nonResourceURLs with a final ``*``).
"""
from __future__ import annotations

import copy

from .. import owned
from ..spec.model import Cluster

AUDIT_API = "audit.k8s.io/v1"

# bakery's default policy. The order matters: the first matching rule decides.
# - RequestReceived is omitted: every request would be logged twice (received, then completed).
# - Probes (health, version) and Events are not logged: they are most of the volume and say
#   nothing about who changed what.
# - Secrets, ConfigMaps, TokenReviews and ServiceAccount tokens at Metadata: their bodies hold
#   credentials, which must never be in a log file.
# - Everything else at Metadata too (who did what to which object, when, from where, with
#   which answer). Request bodies are not logged at all: any resource, custom resources of
#   operators included, may carry a credential that no fixed list knows of, and bodies make the
#   log an order of magnitude larger. A site that wants bodies for some writes gives its own
#   policy (spec.kubernetes.auditPolicy.policy).
DEFAULT_POLICY = {
    "apiVersion": AUDIT_API,
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None",
         "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version", "/version/"]},
        {"level": "None",
         "resources": [{"group": "", "resources": ["events"]},
                       {"group": "events.k8s.io", "resources": ["events"]}]},
        {"level": "Metadata",
         "resources": [{"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                       {"group": "authentication.k8s.io", "resources": ["tokenreviews"]}]},
        {"level": "Metadata"},
    ],
}


def policy(cluster: Cluster) -> dict:
    """The Policy document: the user's (checked by the validator) or bakery's default."""
    user = cluster.settings.audit_policy
    return copy.deepcopy(dict(user)) if user is not None else copy.deepcopy(DEFAULT_POLICY)


def api_server_args() -> list[tuple[str, str]]:
    return [("audit-policy-file", owned.AUDIT_POLICY), ("audit-log-path", owned.AUDIT_LOG),
            ("audit-log-maxage", owned.AUDIT_LOG_MAXAGE), ("audit-log-maxbackup", owned.AUDIT_LOG_MAXBACKUP),
            ("audit-log-maxsize", owned.AUDIT_LOG_MAXSIZE)]


def volumes() -> list[dict]:
    """kubeadm HostPathMounts: the policy read-only, the log folder written by the API server."""
    return [{"name": "audit-policy", "hostPath": owned.AUDIT_POLICY, "mountPath": owned.AUDIT_POLICY,
             "readOnly": True, "pathType": "File"},
            {"name": "audit-log", "hostPath": owned.AUDIT_LOG_DIR, "mountPath": owned.AUDIT_LOG_DIR,
             "readOnly": False, "pathType": "DirectoryOrCreate"}]
