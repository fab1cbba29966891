"""Where the secrets bundle lives and how it changes on disk.

- **Where.** By default in the output tree (``<out>/secrets.yaml``), written as part of
  the tree's one atomic swap. Elsewhere with ``--secrets PATH``. A symlink, either as
  ``--secrets`` or at ``<out>/secrets.yaml`` (a link into a vault), is written through:
  its existing target is replaced atomically and the link is kept; keys are never copied
  beside it.
- **Locked.** An external bundle is locked for the whole command that reads and writes it
  (two first renders with one bundle path make one CA, not two; concurrent rotations do
  not split). Its lock file sits beside it, or, for a bundle inside another output
  tree, is that tree's lock.
- **Bounded.** A bundle is read as a regular file of at most MAX_BYTES.
- **All or nothing.** A changed bundle is staged (written and synced under a fresh name)
  only once the new tree is on disk, then renamed into place just before the tree is
  swapped in, with signals held over both renames (see render). The manifest of a tree
  records the id of the token its seeds carry, so a run killed between the two renames is
  found and finished by the next render, which prints how to register the token.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import fsafe
from ..errors import EnvError, InputError
from ..output.layout import SECRETS_NAME
from ..output.writer import lock_path
from .bundle import BadBundle, Bundle, LeafEnding, new_bundle, parse, reissue_admin, reissue_admin_note, renew_leaves

MAX_BYTES = 1 << 20  # a bundle of RSA-4096 keys is about 20 kB
MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True)
class Location:
    path: Path  # as the user gave it (or <out>/secrets.yaml)
    real: Path  # where its bytes live: a symlink's target
    in_tree: bool  # written as a file of the output tree, in its swap
    link: str | None = None  # <out>/secrets.yaml is this symlink: the new tree keeps it
    lock: Path | None = None  # the lock of an external bundle; None: the tree's lock covers it


def locate(dest: Path, secrets_path: str | os.PathLike | None) -> Location:
    """Where the bundle of the output folder ``dest`` is, and how it is locked. Paths are
    compared as they really are (symlinks and '..' resolved): a bundle that is the tree's own
    under another spelling is the tree's; one elsewhere inside the output folder is refused,
    since the swap would throw it away."""
    dest = Path(dest).absolute()
    real_dest = Path(os.path.realpath(dest))
    path = Path(secrets_path) if secrets_path else dest / SECRETS_NAME
    link = None
    if path.is_symlink():
        try:
            real = fsafe.link_target(path)  # an existing regular file of this user's
        except EnvError as exc:
            raise InputError(str(exc), check="secrets-bundle") from None
        if Path(os.path.realpath(path.absolute().parent)) == real_dest:
            link = os.readlink(path)  # <out>/secrets.yaml is a link: the new tree keeps it
    else:
        real = Path(os.path.realpath(path))
    if real == real_dest / SECRETS_NAME:
        return Location(path, real, True)
    if real_dest in real.parents:
        raise InputError(f"the secrets bundle {path} is inside the output folder {dest} (at {real}), which a render "
                         f"replaces whole: keep it at {dest / SECRETS_NAME} or outside that folder",
                         check="secrets-bundle")
    return Location(path, real, False, link, _lock_of(real, real_dest))


def _lock_of(real: Path, real_dest: Path) -> Path | None:
    """An external bundle's lock. A file named secrets.yaml, or one beside a manifest.json,
    sits in a folder that is (or may become) an output tree, swapped whole: its lock is that
    tree's lock, which a render of that tree holds too. Any other file's lock is beside it.
    None when that is the lock of the tree being rendered, which the caller holds."""
    folder = real.parent
    if real.name == SECRETS_NAME or (folder / "manifest.json").is_file():
        lock = lock_path(folder)
    else:
        lock = folder / f".{real.name}.lock"
    if Path(os.path.realpath(lock.parent)) / lock.name == Path(os.path.realpath(real_dest.parent)) / \
            lock_path(real_dest).name:
        return None
    return lock


@contextlib.contextmanager
def locked(loc: Location, timeout: float) -> Iterator[None]:
    """Hold the external bundle's lock (nothing to do for a bundle in the tree). A bundle in
    a folder this user cannot write (read-only media) cannot change under bakery either, and
    bakery cannot change it: it is used unlocked, and a render that would have to write it
    fails at that write."""
    if loc.lock is None:
        yield
        return
    folder = loc.lock.parent
    if folder.is_dir() and loc.real.exists() and not _writable(folder):
        yield
        return
    fsafe.makedirs(folder, DIR_MODE)
    with fsafe.locked(loc.lock, f"the secrets bundle {loc.path}", timeout):
        yield


def _writable(folder: Path) -> bool:
    try:
        return os.access(folder, os.W_OK) and not os.statvfs(folder).f_flag & os.ST_RDONLY
    except OSError:
        return False


def read(path: Path) -> bytes:
    """The bundle's bytes: a regular file, bounded."""
    try:
        return fsafe.read_regular(path, MAX_BYTES, own=True)
    except fsafe.NotOwn as exc:
        raise InputError(f"the secrets bundle {path} belongs to another user (uid {exc.uid}); bakery uses only a "
                         "bundle of yours (someone else could have made its CA): check it, then take it over "
                         "with chown", check="secrets-bundle") from None
    except fsafe.NotRegular as exc:
        raise InputError(f"the secrets bundle {path} is {exc.kind}; give the path of a file",
                         check="secrets-bundle") from None
    except fsafe.TooLarge:
        raise InputError(f"the secrets bundle {path} holds more than {MAX_BYTES:,} bytes; a bundle is a few "
                         "kilobytes: is this the right file?", check="secrets-bundle") from None


def _clean_temporaries(real: Path) -> None:
    """Remove temporary bundles left by a killed run (under the bundle's lock: no other
    run is writing one now). Only plain files of this user's are touched."""
    for tmp in real.parent.glob(f".{real.name}.tmp-*"):
        try:
            st = tmp.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                tmp.unlink()
        except OSError:
            continue


def obtain(cluster, loc: Location, *, rotate_token: bool, create: bool = True, renew: bool = False,
           now: datetime.datetime | None = None, checked: frozenset[str] = frozenset()
           ) -> tuple[Bundle, bool, list[str]]:
    """The bundle at ``loc`` (checked), or a new one. Returns (bundle, changed, notes):
    changed when the bundle was created, its token replaced, its admin certificate
    reissued or renewed, or an encryption-at-rest key added, i.e. when it must be written;
    notes say what happened, one line each, and never quote a secret. ``now``: the clock (a test's, or the system's).
    ``checked``: digests of keys an earlier render checked in full (bundle.parse)."""
    now = now or datetime.datetime.now(datetime.UTC)
    path = loc.path
    if create and not loc.in_tree:
        _clean_temporaries(loc.real)
    if loc.real.is_dir():
        raise InputError(f"the secrets bundle {path} is a folder; give the path of a file",
                         check="secrets-bundle")
    if not loc.real.exists():
        if not create:
            raise InputError(f"no secrets bundle at {path}; run `bakery render` to create one",
                             check="secrets-bundle")
        if renew:
            raise InputError(f"no secrets bundle at {path} to renew; run `bakery render` to create one",
                             check="secrets-bundle")
        created = f"created the secrets bundle {path} (keep it: it is the cluster's root of trust)"
        return new_bundle(cluster, now), True, [created]
    try:
        bundle = parse(read(loc.real), now, leaf_ending=not renew, checked=checked)
    except LeafEnding as exc:
        raise InputError(f"{path}: {exc}", check="secrets-renew") from None
    except BadBundle as exc:
        raise InputError(f"{path}: the secrets bundle is unusable: {exc}; restore it from your backup "
                         "(bakery never replaces a bundle, since a new one means a new cluster)",
                         check="secrets-bundle") from None
    if bundle.cluster != cluster.name:
        raise InputError(f"{path}: this secrets bundle belongs to cluster {bundle.cluster!r}, not "
                         f"{cluster.name!r}; point --secrets at {cluster.name}'s bundle, or if you renamed the "
                         "cluster, change `cluster:` in the bundle", check="secrets-cluster")
    if bundle.key_algorithm != cluster.key_algorithm:
        # A CA is never rotated by a render: the keys already in use decide. cluster.yaml
        # must say so, so that it describes the cluster that exists.
        raise InputError(f"{path}: the cluster's CAs have {bundle.key_algorithm} keys, but "
                         f"spec.secrets.keyAlgorithm is {cluster.key_algorithm}; bakery never rotates a CA: "
                         f"set keyAlgorithm: {bundle.key_algorithm}, or move the bundle away to build a new "
                         "cluster", check="secrets-key-algorithm")
    changed, notes = False, []
    note = reissue_admin_note(bundle)
    if note:
        bundle, changed = reissue_admin(bundle, cluster, now), True
        # create=False: a caller that writes nothing (render --check, secrets check)
        notes.append(f"{path}: {note if not create else note.replace('a render reissues it', 'reissued it', 1)}")
    if renew:
        old_end = bundle.admin_not_after()
        bundle, changed = renew_leaves(bundle, cluster, now), True
        copies = (f"Copies of the old admin.conf keep working until {old_end:%Y-%m-%d}: replace them with the new one"
                  if old_end > now else "Copies of the old admin.conf stopped working on "
                  f"{old_end:%Y-%m-%d}: replace them with the new one")
        notes.append(f"{path}: renewed the admin certificate (a new key, from the cluster CA), valid until "
                     f"{bundle.admin_not_after():%Y-%m-%d}; CAs, the service-account key and the token are "
                     f"unchanged. {copies}")
    if cluster.settings.encryption_at_rest and bundle.encryption_key is None:
        # Made once, written with the bundle (all or nothing), kept by every later render.
        # (Without create, the key is only in memory, so that the seeds can be rendered to compare.)
        bundle, changed = bundle.with_encryption_key(), True
        if create:
            notes.append(f"{path}: added an encryption-at-rest key (spec.kubernetes.encryptionAtRest); keep the "
                         "bundle: the cluster's Secrets in etcd cannot be read without it")
        else:
            notes.append(f"{path}: has no encryption-at-rest key yet; a render adds one "
                         "(spec.kubernetes.encryptionAtRest)")
    if rotate_token:
        bundle, changed = bundle.with_new_token(now), True
    return bundle, changed, notes


def write(loc: Location, bundle: Bundle) -> None:
    """Replace an external bundle (or a linked one's target) atomically: a fresh exclusive
    temporary file beside it, synced, renamed; nothing left behind on failure."""
    if loc.in_tree:  # pragma: no cover - the tree's swap writes it
        raise AssertionError("an in-tree bundle is written with the tree")
    if loc.real.is_symlink():  # replaced by a link since locate(): refuse rather than follow
        raise EnvError(f"{loc.real} became a symbolic link during the render; nothing was written")
    fsafe.write_atomic(loc.real, bundle.to_bytes(), MODE, dir_mode=DIR_MODE)


__all__ = ["Location", "locate", "locked", "obtain", "read", "write", "MAX_BYTES"]
