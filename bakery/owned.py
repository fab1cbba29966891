"""The settings bakery makes itself: KubeletConfiguration fields and control-plane component flags
that spec.kubernetes may not change (the validator refuses them unless the value is bakery's),
and the node paths those settings name. One place for the seed (bakery/seed/kubeadm.py), the
validator (bakery/spec/) and the node paths (bakery/plan/paths.py).

A setting is either fixed (bakery always writes this value: the same value from the user is
harmless and allowed) or derived from another part of cluster.yaml (refused whatever the value:
`instead` names where to set it). Flag values are strings, as in kubeadm's extraArgs; kubelet
field values are the YAML values of the KubeletConfiguration.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

# containerd's CRI socket (the kubelet's containerRuntimeEndpoint, kubeadm's criSocket).
CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"

# Node paths of the audit log and of encryption at rest (control-plane nodes only).
AUDIT_POLICY = "/etc/kubernetes/audit/policy.yaml"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
AUDIT_LOG = f"{AUDIT_LOG_DIR}/audit.log"
ENCRYPTION_CONFIG = "/etc/kubernetes/encryption/config.yaml"

# The audit log's rotation (kube-apiserver --audit-log-max*): a month, ten files of 100 MB.
AUDIT_LOG_MAXAGE = "30"
AUDIT_LOG_MAXBACKUP = "10"
AUDIT_LOG_MAXSIZE = "100"


@dataclass(frozen=True)
class Owned:
    value: object | None  # bakery's value; None: derived from another setting (see `instead`)
    instead: str          # the cluster.yaml setting (or bakery's feature) that decides it

    def allows(self, value: object) -> bool:
        """True if the user may write `value` here: only bakery's own fixed value."""
        return self.value is not None and value == self.value


def _fixed(value: object, why: str) -> Owned:
    return Owned(value, why)


def _derived(instead: str) -> Owned:
    return Owned(None, instead)


# kubeadm's cluster CA (certificatesDir/ca.crt), which kubeadm makes the kubelet's client CA
# (cmd/kubeadm/app/componentconfigs/kubelet.go): it signs the API server's client certificate
# for the kubelet (kubectl logs, exec, port-forward).
KUBELET_CLIENT_CA = "/etc/kubernetes/pki/ca.crt"

# KubeletConfiguration (kubelet.config.k8s.io/v1beta1) fields bakery (or kubeadm from bakery's
# ClusterConfiguration) sets; a dotted name is a field inside another.
KUBELET_FIELDS: MappingProxyType[str, Owned] = MappingProxyType({
    "cgroupDriver": _fixed("systemd", "bakery's containerd uses the systemd cgroup driver"),
    "containerRuntimeEndpoint": _fixed(CONTAINERD_SOCKET, "bakery's containerd socket"),
    "clusterDomain": _derived("spec.network.dnsDomain"),
    "clusterDNS": _derived("spec.network.serviceCidr (kubeadm takes its tenth address)"),
    "staticPodPath": _derived("kubeadm's /etc/kubernetes/manifests (bakery's kube-vip manifest is there)"),
    "registerWithTaints": _derived("spec.nodes[].taints"),
    "authentication.x509.clientCAFile": _fixed(KUBELET_CLIENT_CA, "kubeadm's cluster CA, which signs the API "
                                               "server's client certificate for the kubelet"),
})

# Flags naming the certificates, keys and kubeconfigs kubeadm makes on each control-plane node,
# or its local etcd: kubeadm's control-plane manifests (kubernetes cmd/kubeadm/app/phases/
# controlplane/manifests.go, getAPIServerCommand, getControllerManagerCommand,
# getSchedulerCommand) set them, and an extraArgs value replaces kubeadm's.
_KUBEADM_FILES = "kubeadm's own certificates, keys and kubeconfigs on each control-plane node"

# kube-apiserver flags.
API_SERVER_FLAGS: MappingProxyType[str, Owned] = MappingProxyType({
    "audit-policy-file": _fixed(AUDIT_POLICY, "spec.kubernetes.auditPolicy"),
    "audit-log-path": _fixed(AUDIT_LOG, "spec.kubernetes.auditPolicy"),
    "audit-log-maxage": _fixed(AUDIT_LOG_MAXAGE, "spec.kubernetes.auditPolicy"),
    "audit-log-maxbackup": _fixed(AUDIT_LOG_MAXBACKUP, "spec.kubernetes.auditPolicy"),
    "audit-log-maxsize": _fixed(AUDIT_LOG_MAXSIZE, "spec.kubernetes.auditPolicy"),
    "encryption-provider-config": _fixed(ENCRYPTION_CONFIG, "spec.kubernetes.encryptionAtRest"),
    "advertise-address": _derived("spec.nodes[].address"),
    "secure-port": _derived("spec.controlPlane's endpoint port"),
    "service-cluster-ip-range": _derived("spec.network.serviceCidr"),
    **{name: _derived(_KUBEADM_FILES) for name in (
        "service-account-key-file", "service-account-signing-key-file", "client-ca-file", "tls-cert-file",
        "tls-private-key-file", "kubelet-client-certificate", "kubelet-client-key", "requestheader-client-ca-file",
        "proxy-client-cert-file", "proxy-client-key-file", "etcd-servers", "etcd-cafile", "etcd-certfile",
        "etcd-keyfile")},
    "enable-bootstrap-token-auth": _derived("bakery's joins (the nodes join with a bootstrap token)"),
})

# kube-controller-manager flags.
CONTROLLER_MANAGER_FLAGS: MappingProxyType[str, Owned] = MappingProxyType({
    "cluster-cidr": _derived("spec.network.podCidr"),
    "service-cluster-ip-range": _derived("spec.network.serviceCidr"),
    "cluster-name": _derived("metadata.name"),
    **{name: _derived(_KUBEADM_FILES) for name in (
        "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig", "client-ca-file",
        "requestheader-client-ca-file", "root-ca-file", "service-account-private-key-file",
        "cluster-signing-cert-file", "cluster-signing-key-file")},
})

# kube-scheduler flags.
SCHEDULER_FLAGS: MappingProxyType[str, Owned] = MappingProxyType({
    name: _derived(_KUBEADM_FILES) for name in ("kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")})

# By the key of spec.kubernetes that holds the component's extraArgs.
COMPONENT_FLAGS: MappingProxyType[str, MappingProxyType[str, Owned]] = MappingProxyType({
    "apiServer": API_SERVER_FLAGS,
    "controllerManager": CONTROLLER_MANAGER_FLAGS,
    "scheduler": SCHEDULER_FLAGS,
})
