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
