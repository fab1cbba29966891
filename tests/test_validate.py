"""Validation: the bad-file corpus, the schema, and positions of errors."""
import json
import re
from pathlib import Path

import pytest

from conftest import LAB, ROOT, bakery_forked, run_bakery

BAD = sorted((ROOT / "tests" / "data" / "bad").glob("*.yaml"))


def expected_check(path: Path) -> str:
    side = path.with_suffix(".expect")
    if side.exists():
        return side.read_text().strip()
    m = re.search(rb"# expect: ([a-z0-9-]+)", path.read_bytes())
    assert m, f"{path.name} names no expected check"
    return m.group(1).decode()


def test_corpus_is_large_enough():
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_file_rejected_with_position_and_check(path, tmp_path):
    check = expected_check(path)
    # a corpus of commands: each a fork of one interpreter that imported bakery (conftest),
    # with its own exit status and streams; test_harness pins that it answers as `python -m bakery`
    # validate: exit 2, one line per problem naming file:line:col and the check
    r = bakery_forked("validate", path, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    pattern = re.escape(str(path)) + r":(\d+):(\d+): error\[" + re.escape(check) + r"\]: \S"
    m = re.search(pattern, r.stderr)
    assert m, f"expected {check} with a position, got:\n{r.stderr}"
    line, col = int(m.group(1)), int(m.group(2))
    text = path.read_bytes().decode("utf-8", "replace").splitlines()
    if check not in ("yaml-empty", "file-binary"):
        assert 1 <= line <= len(text) and 1 <= col <= len(text[line - 1]) + 1
    # render: same verdict, and nothing written anywhere under the working folder
    r = bakery_forked("render", path, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"[{check}]" in r.stderr
    assert list(tmp_path.iterdir()) == []


def _line_of(path: Path, needle: str) -> tuple[int, int]:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i, line.index(needle) + 1
    raise AssertionError(needle)


def test_positions_point_at_the_offending_value():
    """The position is that of the value the check is about, not just somewhere."""
    path = ROOT / "tests/data/bad/address-outside-node-cidr.yaml"
    r = run_bakery("validate", path)
    line, col = _line_of(path, "192.168.57.31")
    assert f"{path}:{line}:{col}: error[node-address-outside-cidr]" in r.stderr
    path = ROOT / "tests/data/bad/typo-nodeCIDR.yaml"
    r = run_bakery("validate", path)
    line, col = _line_of(path, "nodeCIDR")
    assert f"{path}:{line}:{col}: error[schema-unknown-field]: unknown field 'nodeCIDR'" in r.stderr
    assert "did you mean 'nodeCidr'" in r.stderr


def test_lab_example_is_valid_with_one_warning():
    r = run_bakery("validate", LAB)
    assert r.returncode == 0, r.stderr
    assert "warning[pod-cidr-public]" in r.stderr  # 20.96.0.0/12 is public space
    r = run_bakery("validate", "--strict", LAB)
    assert r.returncode == 2


def test_validate_json_output():
    r = run_bakery("validate", "--output", "json", ROOT / "tests/data/bad/duplicate-address.yaml")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert doc["valid"] is False and doc["errors"] == 1
    errs = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert errs[0]["check"] == "node-address-duplicate" and errs[0]["line"] > 0 and errs[0]["column"] > 0
    r = run_bakery("validate", "--output", "json", LAB)
    assert r.returncode == 0 and json.loads(r.stdout)["valid"] is True


def test_missing_file_and_directory(tmp_path):
    r = run_bakery("validate", tmp_path / "nope.yaml")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = run_bakery("validate", tmp_path)
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_schema_command_prints_a_valid_2020_12_schema():
    from jsonschema import Draft202012Validator

    r = run_bakery("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


def _walk_fields(schema, path="$", verbatim=False):
    verbatim = verbatim or schema.get("x-verbatim", False)
    if schema.get("type") == "object" or "properties" in schema:
        yield path, schema, verbatim
        for k, sub in schema.get("properties", {}).items():
            yield from _walk_fields(sub, f"{path}.{k}", verbatim)
    items = schema.get("items")
    if isinstance(items, dict):
        yield from _walk_fields(items, f"{path}[]", verbatim)


def test_schema_is_closed_and_documented():
    schema = json.loads((ROOT / "schemas/cluster.schema.json").read_text())
    for path, obj, verbatim in _walk_fields(schema):
        if "properties" in obj:
            assert obj.get("additionalProperties") is False, path
            required = set(obj.get("required", []))
            for key, sub in obj["properties"].items():
                assert sub.get("description"), f"{path}.{key} has no description"
                if verbatim:  # passed on as written: no default may be filled in
                    assert "default" not in sub, f"{path}.{key} is verbatim but has a default"
                elif obj.get("x-default-choice"):  # alternatives: only the chosen one is filled in
                    assert "default" not in sub and obj["x-default-choice"] in obj["properties"], f"{path}.{key}"
                else:
                    assert "default" in sub or key in required, f"{path}.{key} has neither default nor required"


def test_lab_example_validates_against_schema_with_jsonschema_alone():
    import yaml
    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "schemas/cluster.schema.json").read_text())
    Draft202012Validator(schema).validate(yaml.safe_load(LAB.read_text()))


def test_defaults_are_filled_from_the_schema():
    from bakery.spec.pipeline import load_cluster

    cluster, _ = load_cluster(str(LAB))
    assert cluster.network.dns_domain == "cluster.local"
    assert cluster.image.cpus == 2 and cluster.token_ttl == "24h"
    assert cluster.control_plane.endpoint == "192.168.56.30:6443"
    # the master is tainted because the cluster has workers
    assert cluster.init_node.taints[0].key == "node-role.kubernetes.io/control-plane"


def test_endpoint_defaults_to_first_control_plane(tmp_path):
    from bakery.spec.pipeline import load_cluster

    text = LAB.read_text().replace("    endpoint: 192.168.56.30:6443", "    vip: null")
    text = text.replace("address: 192.168.56.30}", "address: 192.168.56.40}")
    f = tmp_path / "c.yaml"
    f.write_text(text)
    cluster, _ = load_cluster(str(f))
    assert cluster.control_plane.endpoint == "192.168.56.40:6443"


def test_anchors_and_merge_keys_work(tmp_path):
    from bakery.spec.pipeline import load_cluster

    text = LAB.read_text().replace(
        "    - {name: k8s-node1, role: worker, address: 192.168.56.31}",
        "    - &w {name: k8s-node1, role: worker, address: 192.168.56.31, labels: {tier: a}}",
    ).replace("    - {name: k8s-node2, role: worker, address: 192.168.56.32}",
              "    - {<<: *w, name: k8s-node2, address: 192.168.56.32}")
    f = tmp_path / "c.yaml"
    f.write_text(text)
    cluster, _ = load_cluster(str(f))
    assert cluster.nodes[2].labels["tier"] == "a" and cluster.nodes[2].role == "worker"


def test_all_examples_are_valid():
    for ex in sorted(ROOT.glob("examples/*/cluster.yaml")):
        r = run_bakery("validate", ex)
        assert r.returncode == 0, (ex, r.stderr)


def test_a_pasted_private_key_is_not_echoed(tmp_path):
    path = ROOT / "tests/data/bad/ssh-key-private.yaml"
    r = run_bakery("validate", path)
    assert r.returncode == 2 and "error[schema-format]" in r.stderr
    assert "b3BlbnNzaC1rZXk" not in r.stderr and "looks like a private key (not shown)" in r.stderr


def test_proxmox_needs_a_gateway_even_when_virtualbox_has_nat(tmp_path):
    """A Proxmox clone has one NIC: with no gateway its node has no default route, whatever
    VirtualBox's NAT NIC does. Its NIC name no longer matters: its seed matches by MAC."""
    text = LAB.read_text().replace("    gateway: 192.168.56.1          # optional\n", "")
    f = tmp_path / "pve.yaml"
    f.write_text(text)
    r = run_bakery("validate", f)
    assert r.returncode == 2 and "error[no-default-route]" in r.stderr and "Proxmox" in r.stderr, r.stderr
    f.write_text(text.replace("builders: [virtualbox-iso, proxmox-iso, qemu]", "builders: [virtualbox-iso, qemu]"))
    r = run_bakery("validate", f)
    assert r.returncode == 0 and "no-default-route" not in r.stderr, r.stderr
    f.write_text(LAB.read_text().replace("builders: [virtualbox-iso, proxmox-iso, qemu]", "builders: [proxmox-iso]"))
    r = run_bakery("validate", f)
    assert r.returncode == 0 and "proxmox-nic-name" not in r.stderr, r.stderr


