"""An unchanged re-render writes nothing (issue 22, bakery/output/state.py): the same inputs
and an untouched folder leave every file, link and folder as it is, not even swapped; any
change of the inputs, of bakery, or of the folder by hand makes the full render, whose tree is
byte-for-byte the one a first render makes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from bakery import render as render_mod
from bakery import renderkey
from bakery.output import state
from bakery.spec import pipeline

from conftest import EXAMPLES, LAB, run_bakery


def tree(out: Path) -> dict[str, tuple]:
    """Every entry: (kind, mode, content hash or link text, inode)."""
    got = {}
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            rel = str(p.relative_to(out))
            if p.is_symlink():
                got[rel] = ("link", os.readlink(p), st.st_ino)
            elif p.is_dir():
                got[rel] = ("dir", st.st_mode & 0o7777, st.st_ino)
            else:
                got[rel] = ("file", st.st_mode & 0o7777, hashlib.sha256(p.read_bytes()).hexdigest(), st.st_ino)
    return got


def without_inodes(t: dict) -> dict:
    return {k: v[:-1] for k, v in t.items()}


@pytest.fixture
def lab(tmp_path):
    src = tmp_path / "cluster.yaml"
    shutil.copy(LAB, src)
    out = tmp_path / "out"
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 0 and "wrote " in r.stdout, r.stderr
    return src, out


def test_an_unchanged_render_writes_nothing(lab):
    src, out = lab
    before, folder = tree(out), out.stat().st_ino
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"unchanged: the {sum(v[0] != 'dir' for v in before.values())} files in {out}" in r.stdout
    assert tree(out) == before and out.stat().st_ino == folder, "nothing written, nothing swapped"
    assert run_bakery("render", "--check", src, "--out", out).returncode == 0
    # what it kept is what a first render makes
    fresh = src.parent / "fresh"
    shutil.copy(out / "secrets.yaml", src.parent / "bundle.yaml")
    assert run_bakery("render", src, "--out", fresh, "--secrets", src.parent / "bundle.yaml").returncode == 0
    a, b = without_inodes(tree(out)), without_inodes(tree(fresh))
    a.pop("secrets.yaml"), b.pop("secrets.yaml", None)  # the bundle is outside the fresh tree
    assert {k: v for k, v in a.items() if k != "manifest.json"} == {k: v for k, v in b.items() if k != "manifest.json"}


@pytest.mark.parametrize("edit", ["content", "content-time-kept", "stray", "removed", "mode", "link", "folder-mode"])
def test_a_hand_edit_makes_the_full_render_that_puts_the_tree_back(lab, edit):
    src, out = lab
    before = without_inodes(tree(out))
    victim = out / "nodes" / "k8s-node1" / "user-data"
    if edit.startswith("content"):  # the same size, the same inode
        st = victim.stat()
        data = bytearray(victim.read_bytes())
        data[-2] = ord("#") if data[-2] != ord("#") else ord("x")
        with open(victim, "r+b") as f:
            f.write(bytes(data))
        if edit == "content-time-kept":  # touch -r, rsync --inplace --times: only ctime tells
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
            assert victim.stat().st_mtime_ns == st.st_mtime_ns
    elif edit == "stray":
        (out / "nodes" / "notes.txt").write_text("mine\n")
    elif edit == "removed":
        victim.unlink()
    elif edit == "mode":
        victim.chmod(0o644)
    elif edit == "link":
        victim.unlink()
        victim.symlink_to("/etc/hostname")
    else:
        (out / "nodes" / "k8s-node1").chmod(0o777)
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 0 and "wrote " in r.stdout, (edit, r.stdout, r.stderr)
    assert without_inodes(tree(out)) == before


def test_other_inputs_make_the_full_render(lab):
    src, out = lab
    # a node's label: a field the model's repr leaves out (Cluster.nodes), which the key must not
    text = src.read_text()
    assert "{name: k8s-node1, role: worker, address: 192.168.56.31}" in text
    src.write_text(text.replace("{name: k8s-node1, role: worker, address: 192.168.56.31}",
                                "{name: k8s-node1, role: worker, address: 192.168.56.31, labels: {tier: a}}"))
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 0 and "wrote " in r.stdout, (r.stdout, r.stderr)
    # a new token: the bundle changed
    r = run_bakery("render", src, "--out", out, "--rotate-token")
    assert r.returncode == 0 and "wrote " in r.stdout
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 0 and "unchanged: " in r.stdout


def test_another_bakery_makes_the_full_render(lab, monkeypatch):
    src, out = lab
    cluster, _ = pipeline.load_cluster(str(src))
    monkeypatch.setattr(renderkey, "_code_digest", lambda: "another bakery")
    result = render_mod.render_cluster(cluster, out=str(out))
    assert result.messages[0].startswith("wrote "), result.messages


@pytest.mark.parametrize("record", ["garbage", "other-key", "link"])
def test_a_broken_or_planted_record_costs_a_full_render(lab, record, tmp_path):
    src, out = lab
    path = state.state_path(out)
    doc = json.loads(path.read_text())
    elsewhere = tmp_path / "elsewhere.json"
    if record == "garbage":
        path.write_text("{not json")
    elif record == "other-key":
        path.write_text(json.dumps(dict(doc, key="0" * 64)))
    else:  # a link someone planted: read as nothing, replaced (never followed) by the next record
        elsewhere.write_text(json.dumps(doc))
        path.unlink()
        path.symlink_to(elsewhere)
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 0 and "wrote " in r.stdout, (record, r.stdout, r.stderr)
    assert not path.is_symlink() and json.loads(path.read_text())["key"] == doc["key"]
    assert (path.stat().st_mode & 0o777) == 0o600
    if record == "link":
        assert json.loads(elsewhere.read_text()) == doc, "the link's target was not written"
    assert "unchanged: " in run_bakery("render", src, "--out", out).stdout


def test_the_key_takes_every_field_and_refuses_an_unknown_type():
    cluster, _ = pipeline.load_cluster(str(EXAMPLES / "ha" / "cluster.yaml"))
    data = renderkey._canonical(cluster)
    assert [n["name"] for n in data["nodes"]] == [n.name for n in cluster.nodes]

    def paths(obj, path=""):
        yield path
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from paths(v, f"{path}.{k}")
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                yield from paths(v, f"{path}[{i}]")

    # every dataclass field of the model is there, however deep (no repr=False gap)
    import dataclasses

    def fields_of(obj, path=""):
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                yield f"{path}.{f.name}"
                yield from fields_of(getattr(obj, f.name), f"{path}.{f.name}")
        elif isinstance(obj, tuple):
            for i, v in enumerate(obj):
                yield from fields_of(v, f"{path}[{i}]")

    flat = set(paths(data))
    missing = [f for f in fields_of(cluster) if f not in flat]
    assert missing == [], missing[:10]
    with pytest.raises(TypeError, match="no canonical form for object"):
        renderkey._canonical({"x": object()})


def test_the_libraries_that_emit_the_bytes_are_in_the_key(monkeypatch):
    """Jinja2, PyYAML (and whether libyaml is there), cryptography and Python: another version
    of any may emit other bytes (the seed ISOs are bakery's own code since issue 22)."""
    from importlib import metadata

    real = metadata.version
    base = renderkey._code_digest()
    for dist in ("jinja2", "PyYAML", "cryptography"):
        monkeypatch.setattr(metadata, "version", lambda name, d=dist: "0.0-other" if name == d else real(name))
        assert renderkey._code_digest() != base, dist
    monkeypatch.setattr(metadata, "version", real)
    import yaml

    monkeypatch.setattr(yaml, "__with_libyaml__", not yaml.__with_libyaml__)
    assert renderkey._code_digest() != base


def test_a_record_of_someone_else_is_neither_read_nor_removed(lab, monkeypatch):
    """In a shared sticky folder another user may own a file under the record's name: it is
    never trusted, and the render does not stop on it."""
    src, out = lab
    path = state.state_path(out)
    key = json.loads(path.read_text())["key"]
    assert state.unchanged(state.load(out), out, key) is not None and state.checked_keys(state.load(out))
    monkeypatch.setattr(state.os, "geteuid", lambda: os.getuid() + 4242)
    assert state.load(out) == {}, "another user's record is not read: no shortcut, no key it vouches for"
    assert state.unchanged(state.load(out), out, key) is None
    state.forget(out)
    assert path.exists()


def test_keys_checked_by_the_last_render_are_not_checked_again(lab, monkeypatch):
    """The record keeps a digest of each key of the bundle the render read (or made); the next
    render reads exactly those keys without OpenSSL's RSA consistency check again, and any other
    key text (a key damaged since, a bundle replaced) gets the full check."""
    from cryptography.hazmat.primitives import serialization

    from bakery.pki import bundle as bundle_mod

    src, out = lab
    recorded = state.checked_keys(state.load(out))
    bundle = bundle_mod.parse((out / "secrets.yaml").read_bytes())
    assert sorted(recorded) == bundle.key_digests() and len(recorded) == 5
    assert not any(p.key in json.dumps(state.load(out)) for p in (bundle.ca, bundle.admin)), "no key text"
    full = []
    real = serialization.load_pem_private_key

    def load(data, password, *, unsafe_skip_rsa_key_validation=False, **kw):
        if not unsafe_skip_rsa_key_validation:
            full.append(data)
        return real(data, password, unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation, **kw)

    monkeypatch.setattr(serialization, "load_pem_private_key", load)
    bundle_mod.parse((out / "secrets.yaml").read_bytes(), checked=recorded)
    assert full == [], "every key was checked by the last render"
    bundle_mod.parse((out / "secrets.yaml").read_bytes())
    assert len(full) == 5, "without the record, all five are checked"
    full.clear()
    others = frozenset(d for d in recorded if d != bundle_mod.key_digest(bundle.admin.key))
    bundle_mod.parse((out / "secrets.yaml").read_bytes(), checked=others)
    assert full == [bundle.admin.key.encode()], "a key the record does not vouch for is checked"


def test_a_key_damaged_after_a_render_is_still_refused(lab):
    """The record vouches for key texts, not for the bundle's file: a key whose CRT value was
    damaged since the last render is another text, fully checked, and refused."""
    import yaml
    from test_bundle_tamper import corrupt

    src, out = lab
    doc = yaml.safe_load((out / "secrets.yaml").read_text())
    doc["admin"]["key"] = corrupt(doc["admin"]["key"], "dmp1")
    (out / "secrets.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    r = run_bakery("render", src, "--out", out)
    assert r.returncode == 2 and "admin.key fails the RSA key consistency check" in r.stderr, r.stderr


def test_the_manifest_is_json_dumps_indented():
    """manifest.json's "files" are written by the C encoder (render._indented): the text is
    exactly json.dumps(doc, indent=2)'s, whatever the strings hold (quotes, backslashes,
    newlines, braces, non-ASCII), with and without an upgrade, with links and files."""
    import random

    rnd = random.Random(22)

    def text() -> str:
        return "".join(rnd.choice('ab"\\\n\t{}[],: é\u2028/x') for _ in range(rnd.randint(0, 8)))

    for _ in range(1500):
        files = []
        for _ in range(rnd.randint(1, 6)):
            entry = {"path": text(), "kind": text(), "node": rnd.choice([None, text()]), "role": rnd.choice([None, "w"])}
            entry.update({"link": text()} if rnd.random() < 0.5 else
                         {"sha256": text(), "size": rnd.randint(0, 10**12), "mode": "0644"})
            files.append(entry)
        doc = {"bakery": "0", "cluster": text(), "initNode": rnd.choice([None, text()]), "cni": {"plugin": "calico"},
               **({"upgrade": {"from": "1.35.2", "to": "1.36.3"}} if rnd.random() < 0.5 else {}), "files": files}
        assert render_mod._indented(doc) == json.dumps(doc, indent=2), doc
    for files in ([], [{}], [{"a": 1}, {}], [{"a": ("x", "y")}], [{"a": {"b": 1}}]):  # not _entry's: as json.dumps
        doc = {"a": 1, "files": files}
        assert render_mod._indented(doc) == json.dumps(doc, indent=2), files
