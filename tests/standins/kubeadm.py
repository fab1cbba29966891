"""STAND-IN for kubeadm (bakery's tests; not Kubernetes), run inside a node's throwaway root by
the cluster rehearsal (tests/rehearse.py) against the shared simulated cluster
(simcluster.py). It enforces, for the calls bakery's first boot makes, kubeadm's contract as
its source defines it (kubernetes `cmd/kubeadm`), stricter where simpler, never more lenient:

Configuration (`apis/kubeadm/validation`, `util/config`):
- ``--config`` mixed only with the flags kubeadm allows beside it (``isAllowedFlag``);
- every document decodes strictly against the vendored kubeadm v1beta4/v1beta3 and kubelet
  v1beta1 field trees (tests/data/specs): unknown field, wrong type, unknown apiVersion or kind
  is an error (kubeadm only warns on unknown fields: stricter); one apiVersion for kubeadm's
  kinds; init takes one InitConfiguration (+ ClusterConfiguration, KubeletConfiguration), join
  one JoinConfiguration and nothing else;
- ``kubernetesVersion`` equals the installed kubeadm's (stricter than the skew policy); a join
  follows the skew policy against the cluster's version (check_skew).

Preflight (`preflight/checks.go`, RunInitNodeChecks / RunJoinNodeChecks):
- FileAvailable for the control plane's static pod manifests and kubelet.conf,
  DirAvailable for /etc/kubernetes/manifests on every join and for the etcd data folder,
  each waivable through ``nodeRegistration.ignorePreflightErrors`` (or ``all``);
- the CRI socket exists; every image kubeadm needs for that version (tests/data/specs/
  kubeadm-images.json) is in the node's runtime: nothing is pulled (stricter: whatever the
  pull policy, and on workers too, where the kubelet would pull kube-proxy and pause).

Certificates: init and control-plane joins need the shared files bakery writes
(ca, front-proxy-ca, etcd/ca, sa) present, parsing, each certificate matching its key and a
CA (init would silently make new CAs: stricter); a control-plane join's must be the
cluster's. Addresses: ``advertiseAddress`` is an address of the node (unset: the default
route's, as kubeadm picks it).

init writes what kubeadm writes (admin.conf in ``kubeadm:cluster-admins``, super-admin.conf
in system:masters, kubelet.conf, controller-manager.conf, scheduler.conf, the static pods),
starts the kubelet (kubelet.py), then talks to the cluster through the control-plane endpoint
(which answers only as simcluster.reach says: with a VIP, while kube-vip holds it), creates
the ``kubeadm:cluster-admins`` binding and registers its bootstrap tokens.

join needs the endpoint to answer, a token the cluster has (unexpired, with the signing and
authentication usages), a CA hash that pins the cluster's CA; a control-plane join adds one
etcd member at a time (refused while another control-plane node could be joining at the same
moment: the lab knows which nodes wait for which); a node name registered already is refused, and
so is a control-plane node whose old etcd member (same name or peer address) is still there.

Phases (``cmd/init.go``, ``phases/workflow/runner.go``): ``skipPhases`` names phases of init's
workflow ("invalid phase name" otherwise; the stand-in knows the top-level phases and the
addon's sub-phases only: stricter); skipping ``addon`` or ``addon/kube-proxy`` disables the
proxy addon as manageSkippedAddons does: its image is not needed (images.GetControlPlaneImages)
and its DaemonSet and ConfigMap are not created; likewise CoreDNS. init records the addons it
installed (state ``addons`` and their objects); a join needs kube-proxy's image only while the
cluster runs kube-proxy (a join runs no addon phase).

``reset --force`` undoes the node's writes (and its etcd member). ``config images list``
prints the table above. Faults for tests: node.json ``faults.kubeadmFail = N`` makes the first
N init/join calls fail after preflight, leaving a half-done node (not a violation).
"""
from __future__ import annotations

import json
import re
import shutil
import sys

import apiserver
import contracts
import kubelet
import simcluster as sim
import yaml

KNOWN_KINDS = {(f"kubeadm.k8s.io/{v}", k) for v in ("v1beta3", "v1beta4")
               for k in ("InitConfiguration", "ClusterConfiguration", "JoinConfiguration")} | {
    ("kubelet.config.k8s.io/v1beta1", "KubeletConfiguration")}
ALLOWED_WITH_CONFIG = {"config", "ignore-preflight-errors", "dry-run", "kubeconfig", "node-name",
                       "kubeconfig-dir", "upload-certs", "print-join-command", "rootfs", "v", "log-file", "yes",
                       "patches", "certificate-key"}
TAKES_VALUE = {"config", "skip-phases", "ignore-preflight-errors", "node-name", "kubeconfig", "kubernetes-version", "v",
               "cri-socket", "image-repository"}
SHARED_PKI = (("ca", True), ("front-proxy-ca", True), ("etcd/ca", True))
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
TOKEN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
NODE_TOKEN_GROUP = "system:bootstrappers:kubeadm:default-node-token"
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
# kubeadm init's workflow (cmd/init.go: the phases it appends; the addon phase's children)
INIT_PHASES = {"preflight", "certs", "kubeconfig", "etcd", "control-plane", "kubelet-start", "wait-control-plane",
               "upload-config", "upload-certs", "mark-control-plane", "bootstrap-token", "kubelet-finalize",
               "addon", "addon/all", "addon/coredns", "addon/kube-proxy", "show-join-command"}


def images_for(version: str, repository: str = "registry.k8s.io") -> list[str]:
    """`kubeadm config images list --kubernetes-version` for the default local etcd and CoreDNS
    (tests/data/specs/kubeadm-images.json; other patches of a minor take the minor's entry)."""
    table = json.loads((contracts.SPECS / "kubeadm-images.json").read_text())["minors"]
    v = version.lstrip("v")
    minor = ".".join(v.split(".")[:2])
    if minor not in table:
        return []
    row = table[minor]
    tag = "v" + v
    dns_repo = repository + "/coredns" if repository == "registry.k8s.io" else repository
    return [f"{repository}/kube-apiserver:{tag}", f"{repository}/kube-controller-manager:{tag}",
            f"{repository}/kube-scheduler:{tag}", f"{repository}/kube-proxy:{tag}",
            f"{dns_repo}/coredns:{row['coredns']}", f"{repository}/pause:{row['pause']}",
            f"{repository}/etcd:{row['etcd']}"]


def seconds(duration: str) -> float:
    """A Go duration string such as 24h0m0s in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in DURATION.findall(duration))


class Kubeadm:
    def __init__(self, verb: str, flags: dict[str, str | bool]):
        self.verb, self.flags = verb, flags
        self.step = f"kubeadm {verb}"
        self.node = sim.node()
        self.machine = sim.machine(self.node)
        self.installed = "v" + self.node["kubernetesVersion"].lstrip("v")
        self.repository = "registry.k8s.io"

    def refuse(self, phase: str, reason: str) -> None:
        sim.violation(self.step, f"[{phase}] {reason}",
                      printed=f"error execution phase {phase}: {reason}\nTo see the stack trace of this error execute with --v=5 or higher")

    # -- configuration -----------------------------------------------------------------
    def read_config(self) -> dict[str, dict]:
        if "config" not in self.flags:
            self.refuse("config", "bakery always passes --config (the stand-in checks only that use)")
        mixed = sorted(k for k in self.flags if k not in ALLOWED_WITH_CONFIG and not k.startswith("skip-"))
        if mixed:
            self.refuse("config", f"can not mix '--config' with arguments {mixed}")
        file = sim.path(str(self.flags["config"]))
        if not file.is_file():
            self.refuse("config", f"unable to read config from {self.flags['config']!r}: no such file or directory")
        try:
            docs = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
        except yaml.YAMLError as e:
            self.refuse("config", f"{self.flags['config']}: error converting YAML to JSON: {e}")
        by_kind: dict[str, dict] = {}
        versions = set()
        for d in docs:
            if not isinstance(d, dict) or (d.get("apiVersion"), d.get("kind")) not in KNOWN_KINDS:
                got = (d.get("apiVersion"), d.get("kind")) if isinstance(d, dict) else d
                self.refuse("config", f"{self.flags['config']}: no kind/apiVersion kubeadm reads: {got!r}")
            errors = contracts.validate_kube_doc(d)
            if errors:
                self.refuse("config", f"{self.flags['config']}: strict decoding error: " + "; ".join(errors[:5]))
            if d["kind"] in by_kind:
                self.refuse("config", f"{self.flags['config']}: more than one {d['kind']}")
            by_kind[d["kind"]] = d
            if d["apiVersion"].startswith("kubeadm.k8s.io/"):
                versions.add(d["apiVersion"])
        if len(versions) > 1:
            self.refuse("config", f"{self.flags['config']}: mixed kubeadm API versions {sorted(versions)}")
        wanted = {"init": {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"},
                  "join": {"JoinConfiguration"}}[self.verb]
        main = "InitConfiguration" if self.verb == "init" else "JoinConfiguration"
        if main not in by_kind:
            self.refuse("config", f"no {main} in {self.flags['config']}")
        extra = sorted(set(by_kind) - wanted)
        if extra:
            self.refuse("config", f"{self.flags['config']}: kubeadm {self.verb} ignores {extra} (stand-in: refused)")
        return by_kind

    # -- preflight ---------------------------------------------------------------------
    def check_skew(self, version: str, *, control_plane: bool) -> None:
        """A join against the cluster's ClusterConfiguration.kubernetesVersion, as kubeadm checks
        it: the control plane at most one minor older than kubeadm, for every join (constants.
        MinimumControlPlaneVersion, through NormalizeKubernetesVersion when the configuration
        is fetched: "this version of kubeadm only supports deploying clusters with the control
        plane version >= ..."); and for a control-plane join no kubelet newer than the control
        plane (RunInitNodeChecks' KubeletVersionCheck: "the kubelet version is higher than the
        control plane version. This is not a supported version skew and may lead to a
        malfunctional cluster"; a worker's join runs it with no version, so not at all)."""
        def minor(v: str) -> tuple[int, int]:
            major, mnr = v.lstrip("v").split(".")[:2]
            return int(major), int(mnr)

        have, cluster = minor(self.installed), minor(version)
        if cluster < (have[0], have[1] - 1):
            self.refuse("preflight", f"this version of kubeadm only supports deploying clusters with the control "
                                     f"plane version >= {have[0]}.{have[1] - 1}.0. Current version: {version}")
        if control_plane and have > cluster:
            self.refuse("preflight", "[preflight] Some fatal errors occurred:\n\t[ERROR KubeletVersion]: the kubelet "
                                     "version is higher than the control plane version. This is not a supported "
                                     "version skew and may lead to a malfunctional cluster. Kubelet version: "
                                     f"\"{self.installed}\" Control plane version: \"{version}\"")

    def preflight(self, registration: dict, *, control_plane: bool, version: str,
                  repository: str = "registry.k8s.io", kube_proxy: bool = True, coredns: bool = True) -> None:
        ignored = {i.lower() for i in registration.get("ignorePreflightErrors") or []}

        def error(check: str, message: str) -> None:
            if check.lower() not in ignored and "all" not in ignored:
                self.refuse("preflight", f"[preflight] Some fatal errors occurred:\n\t[ERROR {check}]: {message}")

        manifests = sim.path(sim.MANIFESTS_DIR)
        if control_plane:
            for c in CONTROL_PLANE:
                if (manifests / f"{c}.yaml").exists():
                    error(f"FileAvailable--etc-kubernetes-manifests-{c}.yaml",
                          f"/etc/kubernetes/manifests/{c}.yaml already exists")
            etcd = sim.path("/var/lib/etcd")
            if etcd.is_dir() and any(etcd.iterdir()):
                error("DirAvailable--var-lib-etcd", "/var/lib/etcd is not empty")
        if self.verb == "join":
            if manifests.is_dir() and any(manifests.iterdir()):
                error("DirAvailable--etc-kubernetes-manifests", "/etc/kubernetes/manifests is not empty")
            if sim.path(sim.KUBELET_CONF).exists():
                error("FileAvailable--etc-kubernetes-kubelet.conf", "/etc/kubernetes/kubelet.conf already exists")
        socket = registration.get("criSocket") or "unix:///var/run/containerd/containerd.sock"
        if not kubelet.cri_socket_present(socket):
            error("CRI", f"container runtime is not running: validate service connection: {socket} does not exist")
        if version != self.installed:
            self.refuse("preflight", f"this kubeadm is {self.installed}; the configuration asks for Kubernetes "
                                     f"{version} (the stand-in wants them equal)")
        want = [i for i in images_for(version, repository)
                if (kube_proxy or "/kube-proxy:" not in i) and (coredns or "/coredns:" not in i)]
        if not want:
            self.refuse("preflight", f"the stand-in knows no images for Kubernetes {version} "
                                     "(tests/data/specs/kubeadm-images.json)")
        missing = [i for i in want if i not in sim.images_here()]
        if missing:  # not waivable here: ignoring ImagePull leaves pods that cannot start offline
            self.refuse("preflight", f"[ERROR ImagePull]: the images {missing} are not in the container runtime and "
                                     f"the first boot pulls nothing (imagePullPolicy "
                                     f"{registration.get('imagePullPolicy', 'IfNotPresent')})")

    def check_address(self, address: str | None, what: str) -> str:
        if address is None:
            return self.node["defaultRouteAddress"]
        if address not in self.node["addresses"]:
            self.refuse("preflight", f"{what} {address} is not an address of this node "
                                     f"({', '.join(sorted(self.node['addresses']))})")
        return address

    def check_shared_pki(self, pki: str, cluster_ca: dict | None) -> dict[str, str]:
        found = {}
        for name, ca in SHARED_PKI:
            problem = sim.check_pair(f"{pki}/{name}.crt", f"{pki}/{name}.key", ca=ca)
            if problem:
                self.refuse("certs", problem)
            found[name] = sim.path(f"{pki}/{name}.crt").read_text()
        problem = sim.check_key_pair(f"{pki}/sa.pub", f"{pki}/sa.key")
        if problem:
            self.refuse("certs", problem)
        found["sa"] = sim.path(f"{pki}/sa.pub").read_text()
        if cluster_ca is not None:
            for name, pem in found.items():
                same = (sim.public_der(sim.load_cert(pem).public_key()) == sim.public_der(sim.load_cert(cluster_ca[name]).public_key())
                        if name != "sa" else pem.strip() == cluster_ca[name].strip())
                if not same:
                    self.refuse("certs", f"{pki}/{name} is not the cluster's: a control-plane node must share the "
                                         "cluster's CAs and service-account key")
        return found

    def check_token(self, t: dict) -> None:
        """A bootstrap token as kubeadm validates it (apis/bootstraptoken/v1, validation.go):
        the token's form, its usages; and the group kubeadm's RBAC (phases/bootstraptoken/node)
        binds for joining (system:bootstrappers:kubeadm:default-node-token): stricter, any other
        group's token could not post the kubelet's CSR."""
        if not TOKEN.fullmatch(str(t.get("token", ""))):
            self.refuse("bootstrap-token", f"the bootstrap token {str(t.get('token'))[:7]}… does not match "
                                           "[a-z0-9]{6}.[a-z0-9]{16}")
        bad = set(t.get("usages", [])) - {"signing", "authentication"}
        if bad:
            self.refuse("bootstrap-token", f"invalid bootstrap token usages {sorted(bad)}")
        if NODE_TOKEN_GROUP not in t.get("groups", [NODE_TOKEN_GROUP]):
            self.refuse("bootstrap-token", f"the bootstrap token's groups {t.get('groups')} lack {NODE_TOKEN_GROUP}, "
                                           "the group kubeadm allows to join")

    # -- writes --------------------------------------------------------------------------
    def write_kubeconfigs(self, pki: str, server: str, names: list[tuple[str, str, list[str]]]) -> None:
        ca_crt, ca_key = sim.path(f"{pki}/ca.crt").read_bytes(), sim.path(f"{pki}/ca.key").read_bytes()
        for dest, cn, groups in names:
            crt, key = sim.issue_client(ca_crt, ca_key, cn, groups)
            sim.write_kubeconfig(dest, server, ca_crt, cn, crt, key)

    def write_static_pods(self, version: str) -> None:
        manifests = sim.path(sim.MANIFESTS_DIR)
        manifests.mkdir(parents=True, exist_ok=True)
        images = {i.rsplit("/", 1)[1].split(":")[0]: i for i in images_for(version, self.repository)}
        for c in CONTROL_PLANE:
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": c, "namespace": "kube-system"},
                   "spec": {"hostNetwork": True, "containers": [{"name": c, "image": images[c]}]}}
            (manifests / f"{c}.yaml").write_text(yaml.safe_dump(pod))
        etcd = sim.path("/var/lib/etcd/member")
        etcd.mkdir(parents=True, exist_ok=True)

    def check_api_server(self, api_server: dict) -> None:
        """The kubelet starts this node's kube-apiserver from the manifest: what it needs of the node
        (its volumes' host paths, the files its flags name) is there and well-formed (apiserver.py)."""
        errors = apiserver.check(api_server, sim.path)
        if errors:
            self.refuse("wait-control-plane", "kube-apiserver does not start: " + "; ".join(errors))

    def start_kubelet(self, st: dict, name: str, registration: dict, kubelet_config: dict, *, role: str) -> None:
        args = {a["name"]: a["value"] for a in registration.get("kubeletExtraArgs") or []} \
            if isinstance(registration.get("kubeletExtraArgs"), list) else dict(registration.get("kubeletExtraArgs") or {})
        internal = kubelet.start(self.step, name, args, kubelet_config,
                                 registration.get("criSocket") or "unix:///var/run/containerd/containerd.sock")
        cfg = sim.path(sim.KUBELET_CONFIG)
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(yaml.safe_dump({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                                       "cgroupDriver": "systemd", **kubelet_config}))
        sim.path(sim.KUBELET_FLAGS).write_text("KUBELET_KUBEADM_ARGS=\"" + " ".join(f"--{k}={v}" for k, v in args.items()) + "\"\n")
        existing = st["nodes"].get(name, {})
        if existing.get("registeredBy") not in (None, self.machine):
            # kubeadm (phases/join/kubelet.go) refuses a Node of this name that is Ready: "a Node
            # with name %q and status %q already exists in the cluster. You must delete the
            # existing Node or change the name of this new joining Node". The stand-in refuses
            # any Node of this name another machine registered: stricter, never more lenient.
            self.refuse("kubelet-start", f"a Node with name {name!r} already exists in the cluster "
                                         f"(registered by another machine); delete the existing Node first")
        labels = dict(kv.split("=", 1) for kv in args.get("node-labels", "").split(",") if kv)
        existing.update({"kubelet": True, "internalIP": internal, "registeredBy": self.machine, "role": role,
                         "labels": labels, "taints": registration.get("taints"), "kubeletVersion": self.installed})
        st["nodes"][name] = existing

    # -- init -----------------------------------------------------------------------------
    def init(self) -> None:
        docs = self.read_config()
        init, cluster = docs["InitConfiguration"], docs.get("ClusterConfiguration", {})
        reg = init.get("nodeRegistration") or {}
        name = reg.get("name") or self.node["hostname"]
        version = cluster.get("kubernetesVersion") or self.installed
        for t in init.get("bootstrapTokens") or []:
            self.check_token(t)
        skip = list(init.get("skipPhases") or []) + [p for p in str(self.flags.get("skip-phases", "")).split(",") if p]
        for phase in skip:
            if phase not in INIT_PHASES:
                self.refuse("init", f"invalid phase name: {phase}")
        kube_proxy = not {"addon", "addon/kube-proxy"} & set(skip)
        coredns = not {"addon", "addon/coredns"} & set(skip)
        with sim.state(write=False) as st:
            if st["initialized"]:
                self.refuse("preflight", "stand-in: the cluster exists already; a second kubeadm init would make "
                                         "a second cluster")
        self.repository = cluster.get("imageRepository") or "registry.k8s.io"
        self.preflight(reg, control_plane=True, version=version, repository=self.repository,
                       kube_proxy=kube_proxy, coredns=coredns)
        local = init.get("localAPIEndpoint") or {}
        advertise = self.check_address(local.get("advertiseAddress"), "advertiseAddress")
        port = int(local.get("bindPort") or 6443)
        pki = cluster.get("certificatesDir") or sim.PKI_DIR
        if not sim.path(f"{pki}/ca.crt").exists() or not sim.path(f"{pki}/ca.key").exists():
            self.refuse("certs", f"no cluster CA in {pki}: kubeadm would make a new one and no node with "
                                 "bakery's discovery hash could join (stand-in: refused)")
        shared = self.check_shared_pki(pki, None)
        self.fault()
        endpoint = cluster.get("controlPlaneEndpoint") or f"{advertise}:{port}"
        server = f"https://{endpoint}"
        self.write_kubeconfigs(pki, server, [
            (sim.ADMIN_CONF, "kubernetes-admin", [sim.CLUSTER_ADMINS_GROUP]),
            (sim.SUPER_ADMIN_CONF, "kubernetes-super-admin", [sim.MASTERS_GROUP]),
            (sim.KUBELET_CONF, f"system:node:{name}", ["system:nodes"]),
            ("/etc/kubernetes/controller-manager.conf", "system:kube-controller-manager", []),
            ("/etc/kubernetes/scheduler.conf", "system:kube-scheduler", [])])
        self.write_static_pods(version)
        self.check_api_server(cluster.get("apiServer") or {})
        net = cluster.get("networking") or {}
        with sim.state() as st:
            st["ca"] = shared
            st["caKey"] = sim.path(f"{pki}/ca.key").read_text()  # the controller-manager signs the kubelets' CSRs
            st["kubeletConfig"] = docs.get("KubeletConfiguration", {})  # the kubelet-config ConfigMap
            st["cluster"] = {"name": cluster.get("clusterName", "kubernetes"), "kubernetesVersion": version,
                             "controlPlaneEndpoint": endpoint, "bindPort": port,
                             "imageRepository": cluster.get("imageRepository") or "registry.k8s.io",
                             "podSubnet": net.get("podSubnet"), "serviceSubnet": net.get("serviceSubnet", "10.96.0.0/12"),
                             "dnsDomain": net.get("dnsDomain", "cluster.local"),
                             # what a joining control-plane node's kube-apiserver is made from
                             "apiServer": cluster.get("apiServer") or {}}
            self.start_kubelet(st, name, reg, docs.get("KubeletConfiguration", {}), role="control-plane")
            st["nodes"][name].update({"address": advertise, "apiServer": True, "host": self.machine})
            st["etcd"] = [name]
            sim.sync_static_pods(st, name)
            who, why = sim.reach(st, server)
            if who is None:
                self.refuse("upload-config", f"the control-plane endpoint {endpoint} does not answer: {why} "
                                             "(kubeadm waits for it, then times out)")
            # admin.conf is bound through RBAC that init creates (kubeadm 1.29+), with the tokens
            st["rbac"].append(sim.CLUSTER_ADMINS_GROUP)
            for t in init.get("bootstrapTokens") or [{"token": "stand1.in0000000000000000"}]:
                tid, _, secret = str(t["token"]).partition(".")
                ttl = seconds(t.get("ttl", "24h0m0s"))
                st["tokens"][tid] = {"secret": secret, "expires": sim.now() + ttl if ttl else None,
                                     "usages": t.get("usages", ["signing", "authentication"]),
                                     "groups": t.get("groups", [NODE_TOKEN_GROUP])}
            self.install_addons(st, version, kube_proxy=kube_proxy, coredns=coredns)
            st["initialized"] = True
        print("Your Kubernetes control-plane has initialized successfully!")
        if "skip-token-print" not in self.flags:
            for t in init.get("bootstrapTokens") or []:
                print(f"kubeadm join {endpoint} --token {t['token']} --discovery-token-ca-cert-hash ...")

    def install_addons(self, st: dict, version: str, *, kube_proxy: bool, coredns: bool) -> None:
        """The addon phase: kube-proxy's ConfigMap and DaemonSet, CoreDNS's ConfigMap and
        Deployment in kube-system (phases/addons), unless skipped."""
        images = {i.rsplit("/", 1)[1].split(":")[0]: i for i in images_for(version, self.repository)}
        st["addons"] = {"kube-proxy": kube_proxy, "coredns": coredns}
        made = [("", "Namespace", "", "kube-system", {})]
        if kube_proxy:
            made += [("", "ConfigMap", "kube-system", "kube-proxy", {}),
                     ("apps", "DaemonSet", "kube-system", "kube-proxy", {"image": images["kube-proxy"]})]
        if coredns:
            made += [("", "ConfigMap", "kube-system", "coredns", {}),
                     ("apps", "Deployment", "kube-system", "coredns", {"image": images["coredns"]})]
        for group, kind, ns, name, spec in made:
            meta = {"name": name} | ({"namespace": ns} if ns else {})
            obj = {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind, "metadata": meta} | (
                {"spec": spec} if spec else {})
            st["objects"][f"{group}|{kind}|{ns}|{name}"] = {"object": obj, "manager": "kubeadm"}

    # -- join -----------------------------------------------------------------------------
    def join(self) -> None:
        docs = self.read_config()
        join = docs["JoinConfiguration"]
        reg = join.get("nodeRegistration") or {}
        name = reg.get("name") or self.node["hostname"]
        cp = join.get("controlPlane")
        with sim.state(write=False) as st:
            version = st["cluster"].get("kubernetesVersion", self.installed)
            self.repository = st["cluster"].get("imageRepository", "registry.k8s.io")
            addons = st.get("addons") or {}
        self.check_skew(version, control_plane=cp is not None)
        # the node runs kube-proxy's (and CoreDNS's) pods only while the cluster has the addon
        self.preflight(reg, control_plane=cp is not None, version=version, repository=self.repository,
                       kube_proxy=addons.get("kube-proxy", True), coredns=addons.get("coredns", True))
        discovery = join.get("discovery") or {}
        bt = discovery.get("bootstrapToken")
        if bt is None:
            self.refuse("preflight", "stand-in: bakery discovers with a bootstrap token; discovery.bootstrapToken is unset")
        endpoint = bt.get("apiServerEndpoint", "")
        with sim.state(write=False) as st:
            who, why = sim.reach(st, f"https://{endpoint}")
            if who is None or not st["initialized"]:
                self.refuse("preflight", f"couldn't validate the identity of the API Server: {endpoint}: "
                                         f"{why or 'the cluster is not initialized'}")
            tid, _, secret = str(bt.get("token") or join.get("discovery", {}).get("tlsBootstrapToken", "")).partition(".")
            token = st["tokens"].get(tid)
            if token is None or token["secret"] != secret:
                self.refuse("preflight", "couldn't validate the identity of the API Server: could not find a JWS "
                                         "signature in the cluster-info ConfigMap for token ID " + repr(tid))
            if token["expires"] is not None and token["expires"] < sim.now():
                self.refuse("preflight", f"the bootstrap token {tid!r} has expired")
            if not {"signing", "authentication"} <= set(token["usages"]):
                self.refuse("preflight", f"the bootstrap token {tid!r} lacks the signing or authentication usage")
            hashes = bt.get("caCertHashes") or []
            if bt.get("unsafeSkipCAVerification") or not hashes:
                self.refuse("preflight", "the join does not pin the cluster CA (caCertHashes): stand-in refuses "
                                         "unsafeSkipCAVerification")
            want = sim.ca_hash(sim.load_cert(st["ca"]["ca"]))
            if want not in hashes:
                self.refuse("preflight", f"cluster CA found in cluster-info ConfigMap is invalid: none of the public "
                                         f"keys \"{want}\" are pinned")
            cluster_ca = dict(st["ca"])
            if cp is not None:
                racing = [n for n, p in st["pending"].items() if n != self.node["name"] and p["action"] ==
                          "join-control-plane" and not p.get("done") and not p.get("started")
                          and (not p.get("joinAfter") or sim.api_server_ready(st, p["joinAfter"]))]
                if racing:
                    self.refuse("check-etcd", f"etcd adds one member at a time: {', '.join(racing)} would join "
                                              "the control plane at the same moment as this node (each control-plane "
                                              "node after the first must wait for the one before it)")
                # a node re-created under its old name and address: its old etcd member (named after
                # the node, peer URL https://ADDRESS:2380) must be gone first. kubeadm's addMember
                # tolerates ErrPeerURLExist and goes on; the new etcd then starts as the old member
                # with an empty data directory, crash-loops, and the join times out. The stand-in
                # refuses at once: earlier and stricter, never more lenient.
                addr = (cp.get("localAPIEndpoint") or {}).get("advertiseAddress")
                old = [m for m in st["etcd"] if m == name or (st["nodes"].get(m) or {}).get("address") == addr]
                if old:
                    self.refuse("check-etcd", f"etcd still has a member {old[0]!r} with this node's name or peer "
                                              f"URL https://{addr}:2380; remove it first (etcdctl member remove) "
                                              "before re-creating the node")
        if cp is not None:
            local = cp.get("localAPIEndpoint") or {}
            advertise = self.check_address(local.get("advertiseAddress"), "controlPlane.localAPIEndpoint.advertiseAddress")
            if cp.get("certificateKey"):
                self.refuse("control-plane-prepare", "controlPlane.certificateKey: no certificates were uploaded "
                                                     "(init ran without --upload-certs)")
            self.check_shared_pki(sim.PKI_DIR, cluster_ca)
        self.fault()
        server = f"https://{endpoint}"
        if cp is not None:
            self.write_kubeconfigs(sim.PKI_DIR, server, [
                (sim.ADMIN_CONF, "kubernetes-admin", [sim.CLUSTER_ADMINS_GROUP]),
                ("/etc/kubernetes/controller-manager.conf", "system:kube-controller-manager", []),
                ("/etc/kubernetes/scheduler.conf", "system:kube-scheduler", [])])
            self.write_static_pods(version)
            with sim.state(write=False) as st:
                api_server = st["cluster"].get("apiServer") or {}
            self.check_api_server(api_server)
        with sim.state() as st:
            ca_pem = st["ca"]["ca"].encode()
        # the kubelet's TLS bootstrap: kubelet.conf with a certificate the cluster CA signs
        # (the stand-in issues it with the CA key the lab keeps for the cluster)
        crt, key = sim.issue_client(ca_pem, st["caKey"].encode(), f"system:node:{name}", ["system:nodes"])
        sim.write_kubeconfig(sim.KUBELET_CONF, server, ca_pem, f"system:node:{name}", crt, key)
        with sim.state() as st:
            self.start_kubelet(st, name, reg, st.get("kubeletConfig", {}),
                               role="control-plane" if cp is not None else "worker")
            if cp is not None:
                st["nodes"][name].update({"address": advertise, "apiServer": True})
                st["etcd"].append(name)
            st["nodes"][name]["host"] = self.machine
            sim.sync_static_pods(st, name)
        print("This node has joined the cluster" + (" and a new control plane instance was created" if cp is not None else ""))

    def fault(self) -> None:
        """A try that fails after preflight (node.json faults.kubeadmFail), half done."""
        limit = int((self.node.get("faults") or {}).get("kubeadmFail", 0))
        if not limit:
            return
        with sim.state() as st:
            count = st.setdefault("faults", {}).get(self.node["name"], 0) + 1
            st["faults"][self.node["name"]] = count
        if count <= limit:
            manifests = sim.path(sim.MANIFESTS_DIR)
            manifests.mkdir(parents=True, exist_ok=True)
            (manifests / "kube-apiserver.yaml").write_text("# stand-in: a half-done try\n")
            sim.path(sim.KUBELET_CONF).write_text("# stand-in: a half-done try\n")
            print("[wait-control-plane] stand-in fault: the control plane did not come up", file=sys.stderr)
            sys.exit(1)

    # -- reset ----------------------------------------------------------------------------
    def reset(self) -> None:
        if self.flags.get("force") is not True:
            self.refuse("reset", "kubeadm reset without --force asks for confirmation (no terminal)")
        for f in ("admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"):
            sim.path(f"{sim.KUBERNETES_DIR}/{f}").unlink(missing_ok=True)
        for d in (sim.MANIFESTS_DIR, sim.PKI_DIR, "/var/lib/etcd", "/var/lib/kubelet"):
            folder = sim.path(d)
            if folder.is_dir():
                for child in folder.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        with sim.state() as st:
            for name, n in st["nodes"].items():
                if n.get("host") == self.machine or n.get("registeredBy") == self.machine:
                    n.update({"apiServer": False, "kubelet": False, "staticPods": {}})
                    if name in st["etcd"]:
                        st["etcd"].remove(name)
        print("[reset] stand-in: removed the node's kubeadm state")


def parse(argv: list[str]) -> tuple[str, dict[str, str | bool]]:
    if not argv:
        sim.violation("kubeadm", "kubeadm: no command")
    words, flags = [], {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            if eq:
                flags[name] = value
            elif name in TAKES_VALUE and i + 1 < len(argv):
                flags[name] = argv[i + 1]
                i += 1
            else:
                flags[name] = True
        else:
            words.append(a)
        i += 1
    return " ".join(words), flags


def main(argv: list[str]) -> None:
    verb, flags = parse(argv)
    with open(sim.LAB / "calls", "a") as f:
        f.write("kubeadm " + " ".join(argv) + "\n")
    if verb.startswith("version"):
        v = Kubeadm("version", flags).installed
        print(v if verb == "version -o short" else f"kubeadm version: &version.Info{{GitVersion:\"{v}\"}} (stand-in)")
    elif verb == "config images list":
        print("\n".join(images_for(str(flags.get("kubernetes-version") or Kubeadm(verb, flags).installed))))
    elif verb in ("init", "join", "reset"):
        getattr(Kubeadm(verb, flags), verb)()
    else:
        sim.violation(f"kubeadm {verb}", f"unknown command {verb!r} for kubeadm (stand-in)")


if __name__ == "__main__":
    main(sys.argv[1:])
