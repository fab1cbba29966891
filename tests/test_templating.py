"""dump_yaml's stencils (issue 22, bakery/templating.py): a document filled into the stencil of
its shape is byte for byte what the emitter itself writes for it, with libyaml's emitter and
with PyYAML's own, for the values bakery fills in (names, addresses, MACs, tokens) and for
every value that must not be filled in (what YAML 1.1 reads as another type, what needs
quoting)."""
from __future__ import annotations

import contextlib

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bakery import templating

# What a render fills in, and the values a resolver or emitter treats specially (YAML 1.1
# types, indicators, quoting), which must never be filled in as they are.
TRICKY = [
    "k8s-node-1", "192.168.56.10", "192.168.56.0/24", "52:54:00:aa:bb:cc", "fe80::1", "::1", "abcdef.0123456789abcdef",
    "sha256:0f3e", "lab-k8s-master-0", "v1.36.3", "ens18", "/etc/kubernetes/pki",
    "1:20", "190:20:30", "0x1F", "0o17", "017", "0b101", "1_000", "1e3", "1.5", ".5", "5.", "-1", "+1", ".inf", "-.inf",
    ".nan", "NaN", "~", "null", "Null", "NULL", "true", "True", "yes", "Yes", "no", "on", "off", "OFF", "y", "n", "Y",
    "N", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5", "=", "<<", "abc:", "a: b",
    "a:b", "a #b", "a#b", "-a", "- a", "?a", "? a", ":a", "[a]", "{a}", "a,b", "'a'", '"a"', "a'b", "&a", "*a",
    "!a", "|a", ">a", "%a", "@a", "`a", " a", "a ", "a\nb", "a\n", "", "é", "a\tb", "x" * 300, "1" * 300,
    "bkyz000000q", "bkyz000001q", "123456.0123456789", "12345e.6",
]

scalars = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12), st.integers(-5, 5), st.booleans(), st.none(),
                    st.sampled_from([0.0, -0.0, 1.0, 1.5, float("inf"), float("nan")]),
                    st.from_regex(r"[a-z0-9][a-z0-9.:/-]{0,20}", fullmatch=True))
keys = st.one_of(st.sampled_from(["name", "match", "a", "instance-id", "1", "yes", "a b"]), st.text(max_size=6),
                 st.sampled_from([True, False, 1, 0, 1.0, 0.0, -0.0, None]))
docs = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


def whole(doc) -> str:
    """The emitter's own text for the document (no stencil)."""
    return templating._dump(doc)


@contextlib.contextmanager
def emitted_by(flavour: str):
    """libyaml's emitter (as PyYAML picks it when it has libyaml) or PyYAML's own."""
    saved = getattr(yaml, "CSafeDumper", None)
    if flavour == "pure" and saved is not None:
        del yaml.CSafeDumper
    templating._dumper.cache_clear()
    templating._STENCILS.clear()
    try:
        yield
    finally:
        if saved is not None:
            yaml.CSafeDumper = saved
        templating._dumper.cache_clear()
        templating._STENCILS.clear()


@pytest.fixture(params=["libyaml", "pure"])
def emitter(request):
    """Each test runs with libyaml's emitter (when PyYAML has it) and with PyYAML's own."""
    if request.param == "libyaml" and not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    with emitted_by(request.param):
        yield request.param


@settings(max_examples=300, deadline=None)
@given(doc=docs, again=docs)
def test_any_document_is_the_emitters_text(doc, again):
    for flavour in ("libyaml", "pure"):
        with emitted_by(flavour):
            for d in (doc, again, doc):  # the third from a stencil, perhaps
                assert templating.dump_yaml(d) == whole(d), flavour


@pytest.mark.parametrize("value", TRICKY)
def test_a_value_in_every_place_of_a_shape(value, emitter):
    """The same shape with each value at a mapping's value, in a list, nested, as a key: the
    first document makes the stencil, the second is filled into it."""
    for place in (lambda v: {"network": {"version": 2, "ethernets": {"eth1": {"match": {"macaddress": v}}}}},
                  lambda v: {"hostname": v, "users": [{"name": v, "groups": [v, "sudo"]}]},
                  lambda v: [v, [v, {"k": v}]],
                  lambda v: {v: v} if v else {"x": v}):
        first, second = place("k8s-node-1"), place(value)
        assert templating.dump_yaml(first) == whole(first)
        assert templating.dump_yaml(second) == whole(second), value


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.sampled_from(TRICKY) | st.from_regex(r"[a-z0-9][a-z0-9.:-]{0,30}", fullmatch=True),
                       min_size=3, max_size=3))
def test_a_shape_filled_many_times(values):
    doc = {"instance-id": values[0], "local-hostname": values[1],
           "network": {"ethernets": {"e": {"addresses": [values[2]], "dhcp4": False}}}}
    for flavour in ("libyaml", "pure"):
        with emitted_by(flavour):
            first = {"instance-id": "a", "local-hostname": "b",
                     "network": {"ethernets": {"e": {"addresses": ["c"], "dhcp4": False}}}}
            assert templating.dump_yaml(first) == whole(first)
            assert templating.dump_yaml(doc) == whole(doc), flavour


def test_what_is_filled_in_and_what_is_not():
    fills = templating._fills
    for value in ("k8s-node-1", "192.168.56.10", "52:54:00:aa:bb:cc", "fe80::1", "abcdef.0123456789abcdef"):
        assert fills(value), value
    for value in ("1:20", "0x1F", "1.5", "yes", "y", "null", "~", "2001-12-14", "abc:", "a b", "-a", "", "x" * 300):
        assert not fills(value), value


def test_long_texts_are_emitted_whole(monkeypatch):
    """A file's content is in no stencil: the document is emitted whole, and no stencil is kept."""
    templating._STENCILS.clear()
    doc = [{"path": "/etc/x", "content": "line\n" * 100, "permissions": "0600"}]
    assert templating.dump_yaml(doc) == whole(doc)
    assert templating._STENCILS == {}


def test_types_the_shape_does_not_know_go_to_the_emitter_as_before():
    with pytest.raises(yaml.representer.RepresenterError):
        templating.dump_yaml({"a": object()})
    doc = {"a": ("tuple", "k8s-node-1")}
    assert templating.dump_yaml(doc) == whole(doc)


def test_the_stencils_are_bounded():
    templating._STENCILS.clear()
    for i in range(templating._STENCIL_LIMIT * 2 + 3):
        doc = {f"key{i}": "value"}
        assert templating.dump_yaml(doc) == whole(doc)
    assert len(templating._STENCILS) <= templating._STENCIL_LIMIT


def test_keys_and_values_python_holds_equal_keep_their_own_shape():
    """True, 1 and 1.0 are one dict key to Python, as are 0.0 and -0.0: each is still written
    as itself, never filled into another's stencil. Keys the emitter does not know (a str
    subclass, an IntEnum) are refused as the emitter refuses them."""
    import enum

    class Text(str):
        pass

    class Number(enum.IntEnum):
        ONE = 1

    for first, second in [({1: "k8s-a"}, {True: "k8s-b"}), ({1: "k8s-a"}, {1.0: "k8s-b"}),
                          ({0: "k8s-a"}, {False: "k8s-b"}), ({0.0: "k8s-a"}, {-0.0: "k8s-b"}),
                          ({"a": 0.0, "n": "k8s-a"}, {"a": -0.0, "n": "k8s-b"}), ([0.0], [-0.0])]:
        for flavour in ("libyaml", "pure"):
            with emitted_by(flavour):
                assert templating.dump_yaml(first) == whole(first)
                assert templating.dump_yaml(second) == whole(second), (first, second, flavour)
    for odd in ({Text("a"): "k8s-b"}, {Number.ONE: "k8s-b"}):
        templating._STENCILS.clear()
        templating.dump_yaml({"a": "k8s-a"})
        templating.dump_yaml({1: "k8s-a"})
        with pytest.raises(yaml.representer.RepresenterError):
            templating.dump_yaml(odd)
