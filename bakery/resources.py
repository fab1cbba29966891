"""Where the schema and templates live: ``bakery/_data/`` in an installed wheel, the
repository's top-level ``schemas/`` and ``templates/`` in a checkout or editable install."""
from __future__ import annotations

import functools
import json
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for candidate in (_PKG / "_data" / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    from .errors import EnvError
    raise EnvError(f"bakery's {name}/ folder is missing from the installation; reinstall bakery")


@functools.cache
def cluster_schema() -> dict:
    return json.loads((data_dir("schemas") / "cluster.schema.json").read_text())


def schema_text() -> str:
    return (data_dir("schemas") / "cluster.schema.json").read_text()


def templates_dir() -> Path:
    return data_dir("templates")


@functools.cache
def kubelet_fields() -> dict:
    """The KubeletConfiguration's field tree (kubelet.config.k8s.io/v1beta1), derived from the
    kubelet's Go types; the source is in tests/data/specs/README.md."""
    return json.loads((data_dir("schemas") / "kubelet-config-v1beta1.json").read_text())
