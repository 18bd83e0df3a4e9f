"""Backward propagation: after the strategies change, make the earlier nodes lead to them.

Two things follow an edit:

1. The strategy label (which reply contract the responder applies) becomes the one most of
   the chain's phrases belong to (`relabel`): a phrase belongs to a policy strategy when it is
   one of that strategy's phrases, or to the strategy its pool entry names. Ties go to the
   strategies of the phrases just added, then to the current label; a move is allowed only
   to strategies `relabel_allowed` lists for the query's level.
2. The nodes before the strategies are re-derived (`RulePropagator`, offline):
   - guidelines: of the points of the query's top two categories, the ones sharing the most
     words with the new strategies (ties in policy order), at most `max_guidelines`;
   - user needs and risk intent, when the label changed: the reading of the user that best
     justifies the new strategy in the policy's game (of the user types the assessment gives
     at least `min_reading_posterior`, the one for which the new strategy loses least to the
     leader's best response), written with the policy's templates. When the label stays, or
     the most probable reading still justifies it best, they stay.
   An R0 chain stays collapsed (needs + strategies). `LLMPropagator` asks a backend instead,
   choosing guidelines by number from the same candidates only, and falls back to the rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from oyster.backends.base import ChatBackend, GenerationParams
from oyster.chain import Chain
from oyster.chain.build import guideline_points, risk_intent_text, risky_categories
from oyster.decision import Decision
from oyster.engine import premise_weight_of, severity_of
from oyster.game import leader_values
from oyster.lingobp.edit import normalise, same_item
from oyster.lingobp.llm import ask_json, new_fence
from oyster.lingobp.render import chain_text, conversation_text
from oyster.lingobp.settings import LingoSettings, prompts, settings
from oyster.lingobp.steps import Steps, arun_steps, finished, run_steps
from oyster.policy import Policy
from oyster.types import STRATEGIES, USER_TYPES, Message, Strategy, UserType


def phrase_owners(policy: Policy, cfg: LingoSettings) -> list[tuple[str, Strategy]]:
    """Every phrase that belongs to a strategy: the policy's own, then the tagged pool phrases."""
    owners: list[tuple[str, Strategy]] = []
    for name in STRATEGIES:
        spec = policy.strategies[name]
        owners += [(p, name) for p in [*spec.safety_strategies, *spec.usefulness_strategies]]
    for pool in cfg.pools.values():
        owners += [(p.text, p.strategy) for p in pool if p.strategy is not None]
    return owners


def owner_of(phrase: str, owners: Sequence[tuple[str, Strategy]]) -> Strategy | None:
    return next((s for text, s in owners if same_item(phrase, text)), None)


def relabel(decision: Decision, safety: Sequence[str], usefulness: Sequence[str],
            added: Sequence[str], policy: Policy, cfg: LingoSettings | None = None) -> Strategy:
    """The strategy the edited sets stand for (see the module docstring)."""
    cfg = cfg or settings()
    owners = phrase_owners(policy, cfg)
    votes = Counter(s for p in [*safety, *usefulness] if (s := owner_of(p, owners)) is not None)
    if not votes:
        return decision.strategy
    top = max(votes.values())
    leaders = [s for s in STRATEGIES if votes[s] == top]
    preferred = [s for p in added if (s := owner_of(p, owners)) in leaders]
    choice = (preferred[0] if preferred else decision.strategy if decision.strategy in leaders
              else leaders[0])
    allowed = cfg.relabel_allowed[decision.level]
    return choice if choice == decision.strategy or choice in allowed else decision.strategy


def leading_type(decision: Decision, strategy: Strategy, policy: Policy,
                 min_posterior: float) -> UserType:
    """Among the readings of the user the assessment gives at least `min_posterior`, the one
    under which `strategy` loses least to the leader's best response (ties: the more probable)."""
    values = leader_values(policy.game, policy.strategies,
                           severity_of(policy, decision.categories, decision.level),
                           decision.level, premise_weight_of(policy, decision.categories))
    p = decision.user_type
    eligible = [t for t in USER_TYPES if p.get(t, 0.0) >= min_posterior] or \
        [max(USER_TYPES, key=lambda t: p.get(t, 0.0))]
    regret = {t: max(values[t].values()) - values[t][strategy] for t in eligible}
    return min(eligible, key=lambda t: (round(regret[t], 9), -p.get(t, 0.0)))


def _words(text: str, stopwords: frozenset[str]) -> set[str]:
    words = (w for w in normalise(text).split() if len(w) > 2 and w not in stopwords)
    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in words}


def supporting_guidelines(candidates: Sequence[str], strategies: Sequence[str], limit: int,
                          cfg: LingoSettings | None = None) -> list[str]:
    """The candidates sharing the most words with `strategies`, kept in candidate order."""
    cfg = cfg or settings()
    stop = cfg.stopword_set
    target = set().union(*(_words(s, stop) for s in strategies)) if strategies else set()
    ranked = sorted(range(len(candidates)),
                    key=lambda i: (-len(_words(candidates[i], stop) & target), i))
    return [candidates[i] for i in sorted(ranked[:limit])]


class PropagationRequest(BaseModel):
    """The decision before the edit, the chain with its new strategies (earlier nodes not yet
    updated), and the strategy label the edit leads to."""

    model_config = ConfigDict(frozen=True)

    messages: list[Message]
    decision: Decision
    edited: Chain
    strategy: Strategy


class Propagation(BaseModel):
    model_config = ConfigDict(frozen=True)

    chain: Chain
    how: str = Field(description="which propagator produced the chain, and any fallback")


class ChainPropagator(ABC):
    """Re-derives the chain's earlier nodes; `propagate`/`apropagate` are twins."""

    name: ClassVar[str] = "base"

    @abstractmethod
    def steps(self, request: PropagationRequest) -> Steps[Propagation]: ...

    def propagate(self, request: PropagationRequest) -> Propagation:
        return run_steps(self.steps(request))

    async def apropagate(self, request: PropagationRequest) -> Propagation:
        return await arun_steps(self.steps(request))


def candidate_guidelines(decision: Decision, policy: Policy) -> list[str]:
    return guideline_points(risky_categories(decision.categories, policy), policy)


class RulePropagator(ChainPropagator):
    name: ClassVar[str] = "rule"

    def __init__(self, policy: Policy, cfg: LingoSettings | None = None) -> None:
        self.policy = policy
        self.cfg = cfg or settings()

    def derive(self, request: PropagationRequest) -> Chain:
        decision, chain, policy = request.decision, request.edited, self.policy
        if decision.level == "R0":
            return chain
        update: dict[str, object] = {"guidelines": supporting_guidelines(
            candidate_guidelines(decision, policy),
            [*chain.safety_strategies, *chain.usefulness_strategies], self.cfg.max_guidelines,
            self.cfg)}
        dominant = max(decision.user_type, key=decision.user_type.__getitem__)
        user_type = (leading_type(decision, request.strategy, policy,
                                  self.cfg.min_reading_posterior)
                     if request.strategy != decision.strategy else dominant)
        if user_type != dominant:
            update["user_needs"] = policy.user_types[user_type].needs
            update["risk_intent"] = risk_intent_text(
                decision.level, risky_categories(decision.categories, policy), user_type,
                decision.attacks, policy)
        return chain.model_copy(update=update)

    def steps(self, request: PropagationRequest) -> Steps[Propagation]:
        return finished(Propagation(chain=self.derive(request), how=self.name))


class _Nodes(BaseModel):
    """The LLM propagator's answer."""

    model_config = ConfigDict(extra="ignore")

    user_needs: str = Field(min_length=3, max_length=240)
    risk_intent: str = Field(default="", max_length=600)
    guidelines: list[int] = Field(default_factory=list)


class LLMPropagator(ChainPropagator):
    """Asks a chat backend to rewrite needs and risk intent and pick guidelines by number."""

    name: ClassVar[str] = "llm"

    def __init__(self, backend: ChatBackend, policy: Policy,
                 params: GenerationParams | None = None,
                 fallback: ChainPropagator | None = None) -> None:
        self.backend = backend
        self.policy = policy
        self.params = params
        self.cfg = settings()
        self.fallback = fallback or RulePropagator(policy, self.cfg)

    @property
    def propagator_name(self) -> str:
        return f"llm:{self.backend.spec}"

    def messages(self, request: PropagationRequest, candidates: Sequence[str],
                 fence: str | None = None) -> list[Message]:
        fence = fence or new_fence()
        p = prompts().propagator
        chain = request.edited
        strategies = "\n".join(f"- {s}" for s in
                               [*chain.safety_strategies, *chain.usefulness_strategies])
        user = p.user.format(
            fence=fence, conversation=conversation_text(request.messages),
            chain=chain_text(chain), strategy=request.strategy, strategies=strategies,
            candidates="\n".join(f"{i}. {c}" for i, c in enumerate(candidates, 1)) or "-")
        return [Message(role="system", content=p.system.format(
                    fence=fence, max_guidelines=self.cfg.max_guidelines)),
                Message(role="user", content=user)]

    def steps(self, request: PropagationRequest) -> Steps[Propagation]:
        if request.decision.level == "R0":  # nothing before the strategies to re-derive
            return (yield from self.fallback.steps(request))
        candidates = candidate_guidelines(request.decision, self.policy)
        answer, problem = yield from ask_json(self.backend, self.messages(request, candidates),
                                              _Nodes, self.params)
        if answer is not None:
            picked = list(dict.fromkeys(answer.guidelines))
            if any(not 1 <= i <= len(candidates) for i in picked) \
                    or len(picked) > self.cfg.max_guidelines:
                problem = (f"guidelines must be at most {self.cfg.max_guidelines} numbers "
                           f"from 1 to {len(candidates)}")
            else:
                chain = request.edited.model_copy(update={
                    "user_needs": answer.user_needs.strip(),
                    "risk_intent": answer.risk_intent.strip(),
                    "guidelines": [candidates[i - 1] for i in sorted(picked)]})
                return Propagation(chain=chain, how=self.propagator_name)
        result = yield from self.fallback.steps(request)
        return result.model_copy(update={
            "how": f"{result.how} (fallback: {self.propagator_name} {problem})"})
