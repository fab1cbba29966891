"""Load cluster.yaml into plain Python data while keeping the position of every node.

Everything that can go wrong with the file itself (missing, a directory, a named pipe or a
device, a symlink loop, binary, UTF-16 or another encoding than UTF-8, a control character,
malformed YAML, tabs, duplicate keys, several documents, nesting too deep, too many values, an
alias bomb, a number too long to convert) becomes one ``InputError`` line with file:line:column
where the file has one. No traceback ever reaches the user, and no input can hang the loader
or grow its memory without bound: the read is bounded (``fsafe.read_regular``), and the
nesting and the number of values are bounded before anything recursive runs.
"""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .. import fsafe
from ..errors import Diagnostic, InputError, Position, char_name

MAX_BYTES = 32 * 1024 * 1024
MAX_NODES = 200_000  # a 5,000-node cluster is ~25,000 values (~60,000 with the keys); an alias bomb is millions
MAX_DEPTH = 64
# The longest integer the loader converts. Every integer of a cluster file is bounded by the
# schema (the largest maximum is 999,999,999), so a longer one can only be refused; it is
# refused before PyYAML converts it, since int() of a long digit string is slow (quadratic)
# and, past sys.get_int_max_str_digits() (4,300 by default), raises ValueError, not a YAMLError.
MAX_NUMBER_CHARS = 32

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# What a YAML 1.1 reader accepts in a stream, from PyYAML's reader.py (Reader.NON_PRINTABLE) and
# libyaml's yaml_parser_update_buffer: tab, LF, CR, the printable ASCII range, NEL and the rest
# of Unicode but the surrogates, U+FFFE and U+FFFF. Anything else is refused here, before
# PyYAML sees it, so the message can name the character and its line and column.
NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
# YAML 1.1's line breaks (spec 1.1, 5.4 "Line Break Characters"): CR LF, CR, LF, NEL, LS, PS.
LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")

Path_ = tuple  # a path into the document: ("spec", "nodes", 0, "name")

_TAG = "tag:yaml.org,2002:"
_READ_AS = {"int": "a number", "float": "a number", "bool": "true or false", "null": "nothing (null)",
            "timestamp": "a date", "binary": "base64 data"}


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


def dotted(path) -> str:
    """("spec", "nodes", 0, "name") -> 'spec.nodes[0].name'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the document"


def shorten(text: str, limit: int = 60) -> str:
    """A value as a message may quote it: at most ``limit`` characters."""
    return text if len(text) <= limit + 20 else f"{text[:limit]}… ({len(text):,} characters)"


def _pos(file: str, mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


def text_position(file: str, text: str, index: int) -> Position:
    """The line and column (1-based, in characters) of text[index], counted as YAML counts
    them: a line ends at any YAML line break."""
    line, start = 1, 0
    for m in LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, m.end()
    return Position(file, line, index - start + 1)


def _char_at(text: str, mark) -> str:
    """The character at a YAML mark (line and column), or ''."""
    if mark is None:
        return ""
    lines = LINE_BREAK.split(text)
    if 0 <= mark.line < len(lines) and 0 <= mark.column < len(lines[mark.line]):
        return lines[mark.line][mark.column]
    return ""


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.doc = Document(file, None)
        self.count = 0
        self.chars = 0
        self.scalars = SafeConstructor()

    def _too_large(self, node, what: str) -> InputError:
        # The event scan (_scan) bounded the values the file holds, so only aliases can
        # multiply them past the limits here.
        return InputError(
            f"the document expands to more than {what} (anchors and aliases multiplying each other, a "
            "'YAML bomb'); write the values out or use fewer aliases",
            check="yaml-too-large", position=_pos(self.file, node.start_mark))

    def build(self, node, path: tuple, depth: int = 0):
        self.count += 1
        if self.count > MAX_NODES:
            raise self._too_large(node, f"{MAX_NODES:,} values")
        if depth > MAX_DEPTH:
            raise InputError(f"nesting deeper than {MAX_DEPTH} levels; a cluster file is a few levels deep",
                             check="yaml-too-deep", position=_pos(self.file, node.start_mark))
        self.doc.positions.setdefault(path, _pos(self.file, node.start_mark))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if isinstance(node, SequenceNode):
            return [self.build(child, path + (i,), depth + 1) for i, child in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        raise InputError("unsupported YAML node", check="yaml-syntax",
                         position=_pos(self.file, node.start_mark))  # pragma: no cover

    def _scalar(self, node: ScalarNode, path: tuple):
        self.chars += len(node.value)
        if self.chars > MAX_BYTES:
            raise self._too_large(node, f"{MAX_BYTES:,} characters of text")
        where = _pos(self.file, node.start_mark)
        tag = node.tag.removeprefix(_TAG)
        if tag == "int" and len(node.value) > MAX_NUMBER_CHARS:
            raise InputError(Diagnostic(
                "number-too-large", f"{dotted(path)} is a number {len(node.value):,} characters long "
                f"({node.value[:20]}…); no field of a cluster file takes a number that large", where,
                hint="if it is text, quote it"))
        try:
            value = self.scalars.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise InputError(f"cannot read this value: {getattr(exc, 'problem', exc)}",
                             check="yaml-syntax", position=where) from None
        except (ValueError, OverflowError) as exc:
            # e.g. 2024-13-45 matches YAML 1.1's timestamp pattern, and datetime refuses it
            read_as = _READ_AS.get(tag, f"a {tag}")
            raise InputError(Diagnostic(
                "yaml-value", f"{dotted(path)}: YAML reads {shorten(node.value, 40)} as {read_as}, which it "
                f"cannot be ({exc})", where, hint=f'if it is text, quote it: "{shorten(node.value, 40)}"')) from None
        if not node.style:  # None from PyYAML's own parser, '' from libyaml's (CSafeLoader)
            self.doc.plain_scalars[path] = node.value
        return value

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
                    f"duplicate key '{shorten(key)}' (first at line {first.line}); YAML keeps only one of them, "
                    "so remove or merge the other",
                    check="yaml-duplicate-key", position=_pos(self.file, key_node.start_mark))
            self.doc.key_positions[path + (key,)] = _pos(self.file, key_node.start_mark)
            result[key] = self.build(value_node, path + (key,), depth + 1)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result


def _control_character(file: str, text: str, index: int) -> InputError:
    ch = text[index]
    hint = ("is this a text file?" if ch == "\0" else
            "delete it (an editor may show it as ^" + chr(ord(ch) + 64) + " or not at all)" if ord(ch) < 0x20 else
            "delete it")
    return InputError(f"a control character, {char_name(ch)}, which YAML does not allow in a file; {hint}",
                      check="control-character", position=text_position(file, text, index))


def _syntax_error(file: str, text: str, exc: yaml.YAMLError) -> InputError:
    if isinstance(exc, yaml.reader.ReaderError):
        # the scan in load_text finds every character the reader refuses before it runs
        bad = NON_PRINTABLE.search(text)  # pragma: no cover
        if bad:  # pragma: no cover
            return _control_character(file, text, bad.start())
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    position = _pos(file, mark) if mark is not None else Position(file, 1, 1)
    hint = ""
    # PyYAML says "found character '\t' that cannot start any token", libyaml only "found
    # character that cannot start any token": look at the character itself.
    if _char_at(text, mark) == "\t" or "'\\t'" in problem or "tab character" in problem:
        problem = "a tab character; YAML indents with spaces only"
        hint = "replace the tab with spaces"
    text = f"malformed YAML: {problem}"
    if hint:
        text += f"; {hint}"
    return InputError(text, check="yaml-syntax", position=position)


def _scan(file: str, text: str) -> None:
    """Walk the parser's events (libyaml's parser keeps its own stacks; its composer, like
    PyYAML's, recurses once per level and crashes the interpreter on a deep enough document)
    and refuse, before composing, a document nested deeper than MAX_DEPTH or holding more
    than MAX_NODES values. Aliases are bounded later, as they are expanded (_Builder)."""
    depth = count = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"nesting deeper than {MAX_DEPTH} levels; a cluster file is a few levels deep",
                                 check="yaml-too-deep", position=_pos(file, event.start_mark))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            count += 1
            if count > MAX_NODES:
                raise InputError(
                    f"the file holds more than {MAX_NODES:,} values (keys included); a cluster of 5,000 nodes "
                    "holds about 60,000: is this the cluster file?",
                    check="yaml-too-large", position=_pos(file, event.start_mark))


def load_text(text: str, file: str = "<string>") -> Document:
    bad = NON_PRINTABLE.search(text)
    if bad:
        raise _control_character(file, text, bad.start())
    if not text.strip():
        raise InputError("the file is empty; `bakery init` writes an example to start from",
                         check="yaml-empty", position=Position(file, 1, 1))
    try:
        _scan(file, text)
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        raise _syntax_error(file, text, exc) from None
    except RecursionError:  # pragma: no cover - _scan bounds the depth first
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


# Byte order marks and, without one, the pattern of NUL bytes that an ASCII first character
# leaves, from the YAML 1.2 spec, 5.2 "Character Encodings" (the table of the first four
# bytes). The longer patterns come first: FF FE 00 00 is UTF-32LE, not UTF-16LE.
_WIDE = (
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32 (big-endian)"),
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32 (little-endian)"),
    (b"\xfe\xff", "utf-16-be", "UTF-16 (big-endian)"),
    (b"\xff\xfe", "utf-16-le", "UTF-16 (little-endian)"),
)


def _wide_encoding(raw: bytes) -> str | None:
    """'UTF-16 (little-endian)' and the like when the bytes are UTF-16 or UTF-32 text, with a
    byte order mark or without one; None otherwise."""
    head = raw[:4]
    found = next(((codec, name) for bom, codec, name in _WIDE if head.startswith(bom)), None)
    if found is None and len(head) >= 2:
        if len(head) == 4 and head[:3] == b"\0\0\0" and head[3]:
            found = ("utf-32-be", "UTF-32 (big-endian)")
        elif len(head) == 4 and head[0] and head[1:] == b"\0\0\0":
            found = ("utf-32-le", "UTF-32 (little-endian)")
        elif head[0] == 0 and head[1]:
            found = ("utf-16-be", "UTF-16 (big-endian)")
        elif head[0] and head[1] == 0:
            found = ("utf-16-le", "UTF-16 (little-endian)")
    if found is None:
        return None
    codec, name = found
    sample = raw[:4096]
    try:
        text = sample.decode(codec)
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut in two at the end of the sample
            return None
        text = sample[:exc.start].decode(codec)
    # text, not a binary file that happens to start that way: no NUL or other control character
    # but whitespace in what it decodes to
    return name if not NON_PRINTABLE.search(text.lstrip("\ufeff")) else None


def _read(name: str, path) -> bytes:
    """The file's bytes, at most MAX_BYTES of them, or one InputError saying why not."""
    where = Position(name, 1, 1)
    try:
        return fsafe.read_regular(path, MAX_BYTES)
    except fsafe.NotRegular as exc:
        if exc.kind == "a folder":
            p = os.path.join(name, "cluster.yaml")
            hint = " (it holds a cluster.yaml: pass that)" if os.path.isfile(p) else ""
            raise InputError(f"{name} is a directory, not a cluster file{hint}", check="file-directory") from None
        raise InputError(f"{name} is {exc.kind}, not a regular file; bakery reads a cluster file only from a "
                         "regular file (save it to one first)", check="file-not-regular") from None
    except fsafe.TooLarge:
        raise InputError(f"the file holds more than {MAX_BYTES:,} bytes; a cluster file that large is not a "
                         "cluster file", check="file-too-large", position=where) from None
    except FileNotFoundError:
        if os.path.islink(name):
            raise InputError(f"{name} is a symbolic link to {os.readlink(name)}, which does not exist; point it "
                             "at the cluster file", check="file-missing") from None
        raise InputError(f"no such file: {name}; `bakery init` writes an example cluster.yaml",
                         check="file-missing") from None
    except NotADirectoryError:
        raise InputError(f"no such file: {name} (a folder on its path is a file)", check="file-missing") from None
    except PermissionError:
        raise InputError(f"cannot read {name}: permission denied", check="file-unreadable") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{name} is a symbolic link that leads back to itself (a symlink loop); point it at "
                             "the cluster file", check="file-symlink-loop") from None
        raise InputError(f"cannot read {name}: {exc.strerror or exc}", check="file-unreadable") from None


def load_file(path: str | os.PathLike) -> Document:
    name = str(path)
    where = Position(name, 1, 1)
    raw = _read(name, path)
    wide = _wide_encoding(raw)
    if wide:
        raise InputError(f"the file is {wide}; save it as UTF-8", check="file-encoding", position=where)
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
