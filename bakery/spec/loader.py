"""Load cluster.yaml into plain Python data while keeping the position of every node.

Everything that can go wrong with the file itself (missing, a directory, binary, not
UTF-8, malformed YAML, tabs, duplicate keys, several documents, an alias bomb) becomes
one ``InputError`` line with file:line:column. No traceback ever reaches the user.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from ..errors import InputError, Position

MAX_BYTES = 32 * 1024 * 1024
MAX_NODES = 200_000  # a 5,000-node cluster is ~25,000 values; an alias bomb is millions
MAX_DEPTH = 64

Path_ = tuple  # a path into the document: ("spec", "nodes", 0, "name")


@dataclass
class Document:
    """The loaded data plus where each value (and each mapping key) came from."""

    file: str
    data: Any
    positions: dict[Path_, Position] = field(default_factory=dict)
    key_positions: dict[Path_, Position] = field(default_factory=dict)
    plain_scalars: dict[Path_, str] = field(default_factory=dict)  # unquoted source text

    def position(self, path: Path_, *, key: bool = False) -> Position:
        """The position of ``path``; falls back to the nearest known ancestor."""
        path = tuple(path)
        table = self.key_positions if key else self.positions
        if path in table:
            return table[path]
        while path:
            path = path[:-1]
            if path in self.positions:
                return self.positions[path]
        return Position(self.file, 1, 1)


def _pos(file: str, mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.doc = Document(file, None)
        self.count = 0
        self.scalars = SafeConstructor()

    def build(self, node, path: tuple, depth: int = 0):
        self.count += 1
        if self.count > MAX_NODES:
            raise InputError(
                f"the document expands to more than {MAX_NODES:,} values (anchors and aliases "
                "multiplying each other, a 'YAML bomb'); write the values out or use fewer aliases",
                check="yaml-too-large", position=_pos(self.file, node.start_mark))
        if depth > MAX_DEPTH:
            raise InputError(f"nesting deeper than {MAX_DEPTH} levels; a cluster file is a few levels deep",
                             check="yaml-too-deep", position=_pos(self.file, node.start_mark))
        self.doc.positions.setdefault(path, _pos(self.file, node.start_mark))
        if isinstance(node, ScalarNode):
            try:
                value = self.scalars.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise InputError(f"cannot read this value: {getattr(exc, 'problem', exc)}",
                                 check="yaml-syntax", position=_pos(self.file, node.start_mark)) from None
            if node.style is None:
                self.doc.plain_scalars[path] = node.value
            return value
        if isinstance(node, SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        raise InputError("unsupported YAML node", check="yaml-syntax",
                         position=_pos(self.file, node.start_mark))  # pragma: no cover

    def _mapping(self, node: MappingNode, path: tuple, depth: int) -> dict:
        result: dict = {}
        merged: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, MappingNode):
                        raise InputError("a merge key '<<' needs a mapping (or a list of mappings)",
                                         check="yaml-syntax", position=_pos(self.file, src.start_mark))
                    for k, v in self._mapping(src, path, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, ScalarNode):
                raise InputError("a mapping key must be a plain word, not a list or a mapping",
                                 check="yaml-syntax", position=_pos(self.file, key_node.start_mark))
            key = key_node.value
            if key in result:
                first = self.doc.key_positions[path + (key,)]
                raise InputError(
                    f"duplicate key '{key}' (first at line {first.line}); YAML keeps only one of them, "
                    "so remove or merge the other",
                    check="yaml-duplicate-key", position=_pos(self.file, key_node.start_mark))
            self.doc.key_positions[path + (key,)] = _pos(self.file, key_node.start_mark)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result


def _syntax_error(file: str, exc: yaml.YAMLError) -> InputError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    position = _pos(file, mark) if mark is not None else Position(file, 1, 1)
    hint = ""
    if "\\t" in problem or "tab" in problem.lower():
        problem = "a tab character; YAML indents with spaces only"
        hint = "replace the tab with spaces"
    elif isinstance(exc, yaml.reader.ReaderError):
        problem = f"a control character ({exc.character!r}) that YAML does not allow"
        hint = "is this a text file?"
    text = f"malformed YAML: {problem}"
    if hint:
        text += f"; {hint}"
    return InputError(text, check="yaml-syntax", position=position)


def load_text(text: str, file: str = "<string>") -> Document:
    if not text.strip():
        raise InputError("the file is empty; `bakery init` writes an example to start from",
                         check="yaml-empty", position=Position(file, 1, 1))
    try:
        nodes = list(yaml.compose_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as exc:
        raise _syntax_error(file, exc) from None
    except RecursionError:
        raise InputError("the document nests too deeply to read", check="yaml-too-deep",
                         position=Position(file, 1, 1)) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise InputError("the file holds no YAML document (only comments?)", check="yaml-empty",
                         position=Position(file, 1, 1))
    if len(nodes) > 1:
        raise InputError("the file holds several YAML documents ('---'); put one Cluster in each file",
                         check="yaml-multiple-documents", position=_pos(file, nodes[1].start_mark))
    builder = _Builder(file)
    builder.doc.data = builder.build(nodes[0], ())
    return builder.doc


def load_file(path: str | os.PathLike) -> Document:
    name = str(path)
    p = Path(path)
    where = Position(name, 1, 1)
    if not p.exists():
        raise InputError(f"no such file: {name}; `bakery init` writes an example cluster.yaml",
                         check="file-missing", position=None)
    if p.is_dir():
        hint = " (it holds a cluster.yaml: pass that)" if (p / "cluster.yaml").is_file() else ""
        raise InputError(f"{name} is a directory, not a cluster file{hint}", check="file-directory")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise InputError(f"the file is {size:,} bytes; a cluster file over {MAX_BYTES:,} bytes "
                             "is not a cluster file", check="file-too-large", position=where)
        raw = p.read_bytes()
    except PermissionError:
        raise InputError(f"cannot read {name}: permission denied", check="file-unreadable") from None
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror}", check="file-unreadable") from None
    if b"\0" in raw[:8192]:
        raise InputError("this is a binary file, not YAML", check="file-binary", position=where)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError("the file is not UTF-8 text; save it as UTF-8", check="file-encoding",
                         position=Position(name, line, col)) from None
    return load_text(text, name)
