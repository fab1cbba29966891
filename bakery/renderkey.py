"""The render key (issue 22): a hash of everything that decides the bytes of a render's output
tree, so that a render of the same inputs into an untouched folder can write nothing
(output/state.py keeps the key of the last render beside the folder)."""
from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from . import __version__
from .output.writer import OutputFile
from .spec.model import Cluster

_PLAIN = (str, int, float, bool, type(None))


@functools.cache
def _field_names(kind: Any) -> tuple[str, ...] | None:
    """A dataclass's field names (every field, repr or not); None for any other type."""
    return tuple(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None


def _canonical(obj):
    """The model as plain JSON data, every field included (repr leaves some out), for the
    render key; a type it does not know is an error, so no input is ever skipped."""
    import enum
    import ipaddress
    from collections.abc import Mapping

    kind: Any = type(obj)
    if kind in _PLAIN:
        return obj
    names = _field_names(kind)
    if names is not None:
        return {"@": kind.__name__, **{name: _canonical(getattr(obj, name)) for name in names}}
    if isinstance(obj, Mapping):
        return {"@map": sorted([_canonical(k), _canonical(v)] for k, v in obj.items())}
    if isinstance(obj, (tuple, list, frozenset, set)):
        items = [_canonical(x) for x in obj]
        return sorted(items, key=json.dumps) if isinstance(obj, (frozenset, set)) else items
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, enum.Enum):
        return _canonical(obj.value)
    if isinstance(obj, (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
                        ipaddress.IPv6Network, datetime.datetime, Path)):
        return str(obj)
    raise TypeError(f"render key: no canonical form for {type(obj).__name__}")


def _code_digest() -> str:
    """What makes the bytes besides the inputs: this bakery's own files (its modules,
    templates and schemas: a release's version does not change while it is being developed),
    the libraries that emit them (Jinja2, PyYAML with or without libyaml, whose emitters
    templating picks at run time, cryptography) and Python's own version."""
    import sys
    from importlib import metadata

    import yaml

    from .resources import data_dir

    h = hashlib.sha256(repr((sys.version_info[:3], yaml.__with_libyaml__)).encode())
    for dist in ("jinja2", "PyYAML", "cryptography"):
        try:
            h.update(f"{dist}={metadata.version(dist)}\0".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none\0".encode())
    sources = [(Path(__file__).resolve().parent, "*.py"), (data_dir("templates"), "*"), (data_dir("schemas"), "*")]
    for root, pattern in sources:
        for path in sorted(p for p in root.rglob(pattern) if p.is_file()):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def render_key(cluster: Cluster, bundle, loc, extra: tuple[OutputFile, ...], upgrade: dict | None) -> str:
    """A hash of everything that decides the bytes of the output tree: bakery itself, the
    model (every value from cluster.yaml and the files it names, defaults filled in), the
    secrets bundle, where the bundle lives, and an upgrade's files."""
    h = hashlib.sha256(b"bakery-render-key-1\0" + __version__.encode() + b"\0" + _code_digest().encode())
    h.update(json.dumps(_canonical(cluster), sort_keys=True, separators=(",", ":")).encode())
    h.update(hashlib.sha256(bundle.to_bytes()).digest())
    h.update(json.dumps([loc.in_tree, loc.link, upgrade], sort_keys=True).encode())
    for f in extra:
        h.update(json.dumps(f.entry(), sort_keys=True).encode())
    return h.hexdigest()
