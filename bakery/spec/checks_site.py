"""Semantic checks of the site's settings (issue 18): proxy and mirror URLs, trusted CAs, the
image's extra packages, images and files, the kubelet's fields and the components' flags, the
audit policy. Registered with the others (``checkbase.check``); IDs are listed in the README."""
from __future__ import annotations

import datetime
import difflib
import ipaddress
import re
import urllib.parse
from collections.abc import Iterator

from .. import nodefacts, owned, versions
from ..errors import Diagnostic
from ..resources import kubelet_fields
from .checkbase import Ctx, check
from .loader import dotted

GO_DURATION = re.compile(r"(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)")
QUANTITY = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i?|[mkMGTPE]|n|u)?")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----")

# Packages the bake installs from their releases or pins itself: an extra package of the same
# name would replace or fight them (Debian's containerd, runc and docker.io conflict with the
# release tarballs; kubelet, kubeadm and kubectl are pinned to spec.kubernetes.version).
BAKERY_PACKAGES = ("kubelet", "kubeadm", "kubectl", "kubernetes-cni", "cri-tools", "containerd", "containerd.io",
                   "runc", "docker.io", "docker-ce", "podman", "cloud-init")
# Time daemons, which conflict with each other (Debian's and Ubuntu's package relations: each
# Provides and Conflicts time-daemon): the image bakes its release's (versions.TimeDaemon,
# which cloud-init configures for spec.ntp); installing another removes it.
TIME_DAEMONS = ("systemd-timesyncd", "chrony", "ntp", "ntpsec", "openntpd")
# Packages that set up swap at boot (a swap file or zram): the kubelet does not start with swap
# on, and the bake turned it off for good (10-swap).
SWAP_PACKAGES = ("dphys-swapfile", "swapspace", "systemd-zram-generator", "zram-tools", "zram-config")
# Docker Hub's hosts: images are named docker.io/..., which containerd's certs.d is keyed by.
DOCKER_HUB_ALIASES = ("registry-1.docker.io", "index.docker.io")


def _urls(spec: dict) -> Iterator[tuple[tuple, str]]:
    for key in ("http", "https"):
        if spec["proxy"][key]:
            yield ("spec", "proxy", key), spec["proxy"][key]
    for key in ("apt", "kubernetes", "downloads"):
        if spec["mirrors"][key]:
            yield ("spec", "mirrors", key), spec["mirrors"][key]
    for host, url in spec["mirrors"]["registries"].items():
        yield ("spec", "mirrors", "registries", host), url


@check("site-url")
def _site_urls(ctx: Ctx) -> Iterator[Diagnostic]:
    for path, url in _urls(ctx.spec):
        where = ".".join(str(p) for p in path)
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None or parts.password is not None:
            yield ctx.err("site-url", path, f"{where} holds credentials (user:password@): cluster.yaml is not a "
                          "place for a secret, and they would end up in every node's files",
                          "use a proxy or mirror that admits the nodes by address, or set the Packer variable "
                          "at build time (PKR_VAR_https_proxy) for the bake only")
            continue
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port == -1 or port == 0:
            yield ctx.err("site-url", path, f"{where} {url} has no valid host and port",
                          "write it as http://host:port or https://host/path")
        elif (parts.query or parts.fragment) and path[1] != "registries":
            yield ctx.err("site-url", path, f"{where} {url} has a query or fragment, which a path appended "
                          "to it would end up inside", "leave out the part from '?' or '#' on")
    for host in ctx.spec["mirrors"]["registries"]:
        if host in DOCKER_HUB_ALIASES:
            # containerd looks up certs.d/<the image name's host>: an image named docker.io/...
            # never reads certs.d/registry-1.docker.io (ConfigureHosts, hostDirFromRoots)
            yield ctx.err("site-url", ("spec", "mirrors", "registries", host),
                          f"spec.mirrors.registries.{host}: containerd never uses this mirror, since images "
                          "from Docker Hub are named docker.io/... and it looks up the mirror by that name",
                          "write the key as docker.io", key=True)
    proxy = ctx.spec["proxy"]
    if proxy["http"] and not proxy["https"]:
        yield ctx.warn("site-url", ("spec", "proxy", "http"), "spec.proxy has an http proxy but no https proxy: "
                       "https downloads and registry pulls go direct", "set spec.proxy.https too (often the same URL)")
    if proxy["noProxy"] and not (proxy["http"] or proxy["https"]):
        yield ctx.warn("site-url", ("spec", "proxy", "noProxy"), "spec.proxy.noProxy is set but there is no proxy",
                       "set spec.proxy.http and spec.proxy.https, or leave noProxy out")
    for i, entry in enumerate(proxy["noProxy"]):
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=True)
            except ValueError as e:
                yield ctx.err("site-url", ("spec", "proxy", "noProxy", i), f"spec.proxy.noProxy[{i}] {entry}: {e}",
                              "write a CIDR with its host bits clear, such as 10.0.0.0/8")


@check("ca-certificate")
def _ca_certificates(ctx: Ctx) -> Iterator[Diagnostic]:
    if not ctx.spec["trust"]["caCertificates"]:
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    seen: dict[bytes, int] = {}
    for i, text in enumerate(ctx.spec["trust"]["caCertificates"]):
        path = ("spec", "trust", "caCertificates", i)
        where = f"spec.trust.caCertificates[{i}]"
        found = PEM_CERT.findall(text)
        if "PRIVATE KEY" in text:
            yield ctx.err("ca-certificate", path, f"{where} holds a private key",
                          "give the CA's certificate only; its key must never leave the CA")
            continue
        if len(found) != 1 or text.strip() != found[0].strip():
            yield ctx.err("ca-certificate", path, f"{where} is not one PEM certificate "
                          f"({len(found)} certificate blocks" + (", and other text" if found else "") + ")",
                          "one entry per certificate: -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----")
            continue
        try:
            cert = x509.load_pem_x509_certificate(found[0].encode())
        except ValueError:
            yield ctx.err("ca-certificate", path, f"{where} is not a readable X.509 certificate (its base64 "
                          "does not decode to one)",
                          "paste the PEM text of the certificate as the CA published it")
            continue
        fp = cert.fingerprint(hashes.SHA256())
        if fp in seen:
            yield ctx.err("ca-certificate", path, f"{where} is the same certificate as "
                          f"spec.trust.caCertificates[{seen[fp]}]", "give each certificate once")
            continue
        seen[fp] = i
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        subject = cert.subject.rfc4514_string()
        if not is_ca:
            yield ctx.warn("ca-certificate", path, f"{where} ({subject}) is not a CA certificate "
                           "(no basicConstraints CA:TRUE): it is trusted, but can sign nothing",
                           "give the certificate of the CA that signs the site's servers")
        if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
            yield ctx.warn("ca-certificate", path, f"{where} ({subject}) expired on "
                           f"{cert.not_valid_after_utc:%Y-%m-%d}", "give the CA's current certificate")


def _package_name(entry: str) -> str:
    return entry.partition("=")[0]


@check("extra-package")
def _extra_packages(ctx: Ctx) -> Iterator[Diagnostic]:
    seen: dict[str, int] = {}
    for i, entry in enumerate(ctx.spec["image"]["extraPackages"]):
        path = ("spec", "image", "extraPackages", i)
        name = _package_name(entry)
        if name in BAKERY_PACKAGES:
            yield ctx.err("extra-package", path, f"spec.image.extraPackages[{i}] {name} is installed or pinned by "
                          "bakery itself", "leave it out: bakery installs the versions of cluster.yaml "
                          "(spec.kubernetes.version, spec.containerd.version)")
        elif name in SWAP_PACKAGES:
            yield ctx.err("extra-package", path, f"spec.image.extraPackages[{i}] {name} turns swap on at boot, "
                          "and the kubelet does not start with swap on", "leave it out")
        elif name in TIME_DAEMONS:
            ours = versions.OS_RELEASES[ctx.spec["os"]].time_daemon.package
            what = "is the image's time daemon, installed by bakery itself" if name == ours else \
                f"would replace the image's {ours}"
            yield ctx.err("extra-package", path, f"spec.image.extraPackages[{i}] {name} {what} "
                          f"({ctx.spec['os']}; cloud-init configures it from spec.ntp.servers)",
                          "leave it out and set spec.ntp.servers")
        elif name in seen:
            yield ctx.err("extra-package", path, f"spec.image.extraPackages[{i}] names {name} again "
                          f"(spec.image.extraPackages[{seen[name]}])", "give each package once")
        else:
            seen[name] = i


@check("extra-image")
def _extra_images(ctx: Ctx) -> Iterator[Diagnostic]:
    for i, ref in enumerate(ctx.spec["image"]["extraImages"]):
        path = ("spec", "image", "extraImages", i)
        first = ref.split("/", 1)[0]
        if "/" not in ref or not ("." in first or ":" in first or first == "localhost"):
            yield ctx.err("extra-image", path, f"spec.image.extraImages[{i}] {ref} does not name its registry",
                          f"write the full name, which containerd lists and the node check compares with, "
                          f"such as docker.io/{ref}")
            continue
        last = ref.rsplit("/", 1)[1]
        if ":" not in last and "@" not in last:
            yield ctx.err("extra-image", path, f"spec.image.extraImages[{i}] {ref} has no tag or digest",
                          f"pin it, such as {ref}:1.0 or {ref}@sha256:<digest> (an image is baked once)")


@check("image-file")
def _image_files(ctx: Ctx) -> Iterator[Diagnostic]:
    seen: dict[str, int] = {}
    registries = tuple(f"/etc/containerd/certs.d/{host}" for host in ctx.spec["mirrors"]["registries"])
    cas = ctx.spec["trust"]["caCertificates"]
    for i, f in enumerate(ctx.spec["image"]["files"]):
        path = ("spec", "image", "files", i, "path")
        p = f["path"]
        where = f"spec.image.files[{i}].path {p}"
        parts = p.split("/")[1:]
        if any(part in (".", "..") for part in parts):
            yield ctx.err("image-file", path, f"{where} has a '.' or '..' part", "write the path without them")
        elif (owner := nodefacts.owned_path(p) or nodefacts.owned_path(p, registries)) is not None:
            yield ctx.err("image-file", path, f"{where} is bakery's own ({owner})",
                          "bakery writes this from cluster.yaml: use the setting for it, or another path")
        elif (below := next((o for o in (*nodefacts.OWNED_PATHS, *registries) if o.startswith(p + "/")),
                            None)) is not None:
            yield ctx.err("image-file", path, f"{where} is a folder of bakery's own files ({below})",
                          "a path cannot be a file and a folder: place the file elsewhere")
        elif (gone := nodefacts.owned_path(p, nodefacts.TRANSIENT_PATHS)) is not None:
            yield ctx.err("image-file", path, f"{where} is under {gone}, which does not keep files into the image",
                          "place it under /etc, /usr/local or /opt")
        elif (sealed := nodefacts.sealed_path(p)) is not None:
            yield ctx.err("image-file", path, f"{where} is removed or emptied by the seal of the image "
                          f"({sealed}), so the nodes would not get it",
                          "place it under /etc, /usr/local or /opt; a node's own settings belong in its seed")
        elif p in seen:
            yield ctx.err("image-file", path, f"{where} is placed twice (spec.image.files[{seen[p]}])",
                          "give each file once")
        elif any(p.startswith(q + "/") or q.startswith(p + "/") for q in seen):
            other = next(q for q in seen if p.startswith(q + "/") or q.startswith(p + "/"))
            yield ctx.err("image-file", path, f"{where} is " + ("inside" if p.startswith(other + "/") else
                          "a folder of") + f" another file of spec.image.files ({other})",
                          "a path cannot be a file and a folder")
        else:
            seen[p] = i
        if "PRIVATE KEY" in f["content"] and not cas:
            yield ctx.warn("image-file", ("spec", "image", "files", i, "content"),
                           f"spec.image.files[{i}] holds a private key: every node of every cluster built from "
                           "the image gets it, and so does anyone who gets the image",
                           "deliver node secrets another way (a secrets manager at first boot)")


# -- the kubelet's fields --------------------------------------------------------------------

def _type_ok(value, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "bool":
        return isinstance(value, bool)
    if t == "duration":
        return isinstance(value, str) and GO_DURATION.fullmatch(value) is not None
    if t == "time":
        return isinstance(value, str) and RFC3339.fullmatch(value) is not None
    if t == "quantity":
        return (isinstance(value, str) and QUANTITY.fullmatch(value) is not None) or (
            isinstance(value, (int, float)) and not isinstance(value, bool))
    if t in ("object", "[]object") or t.startswith(("[]", "map[string]")):
        return True  # containers are walked below
    raise AssertionError(f"unknown kubelet field type {t}")


_WORDS = {"string": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
          "duration": "a Go duration such as 30s or 5m0s", "time": "an RFC 3339 time",
          "quantity": "a quantity such as 100Mi or 0.5", "object": "a mapping", "[]object": "a list of mappings"}


def _describe(t: str) -> str:
    if t.startswith("[]"):
        return f"a list of {_describe(t[2:])}" if t[2:] in _WORDS else "a list"
    if t.startswith("map[string]"):
        return f"a mapping of names to {_describe(t[len('map[string]'):])}"
    return _WORDS.get(t, t)


def _kubelet_walk(value, spec: dict, path: tuple) -> Iterator[tuple[tuple, str, str]]:
    """(path, message, hint) for each value that does not fit the kubelet's type ``spec``."""
    t = spec["type"]
    shown = dotted(path)
    if t == "object" or t == "[]object":
        items = [(path, value)] if t == "object" else None
        if t == "[]object":
            if not isinstance(value, list):
                yield path, f"{shown} is not {_describe(t)}", ""
                return
            items = [(path + (i,), v) for i, v in enumerate(value)]
        assert items is not None
        for where, obj in items:
            if not isinstance(obj, dict):
                yield where, f"{dotted(where)} is not a mapping", ""
                continue
            if "fields" in spec:
                yield from _kubelet_fields(obj, spec["fields"], where)
        return
    if t.startswith("[]"):
        if not isinstance(value, list):
            yield path, f"{shown} is not {_describe(t)}", ""
            return
        for i, v in enumerate(value):
            yield from _kubelet_walk(v, {"type": t[2:]}, path + (i,))
        return
    if t.startswith("map[string]"):
        if not isinstance(value, dict):
            yield path, f"{shown} is not {_describe(t)}", ""
            return
        for k, v in value.items():
            yield from _kubelet_walk(v, {"type": t[len("map[string]"):]}, path + (k,))
        return
    if not _type_ok(value, t):
        hint = "quote it" if t == "string" and not isinstance(value, (dict, list)) else ""
        yield path, f"{shown} is not {_describe(t)}", hint
    elif "enum" in spec and value not in spec["enum"]:
        yield path, f"{shown} {value!r} is not one of {', '.join(map(str, spec['enum']))}", ""


def _kubelet_fields(obj: dict, fields: dict, path: tuple) -> Iterator[tuple[tuple, str, str]]:
    for key, value in obj.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            shown = dotted(path + (key,))
            yield path + (key,), f"{shown} is not a KubeletConfiguration field", (
                f"did you mean '{close[0]}'?" if close else "see the kubelet's configuration reference "
                "(kubelet.config.k8s.io/v1beta1)")
        else:
            yield from _kubelet_walk(value, fields[key], path + (key,))


# The kubelet's eviction signals and the rules it reads its thresholds by at start
# (kubernetes pkg/kubelet/eviction/api/types.go, helpers.go ParseThresholdConfig: a known
# signal; a percentage from 0% to 100% or a quantity that is not negative; every soft threshold
# with a grace period). A kubelet given anything else does not start.
EVICTION_SIGNALS = ("memory.available", "allocatableMemory.available", "nodefs.available", "nodefs.inodesFree",
                    "imagefs.available", "imagefs.inodesFree", "containerfs.available", "containerfs.inodesFree",
                    "pid.available")
PERCENT = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)%")


def _eviction(given: dict, base: tuple) -> Iterator[tuple[tuple, str, str, bool]]:
    """(path, message, hint, is_key) for each eviction setting the kubelet refuses to start with."""
    for field in ("evictionHard", "evictionSoft", "evictionSoftGracePeriod", "evictionMinimumReclaim"):
        values = given.get(field)
        if not isinstance(values, dict):
            continue
        for signal, value in values.items():
            path = base + (field, signal)
            if signal not in EVICTION_SIGNALS:
                close = difflib.get_close_matches(str(signal), EVICTION_SIGNALS, n=1)
                yield path, f"{dotted(path)}: {signal} is not an eviction signal of the kubelet", (
                    f"did you mean '{close[0]}'?" if close else "one of " + ", ".join(EVICTION_SIGNALS)), True
            elif not isinstance(value, str):
                continue  # the type walk reports it
            elif field == "evictionSoftGracePeriod":
                if GO_DURATION.fullmatch(value) is None:
                    yield path, f"{dotted(path)} {value!r} is not a Go duration", "such as 1m30s", False
            elif value.endswith("%"):
                if PERCENT.fullmatch(value) is None or float(value[:-1]) > 100:
                    yield path, f"{dotted(path)} {value!r} is not a percentage from 0% to 100%", "such as 10%", False
            elif QUANTITY.fullmatch(value) is None or value.startswith("-"):
                yield path, f"{dotted(path)} {value!r} is neither a percentage nor a quantity that is not negative", \
                    "such as 10% or 500Mi", False
    soft, periods = given.get("evictionSoft"), given.get("evictionSoftGracePeriod")
    if isinstance(soft, dict):
        for signal in soft:
            if signal in EVICTION_SIGNALS and not (isinstance(periods, dict) and signal in periods):
                yield base + ("evictionSoft", signal), f"{dotted(base + ('evictionSoft', signal))} has no grace " \
                    "period: the kubelet refuses a soft threshold without one", \
                    f"add evictionSoftGracePeriod: {{{signal}: 1m30s}}", True


@check("kubelet-field", "kubelet-owned")
def _kubelet(ctx: Ctx) -> Iterator[Diagnostic]:
    base = ("spec", "kubernetes", "kubelet")
    given = ctx.spec["kubernetes"]["kubelet"]
    if not given:
        return  # (the field tree is read only when there is something to check)
    for path, message, hint in _kubelet_fields(given, kubelet_fields()["fields"], base):
        yield ctx.err("kubelet-field", path, message, hint, key="is not a" in message)
    for path, message, hint, is_key in _eviction(given, base):
        yield ctx.err("kubelet-field", path, message, hint, key=is_key)
    for name in ("apiVersion", "kind"):
        if name in given:
            yield ctx.err("kubelet-owned", base + (name,), f"spec.kubernetes.kubelet.{name} is bakery's to write",
                          "give the KubeletConfiguration's fields only", key=True)
    for name, rule in owned.KUBELET_FIELDS.items():
        *parents, leaf = name.split(".")
        holder = given
        for part in parents:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if not isinstance(holder, dict) or leaf not in holder or rule.allows(holder[leaf]):
            continue
        value, where = holder[leaf], base + tuple(name.split("."))
        if rule.value is None:
            yield ctx.err("kubelet-owned", where, f"spec.kubernetes.kubelet.{name} is set by bakery from "
                          f"{rule.instead}", f"leave it out; set {rule.instead} instead" if "spec." in rule.instead
                          else "leave it out")
        else:
            yield ctx.err("kubelet-owned", where, f"spec.kubernetes.kubelet.{name} {value!r} "
                          f"conflicts with bakery's {rule.value!r} ({rule.instead})", "leave it out: bakery sets it")


@check("extra-args-owned")
def _extra_args(ctx: Ctx) -> Iterator[Diagnostic]:
    k = ctx.spec["kubernetes"]
    for component, flags in owned.COMPONENT_FLAGS.items():
        for name in k[component]["extraArgs"]:
            if name in flags:
                instead = flags[name].instead
                yield ctx.err("extra-args-owned", ("spec", "kubernetes", component, "extraArgs", name),
                              f"spec.kubernetes.{component}.extraArgs.{name} is set by bakery from {instead}",
                              f"set {instead} instead" if instead.startswith(("spec.", "metadata."))
                              else "leave it out", key=True)


@check("audit-policy")
def _audit(ctx: Ctx) -> Iterator[Diagnostic]:
    audit = ctx.spec["kubernetes"]["auditPolicy"]
    base = ("spec", "kubernetes", "auditPolicy")
    if audit["policy"] is not None and not audit["enabled"]:
        yield ctx.warn("audit-policy", base + ("policy",), "spec.kubernetes.auditPolicy.policy is given but "
                       "auditing is off", "set spec.kubernetes.auditPolicy.enabled: true")
    if audit["policy"] is None:
        return
    # The two rules of k8s.io/apiserver pkg/apis/audit/validation/validation.go the schema cannot say.
    for i, rule in enumerate(audit["policy"].get("rules", [])):
        path = base + ("policy", "rules", i)
        if rule.get("nonResourceURLs") and (rule.get("resources") or rule.get("namespaces")):
            yield ctx.err("audit-policy", path + ("nonResourceURLs",), f"spec.kubernetes.auditPolicy.policy.rules[{i}] "
                          "applies to non-resource URLs and to resources or namespaces",
                          "the API server refuses that: split it into two rules")
        for j, gr in enumerate(rule.get("resources", [])):
            if gr.get("resourceNames") and not gr.get("resources"):
                yield ctx.err("audit-policy", path + ("resources", j, "resourceNames"),
                              f"spec.kubernetes.auditPolicy.policy.rules[{i}].resources[{j}] names objects "
                              "but no resources", "add resources: [...] (the API server needs them)")
