"""What only the whole cluster shows, checked after every node's first boot:

- nodes: every node registered, its InternalIP (the kubelet's node-ip) its node-network address;
- calico: what the operator does with the Installation (tigera/operator): its IP pools inside
  kubeadm's podSubnet ("not within the platform's configured pod network CIDR(s)"), the address
  its autodetection method picks on each node is the node-network address (first-found would take
  VirtualBox's NAT address), and every image it will run, and its own, in every node's runtime
  (tests/data/specs/calico-operator-images.json; spec.registry replaces the registry);
- flannel (flannel-io/flannel v0.28): net-conf.json's Network contains every node's podCIDR
  (kubeadm podSubnet; pkg/subnet/kube/kube.go), Backend.Type is given (else udp:
  pkg/subnet/config.go) and known; the address flanneld picks on each node (main.go: each
  --iface in order, a name or an address, after Kubernetes expands $(VAR) in args from the
  container's env; with none, the default route's interface, VirtualBox's NAT) is the
  node-network address; host-gw needs every node on one layer-2 network; the images of its
  containers in every node's runtime;
- cilium: what the chart's release does in the cluster (helm's release from the helm stand-in):
  deployed from the release's chart; pod addresses from kubeadm's podSubnet (ipam kubernetes:
  each node's podCIDR; cluster-pool: its clusterPoolIPv4PodCIDRList, 10.0.0.0/8 by default);
  kube-proxy runs exactly when Cilium does not replace it; with the replacement, k8sServiceHost
  and k8sServicePort reach the API server; no more operator replicas than nodes (required pod
  anti-affinity per host); every image the chart deploys in every node's runtime
  (tests/data/specs/cilium-charts.json);
- admin.conf: the user's kubeconfig from the output folder reaches the endpoint, trusts the
  cluster's CA and is authorized, and is not in system:masters (the break-glass group of
  super-admin.conf since kubeadm 1.29: the admin credential in the wrong group fails here);
- secrets: no node's log or console holds the bootstrap token's secret, a private key or the
  encryption-at-rest key (read from the control-plane seeds), and the spent kubeadm
  configuration is gone.
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from . import seeds

TESTS = Path(__file__).resolve().parent.parent
OPERATOR_IMAGES = TESTS / "data" / "specs" / "calico-operator-images.json"
CILIUM_CHARTS = TESTS / "data" / "specs" / "cilium-charts.json"


def node_network(seed: seeds.Seed):
    for iface in seed.interfaces:
        for a in iface.addresses:
            return ipaddress.ip_interface(a).network
    return None


def autodetected(method: dict, seed: seeds.Seed, internal_ip: str | None) -> str | None:
    """The IPv4 address Calico's autodetection picks on this node (calico/node's
    autodetection: first-found, interface, skipInterface, cidrs, canReach, kubernetes)."""
    ifaces = [(i.name, [str(ipaddress.ip_interface(a).ip) for a in i.addresses]
               + (["10.0.2.15"] if i.dhcp else [])) for i in seed.interfaces]
    if not method or method.get("firstFound"):
        return next((a for _, addrs in ifaces for a in addrs), None)
    if method.get("kubernetes") == "NodeInternalIP":
        return internal_ip
    if "interface" in method:
        rx = re.compile(method["interface"])
        return next((a for n, addrs in ifaces if rx.fullmatch(n) for a in addrs), None)
    if "skipInterface" in method:
        rx = re.compile(method["skipInterface"])
        return next((a for n, addrs in ifaces if not rx.fullmatch(n) for a in addrs), None)
    if "cidrs" in method:
        nets = [ipaddress.ip_network(c, strict=False) for c in method["cidrs"]]
        return next((a for _, addrs in ifaces for a in addrs if any(ipaddress.ip_address(a) in n for n in nets)), None)
    if "canReach" in method:
        dest = ipaddress.ip_address(method["canReach"])
        for i in seed.interfaces:
            for a in i.addresses:
                if dest in ipaddress.ip_interface(a).network:
                    return str(ipaddress.ip_interface(a).ip)
        return next((a for _, addrs in ifaces for a in addrs), None)
    return None


def checks(lab, all_seeds: list[seeds.Seed], booted: list[seeds.Seed]) -> Iterator[tuple[str, str | None]]:
    """The cluster's checks over every node; what only a node's own root shows (its runtime's
    images, its logs) over the nodes booted in this rehearsal."""
    s = lab.sim()
    st = lab.state()
    problems = []
    for seed in all_seeds:
        name = seed.user_data.get("hostname") or seed.name
        n = st["nodes"].get(name)
        if not n or not n.get("kubelet"):
            problems.append(f"{seed.name} is not registered")
            continue
        net = node_network(seed)
        if n.get("internalIP") != seed.address or net is None or ipaddress.ip_address(n["internalIP"]) not in net:
            problems.append(f"{name}'s InternalIP is {n.get('internalIP')}, not its node-network address {seed.address}")
    yield "nodes", "; ".join(problems) or None

    cni = seeds.versions_env(lab.out)["CNI"]
    yield cni, CNI_CHECKS[cni](lab, all_seeds, booted, st)

    admin = lab.out / "admin.conf"
    try:
        kc = s.read_kubeconfig(admin)
    except ValueError as e:
        yield "admin.conf", str(e)
    else:
        who, why = s.reach(st, kc["server"])
        ident = s.identity(st, kc["cert"], kc["key"])
        if who is None:
            yield "admin.conf", f"{kc['server']} does not answer: {why}"
        elif kc["ca"] is None or s.public_der(s.load_cert(kc["ca"]).public_key()) != \
                s.public_der(s.load_cert(st["ca"]["ca"]).public_key()):
            yield "admin.conf", "its certificate-authority-data is not the cluster's CA"
        elif isinstance(ident, str):
            yield "admin.conf", ident
        elif s.MASTERS_GROUP in ident[1]:
            # kubeadm 1.29+ (constants.SystemPrivilegedGroup): only super-admin.conf, kept on the
            # init node, is in system:masters; it bypasses RBAC and cannot be revoked
            yield "admin.conf", (f"the user {ident[0]} is in system:masters, the break-glass group of "
                                 "super-admin.conf; an admin's credential belongs in kubeadm:cluster-admins")
        elif not s.authorized(st, ident[1]):
            yield "admin.conf", f"the user {ident[0]} (groups {ident[1]}) is not authorized: no binding for its groups"
        else:
            yield "admin.conf", None

    leaks = []
    secrets_ = [t["secret"] for t in st["tokens"].values()] + encryption_keys(all_seeds)
    for seed in booted:
        root = lab.work / "nodes" / seed.name / "root"
        texts = {"console": lab.result.consoles.get(seed.name, "")}
        for log in (root / "var/log/bakery").glob("*"):
            texts[str(log.relative_to(root))] = log.read_text(errors="replace")
        for where, text in texts.items():
            if any(sec in text for sec in secrets_) or "PRIVATE KEY" in text:
                leaks.append(f"{seed.name}: {where} holds a secret")
        if (root / "etc/bakery/kubeadm.yaml").exists():
            leaks.append(f"{seed.name}: /etc/bakery/kubeadm.yaml (the token) is still on the node")
    yield "secrets", "; ".join(leaks) or None


def encryption_keys(all_seeds: list[seeds.Seed]) -> list[str]:
    """The keys of the EncryptionConfiguration files the seeds write (any path: found by kind)."""
    keys = []
    for seed in all_seeds:
        for f in seed.user_data.get("write_files") or []:
            for doc in yaml.safe_load_all(str(f.get("content", ""))) if str(f.get("path", "")).endswith(".yaml") else ():
                if isinstance(doc, dict) and doc.get("kind") == "EncryptionConfiguration":
                    keys += [k["secret"] for rc in doc.get("resources") or [] for p in rc.get("providers") or []
                             for conf in p.values() if isinstance(conf, dict) for k in conf.get("keys") or []]
    return keys


def calico(lab, all_seeds: list[seeds.Seed], booted: list[seeds.Seed], st: dict) -> str | None:
    objects = {k: v["object"] for k, v in st["objects"].items()}
    inst = objects.get("operator.tigera.io|Installation||default")
    if inst is None:
        return "no Installation named default was created"
    if not any(k.startswith("apps|Deployment|tigera-operator|") for k in objects):
        return "the tigera-operator Deployment was not created"
    spec = inst.get("spec") or {}
    pod_subnet = st["cluster"].get("podSubnet")
    net = spec.get("calicoNetwork") or {}
    for pool in net.get("ipPools") or []:
        if not pod_subnet or not ipaddress.ip_network(pool["cidr"]).subnet_of(ipaddress.ip_network(pod_subnet)):
            return (f"IP pool {pool.get('name')} {pool['cidr']} is not within the platform's configured pod network "
                    f"CIDR(s) (kubeadm podSubnet {pod_subnet})")
    method = net.get("nodeAddressAutodetectionV4") or {}
    for seed in all_seeds:
        name = seed.user_data.get("hostname") or seed.name
        got = autodetected(method, seed, st["nodes"].get(name, {}).get("internalIP"))
        if got != seed.address:
            return f"on {name}, Calico's address autodetection {method or 'firstFound'} picks {got}, not {seed.address}"
    release = seeds.versions_env(lab.out)["CNI_VERSION"]
    table = json.loads(OPERATOR_IMAGES.read_text())["releases"].get(release)
    if table is None:
        return f"no operator images known for Calico {release} (tests/data/specs/calico-operator-images.json)"
    registry = spec.get("registry") or table["defaultRegistry"]
    default = table["defaultRegistry"].rstrip("/")
    want = [table["operator"]] + [registry.rstrip("/") + i.removeprefix(default) for i in table["installation"]]
    return missing_images(lab, booted, want, "the operator")


def missing_images(lab, booted: list[seeds.Seed], want: list[str], who: str) -> str | None:
    """The first booted node whose runtime lacks an image `who` will run, said in one line."""
    for seed in booted:
        node_json = json.loads((lab.work / "nodes" / seed.name / "root/.rehearsal/node.json").read_text())
        missing = [i for i in want if i not in node_json["images"]]
        if missing:
            return f"{seed.name} lacks images {who} will run: {', '.join(missing)}"
    return None


def _expand(arg: str, env: dict[str, dict], internal_ip: str | None) -> str:
    """Kubernetes' $(VAR) expansion of container args from the container's env (an undefined
    reference is left as written); the downward API's status.hostIP is the node's InternalIP."""
    def value(m: re.Match) -> str:
        e = env.get(m.group(1))
        if e is None:
            return m.group(0)
        if "value" in e:
            return str(e["value"])
        field = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        return (internal_ip or "") if field == "status.hostIP" else m.group(0)
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value, arg)


def flanneld_address(container: dict, seed: seeds.Seed, internal_ip: str | None) -> str | None:
    env = {e["name"]: e for e in container.get("env") or []}
    args = [_expand(a, env, internal_ip) for a in container.get("args") or []]
    if any(a.startswith(("--iface-regex", "--iface-can-reach")) for a in args):
        raise AssertionError("the rehearsal does not model --iface-regex or --iface-can-reach")
    ifaces = [(i.name, [str(ipaddress.ip_interface(a).ip) for a in i.addresses] + (["10.0.2.15"] if i.dhcp else []))
              for i in seed.interfaces]
    wanted = [a.removeprefix("--iface=") for a in args if a.startswith("--iface=")]
    for w in wanted:
        for name, addrs in ifaces:
            if w in addrs:
                return w
            if w == name and addrs:
                return addrs[0]
    if wanted:
        return None  # flanneld exits: none of --iface matches
    dhcp = [addrs for _, addrs in ifaces if "10.0.2.15" in addrs]  # the default route: DHCP's (NAT)
    if dhcp:
        return "10.0.2.15"
    return next((addrs[0] for i, (_, addrs) in zip(seed.interfaces, ifaces, strict=True) if i.gateway and addrs), None)


def flannel(lab, all_seeds: list[seeds.Seed], booted: list[seeds.Seed], st: dict) -> str | None:
    objects = {k: v["object"] for k, v in st["objects"].items()}
    cm = objects.get("|ConfigMap|kube-flannel|kube-flannel-cfg")
    ds = objects.get("apps|DaemonSet|kube-flannel|kube-flannel-ds")
    if cm is None or ds is None:
        return "flannel's ConfigMap kube-flannel-cfg and DaemonSet kube-flannel-ds were not both created"
    try:
        conf = json.loads((cm.get("data") or {})["net-conf.json"])
    except (KeyError, ValueError) as e:
        return f"kube-flannel-cfg has no readable net-conf.json: {e}"
    backend = (conf.get("Backend") or {}).get("Type")
    if not backend:
        return "net-conf.json has no Backend.Type: flannel falls back to udp (pkg/subnet/config.go)"
    if backend not in ("vxlan", "host-gw"):
        return f"net-conf.json's backend {backend!r} is not vxlan or host-gw"
    pod_subnet = st["cluster"].get("podSubnet")
    if not pod_subnet or not ipaddress.ip_network(pod_subnet).subnet_of(ipaddress.ip_network(conf.get("Network", "0.0.0.0/32"))):
        return (f"subnet {conf.get('Network')} specified in the flannel net config doesn't contain the nodes' "
                f"PodCIDRs (from kubeadm podSubnet {pod_subnet})")
    pod = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    container = next((c for c in pod.get("containers") or [] if c.get("name") == "kube-flannel"), None)
    if container is None:
        return "the DaemonSet kube-flannel-ds has no kube-flannel container"
    for seed in all_seeds:
        name = seed.user_data.get("hostname") or seed.name
        got = flanneld_address(container, seed, st["nodes"].get(name, {}).get("internalIP"))
        if got != seed.address:
            return f"on {name}, flanneld picks {got}, not {seed.address}"
    if backend == "host-gw" and len({str(node_network(s)) for s in all_seeds}) != 1:
        return "host-gw needs every node on one layer-2 network"
    return missing_images(lab, booted, [c["image"] for c in (pod.get("initContainers") or []) + pod["containers"]],
                          "flannel")


CNI_CHECKS = {"calico": calico, "flannel": flannel}
def cilium(lab, all_seeds: list[seeds.Seed], booted: list[seeds.Seed], st: dict) -> str | None:
    release = seeds.versions_env(lab.out)["CNI_VERSION"].lstrip("v")
    history = (st.get("helm") or {}).get("kube-system/cilium")
    if not history:
        return "no helm release cilium in kube-system"
    last = history[-1]
    if last["status"] != "deployed" or (last["chart"], last["version"]) != ("cilium", release):
        return f"the release cilium is {last['status']} from {last['chart']} {last['version']}, not deployed from cilium {release}"
    values = last["values"]
    pod_subnet = st["cluster"].get("podSubnet")
    ipam = values.get("ipam") or {}
    mode = ipam.get("mode", "cluster-pool")  # the chart's default
    if mode == "kubernetes":
        if not pod_subnet:
            return "ipam kubernetes, but kubeadm has no podSubnet: kube-controller-manager allocates no podCIDR"
    elif mode == "cluster-pool":
        pools = (ipam.get("operator") or {}).get("clusterPoolIPv4PodCIDRList", ["10.0.0.0/8"])
        pools = pools.split() if isinstance(pools, str) else pools
        outside = [p for p in pools if not pod_subnet
                   or not ipaddress.ip_network(p).subnet_of(ipaddress.ip_network(pod_subnet))]
        if outside:
            return (f"Cilium's cluster-pool IPAM hands out {', '.join(outside)}, not within kubeadm's podSubnet "
                    f"{pod_subnet}")
    else:
        return f"ipam mode {mode!r}: the rehearsal knows kubernetes and cluster-pool"
    kpr = str(values.get("kubeProxyReplacement", "false")).lower() == "true"
    kube_proxy = "apps|DaemonSet|kube-system|kube-proxy" in st["objects"]
    if kpr and kube_proxy:
        return "kube-proxy runs beside Cilium's kube-proxy replacement (kubeadm init did not skip addon/kube-proxy)"
    if not kpr and not kube_proxy:
        return "no kube-proxy, and Cilium does not replace it: nothing serves Services"
    host, port = values.get("k8sServiceHost", ""), values.get("k8sServicePort", "")
    if kpr and (not host or not port):
        return "kube-proxy replacement without k8sServiceHost/k8sServicePort: the agent cannot reach the API server"
    if host and lab.sim().reach(st, f"https://{host}:{port or 443}")[0] is None:
        return f"k8sServiceHost:k8sServicePort {host}:{port} does not reach the API server"
    replicas = int((values.get("operator") or {}).get("replicas", 2))
    registered = [n for n in st["nodes"].values() if n.get("kubelet")]
    if replicas > len(registered):
        return (f"{replicas} cilium-operator replicas on {len(registered)} node(s): the operator's required pod "
                "anti-affinity per host leaves one Pending")
    return missing_images(lab, booted, json.loads(CILIUM_CHARTS.read_text())["releases"][release]["images"],
                          "the chart")


CNI_CHECKS = {"calico": calico, "cilium": cilium, "flannel": flannel}
