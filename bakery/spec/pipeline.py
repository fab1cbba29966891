"""load -> validate -> model, the front half of every command."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, Report
from .loader import Document, load_file


@dataclass
class Loaded:
    doc: Document
    report: Report
    data: dict | None


def check_file(path: str) -> Loaded:
    """Load and validate; file-level problems raise InputError, findings go in the report."""
    from .validate import validate

    doc = load_file(path)
    report, data = validate(doc)
    return Loaded(doc, report, data)


def load_cluster(path: str, *, strict: bool = False):
    """The model of a valid cluster file, or InputError carrying every finding."""
    loaded = check_file(path)
    failing = loaded.report.diagnostics if strict else loaded.report.errors
    if failing:
        raise InputError(failing)
    assert loaded.data is not None  # no errors: the schema passed and filled the defaults
    from .model import build

    return build(loaded.data), loaded.report
