"""`bakery explain` and the output README: the facts a person checks, parsed back."""
from __future__ import annotations

import re

from bakery.deliver import explain
from bakery.spec.pipeline import load_cluster

from conftest import LAB, run_bakery
from test_deliver import lab


def test_explain_cli_lists_layers_nodes_and_endpoint():
    r = run_bakery("explain", LAB)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    layers = {m[1]: (m[2], m[3]) for ln in lines
              if (m := re.match(r"\s+(node network|pod network|service network)\s+(\S+)\s+owner: (.+?)\s+\(", ln))}
    assert layers == {"node network": ("192.168.56.0/24", "the OS"),
                      "pod network": ("20.96.0.0/12", "Calico v3.32.1"),
                      "service network": ("10.96.0.0/12", "kube-proxy")}
    nodes = [ln.split() for ln in lines if re.match(r"\s+k8s-", ln)]
    assert [(n[0], n[1], n[2]) for n in nodes] == [("k8s-master", "control-plane", "192.168.56.30"),
                                                   ("k8s-node1", "worker", "192.168.56.31"),
                                                   ("k8s-node2", "worker", "192.168.56.32")]
    assert "first boot: kubeadm init" in lines[[ln.split()[0] if ln.strip() else "" for ln in lines].index("k8s-master")]
    assert all("kubeadm join (worker) via 192.168.56.30:6443" in " ".join(n) for n in nodes[1:])
    assert "control-plane endpoint: 192.168.56.30:6443 (the API server of k8s-master)" in lines


def test_explain_ha_with_vip(tmp_path):
    def edit(t):
        t = t.replace("    endpoint: 192.168.56.30:6443   # optional; default: first control-plane address:6443",
                      "    vip: 192.168.56.100")
        return t.replace("{name: k8s-node1, role: worker, address: 192.168.56.31}",
                         "{name: k8s-cp2, role: control-plane, address: 192.168.56.31}")
    cluster = lab(tmp_path, edit)
    e = explain.describe(cluster)
    assert e.endpoint == "192.168.56.100:6443" and "kube-vip" in e.endpoint_detail
    assert [(n.name, n.action) for n in e.nodes] == [("k8s-master", "init"), ("k8s-cp2", "join-control-plane"),
                                                     ("k8s-node2", "join-worker")]
    diagram = explain.mermaid(cluster)
    # both control-plane nodes sit behind the endpoint; joining nodes point at it
    assert "ep --> n0" in diagram and "ep --> n1" in diagram and "ep --> n2" not in diagram
    assert 'n1 -. "kubeadm join" .-> ep' in diagram and 'n0 -. ' not in diagram


def test_readme_has_mermaid_and_tables():
    cluster, _ = load_cluster(str(LAB))
    md = explain.markdown(cluster)
    blocks = re.findall(r"```mermaid\n(.*?)```", md, re.S)
    assert len(blocks) == 1
    diagram = blocks[0].splitlines()
    assert diagram[0] == "flowchart TB"
    # every node of the diagram is declared once, every edge refers to declared ids
    declared = {m[1] for ln in diagram if (m := re.match(r"\s+(\w+)[\[(]", ln))}
    assert declared >= {"n0", "n1", "n2", "ep", "pods", "svcs"}
    for ln in diagram:
        if m := re.match(r"\s+(\w+) (-->|---|-\. \"kubeadm join\" \.->) (\w+)$", ln):
            assert {m[1], m[3]} <= declared | {"nodenet"}
    assert sum(1 for ln in diagram if ln.strip() == "end") == sum(1 for ln in diagram if ln.strip().startswith("subgraph"))
    rows = [ln.split("|")[1:-1] for ln in md.splitlines() if ln.startswith("| k8s-")]
    assert [[c.strip() for c in r][:3] for r in rows] == [["k8s-master", "control-plane", "`192.168.56.30`"],
                                                          ["k8s-node1", "worker", "`192.168.56.31`"],
                                                          ["k8s-node2", "worker", "`192.168.56.32`"]]
    assert "virtualbox/create-vms.sh" in md and "bakery deploy proxmox" in md


def test_explain_bad_input_exit_2(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(LAB.read_text().replace("podCidr: 20.96.0.0/12", "podCidr: 20.96.0.0/33"))
    r = run_bakery("explain", p)
    assert r.returncode == 2 and "podCidr" in r.stderr


def test_explain_names_the_chosen_cni(tmp_path):
    """The pod network's owner, the service network's (Cilium may replace kube-proxy), the init
    node's first boot, in the text, the README and the diagram."""
    def with_cni(cni: str):
        return lambda t: re.sub(r"  cni:\n(    .*\n|      .*\n)+", "  cni:\n" + cni, t, count=1)
    cases = [("    flannel: {backend: host-gw}\n", "flannel v0.28.9", "kube-proxy", "backend host-gw"),
             ("    cilium: {}\n", "Cilium v1.20.0", "kube-proxy", "VXLAN tunnel"),
             ("    cilium: {kubeProxyReplacement: true}\n", "Cilium v1.20.0",
              "Cilium v1.20.0 (kube-proxy replacement)", "replaces kube-proxy")]
    for i, (cni, pod_owner, svc_owner, detail) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        cluster = lab(tmp_path / str(i), with_cni(cni))
        e = explain.describe(cluster)
        layers = {ly.name: ly for ly in e.layers}
        assert (layers["pod network"].owner, layers["service network"].owner) == (pod_owner, svc_owner)
        assert detail in layers["pod network"].detail
        assert e.nodes[0].first_boot == f"kubeadm init, then installs {pod_owner}"
        md = explain.markdown(cluster)
        assert f"kubeadm init, then installs {pod_owner}" in re.findall(r"```mermaid\n(.*?)```", md, re.S)[0]
        assert "Calico" not in md
