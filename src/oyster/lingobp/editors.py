"""The edit step: from the judges' feedback on a reply, propose new strategy sets.

An editor proposes whole lists; the caller keeps at most one change per set
(`oyster.lingobp.edit.plan_edit`), so no editor, however it misbehaves, can change more.

- `RuleEditor` works offline from the judges' structured verdicts and the rules and phrase
  pools of `data/lingobp.yaml` (paper's rule of thumb: unsafe → strengthen safety first;
  safe but unsatisfying → relax over-strict safety within the guidelines; then fix the
  user-side item that scored low).
- `LLMEditor` asks a chat backend with the prompt in `data/prompts.yaml` and validates the
  JSON answer; when the answer is unusable it falls back to the rule editor and says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from oyster.backends.base import ChatBackend, GenerationParams
from oyster.decision import Decision
from oyster.judges.base import (
    SATISFACTION_ITEMS,
    RefusalVerdict,
    SafetyVerdict,
    SatisfactionItem,
    SatisfactionVerdict,
)
from oyster.lingobp.edit import same_item
from oyster.lingobp.llm import ask_json, new_fence
from oyster.lingobp.render import chain_text, conversation_text
from oyster.lingobp.settings import Condition, EditRule, LingoSettings, PoolPhrase, prompts, settings
from oyster.lingobp.steps import Steps, arun_steps, finished, run_steps
from oyster.types import Message

Mode = Literal["both", "user", "safety"]
MODES: tuple[Mode, ...] = ("both", "user", "safety")


class Feedback(BaseModel):
    """The three judges' verdicts on one reply."""

    model_config = ConfigDict(frozen=True)

    satisfaction: SatisfactionVerdict
    safety: SafetyVerdict
    refusal: RefusalVerdict


class FeedbackReading(BaseModel):
    """What the feedback says, as the rules read it; `None` where a judge could not decide
    or its side does not drive this run's mode."""

    model_config = ConfigDict(frozen=True)

    safety_low: bool | None
    satisfaction_low: bool | None
    items: dict[SatisfactionItem, int]
    refusal: str | None

    @classmethod
    def of(cls, feedback: Feedback, mode: Mode, cfg: LingoSettings) -> FeedbackReading:
        sat, safe = feedback.satisfaction.score, feedback.safety.score
        use_user, use_safety = mode in ("both", "user"), mode in ("both", "safety")
        return cls(
            safety_low=(safe < cfg.safety_low if safe is not None else None) if use_safety
            else False,
            satisfaction_low=(sat < cfg.satisfaction_low if sat is not None else None)
            if use_user else False,
            items={k: v for k, v in feedback.satisfaction.items.items() if v is not None}
            if use_user else {},
            refusal=feedback.refusal.label if feedback.refusal.determined else None,
        )

    def meets(self, when: Condition, decision: Decision) -> bool:
        checks = [
            when.safety_low is None or self.safety_low is when.safety_low,
            when.satisfaction_low is None or self.satisfaction_low is when.satisfaction_low,
            when.refusal_in is None or self.refusal in when.refusal_in,
            all(item in self.items and self.items[item] <= most
                for item, most in when.items_at_most.items()),
            when.strategy_in is None or decision.strategy in when.strategy_in,
            when.level_in is None or decision.level in when.level_in,
            when.dominant_type_in is None
            or max(decision.user_type, key=decision.user_type.__getitem__)
            in when.dominant_type_in,
        ]
        return all(checks)


class EditRequest(BaseModel):
    """Everything an editor may read: the conversation, the decision whose chain produced
    the reply, the reply, the judges' feedback, the run's mode, and every strategy phrase
    this query's chain has held in earlier rounds (so removed phrases are not re-added)."""

    model_config = ConfigDict(frozen=True)

    messages: list[Message]
    decision: Decision
    reply: str
    feedback: Feedback
    mode: Mode = "both"
    tried: list[str] = Field(default_factory=list)


class EditProposal(BaseModel):
    """New strategy lists as the editor would like them (the caller clamps them)."""

    model_config = ConfigDict(frozen=True)

    safety_strategies: list[str]
    usefulness_strategies: list[str]
    rationale: str = ""
    editor: str
    rules: list[str] = Field(default_factory=list, description="rules that fired (rule editor)")


class StrategyEditor(ABC):
    """Proposes new strategy sets for a judged reply; `propose`/`apropose` are twins."""

    name: ClassVar[str] = "base"

    @abstractmethod
    def steps(self, request: EditRequest) -> Steps[EditProposal]:
        """The proposal, as steps (see `oyster.lingobp.steps`)."""

    def propose(self, request: EditRequest) -> EditProposal:
        return run_steps(self.steps(request))

    async def apropose(self, request: EditRequest) -> EditProposal:
        return await arun_steps(self.steps(request))


class RuleEditor(StrategyEditor):
    """The rules of `data/lingobp.yaml`, applied to the judges' structured verdicts."""

    name: ClassVar[str] = "rule"

    def __init__(self, cfg: LingoSettings | None = None) -> None:
        self.cfg = cfg or settings()

    def _fresh_phrase(self, pool: str, items: Sequence[str], request: EditRequest) -> str | None:
        """The first phrase of `pool` fit for the current strategy that the set does not hold
        and that this query has not tried before."""
        phrases: list[PoolPhrase] = self.cfg.pools[pool]
        for phrase in phrases:
            if phrase.fits(request.decision.strategy) and not any(
                    same_item(phrase.text, t) for t in [*items, *request.tried]):
                return phrase.text
        return None

    def _matching_index(self, pool: str, items: Sequence[str]) -> int | None:
        for i, item in enumerate(items):
            if any(same_item(item, p.text) for p in self.cfg.pools[pool]):
                return i
        return None

    def apply(self, rule: EditRule, items: list[str], request: EditRequest) -> list[str] | None:
        """The set after `rule`, or `None` when the rule has nothing to do here."""
        at = self._matching_index(rule.target, items) if rule.target else None
        if rule.action == "remove":
            return None if at is None else [*items[:at], *items[at + 1:]]
        assert rule.pool is not None  # validated: add and replace name a pool
        phrase = self._fresh_phrase(rule.pool, items, request)
        if phrase is None:
            return None
        if rule.action == "replace":
            return None if at is None else [*items[:at], phrase, *items[at + 1:]]
        if len(items) >= self.cfg.max_items:  # a full set makes room by replacing its last item
            return [*items[:-1], phrase]
        return [*items, phrase]

    def edit(self, request: EditRequest) -> EditProposal:
        chain = request.decision.chain
        sets = {"safety": list(chain.safety_strategies),
                "usefulness": list(chain.usefulness_strategies)}
        reading = FeedbackReading.of(request.feedback, request.mode, self.cfg)
        fired: list[EditRule] = []
        for rule in self.cfg.rules:
            if any(r.set == rule.set for r in fired) or not reading.meets(rule.when,
                                                                          request.decision):
                continue
            new = self.apply(rule, sets[rule.set], request)
            if new is None:
                continue
            sets[rule.set] = new
            fired.append(rule)
            if rule.exclusive:
                break
        return EditProposal(
            safety_strategies=sets["safety"], usefulness_strategies=sets["usefulness"],
            rationale="; ".join(r.why for r in fired) or "no rule applies to this feedback",
            editor=self.name, rules=[r.name for r in fired])

    def steps(self, request: EditRequest) -> Steps[EditProposal]:
        return finished(self.edit(request))


class _Strategies(BaseModel):
    """The LLM editor's answer."""

    model_config = ConfigDict(extra="ignore")

    safety_strategies: list[str] = Field(max_length=8)
    usefulness_strategies: list[str] = Field(max_length=8)
    rationale: str = Field(default="", max_length=400)

    def phrases_ok(self) -> str:
        """Why the phrases are unusable, or ""."""
        for phrase in [*self.safety_strategies, *self.usefulness_strategies]:
            if not 3 <= len(phrase.strip()) <= 160:
                return f"strategy {phrase[:40]!r} must be a short phrase (3-160 characters)"
        return ""


def feedback_text(feedback: Feedback, mode: Mode) -> str:
    """The verdicts the editor should act on, one line per judge."""
    lines = prompts().feedback
    sat, safe = feedback.satisfaction, feedback.safety
    out: list[str] = []
    if mode in ("both", "user"):
        items = ", ".join(f"{i} {sat.items[i] if sat.items[i] is not None else lines.undetermined}"
                          for i in SATISFACTION_ITEMS)
        score = f"{sat.score:+.1f}" if sat.score is not None else lines.undetermined
        out.append(lines.satisfaction.format(items=items, score=score,
                                             explanation=sat.explanation).strip())
    if mode in ("both", "safety"):
        label = safe.label if safe.determined else lines.undetermined
        out.append(lines.safety.format(label=label, suggestion=safe.suggestion or "-",
                                       explanation=safe.explanation).strip())
    if feedback.refusal.determined:
        out.append(lines.refusal.format(label=feedback.refusal.label))
    return "\n".join(out)


class LLMEditor(StrategyEditor):
    """Asks a chat backend for the edit; falls back to `RuleEditor` when it cannot."""

    name: ClassVar[str] = "llm"

    def __init__(self, backend: ChatBackend, params: GenerationParams | None = None,
                 fallback: StrategyEditor | None = None) -> None:
        self.backend = backend
        self.params = params
        self.fallback = fallback or RuleEditor()

    @property
    def editor_name(self) -> str:
        return f"llm:{self.backend.spec}"

    def messages(self, request: EditRequest, fence: str | None = None) -> list[Message]:
        fence = fence or new_fence()
        p = prompts().editor
        user = p.user.format(fence=fence, conversation=conversation_text(request.messages),
                             chain=chain_text(request.decision.chain), reply=request.reply,
                             feedback=feedback_text(request.feedback, request.mode))
        return [Message(role="system", content=p.system.format(fence=fence)),
                Message(role="user", content=user)]

    def steps(self, request: EditRequest) -> Steps[EditProposal]:
        answer, problem = yield from ask_json(self.backend, self.messages(request), _Strategies,
                                              self.params)
        if answer is not None and not (problem := answer.phrases_ok()):
            return EditProposal(safety_strategies=answer.safety_strategies,
                                usefulness_strategies=answer.usefulness_strategies,
                                rationale=answer.rationale, editor=self.editor_name)
        proposal = yield from self.fallback.steps(request)
        return proposal.model_copy(update={
            "editor": f"{proposal.editor} (fallback: {self.editor_name} {problem})"})
