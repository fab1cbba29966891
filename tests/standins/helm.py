"""STAND-IN for helm (bakery's tests; not Helm), run inside a node's throwaway root by the cluster
rehearsal (tests/rehearse.py) against the shared simulated cluster (simcluster.py). It enforces,
for the call bakery's first boot makes (``helm upgrade --install NAME CHART --namespace NS
--values FILE --kubeconfig FILE``, and ``helm install``), Helm's contract as its source defines it
(github.com/helm/helm v4.2.4, pkg/cmd/upgrade.go, pkg/action/{install,upgrade}.go,
pkg/chart/v2/loader, pkg/chart/common/util/jsonschema.go), stricter where simpler:

- the release name is a DNS-1123 subdomain of at most 53 characters (action.validateReleaseName);
- the chart is a file that exists and loads: a gzipped tar whose one top folder holds Chart.yaml
  with apiVersion v2, a name equal to the folder and a SemVer version (chart.Validate); the
  file is named ``<name>-<version>.tgz`` for that name and version (as `helm package` names it;
  stricter: helm would load a renamed file);
- every ``--values`` file exists and is a YAML mapping; the values are validated against the
  chart's values.schema.json (JSON Schema, draft-07; helm validates the chart's values.yaml
  merged with the user's: the stand-in validates the user's over an empty values.yaml, so a
  wrong type or a value the schema forbids fails as it does in helm);
- ``--namespace`` is given (stricter: helm would take the kubeconfig context's) and exists in
  the cluster (install does not create it without --create-namespace: "namespaces not found");
- the API server is reached as kubectl reaches it (kubectl.connect: the kubeconfig exists and
  loads, the server answers, trusts the cluster CA, the client is authorized);
- ``install`` of a name in use fails ("cannot re-use a name that is still in use");
  ``upgrade`` without ``--install`` of an unknown name fails ("has no deployed releases");
  ``upgrade --install`` installs, or upgrades the last release, also a failed one (helm v4
  action/upgrade.go takes a failed last release as current); a pending one is
  "another operation (install/upgrade/rollback) is in progress".

Releases are kept in the state (``helm``: "NS/NAME" -> revisions with chart, version, status,
values). Faults for tests: node.json ``faults.helmFail = N`` makes the first N calls record a
failed revision and exit 1 after the release was written (as a failed --wait or hook would),
not a violation.
"""
from __future__ import annotations

import io
import json
import re
import sys
import tarfile

import kubectl
import simcluster as sim
import yaml

RELEASE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
TAKES_VALUE = {"--namespace", "-n", "--values", "-f", "--kubeconfig", "--version", "--timeout", "--server-side"}


def refuse(message: str) -> None:
    sim.violation("helm", message.removeprefix("Error: "), printed=message)


def parse(argv: list[str]) -> tuple[list[str], dict[str, list[str]], set[str]]:
    words, flags, switches = [], {}, set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and "=" in a:
            k, _, v = a.partition("=")
            flags.setdefault(k, []).append(v)
        elif a in TAKES_VALUE:
            if i + 1 >= len(argv):
                refuse(f"Error: flag needs an argument: {a}")
            flags.setdefault(a, []).append(argv[i + 1])
            i += 1
        elif a.startswith("-"):
            switches.add(a)
        else:
            words.append(a)
        i += 1
    return words, flags, switches


def load_chart(path: str) -> tuple[dict, dict | None]:
    """(Chart.yaml, values.schema.json or None) of a packaged chart, as helm's loader reads it."""
    f = sim.path(path)
    if not f.is_file():
        refuse(f"Error: path \"{path}\" not found")
    try:
        with tarfile.open(fileobj=io.BytesIO(f.read_bytes()), mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            tops = {name.split("/", 1)[0] for name in members}
            if len(tops) != 1:
                refuse(f"Error: {path}: chart archive has {len(tops)} top folders, want one")
            top = tops.pop()
            if f"{top}/Chart.yaml" not in members:
                refuse(f"Error: {path}: Chart.yaml file is missing")
            meta = yaml.safe_load(tar.extractfile(members[f"{top}/Chart.yaml"]).read()) or {}  # type: ignore[union-attr]
            schema_name = f"{top}/values.schema.json"
            schema = json.loads(tar.extractfile(members[schema_name]).read()) if schema_name in members else None  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as e:
        refuse(f"Error: {path}: not a chart archive (gzip/tar: {e})")
    if not isinstance(meta, dict) or meta.get("apiVersion") not in ("v1", "v2") or not meta.get("name") \
            or not SEMVER.match(str(meta.get("version", ""))):
        refuse(f"Error: validation: chart.metadata in {path} needs apiVersion, name and a SemVer version")
    if meta["name"] != top:
        refuse(f"Error: {path}: chart folder {top!r} is not the chart's name {meta['name']!r}")
    expected = f"{meta['name']}-{meta['version']}.tgz"
    if f.name != expected:
        refuse(f"Error: {path} holds the chart {meta['name']} {meta['version']} (stand-in: want it named {expected})")
    return meta, schema


def schema_errors(values: dict, schema: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [f"- {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))]


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main(argv: list[str]) -> None:
    with open(sim.LAB / "calls", "a") as f:
        f.write("helm " + " ".join(argv) + "\n")
    installed = sim.node().get("helmVersion")
    if not installed:  # the image has no helm: the shell finds none
        print("helm: command not found", file=sys.stderr)
        sys.exit(127)
    words, flags, switches = parse(argv)
    if words[:1] == ["version"]:
        print(installed)
        return
    if not words or words[0] not in ("install", "upgrade"):
        refuse(f"Error: unknown command {words[:1]} for \"helm\" (stand-in: install and upgrade only)")
    verb, args = words[0], words[1:]
    install = verb == "install" or bool({"--install", "-i"} & switches)
    if len(args) != 2:
        refuse(f"Error: \"helm {verb}\" requires 2 arguments (NAME CHART)")
    name, chart_path = args
    if len(name) > 53 or not RELEASE_NAME.match(name):
        refuse(f"Error: release name \"{name}\": invalid release name, must match regex {RELEASE_NAME.pattern} "
               "and the length must not be longer than 53")
    ns = (flags.get("--namespace") or flags.get("-n") or [""])[-1]
    if not ns:
        refuse("Error: stand-in: bakery always names the namespace (--namespace)")
    meta, schema = load_chart(chart_path)
    values: dict = {}
    for vf in (flags.get("--values") or []) + (flags.get("-f") or []):
        if not sim.path(vf).is_file():
            refuse(f"Error: open {vf}: no such file or directory")
        try:
            doc = yaml.safe_load(sim.path(vf).read_text())
        except yaml.YAMLError as e:
            refuse(f"Error: failed to parse {vf}: {e}")
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            refuse(f"Error: failed to parse {vf}: error unmarshaling JSON: json: cannot unmarshal into Go value of type map")
        values = merge(values, doc)
    if schema is not None:
        errors = schema_errors(values, schema)
        if errors:
            refuse(f"Error: values don't meet the specifications of the schema(s) in the following chart(s):\n"
                   f"{meta['name']}:\n" + "\n".join(errors))
    kubectl.connect({"--kubeconfig": flags["--kubeconfig"][-1]} if "--kubeconfig" in flags else {},
                    f"helm {verb} {name}")
    node = sim.node()
    with sim.state() as st:
        if f"|Namespace||{ns}" not in st["objects"]:
            refuse(f"Error: create: failed to create: namespaces \"{ns}\" not found")
        releases = st.setdefault("helm", {})
        key = f"{ns}/{name}"
        history = releases.get(key, [])
        if history and verb == "install":
            refuse("Error: INSTALLATION FAILED: cannot re-use a name that is still in use")
        if not history and not install:
            refuse(f"Error: UPGRADE FAILED: \"{name}\" has no deployed releases")
        if history and history[-1]["status"].startswith("pending"):
            refuse("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress")
        st.setdefault("helmCalls", {})
        st["helmCalls"][node["name"]] = count = st["helmCalls"].get(node["name"], 0) + 1
        failing = count <= int((node.get("faults") or {}).get("helmFail", 0))
        for rev in history:
            if rev["status"] == "deployed":
                rev["status"] = "superseded"
        history.append({"revision": len(history) + 1, "chart": meta["name"], "version": str(meta["version"]),
                        "status": "failed" if failing else "deployed", "values": values})
        releases[key] = history
    if failing:
        print(f"Error: {'INSTALLATION' if len(history) == 1 else 'UPGRADE'} FAILED: stand-in fault: "
              "the release was written, then failed", file=sys.stderr)
        sys.exit(1)
    print(f"Release \"{name}\" has been {'upgraded' if len(history) > 1 else 'installed'}. Happy Helming!\n"
          f"NAME: {name}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: {len(history)}")


if __name__ == "__main__":
    main(sys.argv[1:])
