"""Property-based tests (hypothesis): whatever they are given, the message reader, the JSONL
line reader of `oyster decide` and the policy loader either work or raise the one error
they promise; nothing else escapes. Bounded example counts keep the suite's time."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oyster.batch import decide_record, json_line
from oyster.engine import Engine, to_messages
from oyster.errors import InputError, PolicyError
from oyster.taxonomy.policy import Policy, default_policy, policy_from_mapping

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# any JSON value, lone surrogates and separators included
TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20)
ROLES = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function",
                         "robot", ""]) | TEXT
PART = st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "refusal"]) | JSON},
                             optional={"text": JSON, "refusal": JSON, "image_url": JSON})
CONTENT = TEXT | st.none() | st.lists(PART | JSON, max_size=4) | JSON
MESSAGE = st.fixed_dictionaries({"role": ROLES},
                                optional={"content": CONTENT, "tool_calls": JSON, "name": JSON})


@FUZZ
@given(st.lists(MESSAGE, max_size=6) | JSON | TEXT)
def test_to_messages_reads_or_raises_input_error(conversation: Any):
    try:
        messages = to_messages(conversation)
    except InputError as e:
        assert str(e)
        return
    assert messages and any(m.role == "user" and m.content.strip() for m in messages)
    for m in messages:
        assert m.role in ("system", "user", "assistant")
        m.content.encode("utf-8")  # lone surrogates were replaced


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(assessor="lexicon")


def _strict(line: str) -> dict[str, Any]:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} written")

    line.encode("utf-8")
    return json.loads(line, parse_constant=refuse)


LINES = (st.binary(max_size=300)
         | JSON.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
         | st.fixed_dictionaries({"id": JSON}, optional={"messages": st.lists(MESSAGE, max_size=4),
                                                          "prompt": JSON}).map(
             lambda v: json.dumps(v).encode()))


@FUZZ
@given(LINES)
def test_jsonl_reader_writes_one_strict_record_for_any_line(engine: Engine, raw: bytes):
    record = decide_record(engine, raw, 1)
    parsed = _strict(json_line(record))
    assert ("error" in parsed) != ("strategy" in parsed)
    assert "internal error" not in parsed.get("error", "")


@cache
def _default_json() -> str:
    return default_policy().model_dump_json()


def _sections() -> dict[str, Any]:
    return json.loads(_default_json())


def _override(data: st.DataObject) -> dict[str, Any]:
    """A `base: default` file that changes one or two fields anywhere in the policy."""
    out: dict[str, Any] = {"base": "default"}
    for _ in range(data.draw(st.integers(1, 2))):
        node: Any = _sections()
        path: list[str] = []
        while isinstance(node, dict) and node and data.draw(st.booleans()) | (not path):
            key = data.draw(st.sampled_from(sorted(node)))
            path.append(key)
            node = node[key]
        if data.draw(st.booleans()):
            path.append(data.draw(TEXT))  # an unknown field
        target = out
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target.get(key, {}), dict) else {}
        target[path[-1]] = data.draw(JSON)
    return out


@FUZZ
@given(st.data())
def test_policy_loader_validates_or_says_which_field(data: st.DataObject):
    mapping = _override(data)
    try:
        policy = policy_from_mapping(mapping, "fuzz.yaml")
    except PolicyError as e:
        assert str(e).startswith("fuzz.yaml: ")
        return
    assert isinstance(policy, Policy)
