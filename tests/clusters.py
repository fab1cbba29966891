"""Cluster files of any size for tests and the benchmark (bench/ imports this too)."""
from __future__ import annotations

import ipaddress


def make_cluster(nodes: int, *, name: str = "gen", control_planes: int | None = None,
                 node_cidr: str = "172.16.0.0/16", pod_cidr: str = "10.128.0.0/9",
                 service_cidr: str = "10.96.0.0/12", os: str = "ubuntu-24.04",
                 k8s: str = "1.36.3", containerd: str = "2.2.7", calico: str = "v3.32.1",
                 key_algorithm: str = "rsa-2048", builders=("virtualbox-iso", "proxmox-iso", "qemu"),
                 extra_spec: str = "", cni: str | None = None) -> str:
    """cni: the flow mapping under spec.cni (default: Calico at `calico`)."""
    if control_planes is None:
        control_planes = 1 if nodes < 3 else 3 if nodes < 1000 else 5
    net = ipaddress.ip_network(node_cidr)
    hosts = net.hosts()
    gateway = next(hosts)
    lines = [
        "apiVersion: bakery.dev/v1alpha1",
        "kind: Cluster",
        f"metadata: {{name: {name}}}",
        "spec:",
        f'  kubernetes: {{version: "{k8s}"}}',
        f'  containerd: {{version: "{containerd}"}}',
        f"  os: {os}",
        "  network:",
        f"    nodeCidr: {node_cidr}",
        f"    gateway: {gateway}",
        f"    nameservers: [{gateway}]",
        f"    podCidr: {pod_cidr}",
        f"    serviceCidr: {service_cidr}",
        f"  cni: {cni or f'{{calico: {{version: {calico}}}}}'}",
        f"  secrets: {{keyAlgorithm: {key_algorithm}}}",
        f"  image: {{builders: [{', '.join(builders)}]}}",
    ]
    if extra_spec:
        lines.append(extra_spec.rstrip("\n"))
    lines.append("  nodes:")
    for i in range(nodes):
        role = "control-plane" if i < control_planes else "worker"
        prefix = "cp" if i < control_planes else "w"
        lines.append(f"    - {{name: {prefix}{i}, role: {role}, address: {next(hosts)}}}")
    return "\n".join(lines) + "\n"
