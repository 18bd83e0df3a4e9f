"""Turn a decision into the reply that carries it out, and check it before it leaves.

One reply is at most two generations and text the policy wrote:

1. generate under the decided strategy, steered by the rendered chain; verify against
   exactly the instructions sent;
2. on failure, where the policy has a support scaffold for the situation (`scaffold.py`),
   compose the reply from the scaffold's core and the model's verified opening and
   alternative help (`repaired`), or send the scaffold alone (`fallback`) — no second
   generation;
3. otherwise regenerate once: under the stricter strategy when the problem calls for it
   (a hazard leak, a restated request), with a correction for each problem; verify;
4. if an attempt's only problem is a missing crisis resource, keep the first such text and
   append the policy's resources (`repaired`); otherwise use the fallback written for the
   strategy of the last attempt (`fallback`).

For `refuse`, a backend whose refusals rarely pass verification (the policy's
`replies.model_refusals`, by backend kind) is not asked at all: the policy's refusal goes
out (`fallback`); so for any strategy the backend does not write
(`replies.model_strategies`): the scaffold or the strategy's fallback. Likewise in a
language the backend does not write (`replies.model_languages`): the policy's texts go out
without generating; and where a scaffold applies and the backend may not write around it
(`replies.model_scaffold_parts`): the scaffold alone goes out (`fallback`). A reply to a
message that discloses thoughts of self-harm always carries the crisis lines: a passing
reply without them gets them appended (`repaired`). A reply cut off by the token limit is
trimmed to its last finished sentence first.

`Reply.outcome`, `Reply.attempts` and `Reply.parts` (who wrote which part: the model or
the policy) record which of these happened.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from oyster import telemetry
from oyster.backends.base import ChatBackend, Completion, GenerationParams
from oyster.budget import check_size
from oyster.decision import Decision
from oyster.engine import Engine
from oyster.errors import InputError
from oyster.policy.replies import Scaffold
from oyster.respond.fallback import fallback_reply, resource_note
from oyster.respond.instructions import instructions_for, with_strategy
from oyster.respond.regenerate import plan_retry
from oyster.respond.scaffold import (
    Composer,
    PartKind,
    ReplyPart,
    join_parts,
    select_scaffold,
)
from oyster.respond.verify import Verification, Verifier, has_resource, resource_markers
from oyster.types import Conversation, Message, Strategy, to_messages

Outcome = Literal["passed", "regenerated", "repaired", "fallback"]
Source = Literal["model", "model+policy", "policy"]


class Attempt(BaseModel):
    """One generation: the strategy it carried out, its text and its verification."""

    model_config = ConfigDict(frozen=True)

    strategy: Strategy
    text: str
    verification: Verification
    corrections: list[str] = Field(default_factory=list)
    completion: Completion | None = None


class Reply(BaseModel):
    """The reply to one turn and how it came about."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    text: str
    verification: Verification
    completion: Completion | None = Field(
        default=None, description="the generation behind `text` (None for a fallback)")
    attempts: list[Attempt]
    fallback_used: bool
    outcome: Outcome
    strategy: Strategy = Field(description="the strategy the final text carries out")
    parts: list[ReplyPart] = Field(default_factory=list,
                                   description="the reply's parts and who wrote each")
    scaffold: str | None = Field(default=None, description="the policy scaffold used, if any")
    backend: str = Field(default="", description="spec of the backend that was asked")

    @property
    def source(self) -> Source:
        """Who wrote the text that went out: the model, the policy, or both."""
        sources = {p.source for p in self.parts}
        return "model+policy" if len(sources) > 1 else "policy" if sources == {"policy"} \
            else "model"

    def record(self) -> dict[str, Any]:
        """JSON-ready: the decision record, the reply, its verification and what happened."""
        return {
            "decision": self.decision.record(),
            "reply": self.text,
            "verification": self.verification.model_dump(mode="json"),
            "outcome": self.outcome,
            "strategy": self.strategy,
            "backend": self.backend,
            "source": self.source,
            "scaffold": self.scaffold,
            "parts": [p.model_dump(mode="json") for p in self.parts],
            "attempts": [a.model_dump(mode="json", include={"strategy", "text", "verification",
                                                             "corrections"})
                         for a in self.attempts],
            "generation": (self.completion.model_dump(mode="json", exclude={"text"})
                           if self.completion else None),
        }


# A full stop after a digit is a list number ("2."), not the end of a sentence.
_SENTENCE_END = re.compile(r"(?<![\d\s])[.!?](?=[\s\"')\]]|$)|[。！？]")


def complete_sentences(text: str) -> str:
    """`text` cut after its last finished sentence (for a reply stopped by the token limit);
    unchanged when that would drop more than half of it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[:ends[-1]].rstrip() if ends and ends[-1] >= len(text) / 2 else text


class _ReplyInProgress:
    """The attempts for one reply; `next_prompt` says what to generate next (None: done).
    Backend calls stay with the caller, so the sync and async paths share every step."""

    def __init__(self, responder: Responder, decision: Decision,
                 conversation: list[Message]) -> None:
        self.responder = responder
        self.decision = decision
        self.conversation = conversation
        self.request = next(m.content for m in reversed(conversation) if m.role == "user")
        self.attempts: list[Attempt] = []
        self._current = decision
        self._corrections: list[str] = []
        self._private: list[str] = []
        policy = responder.policy
        found = select_scaffold(decision, policy, self.request)
        self.scaffold_name: str | None = found[0] if found else None
        self.scaffold: Scaffold | None = found[1] if found else None
        kind = responder.backend.kind
        # the backend is not asked at all for a strategy it does not write (the refusal too)
        self.not_asked_strategy = not policy.replies.model_writes_strategy(kind, decision.strategy)
        self.policy_scaffold = (self.scaffold is not None and not
                                policy.replies.model_writes_scaffold_parts(kind))
        self.unwritten_language = not policy.replies.model_writes_language(
            kind, decision.language)
        # the person said it themselves (a cue, not only a category): every reply names help
        self.crisis_disclosed = any(s.crisis_lines and s.cued_by(self.request)
                                    for s in policy.replies.scaffolds.values())

    @property
    def current_strategy(self) -> str:
        return self._current.strategy

    def next_prompt(self) -> list[Message] | None:
        policy = self.responder.policy
        if self.not_asked_strategy or self.policy_scaffold or self.unwritten_language:
            return None
        if not self.attempts:
            prompt = instructions_for(self.decision, policy, self.conversation)
        else:
            last = self.attempts[-1]
            if last.verification.passed or len(self.attempts) > 1 or self.scaffold:
                return None
            plan = plan_retry(self._current, last.verification.problems)
            self._current = with_strategy(self.decision, plan.strategy, policy)
            if not policy.replies.model_writes_strategy(self.responder.backend.kind,
                                                        plan.strategy):
                return None  # the stricter strategy's fallback, not a text it cannot write
            self._corrections = plan.corrections
            prompt = instructions_for(self._current, policy, self.conversation,
                                      corrections=plan.corrections,
                                      include_resources=plan.include_resources or None)
        self._private = [prompt[0].content]
        return prompt

    def _check(self, text: str, decision: Decision) -> Verification:
        return self.responder.verifier.check(text, decision, request=self.request,
                                             private=self._private or None,
                                             conversation=self.conversation)

    def add(self, completion: Completion) -> None:
        text = (complete_sentences(completion.text) if completion.finish_reason == "length"
                else completion.text)
        self.attempts.append(Attempt(strategy=self._current.strategy, text=text,
                                     verification=self._check(text, self._current),
                                     corrections=self._corrections, completion=completion))

    def step(self, completion: Completion) -> list[Message] | Reply:
        """Check a generation; then the prompt to generate next, or the finished reply."""
        self.add(completion)
        prompt = self.next_prompt()
        return self.reply() if prompt is None else prompt

    def reply(self) -> Reply:
        reply = self._final()
        language = self.decision.language
        policy = self.responder.policy
        if not self.crisis_disclosed or has_resource(reply.text,
                                                     resource_markers(policy, language)):
            return reply
        # the person disclosed thoughts of self-harm: whatever the strategy, the reply names
        # where to get help now
        note = resource_note(policy, language)
        text = f"{reply.text}\n\n{note}"
        strategy = with_strategy(self.decision, reply.strategy, policy)
        return reply.model_copy(update={
            "text": text, "verification": self._check(text, strategy),
            "outcome": "repaired" if reply.outcome == "passed" else reply.outcome,
            "parts": [*reply.parts, ReplyPart(kind="resources", text=note, source="policy")]})

    def _final(self) -> Reply:
        policy = self.responder.policy
        if not self.attempts and self.scaffold is not None:  # the model was not asked
            return self._scaffold_alone()
        if (not self.attempts and self.unwritten_language
                and self.decision.strategy in ("answer", "answer_safely")):
            text = policy.replies.unwritten_language[self.decision.language].strip()
            return self._reply(text, self._check(text, self.decision), None, "fallback",
                               self.decision.strategy,
                               [ReplyPart(kind="fallback", text=text, source="policy")])
        if not self.attempts:  # not asked: a strategy or language the backend does not write
            text = fallback_reply(self.decision, policy,
                                  at_risk=self.responder.verifier.needs_resource(self.decision))
            kind: PartKind = "refusal" if self.decision.strategy == "refuse" else "fallback"
            return self._reply(text, self._check(text, self.decision), None, "fallback",
                               self.decision.strategy,
                               [ReplyPart(kind=kind, text=text, source="policy")])
        last = self.attempts[-1]
        if last.verification.passed:
            outcome: Outcome = "passed" if len(self.attempts) == 1 else "regenerated"
            return self._reply(last.text, last.verification, last.completion, outcome,
                               last.strategy, [ReplyPart(kind="reply", text=last.text,
                                                         source="model")])
        if self.scaffold is not None:
            return self._scaffolded(last)
        # The first attempt whose only flaw is the missing resource is kept, with the
        # resources added: a small model's second try is rarely the better text.
        repairable = [a for a in self.attempts
                      if a.verification.problems == ["missing_resource"]]
        if repairable:
            base = repairable[0]
            note = resource_note(policy, self.decision.language)
            text = f"{base.text}\n\n{note}"
            verification = self._check(text, with_strategy(self.decision, base.strategy, policy))
            if verification.passed:
                return self._reply(text, verification, base.completion, "repaired",
                                   base.strategy,
                                   [ReplyPart(kind="reply", text=base.text, source="model"),
                                    ReplyPart(kind="resources", text=note, source="policy")])
        text = fallback_reply(self._current, policy,
                              at_risk=self.responder.verifier.needs_resource(self._current))
        return self._reply(text, self._check(text, self._current), None, "fallback",
                           self._current.strategy,
                           [ReplyPart(kind="fallback", text=text, source="policy")])

    def _scaffolded(self, attempt: Attempt) -> Reply:
        """The scaffold's core with the model's verified parts; the scaffold alone if the
        composed reply still fails."""
        assert self.scaffold is not None
        composer = Composer(self.responder.policy, self.responder.verifier)
        parts = composer.compose(self.decision, self.scaffold, attempt.text, self.conversation,
                                 self._private or None)
        text = join_parts(parts)
        verification = self._check(text, self.decision)
        if not verification.passed:
            return self._scaffold_alone()
        by_model = any(p.source == "model" for p in parts)
        return self._reply(text, verification, attempt.completion if by_model else None,
                           "repaired" if by_model else "fallback", self.decision.strategy,
                           parts)

    def _scaffold_alone(self) -> Reply:
        """The scaffold as the policy wrote it; the strategy's fallback if even that fails."""
        assert self.scaffold is not None
        composer = Composer(self.responder.policy, self.responder.verifier)
        parts = composer.scaffold_alone(self.decision, self.scaffold)
        text = join_parts(parts)
        verification = self._check(text, self.decision)
        if not verification.passed:  # e.g. a deployment's scaffold that names no contact
            text = fallback_reply(self.decision, self.responder.policy,
                                  at_risk=self.responder.verifier.needs_resource(self.decision))
            return self._reply(text, self._check(text, self.decision), None, "fallback",
                               self.decision.strategy,
                               [ReplyPart(kind="fallback", text=text, source="policy")])
        return self._reply(text, verification, None, "fallback", self.decision.strategy, parts)

    def _reply(self, text: str, verification: Verification, completion: Completion | None,
               outcome: Outcome, strategy: Strategy, parts: list[ReplyPart]) -> Reply:
        return Reply(decision=self.decision, text=text, verification=verification,
                     completion=completion, attempts=self.attempts,
                     fallback_used=outcome == "fallback", outcome=outcome, strategy=strategy,
                     parts=parts, scaffold=self.scaffold_name if self.scaffold and any(
                         p.kind == "core" for p in parts) else None,
                     backend=self.responder.backend.spec)


class Responder:
    """Decide, generate, verify.

        responder = Responder(Engine(), from_spec("embedded"))
        reply = responder.respond("I feel like ending it all.")
        reply.decision.strategy, reply.text, reply.verification.passed
    """

    def __init__(self, engine: Engine, backend: ChatBackend,
                 params: GenerationParams | None = None, verifier: Verifier | None = None
                 ) -> None:
        self.engine = engine
        self.backend = backend
        self.params = params or GenerationParams()
        self.policy = engine.policy
        # built once and shared (`with_params`): it caches the policy's texts per language
        self.verifier = verifier or Verifier(engine.policy)

    def with_params(self, params: GenerationParams) -> Responder:
        """This responder (same engine, backend and verifier) with other generation
        parameters: one per request, at no cost."""
        return Responder(self.engine, self.backend, params, self.verifier)

    def warm_up(self) -> None:
        """Load every model deciding and verifying use (see `Engine.warm_up`)."""
        self.engine.warm_up()
        self.verifier.warm_up()

    @classmethod
    def from_specs(cls, backend: str, policy: str | Path | None = None,
                   assessor: str = "default", max_tokens: int = 160, timeout: float = 60.0,
                   temperature: float = 0.2) -> Responder:
        """An engine on `policy` (a YAML file; default: the packaged one) with `assessor`, and
        the backend named by `backend` (a backend spec); raises `OysterError`."""
        from oyster.backends import from_spec

        engine = Engine(policy=str(policy) if policy else None, assessor=assessor)
        params = GenerationParams(max_tokens=max_tokens, timeout=timeout, temperature=temperature)
        return cls(engine, from_spec(backend), params)

    def _conversation(self, messages: Conversation) -> list[Message]:
        conversation = to_messages(messages)
        check_size(conversation, self.policy.limits)
        if conversation[-1].role != "user" or not conversation[-1].content.strip():
            raise InputError("the conversation must end with a non-empty user message")
        return conversation

    def respond(self, messages: Conversation, id: str | None = None) -> Reply:
        """Decide on the last user turn of `messages` and reply to it."""
        conversation = self._conversation(messages)
        return self._respond_to(self.engine.decide(conversation, id), conversation)

    async def arespond(self, messages: Conversation, id: str | None = None) -> Reply:
        conversation = self._conversation(messages)
        return await self._arespond_to(await self.engine.adecide(conversation, id),
                                       conversation)

    def respond_to(self, decision: Decision, messages: Conversation) -> Reply:
        """Reply to `messages` carrying out a decision given by the caller (e.g. a chain
        edited by Lingo-BP)."""
        return self._respond_to(decision, self._conversation(messages))

    async def arespond_to(self, decision: Decision, messages: Conversation) -> Reply:
        return await self._arespond_to(decision, self._conversation(messages))

    def _respond_to(self, decision: Decision, conversation: list[Message]) -> Reply:
        reply = _ReplyInProgress(self, decision, conversation)
        step: list[Message] | Reply = reply.next_prompt() or reply.reply()
        while not isinstance(step, Reply):
            with self._generate_span(reply) as span:
                completion = self.backend.complete(step, self.params)
                _annotate(span, completion)
            step = reply.step(completion)
        return step

    async def _arespond_to(self, decision: Decision, conversation: Sequence[Message]) -> Reply:
        reply = _ReplyInProgress(self, decision, list(conversation))
        # the checks embed text (moderation, relevance): off the event loop, so other
        # requests' I/O goes on meanwhile and two checks can use two cores; one hop per
        # generation (a thread hop costs a few tenths of a ms on a busy machine)
        step: list[Message] | Reply | None = reply.next_prompt()
        if step is None:
            step = await asyncio.to_thread(reply.reply)
        while not isinstance(step, Reply):
            with self._generate_span(reply) as span:
                completion = await self.backend.acomplete(step, self.params)
                _annotate(span, completion)
            step = await asyncio.to_thread(reply.step, completion)
        return step

    def _generate_span(self, reply: _ReplyInProgress) -> Any:
        return telemetry.span("oyster.generate", {
            "oyster.backend": self.backend.spec, "oyster.attempt": len(reply.attempts) + 1,
            "oyster.strategy": reply.current_strategy,
            "gen_ai.request.max_tokens": self.params.max_tokens})


def _annotate(span: Any, completion: Completion) -> None:
    if not span.is_recording():
        return
    span.set_attributes({"gen_ai.response.model": completion.model,
                         "gen_ai.response.finish_reasons": [completion.finish_reason]})
    if completion.prompt_tokens is not None:
        span.set_attribute("gen_ai.usage.input_tokens", completion.prompt_tokens)
    if completion.completion_tokens is not None:
        span.set_attribute("gen_ai.usage.output_tokens", completion.completion_tokens)
