"""One Jinja2 environment for every text template, with an escaping filter per target
language. Templates format; they do not decide (logic lives in Python)."""
from __future__ import annotations

import functools
import json
import re
import shlex


def hcl_string(value) -> str:
    """An HCL2 quoted string literal, with ${ and %{ escaped so Packer never interpolates
    user text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = json.dumps(str(value), ensure_ascii=False)
    return text.replace("${", "$${").replace("%{", "%%{")


def hcl_value(value) -> str:
    """Any JSON-like Python value as an HCL2 expression."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{hcl_string(k)} = {hcl_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        return "null"
    return hcl_string(value)


def shell_quote(value) -> str:
    return shlex.quote(str(value))


def to_json(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


@functools.cache
def environment():
    import jinja2

    from .resources import templates_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(hcl=hcl_value, sh=shell_quote, tojson=to_json)
    return env


def render_template(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


_YAML11_SHORT_BOOLS = frozenset({"y", "Y", "n", "N"})


@functools.cache
def _dumper():
    """A safe YAML dumper (libyaml's emitter when PyYAML has it: many times faster)."""
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class _Dumper(base):  # type: ignore[valid-type,misc]  # CSafeDumper or SafeDumper, picked at run time
        def ignore_aliases(self, data):
            return True

    def _str(dumper, value):
        style = "|" if "\n" in value else None
        # YAML 1.1 booleans that PyYAML's resolver leaves plain: Go's yaml.v2 (kustomize,
        # kubectl) reads a plain y or n as a bool (resolve.go), so they are quoted
        if value in _YAML11_SHORT_BOOLS:
            style = "'"
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return _Dumper


def _dump(data) -> str:
    import yaml

    return yaml.dump(data, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1000,
                     allow_unicode=True)


# -- stencils: one document shape, emitted once ------------------------------------------------
#
# A render emits the same documents for every node with a few values changed (a name, an
# address, a MAC): network-config, meta-data, user-data's head, kubeadm's configuration. A
# stencil is such a document emitted once with a placeholder for each of those values, and
# filled in for every other node. Only values that the emitter writes as they are, wherever
# they stand, are placeholders: a plain scalar (the resolver reads it back as a string, and
# the emitter's analysis allows it plain in block context) of characters that never need
# quoting, break a line or end in an indicator; everything else, keys included, is part of the
# shape. tests/test_templating.py holds the result to the emitter's own, with libyaml's
# emitter and with PyYAML's.

_HOLE = object()
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,254}\Z")  # no space, quote, '#', ',' or bracket
_TOKEN = re.compile(r"bkyz(\d{6})q")  # a placeholder: plain, and read back as a string
_STENCILS: dict = {}
_STENCIL_LIMIT = 256
_LONG = 256  # a longer text (a file's content) is in no stencil: the document is emitted whole


class _NoStencil(Exception):
    pass


@functools.lru_cache(maxsize=65536)
def _fills(value: str) -> bool:
    """Whether value can stand in a placeholder's place: the emitter writes it plain, as it is."""
    if not _PLAIN.match(value) or value.endswith(":") or value in _YAML11_SHORT_BOOLS:
        return False
    import yaml

    return _resolver().resolve(yaml.ScalarNode, value, (True, False)) == "tag:yaml.org,2002:str"


@functools.cache
def _resolver():
    import yaml

    return yaml.resolver.Resolver()


def _skeleton(data, values: list[str]):
    """The document's shape (hashable) with its placeholder values taken out into values."""
    kind = type(data)
    if kind is str:
        if _fills(data):
            values.append(data)
            return _HOLE
        if len(data) > _LONG:
            raise _NoStencil
        return data
    if kind is dict:
        return (dict, tuple((_scalar_shape(k), _skeleton(v, values)) for k, v in data.items()))
    if kind is list:
        return (list, tuple(_skeleton(v, values) for v in data))
    return _scalar_shape(data)


def _scalar_shape(data):
    """A key or a scalar value in the shape: its exact type and text. True, 1 and 1.0 (and
    0.0 and -0.0) are equal to Python, and would otherwise share a stencil."""
    kind = type(data)
    if kind is str:
        return data
    if kind in (bool, int, float) or data is None:
        return (kind, repr(data))
    raise _NoStencil  # a type the shape does not know: emitted whole (or refused) as ever


def _with_tokens(data, counter: list[int]):
    kind = type(data)
    if kind is str and _fills(data):
        counter[0] += 1
        return f"bkyz{counter[0] - 1:06d}q"
    if kind is dict:
        return {k: _with_tokens(v, counter) for k, v in data.items()}
    if kind is list:
        return [_with_tokens(v, counter) for v in data]
    return data


def _stencil(data, holes: int) -> tuple[str, ...] | None:
    """The document's text cut at its placeholders (None: it cannot be a stencil)."""
    text = _dump(_with_tokens(data, [0]))
    pieces = _TOKEN.split(text)
    parts, order = pieces[0::2], [int(i) for i in pieces[1::2]]
    if order != list(range(holes)):  # a placeholder not written once, plain, in order
        return None
    return tuple(parts)


def dump_yaml(data) -> str:
    """YAML for generated documents: block style, key order kept, no aliases. A document of a
    shape emitted before is filled into its stencil (above)."""
    values: list[str] = []
    try:
        shape = _skeleton(data, values)
    except _NoStencil:
        return _dump(data)
    parts = _STENCILS.get(shape, _HOLE)
    if parts is _HOLE:
        if len(_STENCILS) >= _STENCIL_LIMIT:
            _STENCILS.clear()
        parts = _STENCILS[shape] = _stencil(data, len(values))
    if parts is None:
        return _dump(data)
    out = [parts[0]]
    for value, part in zip(values, parts[1:], strict=True):
        out += (value, part)
    return "".join(out)
