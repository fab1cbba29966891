"""Issue 16: hostile files and hostile neighbours. Someone who can write a folder bakery
writes to (the bundle's, the output folder's parent) plants links and files under the
names bakery uses; a user points bakery at a pipe or a device; a render is killed, stopped
with Ctrl-C or runs out of disk in the middle of a token rotation; two renders share one
bundle. Each case states what must hold: nothing written through a planted link, no key
material in anybody else's file, nothing half-rotated, one CA per bundle."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import LAB, bakery_forked, render_here, run_bakery

VICTIM = b"the victim's file: nothing may write here\n"


def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim.txt"
    v.write_bytes(VICTIM)
    return v


def token_of(bundle: Path) -> str:
    return yaml.safe_load(bundle.read_bytes())["bootstrapToken"]


def seeded_tokens(out: Path) -> set[str]:
    """The bootstrap tokens the seeds of an output tree carry."""
    found = set()
    for p in (out / "nodes").rglob("user-data"):
        found |= set(re.findall(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b", p.read_text()))
    return found


def ca_of(out: Path) -> bytes:
    return next(out.rglob("admin.conf")).read_bytes().split(b"certificate-authority-data:")[1].split(b"\n")[0]


def no_bundle_copy_in(root: Path) -> None:
    """No regular file below root is a copy of a secrets bundle (the seeds hold the keys
    their node needs, by design; the bundle itself lives only where the user keeps it)."""
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and b"kind: SecretsBundle" in p.read_bytes():
            raise AssertionError(f"a copy of the bundle at {p}")


# -- 1. the bundle's temporary file ------------------------------------------------------

def test_a_link_planted_at_the_old_temp_name_receives_nothing(tmp_path):
    """bakery used to write the bundle to `.NAME.tmp-PID` with O_CREAT|O_TRUNC: a link
    planted there received every private key. In this process the pid is known."""
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    bundle = vault / "lab.yaml"
    render_here(LAB, tmp_path / "out", secrets=bundle)
    target = victim(tmp_path)
    os.chmod(vault, 0o777)  # a folder someone else can write, as the attacker needs
    (vault / f".lab.yaml.tmp-{os.getpid()}").symlink_to(target)
    render_here(LAB, tmp_path / "out", secrets=bundle, rotate_token=True)
    assert target.read_bytes() == VICTIM
    assert (vault / f".lab.yaml.tmp-{os.getpid()}").is_symlink()  # left alone, not followed
    assert token_of(bundle) in seeded_tokens(tmp_path / "out")


def test_links_planted_for_the_next_pids_receive_nothing(tmp_path):
    """The same through the command line: links at `.NAME.tmp-PID` for the next 400 pids."""
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o777)
    bundle = vault / "lab.yaml"
    assert run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", bundle).returncode == 0
    target = victim(tmp_path)
    start = int(subprocess.check_output(["sh", "-c", "echo $$"]))  # pids are handed out in order
    for pid in range(start, start + 400):
        (vault / f".lab.yaml.tmp-{pid}").symlink_to(target)
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", bundle, "--rotate-token")
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == VICTIM
    assert bundle.is_file() and not bundle.is_symlink()
    assert token_of(bundle) in seeded_tokens(tmp_path / "out")


def test_fsafe_never_opens_a_planted_name(tmp_path, monkeypatch):
    """Every name fsafe creates is fresh: a planted link under the exact name it draws is
    skipped, not followed."""
    from bakery import fsafe

    target = victim(tmp_path)
    names = iter(["aaaaaaaaaaaa", "aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr(fsafe.secrets, "token_hex", lambda n: next(names))
    (tmp_path / ".f.tmp-aaaaaaaaaaaa").symlink_to(target)
    fsafe.write_atomic(tmp_path / "f", b"new", 0o600)
    assert target.read_bytes() == VICTIM and (tmp_path / "f").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


# -- 2. the locks ---------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["tree", "bundle"])
@pytest.mark.parametrize("plant", ["symlink", "dangling-symlink", "hardlink", "fifo", "folder"])
def test_a_planted_lock_is_refused_and_its_target_untouched(tmp_path, which, plant):
    target = victim(tmp_path)
    (tmp_path / "vault").mkdir()
    lock = tmp_path / ".out.lock" if which == "tree" else tmp_path / "vault" / ".lab.yaml.lock"
    if plant == "symlink":
        lock.symlink_to(target)
    elif plant == "dangling-symlink":
        lock.symlink_to(tmp_path / "made-by-bakery")
    elif plant == "hardlink":
        os.link(target, lock)
    elif plant == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", tmp_path / "vault" / "lab.yaml",
                   "--lock-timeout", "1")
    assert r.returncode == 1, r.stderr
    assert "lock file" in r.stderr and str(lock) in r.stderr and "Traceback" not in r.stderr
    assert target.read_bytes() == VICTIM and target.stat().st_nlink == (2 if plant == "hardlink" else 1)
    assert not (tmp_path / "made-by-bakery").exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "vault" / "lab.yaml").exists()


# -- 4. unbounded input --------------------------------------------------------------------

@pytest.mark.parametrize("source", ["fifo", "/dev/zero", "/dev/urandom", "/dev/null", "folder", "huge"])
def test_a_bundle_that_is_not_a_regular_file_is_refused_at_once(tmp_path, source):
    render_here(LAB, tmp_path / "first")
    if source == "fifo":
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)
    elif source == "folder":
        path = tmp_path / "dir.yaml"
        path.mkdir()
    elif source == "huge":
        path = tmp_path / "huge.yaml"
        with open(path, "wb") as fh:  # sparse: 2 GB that reads as zeros
            fh.truncate(2 << 30)
    else:
        path = Path(source)
    t0 = time.monotonic()
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", path)
    assert time.monotonic() - t0 < 20
    assert r.returncode == 2, r.stderr
    assert "secrets bundle" in r.stderr or "'--secrets'" in r.stderr  # click's own words for a folder
    assert "Traceback" not in r.stderr and len([line for line in r.stderr.splitlines() if line]) <= 3
    assert not (tmp_path / "out").exists()


# -- 5. rotation: all or nothing ----------------------------------------------------------

def _state(out: Path, bundle: Path) -> tuple[str, set[str]]:
    return token_of(bundle), seeded_tokens(out)


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` for the test (root only; skips otherwise)."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)])


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk's free space but ``leave`` bytes."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


def test_rotation_out_of_disk_changes_nothing(tmp_path):
    """The tree does not fit: neither the tree nor the bundle changes."""
    with small_disk(tmp_path / "small", "1m") as disk:
        out, bundle = disk / "out", tmp_path / "vault" / "lab.yaml"
        render_here(LAB, out, secrets=bundle)
        before_bundle = bundle.read_bytes()
        before_tree = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
        fill(disk, leave=64 * 1024)
        r = run_bakery("render", LAB, "--out", out, "--secrets", bundle, "--rotate-token")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert bundle.read_bytes() == before_bundle
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before_tree
        assert not list(bundle.parent.glob(".*tmp*")) and not list(disk.glob(".out.new-*"))


def test_rotation_with_a_full_bundle_disk_changes_nothing_and_leaves_no_temporary(tmp_path):
    """The bundle's disk is full: the staged bundle fails, the tree is not swapped, and no
    temporary file with key material stays behind."""
    with small_disk(tmp_path / "vault", "64k") as disk:
        out, bundle = tmp_path / "out", disk / "lab.yaml"
        render_here(LAB, out, secrets=bundle)
        before = _state(out, bundle)
        fill(disk)
        r = run_bakery("render", LAB, "--out", out, "--secrets", bundle, "--rotate-token")
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert _state(out, bundle) == before
        assert sorted(p.name for p in disk.iterdir()) == [".lab.yaml.lock", "filler", "lab.yaml"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_rotation_killed_at_any_moment_is_never_half_done(tmp_path, sig):
    """A rotation stopped at any moment leaves both old or both new; the only split a SIGKILL
    can leave (between the bundle's rename and the tree's swap) is found by the next render,
    which completes it and prints how to register the token. Ctrl-C says "nothing was
    changed" only when nothing was."""
    out, bundle = tmp_path / "out", tmp_path / "vault" / "lab.yaml"
    render_here(LAB, out, secrets=bundle)
    t0 = time.monotonic()
    assert run_bakery("render", LAB, "--out", tmp_path / "probe", "--secrets", bundle).returncode == 0
    duration = time.monotonic() - t0
    outcomes = {"old": 0, "new": 0, "finished-later": 0}
    for i in range(10):
        old_token = token_of(bundle)
        assert seeded_tokens(out) == {old_token}
        proc = subprocess.Popen([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(out), "--secrets",
                                 str(bundle), "--rotate-token"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(duration * (0.3 + 0.7 * i / 10))
        proc.send_signal(sig)
        stdout, stderr = proc.communicate()
        assert "Traceback" not in stderr
        bundle_token, seeds = _state(out, bundle)
        if "nothing was changed" in stderr:
            assert (bundle_token, seeds) == (old_token, {old_token})
        if seeds == {bundle_token}:
            outcomes["old" if bundle_token == old_token else "new"] += 1
            if bundle_token != old_token:
                assert f"kubeadm token create {bundle_token}" in stdout or proc.returncode != 0
        else:  # killed between the two renames: the next render finishes and says so
            assert sig == signal.SIGKILL and seeds == {old_token}
            r = run_bakery("render", LAB, "--out", out, "--secrets", bundle)
            assert r.returncode == 0 and f"kubeadm token create {bundle_token}" in r.stdout
            assert "interrupted --rotate-token" in r.stdout
            outcomes["finished-later"] += 1
        assert not list(bundle.parent.glob(".lab.yaml.tmp-*")) or sig == signal.SIGKILL
    assert outcomes["old"] >= 1, outcomes  # some kills landed before the commit
    r = run_bakery("render", LAB, "--out", out, "--secrets", bundle)
    assert r.returncode == 0 and not list(bundle.parent.glob(".lab.yaml.tmp-*"))


def test_a_killed_runs_temporary_bundle_is_removed_by_the_next(tmp_path):
    out, bundle = tmp_path / "out", tmp_path / "vault" / "lab.yaml"
    render_here(LAB, out, secrets=bundle)
    stale = bundle.parent / ".lab.yaml.tmp-0123456789ab"
    stale.write_bytes(bundle.read_bytes())
    render_here(LAB, out, secrets=bundle)
    assert not stale.exists()


# -- 6. one bundle, several renders ---------------------------------------------------------

def test_concurrent_first_renders_with_one_bundle_make_one_ca(tmp_path):
    bundle = tmp_path / "vault" / "lab.yaml"
    procs = [subprocess.Popen([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(tmp_path / f"o{i}"),
                               "--secrets", str(bundle)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    results = [p.communicate() + (p.returncode,) for p in procs]
    assert all(rc == 0 for *_, rc in results), results
    assert sum("created the secrets bundle" in out for out, _, _ in results) == 1
    cas = {ca_of(tmp_path / f"o{i}") for i in range(3)}
    assert len(cas) == 1
    assert yaml.safe_load(bundle.read_bytes())["ca"]["certificate"].encode() in {
        __import__("base64").b64decode(c) for c in cas}


def test_concurrent_rotations_do_not_split(tmp_path):
    """Two rotations of one bundle into one folder: each one whole, the last one wins in both."""
    out, bundle = tmp_path / "out", tmp_path / "vault" / "lab.yaml"
    render_here(LAB, out, secrets=bundle)
    procs = [subprocess.Popen([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(out), "--secrets",
                               str(bundle), "--rotate-token"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert seeded_tokens(out) == {token_of(bundle)}
    assert len({re.search(r"token create (\S+)", o).group(1) for o in outs}) == 3


def test_the_bundle_is_locked_while_a_render_uses_it(tmp_path):
    import fcntl

    bundle = tmp_path / "vault" / "lab.yaml"
    render_here(LAB, tmp_path / "a", secrets=bundle)
    fd = os.open(bundle.parent / ".lab.yaml.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run_bakery("render", LAB, "--out", tmp_path / "b", "--secrets", bundle, "--lock-timeout", "0.3")
    finally:
        os.close(fd)
    assert r.returncode == 1 and "the secrets bundle" in r.stderr and f"pid {os.getpid()}" in r.stderr
    assert not (tmp_path / "b").exists()


# -- 7. a bundle behind a symlink --------------------------------------------------------------

def test_a_symlinked_bundle_is_written_through_and_stays_a_link(tmp_path):
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    real = vault / "lab.yaml"
    render_here(LAB, tmp_path / "first", secrets=real)
    link = tmp_path / "lab-secrets.yaml"
    link.symlink_to(real)
    old = token_of(real)
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", link, "--rotate-token")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert token_of(real) != old and seeded_tokens(tmp_path / "out") == {token_of(real)}
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert [p.name for p in vault.iterdir()] == ["lab.yaml"] or sorted(p.name for p in vault.iterdir()) == [
        ".lab.yaml.lock", "lab.yaml"]


def test_an_in_tree_link_to_a_vault_is_kept_and_written_through(tmp_path):
    vault = tmp_path / "vault"
    vault.mkdir(mode=0o700)
    real = vault / "lab.yaml"
    out = tmp_path / "out"
    render_here(LAB, out)
    os.replace(out / "secrets.yaml", real)
    (out / "secrets.yaml").symlink_to(real)
    for args in ([], ["--rotate-token"], []):
        r = run_bakery("render", LAB, "--out", out, *args)
        assert r.returncode == 0, r.stderr
        assert (out / "secrets.yaml").is_symlink() and os.readlink(out / "secrets.yaml") == str(real)
        assert seeded_tokens(out) == {token_of(real)}
    no_bundle_copy_in(out)
    assert run_bakery("render", "--check", LAB, "--out", out).returncode == 0
    assert run_bakery("secrets", "check", LAB, "--secrets", out / "secrets.yaml").returncode == 0


@pytest.mark.parametrize("case", ["dangling", "to-a-folder", "to-a-fifo"])
def test_a_bundle_link_to_nothing_usable_is_refused(tmp_path, case):
    link = tmp_path / "s.yaml"
    if case == "dangling":
        link.symlink_to(tmp_path / "nowhere" / "lab.yaml")
    elif case == "to-a-folder":
        link.symlink_to(tmp_path)
    else:
        os.mkfifo(tmp_path / "pipe")
        link.symlink_to(tmp_path / "pipe")
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", link)
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
    assert "symbolic link" in r.stderr or "is a directory" in r.stderr  # click's own check, for a folder
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "out").exists()


# -- 13, 14, 16, 17: the command line's edges ------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9"])
def test_lock_timeout_must_be_a_finite_number_of_seconds(tmp_path, value):
    r = bakery_forked("render", LAB, "--out", tmp_path / "out", "--lock-timeout", value)
    assert r.returncode == 2 and "--lock-timeout" in r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["out", "bundle"])
def test_parents_are_made_0755_or_0700_whatever_the_umask(tmp_path, where):
    out = tmp_path / "a" / "b" / "out"
    bundle = tmp_path / "v" / "w" / "lab.yaml"
    r = subprocess.run([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(out), "--secrets", str(bundle)],
                       capture_output=True, text=True, preexec_fn=lambda: os.umask(0))
    assert r.returncode == 0, r.stderr
    if where == "out":
        for d in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
        assert stat.S_IMODE((tmp_path / "a" / "b" / ".out.lock").stat().st_mode) == 0o600
    else:
        for d in (tmp_path / "v", tmp_path / "v" / "w"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
        assert stat.S_IMODE(bundle.stat().st_mode) == 0o600


@pytest.mark.parametrize("case", ["dangling", "to-a-file"])
def test_init_never_writes_through_a_link_without_force(tmp_path, case):
    target = tmp_path / "elsewhere.yaml"
    if case == "to-a-file":
        target.write_bytes(VICTIM)
    (tmp_path / "cluster.yaml").symlink_to(target)
    r = bakery_forked("init", tmp_path)
    assert r.returncode == 2 and "symbolic link" in r.stderr and "--force" in r.stderr
    assert (target.read_bytes() == VICTIM) if case == "to-a-file" else not target.exists()


def test_init_force_writes_through_an_own_link(tmp_path):
    target = tmp_path / "elsewhere.yaml"
    target.write_bytes(VICTIM)
    (tmp_path / "cluster.yaml").symlink_to(target)
    r = bakery_forked("init", tmp_path, "--force")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cluster.yaml").is_symlink() and b"kind: Cluster" in target.read_bytes()


def test_a_symlinked_out_is_refused_before_rendering(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    r = bakery_forked("render", LAB, "--out", tmp_path / "link")
    assert r.returncode == 2 and "symbolic link" in r.stderr and str(real) in r.stderr
    assert list(real.iterdir()) == [] and not list(tmp_path.glob(".link.*"))


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_out_never_swaps_the_current_folder_away(tmp_path, out):
    here = tmp_path / "work"
    (here / "sub").mkdir(parents=True)
    (here / "keep.txt").write_text("mine")
    r = bakery_forked("render", LAB, "--out", out, cwd=here)
    assert r.returncode == 2 and "the folder you are in" in r.stderr
    assert (here / "keep.txt").read_text() == "mine"


def test_check_with_rotate_token_is_refused(tmp_path):
    render_here(LAB, tmp_path / "out")
    before = (tmp_path / "out" / "secrets.yaml").read_bytes()
    r = bakery_forked("render", "--check", "--rotate-token", LAB, "--out", tmp_path / "out")
    assert r.returncode == 2 and "--rotate-token" in r.stderr
    assert (tmp_path / "out" / "secrets.yaml").read_bytes() == before


@pytest.mark.parametrize("command", ["render", "check"])
def test_a_pipe_planted_in_the_output_tree_never_hangs_a_command(tmp_path, command):
    out = tmp_path / "out"
    render_here(LAB, out)
    (out / "manifest.json").unlink()
    os.mkfifo(out / "manifest.json")
    args = ["render", LAB, "--out", out] + (["--check"] if command == "check" else [])
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "bakery", *map(str, args)], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 30 and "Traceback" not in r.stderr
    if command == "render":  # not a bakery manifest: the folder is not bakery's to replace
        assert r.returncode == 2 and "did not write" in r.stderr
    else:
        assert r.returncode == 1 and " manifest.json" in r.stdout  # not a regular file: reported, not read


# -- found by the review: aliases, neighbours' folders, self-locks, read-only media ------------

NOBODY = 65534


def _give_away(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, NOBODY, NOBODY)


@pytest.mark.parametrize("spelling", ["link", "dotdot"])
def test_the_trees_own_bundle_under_another_spelling_stays_the_trees(tmp_path, spelling):
    out = tmp_path / "out"
    render_here(LAB, out)
    before = (out / "secrets.yaml").read_bytes()
    if spelling == "link":
        (tmp_path / "link.yaml").symlink_to(out / "secrets.yaml")
        given = tmp_path / "link.yaml"
    else:
        (out / "sub").mkdir()
        given = out / "sub" / ".." / "secrets.yaml"
    r = run_bakery("render", LAB, "--out", out, "--secrets", given)
    assert r.returncode == 0, r.stderr
    assert (out / "secrets.yaml").read_bytes() == before  # kept, same CA, same token


def test_a_bundle_elsewhere_inside_the_output_folder_is_refused(tmp_path):
    r = run_bakery("render", LAB, "--out", tmp_path / "o2", "--secrets", tmp_path / "o2" / "pki" / "secrets.yaml")
    assert r.returncode == 2 and "inside the output folder" in r.stderr, r.stderr
    assert not (tmp_path / "o2").exists()


def test_a_planted_old_tree_is_never_put_in_place(tmp_path):
    """A neighbour's `.out.old-x` holding their bundle: never renamed into the output folder,
    never used; the first render makes its own CA."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    render_here(LAB, tmp_path / "theirs")
    planted = shared / ".out.old-x"
    planted.mkdir()
    os.replace(tmp_path / "theirs" / "secrets.yaml", planted / "secrets.yaml")
    _give_away(planted)
    r = run_bakery("render", LAB, "--out", shared / "out")
    assert r.returncode == 0 and "created the secrets bundle" in r.stdout, r.stderr
    assert ca_of(shared / "out") != ca_of(tmp_path / "theirs") and planted.is_dir()


def test_an_output_folder_of_another_user_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    render_here(LAB, shared / "out")
    _give_away(shared / "out")
    r = run_bakery("render", LAB, "--out", shared / "out")
    assert r.returncode == 2 and "belongs to another user" in r.stderr, r.stderr


def test_a_bundle_of_another_user_is_refused(tmp_path):
    render_here(LAB, tmp_path / "first", secrets=tmp_path / "theirs.yaml")
    os.chown(tmp_path / "theirs.yaml", NOBODY, NOBODY)
    r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", tmp_path / "theirs.yaml")
    assert r.returncode == 2 and "belongs to another user" in r.stderr and not (tmp_path / "out").exists()


def test_a_file_with_another_name_is_not_reused_by_the_next_tree(tmp_path):
    """Someone holding a hard link to a file of the tree could rewrite the next tree through
    it if the render reused that inode: only files with one name are reused."""
    out = tmp_path / "out"
    render_here(LAB, out)
    script = next((out / "packer" / "scripts").iterdir())
    os.link(script, tmp_path / "kept")
    other = next(p for p in (out / "packer" / "scripts").iterdir() if p != script)
    other_inode = other.stat().st_ino
    render_here(LAB, out)
    assert script.stat().st_ino != (tmp_path / "kept").stat().st_ino
    assert other.stat().st_ino == other_inode  # an untouched file of one name is still reused


def test_a_pipe_in_the_previous_tree_is_never_opened_blocking(tmp_path):
    from bakery.output import writer

    os.mkfifo(tmp_path / "f")
    t0 = time.monotonic()
    assert writer._open_same(tmp_path / "f", writer.OutputFile("f", b"x")) is None
    assert time.monotonic() - t0 < 5


def test_a_first_render_and_a_render_using_its_bundle_share_one_ca(tmp_path):
    for round_ in range(3):
        a, b = tmp_path / f"A{round_}", tmp_path / f"B{round_}"
        procs = [subprocess.Popen([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(a)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                 subprocess.Popen([sys.executable, "-m", "bakery", "render", str(LAB), "--out", str(b), "--secrets",
                                   str(a / "secrets.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        results = [p.communicate() + (p.returncode,) for p in procs]
        assert all(rc == 0 for *_, rc in results), results
        assert ca_of(a) == ca_of(b)
        assert sum("created the secrets bundle" in o for o, _, _ in results) == 1


def test_a_render_never_waits_for_its_own_lock(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    render_here(LAB, out)
    t0 = time.monotonic()
    r = run_bakery("render", LAB, "--out", "../out", "--secrets", "../out/secrets.yaml", "--lock-timeout", "20",
                   cwd=work)
    assert r.returncode == 0 and time.monotonic() - t0 < 15, r.stderr


def test_a_bundle_on_read_only_media_is_usable_until_it_must_change(tmp_path):
    with small_disk(tmp_path / "ro", "1m") as disk:
        bundle = disk / "lab.yaml"
        render_here(LAB, tmp_path / "first", secrets=bundle)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", bundle)
        assert r.returncode == 0, r.stderr
        r = run_bakery("render", LAB, "--out", tmp_path / "out", "--secrets", bundle, "--rotate-token")
        assert r.returncode == 1 and "Read-only" in r.stderr and "Traceback" not in r.stderr
        assert seeded_tokens(tmp_path / "out") == {token_of(bundle)}  # nothing half-rotated


def test_a_bundle_nested_deep_is_one_line_not_a_traceback(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000)
    for args in (["render", LAB, "--out", tmp_path / "out", "--secrets", deep],
                 ["secrets", "check", LAB, "--secrets", deep]):
        r = run_bakery(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and "deeper" in r.stderr, r.stderr


def test_a_deep_manifest_in_the_output_folder_is_no_traceback(tmp_path):
    out = tmp_path / "out"
    render_here(LAB, out)
    (out / "manifest.json").write_text("[" * 200000)
    r = run_bakery("render", LAB, "--out", out)
    assert r.returncode == 2 and "did not write" in r.stderr and "Traceback" not in r.stderr


def test_paths_with_control_characters_are_escaped_in_every_line(tmp_path):
    out = tmp_path / "o\x1b]0;T\x07ut"
    r = run_bakery("render", LAB, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    assert "\\x1b]0;T\\x07ut" in r.stdout


@pytest.mark.parametrize("args", [["--out", ""], ["--secrets", "/dev/stdin"]])
def test_odd_paths_are_bad_input(tmp_path, args):
    r = subprocess.run([sys.executable, "-m", "bakery", "render", str(LAB), *args], capture_output=True, text=True,
                       cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "outputs").exists()
