"""Issue 8: atomic outputs, the lock, permissions, determinism, no secret in logs."""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusters import make_cluster
from conftest import LAB, run_bakery


def snapshot(root: Path) -> dict:
    """path -> (sha256, mode) of every file and folder below root."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[p.relative_to(root).as_posix()] = (digest, oct(st.st_mode & 0o7777))
    return out


def _env(**extra):
    env = dict(os.environ)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def big_cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    f = d / "cluster.yaml"
    f.write_text(make_cluster(400, name="big", key_algorithm="ecdsa-p256"))
    return f


def test_sigkill_at_any_moment_leaves_previous_outputs_intact(big_cluster, tmp_path):
    out = tmp_path / "out"
    r = run_bakery("render", big_cluster, "--out", out)
    assert r.returncode == 0, r.stderr
    before = snapshot(out)
    bundle = (out / "secrets.yaml").read_bytes()
    # a changed cluster, so that a completed render would change the outputs
    changed = tmp_path / "changed.yaml"
    changed.write_text(big_cluster.read_text().replace("address: 172.16.0.3}", "address: 172.16.9.3}"))
    # time a full render to spread the kills over its whole run
    t0 = time.monotonic()
    assert run_bakery("render", changed, "--out", tmp_path / "probe", "--secrets", out / "secrets.yaml").returncode == 0
    duration = time.monotonic() - t0
    kills = 0
    for i in range(12):
        proc = subprocess.Popen([sys.executable, "-m", "bakery", "render", str(changed), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(duration * (i + 0.5) / 12 * 0.9)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        after = snapshot(out)
        if after != before:  # the swap happened before the kill: the new tree, complete
            assert run_bakery("render", "--check", changed, "--out", out).returncode == 0
            assert (out / "secrets.yaml").read_bytes() == bundle
            # put the old tree back for the next round
            assert run_bakery("render", big_cluster, "--out", out).returncode == 0
            before = snapshot(out)
        else:
            assert (out / "secrets.yaml").read_bytes() == bundle
    assert kills >= 6, "the render finished too fast to be killed mid-way"
    # the next render cleans the leftovers of killed ones
    assert run_bakery("render", big_cluster, "--out", out).returncode == 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.new-")]


def test_two_concurrent_renders_do_not_interleave(big_cluster, tmp_path):
    out = tmp_path / "out"
    assert run_bakery("render", big_cluster, "--out", out).returncode == 0
    other = tmp_path / "other.yaml"
    other.write_text(big_cluster.read_text().replace("name: w10,", "name: w10x,"))
    procs = [subprocess.Popen([sys.executable, "-m", "bakery", "render", str(f), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for f in (big_cluster, other, big_cluster, other)]
    for p in procs:
        p.wait(timeout=300)
        assert p.returncode == 0, p.stderr.read()
    # whichever won last, the tree is exactly one render's, not a mix
    ok = [run_bakery("render", "--check", f, "--out", out).returncode for f in (big_cluster, other)]
    assert sorted(ok) == [0, 1]


def test_lock_holder_is_named_after_the_timeout(tmp_path):
    """The holder is named from the kernel's lock table, not from the pid a holder wrote in
    the file (a stale one here: 4242)."""
    import fcntl

    out = tmp_path / "out"
    lock = tmp_path / ".out.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"pid 4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run_bakery("render", LAB, "--out", out, "--lock-timeout", "0.5")
    finally:
        os.close(fd)
    assert r.returncode == 1
    assert f"pid {os.getpid()} (" in r.stderr and "pytest" in r.stderr
    assert "4242" not in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_permissions_do_not_depend_on_umask(umask, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(out)],
                       capture_output=True, text=True, preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o700"  # it holds the secrets bundle
    token = re.search(rb"[a-z0-9]{6}\.[a-z0-9]{16}", (out / "secrets.yaml").read_bytes()).group(0)
    secrets_seen = 0
    for p in out.rglob("*"):
        mode = p.stat().st_mode & 0o777
        if p.is_dir():
            assert mode in (0o700, 0o755), p
            continue
        data = p.read_bytes()
        # secret: holds a key or the bootstrap token, wherever it is
        secret = b"PRIVATE KEY" in data or token in data or b"client-key-data" in data
        secrets_seen += secret
        if secret:
            assert mode == 0o600, (p, oct(mode))
            assert p.parent.stat().st_mode & 0o077 == 0, p.parent
        else:
            assert mode in (0o644, 0o755), (p, oct(mode))
    assert (out / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    assert secrets_seen >= 5  # bundle, admin.conf, three user-data at least


def test_secrets_bundle_elsewhere_is_0600_in_0700(tmp_path):
    bundle = tmp_path / "vault" / "lab.yaml"
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", bundle)
    assert r.returncode == 0, r.stderr
    assert bundle.stat().st_mode & 0o777 == 0o600
    assert bundle.parent.stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "out" / "secrets.yaml").exists()
    # BAKERY_SECRETS does the same
    r = run_bakery("render", LAB, "--out", tmp_path / "out2", env=_env(BAKERY_SECRETS=str(bundle)))
    assert r.returncode == 0 and not (tmp_path / "out2" / "secrets.yaml").exists()


def test_byte_identical_across_processes_and_hash_seeds(tmp_path):
    bundle = tmp_path / "s.yaml"
    for seed, out in (("1", "a"), ("12345", "b")):
        r = run_bakery("render", LAB, "--out", tmp_path / out, "--secrets", bundle, env=_env(PYTHONHASHSEED=seed))
        assert r.returncode == 0, r.stderr
    a, b = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert a == b
    assert len(a) > 1


def test_failed_render_keeps_outputs_and_bundle(tmp_path):
    out = tmp_path / "out"
    assert run_bakery("render", LAB, "--out", out).returncode == 0
    before = snapshot(out)
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB.read_text().replace("podCidr: 20.96.0.0/12", "podCidr: 10.96.0.0/12"))
    r = run_bakery("render", bad, "--out", out)
    assert r.returncode == 2
    assert snapshot(out) == before


def test_check_reports_drift(tmp_path):
    out = tmp_path / "out"
    assert run_bakery("render", LAB, "--out", out).returncode == 0
    r = run_bakery("render", "--check", LAB, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    (out / "manifest.json").write_text("{}")
    r = run_bakery("render", "--check", LAB, "--out", out)
    assert r.returncode == 1 and "manifest.json" in r.stdout
    assert (out / "manifest.json").read_text() == "{}"  # --check writes nothing


def test_no_secret_outside_the_files_that_need_it(tmp_path):
    """Scan every output file, the render's stdout and stderr for the bundle's key material
    and the token: they may only be in the bundle, admin.conf and the seeds of the nodes."""
    import yaml

    out = tmp_path / "out"
    r = run_bakery("render", LAB, "--out", out)
    assert r.returncode == 0, r.stderr
    r2 = run_bakery("render", LAB, "--out", out, "--rotate-token")
    assert r2.returncode == 0, r2.stderr
    bundle = yaml.safe_load((out / "secrets.yaml").read_text())
    token = bundle["bootstrapToken"]
    key_lines = {ln for v in bundle.values() if isinstance(v, dict) and v.get("key")
                 for ln in v["key"].splitlines() if len(ln) > 40}
    assert token and len(key_lines) > 20
    secret_bits = [token, token.split(".")[1], *key_lines]
    allowed = re.compile(r"^(secrets\.yaml|admin\.conf|nodes/[^/]+/(user-data|seed\.iso)|proxmox/snippets/.*-user\.yaml)$")
    seen_in_allowed = 0
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        data = p.read_bytes()
        hits = [b for b in secret_bits if b.encode() in data]
        if allowed.match(rel):
            seen_in_allowed += bool(hits)
        else:
            assert not hits, f"{rel} holds secret material"
    assert seen_in_allowed >= 5
    for stream in (r.stdout, r.stderr, r2.stderr):
        assert not [b for b in secret_bits if b in stream]
    # the rotate message shows the new token once, as the command to register it: nothing else
    assert r2.stdout.count(token) == 1 and f"kubeadm token create {token}" in r2.stdout
    # workers: no private key of any kind
    for name in ("k8s-node1", "k8s-node2"):
        for p in (out / "nodes" / name).iterdir():
            assert b"PRIVATE KEY" not in p.read_bytes() and not [k for k in key_lines if k.encode() in p.read_bytes()]


def test_render_never_replaces_a_folder_it_did_not_write(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    r = run_bakery("render", LAB, "--out", precious)
    assert r.returncode == 2 and "did not write" in r.stderr and "Traceback" not in r.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]
    # an empty folder, or one bakery wrote, is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_bakery("render", LAB, "--out", empty).returncode == 0
    assert run_bakery("render", LAB, "--out", empty).returncode == 0
    # so is a folder holding only a bundle, put there for the first render (from a CI secret)
    seeded = tmp_path / "seeded"
    seeded.mkdir()
    (seeded / "secrets.yaml").write_bytes((empty / "secrets.yaml").read_bytes())
    assert run_bakery("render", LAB, "--out", seeded).returncode == 0
    assert (seeded / "secrets.yaml").read_bytes() == (empty / "secrets.yaml").read_bytes()
