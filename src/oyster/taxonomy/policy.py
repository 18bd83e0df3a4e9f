"""The policy: taxonomy, guidelines, user types, strategies, game parameters and reply
resources, as one YAML file validated on load.

The default policy ships in the package (`default_policy.yaml`). A user's file either
replaces it whole or starts with `base: default` and overrides only what it names
(mappings merge key by key, lists are replaced).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oyster._memo import memo_by_identity
from oyster._packaged import packaged_text
from oyster.errors import PolicyError
from oyster.taxonomy.replies import CrisisResource, ReplyTexts
from oyster.types import (
    LEVELS,
    REACTIONS,
    STRATEGIES,
    USER_TYPES,
    Level,
    Reaction,
    Strategy,
    UserType,
)

NONE_CATEGORY = "none"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(_Strict):
    """One risk category: facts from the authors' taxonomy plus our guideline points."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name_en: str
    name_zh: str
    group: str
    severity: float = Field(ge=0.0, le=1.0, description="harm weight of this category")
    guidelines: list[str] = Field(default_factory=list)


class Taxonomy(_Strict):
    groups: list[str]
    categories: list[Category]

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        ids = [c.id for c in self.categories]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate category ids: {dupes}")
        if NONE_CATEGORY not in ids:
            raise ValueError(f"the taxonomy must contain the '{NONE_CATEGORY}' category")
        unknown = sorted({c.group for c in self.categories} - set(self.groups))
        if unknown:
            raise ValueError(f"categories name groups that are not declared: {unknown}")
        for c in self.categories:
            if c.id != NONE_CATEGORY and not c.guidelines:
                raise ValueError(f"category '{c.id}' has no guideline points")
        return self


class UserTypeSpec(_Strict):
    description: str
    needs: str = Field(description="what this kind of user usually needs, for the chain")


class StrategySpec(_Strict):
    description: str
    exposure: float = Field(ge=0.0, le=1.0, description="share of hazardous detail released")
    guidance: float = Field(ge=0.0, le=1.0, description="how much the reply steers to safe help")
    cost: float = Field(ge=0.0, description="operational cost / friction of the strategy")
    safety_strategies: list[str]
    usefulness_strategies: list[str]
    reply_contract: list[str] = Field(description="what a reply under this strategy must do")
    premise_left: float = Field(default=0.0, ge=0.0, le=1.0,
                                description="share of a false premise the reply leaves "
                                "standing (1: answers within it, 0: corrects it)")


def _check_type_table(name: str, table: Mapping[Any, Any], inner: tuple[str, ...] | None) -> None:
    missing = [t for t in USER_TYPES if t not in table]
    extra = [t for t in table if t not in USER_TYPES]
    if missing or extra:
        raise ValueError(f"{name}: needs exactly the user types {list(USER_TYPES)}"
                         f" (missing {missing}, unknown {extra})")
    if inner is not None:
        for t, row in table.items():
            lacking = [k for k in inner if k not in row]
            unknown = [k for k in row if k not in inner]
            if lacking or unknown:
                raise ValueError(f"{name}.{t}: needs exactly {list(inner)}"
                                 f" (missing {lacking}, unknown {unknown})")


class BehaviourModel(_Strict):
    """P(reaction | type, strategy). `quantal`: softmax of the follower's payoff
    u(θ,a,r) = fit[θ][a]·reaction_fit[r] + guidance[a]·reaction_guidance[r] + disposition[θ][r],
    scaled by `rationality`. `table`: the probabilities given directly (must sum to 1)."""

    kind: Literal["quantal", "table"] = "quantal"
    rationality: float = Field(default=2.0, gt=0.0)
    fit: dict[UserType, dict[Strategy, float]]
    reaction_fit: dict[Reaction, float]
    reaction_guidance: dict[Reaction, float]
    disposition: dict[UserType, dict[Reaction, float]]
    table: dict[UserType, dict[Strategy, dict[Reaction, float]]] | None = None

    @model_validator(mode="after")
    def _complete(self) -> BehaviourModel:
        _check_type_table("fit", self.fit, STRATEGIES)
        _check_type_table("disposition", self.disposition, REACTIONS)
        for name, row in (("reaction_fit", self.reaction_fit),
                          ("reaction_guidance", self.reaction_guidance)):
            if set(row) != set(REACTIONS):
                raise ValueError(f"{name}: needs exactly the reactions {list(REACTIONS)}")
        if self.kind == "table":
            if self.table is None:
                raise ValueError("kind 'table' needs a 'table' of probabilities")
            _check_type_table("table", self.table, STRATEGIES)
            for t, by_a in self.table.items():
                for a, probs in by_a.items():
                    if set(probs) != set(REACTIONS):
                        raise ValueError(f"table.{t}.{a}: needs exactly {list(REACTIONS)}")
                    if any(p < 0 for p in probs.values()) or abs(sum(probs.values()) - 1) > 1e-6:
                        raise ValueError(f"table.{t}.{a}: probabilities must be >= 0 and sum to 1")
        return self


class BeliefModel(_Strict):
    """How per-turn evidence about the user's type becomes a posterior."""

    turn_decay: float = Field(default=0.5, ge=0.0, le=1.0,
                              description="weight of a turn's evidence per turn it ages")
    evidence_strength: float = Field(default=1.0, gt=0.0)
    repeat_after_refusal: float = Field(default=3.0, ge=1.0,
                                        description="likelihood ratio toward malicious when a "
                                        "refused risky ask is repeated")
    repeat_similarity: float = Field(default=0.5, gt=0.0, le=1.0)
    floor: float = Field(default=0.01, gt=0.0, lt=0.25, description="minimum mass per type")


class FalsePremise(_Strict):
    """Harm from a false belief the reply leaves standing: a person acting on a toxic
    remedy or a dosing myth is hurt by being answered, not by hazardous detail. Adds
    scale · weight(category) · harm[θ] · premise_left(a) to the harm of strategy a, where
    weight is 1 for categories of physical harm and `other_weight` for the rest."""

    harm: dict[UserType, float] = Field(default_factory=lambda: dict.fromkeys(USER_TYPES, 0.0))
    physical_categories: list[str] = Field(default_factory=list)
    other_weight: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _complete(self) -> FalsePremise:
        _check_type_table("false_premise.harm", self.harm, None)
        if any(v < 0 for v in self.harm.values()):
            raise ValueError("false_premise.harm: values must be >= 0")
        return self

    def weight(self, category_ids: list[str]) -> float:
        """1 when any category is one of physical harm, else `other_weight`."""
        physical = set(self.physical_categories)
        return 1.0 if any(c in physical for c in category_ids) else self.other_weight


class GameParams(_Strict):
    alpha: float = Field(default=1.0, ge=0.0, description="weight of retention")
    beta: float = Field(default=2.0, ge=0.0, description="weight of harm")
    gamma: float = Field(default=0.5, ge=0.0, description="weight of strategy cost")
    prior: dict[UserType, float]
    level_scale: dict[Level, float]
    unknown_category_severity: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="severity used when a risky turn matches no known category")
    retention: dict[UserType, dict[Reaction, float]]
    misuse: dict[UserType, float] = Field(description="P(type turns released detail into harm)")
    reaction_harm: dict[UserType, dict[Reaction, float]]
    behaviour: BehaviourModel
    belief: BeliefModel = BeliefModel()
    false_premise: FalsePremise = FalsePremise()

    @model_validator(mode="after")
    def _complete(self) -> GameParams:
        _check_type_table("prior", self.prior, None)
        if any(v <= 0 for v in self.prior.values()):
            raise ValueError("prior: every user type needs a positive prior")
        _check_type_table("misuse", self.misuse, None)
        _check_type_table("retention", self.retention, REACTIONS)
        _check_type_table("reaction_harm", self.reaction_harm, REACTIONS)
        if set(self.level_scale) != set(LEVELS):
            raise ValueError(f"level_scale: needs exactly {list(LEVELS)}")
        return self


class Resources(_Strict):
    """Help a reply may point to, by language."""

    crisis: dict[str, list[CrisisResource]] = Field(description="language code -> resources")

    @field_validator("crisis")
    @classmethod
    def _has_fallback(cls, v: dict[str, list[CrisisResource]]) -> dict[str, list[CrisisResource]]:
        if "en" not in v:
            raise ValueError("crisis: needs at least the 'en' resources (the fallback)")
        return v


class ChainTemplates(_Strict):
    """Phrases the chain builder fills in; `{category}`, `{level}`, `{type}` are substituted."""

    risk_intent: dict[UserType, str]
    level_note: dict[Level, str]
    attack_note: str

    @model_validator(mode="after")
    def _complete(self) -> ChainTemplates:
        _check_type_table("risk_intent", self.risk_intent, None)
        return self


class AuditSettings(_Strict):
    log_message_text: bool = False
    synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL", description="SQLite sync level of the WAL audit log: NORMAL survives "
        "a crash of the server process, FULL also survives power loss (one fsync per commit)")


class RequestLimits(_Strict):
    """The work one request may cause: a proxy request, or a line of `oyster decide`.
    Sizes are refused before any work; embedding and time are charged as the work happens."""

    max_request_bytes: int = Field(default=1_000_000, gt=0,
                                   description="bytes of one request body or input line")
    max_messages: int = Field(default=200, gt=0)
    max_message_chars: int = Field(default=32_000, gt=0)
    max_total_chars: int = Field(default=200_000, gt=0,
                                 description="characters of all messages together")
    max_embedded_chars: int = Field(default=24_000, gt=0, description="characters the "
                                    "assessor may embed for one conversation (each turn is "
                                    "clipped to the embedder's window before it counts)")
    max_decide_seconds: float = Field(default=20.0, gt=0.0,
                                      description="seconds the assessment may take")


Strictness = Literal["lenient", "normal", "strict"]


class ModerationSettings(_Strict):
    """Moderation of every reply as text in its own right (`oyster.moderate`). The decision
    only chooses how strict: by the request's risk level, and `strict` for a `refuse`."""

    enabled: bool = True
    strictness: dict[Level, Strictness] = Field(
        default_factory=lambda: dict(_DEFAULT_STRICTNESS))
    refuse_strictness: Strictness = "strict"
    thresholds: dict[Strictness, float] = Field(
        default_factory=dict, description="harm-score thresholds replacing the packaged "
        "head's (which were chosen on its validation split)")
    hold_threshold: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="harm score from which a streamed window "
        "that passed is held until the text after it settles the matter (replacing the "
        "packaged head's, chosen on its validation split)")
    private_data: bool = Field(default=True, description="flag identity numbers (US SSN, "
                               "payment cards, Chinese resident ID) in a reply")

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, v: dict[Strictness, float]) -> dict[Strictness, float]:
        bad = {k: t for k, t in v.items() if not 0.0 < t < 1.0}
        if bad:
            raise ValueError(f"thresholds must lie strictly between 0 and 1: {bad}")
        return v


_DEFAULT_STRICTNESS: dict[Level, Strictness] = {"R0": "normal", "R1": "normal", "R2": "strict"}
_DEFAULT_HOLD: dict[Strategy, int] = {"guide": 400, "correct": 400, "refuse": 600}


class ServeSettings(_Strict):
    fail_mode: Literal["closed", "open"] = "closed"
    rate_limit_per_minute: int = Field(default=600, gt=0)
    auth_failures_per_minute: int = Field(default=30, gt=0, description="failed "
                                          "authentication attempts allowed per client address")
    open_scopes: list[Literal["inspect", "admin"]] = Field(
        default_factory=list, description="with authentication off: what every caller may "
        "see besides the reply (inspect: the decision in each completion)")
    upstream_timeout_s: float = Field(default=60.0, gt=0.0,
                                      description="seconds the upstream may take for a whole reply")
    stream_check_chars: int = Field(default=160, gt=0, description="streamed text is verified "
                                    "and released in windows of about this many characters")
    stream_hold_chars: dict[Strategy, int] = Field(
        default_factory=lambda: _DEFAULT_HOLD.copy(),
        description="per strategy: characters held back before the first text is released, "
                    "so the opening is verified whole (a failed opening is replaced by the "
                    "fallback before the client sees any of it)")


class Policy(_Strict):
    """Everything a deployment can tune, validated as one unit."""

    name: str
    version: str
    taxonomy: Taxonomy
    user_types: dict[UserType, UserTypeSpec]
    strategies: dict[Strategy, StrategySpec]
    game: GameParams
    chain: ChainTemplates
    resources: Resources
    audit: AuditSettings = AuditSettings()
    limits: RequestLimits = RequestLimits()
    moderation: ModerationSettings = ModerationSettings()
    serve: ServeSettings = ServeSettings()
    replies: ReplyTexts = Field(default_factory=lambda: _default_replies(),
                                description="texts the policy writes itself (replies.py)")

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        if set(self.user_types) != set(USER_TYPES):
            raise ValueError(f"user_types: needs exactly {list(USER_TYPES)}")
        if set(self.strategies) != set(STRATEGIES):
            raise ValueError(f"strategies: needs exactly {list(STRATEGIES)}")
        ids = {c.id for c in self.taxonomy.categories}
        known = ids | set(self.taxonomy.groups)
        for name, scaffold in self.replies.scaffolds.items():
            unknown = sorted(set(scaffold.categories) - known)
            if unknown:
                raise ValueError(f"replies.scaffolds.{name}: unknown categories {unknown}")
        unknown = sorted(set(self.replies.refusal_alternatives) - known - {"default"})
        if unknown:
            raise ValueError(f"replies.refusal_alternatives: unknown categories or groups "
                             f"{unknown}")
        unknown = sorted(set(self.game.false_premise.physical_categories) - ids)
        if unknown:
            raise ValueError(f"game.false_premise.physical_categories: unknown ids {unknown}")
        return self

    @property
    def label(self) -> str:
        """`name@version`, as written into every decision record."""
        return f"{self.name}@{self.version}"

    def category(self, category_id: str) -> Category:
        """The category with this id or English name (case-insensitive)."""
        return self._category_index()[category_id.lower()]

    def has_category(self, category_id: str) -> bool:
        return category_id.lower() in self._category_index()

    def category_ids(self) -> list[str]:
        return [c.id for c in self.taxonomy.categories]

    def _category_index(self) -> dict[str, Category]:
        return _category_index(self.taxonomy)

    def fingerprint(self) -> str:
        """A short hash of the policy's content, for audit trails."""
        blob = self.model_dump_json().encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _default_replies() -> ReplyTexts:
    return default_reply_texts()


@memo_by_identity
def _category_index(taxonomy: Taxonomy) -> dict[str, Category]:
    index: dict[str, Category] = {}
    for c in taxonomy.categories:
        index[c.id] = c
        index[c.name_en.lower()] = c
    return index


DEFAULT_POLICY_FILE = "default_policy.yaml"
DEFAULT_REPLIES_FILE = "default_replies.yaml"


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{source}: not valid YAML: {e}",
                          [(source, "", f"not valid YAML: {e}")]) from e
    if not isinstance(data, dict):
        reason = "a policy file must be a YAML mapping at the top level"
        raise PolicyError(f"{source}: {reason}", [(source, "", reason)])
    return data


def _default_text() -> str:
    return packaged_text("oyster.taxonomy", DEFAULT_POLICY_FILE)


def _with_includes(data: dict[str, Any], source: str, folder: Path | None) -> dict[str, Any]:
    """`data` merged over the files its `includes` list names (read from `folder`, else
    from the package: a copy of the default policy keeps working); the including file
    wins."""
    names = data.pop("includes", None) or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        reason = "expected a list of file names"
        raise PolicyError(f"{source}: field 'includes': {reason}", [(source, "includes", reason)])
    merged: dict[str, Any] = {}
    for name in names:
        try:
            text = ((folder / name).read_text("utf-8") if folder and (folder / name).is_file()
                    else packaged_text("oyster.taxonomy", name))
        except OSError as e:
            reason = f"cannot read {name}: {e.strerror or e}"
            raise PolicyError(f"{source}: field 'includes': {reason}",
                              [(source, "includes", reason)]) from e
        merged = _deep_merge(merged, _read_yaml(text, name))
    return _deep_merge(merged, data)


@cache
def _default_mapping() -> dict[str, Any]:
    """The packaged policy with its includes (cached: callers deep-copy before merging)."""
    return _with_includes(_read_yaml(_default_text(), DEFAULT_POLICY_FILE), DEFAULT_POLICY_FILE,
                          None)


@cache
def default_reply_texts() -> ReplyTexts:
    """The packaged `replies` section (for a policy file that replaces the default whole
    and leaves it out)."""
    data = _read_yaml(packaged_text("oyster.taxonomy", DEFAULT_REPLIES_FILE), DEFAULT_REPLIES_FILE)
    try:
        return ReplyTexts.model_validate(data.get("replies"))
    except ValidationError as e:
        raise PolicyError(f"{DEFAULT_REPLIES_FILE}: invalid replies: {e}") from None


@cache
def default_policy() -> Policy:
    """The policy shipped in the package (loaded once)."""
    return policy_from_mapping(copy.deepcopy(_default_mapping()), DEFAULT_POLICY_FILE)


def policy_from_mapping(data: dict[str, Any], source: str, folder: Path | None = None
                        ) -> Policy:
    """Validate a policy mapping; `folder` is where its `includes` are read from."""
    base = data.pop("base", None) if "base" in data else None
    if "includes" in data:
        data = _with_includes(data, source, folder)
    if base is not None:
        if base != "default":
            reason = f"only 'default' is supported, got {base!r}"
            raise PolicyError(f"{source}: field 'base': {reason}", [(source, "base", reason)])
        data = _deep_merge(copy.deepcopy(_default_mapping()), data)
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        problems = [(source, ".".join(str(p) for p in err["loc"]) or "<root>", err["msg"])
                    for err in e.errors()]
        listed = "; ".join(f"field '{field}': {reason}" for _, field, reason in problems)
        raise PolicyError(f"{source}: invalid policy: {listed}", problems) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """Load and validate a policy file; `None` gives the default policy."""
    if path is None:
        return default_policy()
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as e:
        reason = f"cannot read policy file: {e.strerror or e}"
        raise PolicyError(f"{p}: {reason}", [(str(p), "", reason)]) from e
    return policy_from_text(text, str(p), p.parent)


def policy_from_text(text: str, source: str, folder: Path | None = None) -> Policy:
    """Parse and validate policy YAML; `source` names it in errors (e.g. the file name) and
    `folder` is where its `includes` are read from."""
    return policy_from_mapping(_read_yaml(text, source), source, folder)
