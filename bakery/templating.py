"""One Jinja2 environment for every text template, with an escaping filter per target
language. Templates format; they do not decide (logic lives in Python)."""
from __future__ import annotations

import functools
import json
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


def dump_yaml(data) -> str:
    """YAML for generated documents: block style, key order kept, no aliases."""
    import yaml

    return yaml.dump(data, Dumper=_dumper(), sort_keys=False, default_flow_style=False, width=1000,
                     allow_unicode=True)
