"""LLM judges: any chat backend, our rubric (`data/rubrics.yaml`), validated JSON output.

Each call puts the rubric in the system message and the material under judgement in the
user message between fence markers made of a fresh random token, so the judged text cannot
close the fence or pose as the rubric. The output must be one JSON object that validates
against the judge's schema; on malformed output the judge asks once more, then returns
`undetermined` with the reason. A backend failure also gives `undetermined` (with the error),
never a default verdict.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from oyster._packaged import packaged_data
from oyster.backends.base import ChatBackend, GenerationParams
from oyster.errors import BackendError, JudgeError
from oyster.judges.base import (
    Conversation,
    RefusalClassifier,
    RefusalType,
    RefusalVerdict,
    SafetyJudge,
    SafetyVerdict,
    SatisfactionJudge,
    SatisfactionVerdict,
)
from oyster.taxonomy.policy import Policy, load_policy
from oyster.types import Message, to_messages

JUDGE_PARAMS = GenerationParams(max_tokens=400, temperature=0.0, repeat_penalty=1.0)


class _Rubric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    task: str
    schema_: str

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Rubric:
        return cls(task=data["task"], schema_=data["schema"],
                   **{k: v for k, v in data.items() if k not in ("task", "schema")})


class Rubrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    preamble: str
    retry: str
    refusal: _Rubric
    satisfaction: _Rubric
    safety: _Rubric
    data: dict[Literal["conversation", "reply"], str]


@cache
def rubrics() -> Rubrics:
    raw = packaged_data("oyster.judges", "data/rubrics.yaml", JudgeError)
    try:
        return Rubrics(preamble=raw["preamble"], retry=raw["retry"], data=raw["data"],
                       **{k: _Rubric.of(raw[k]) for k in ("refusal", "satisfaction", "safety")})
    except (KeyError, TypeError, ValidationError, yaml.YAMLError) as e:
        raise JudgeError(f"rubrics.yaml: invalid rubric file: {e}") from e


class _Output(BaseModel):
    model_config = ConfigDict(extra="ignore")

    explanation: str = ""


class RefusalOutput(_Output):
    label: RefusalType


class SatisfactionOutput(_Output):
    politeness: Literal[-1, 0, 1]
    willingness: Literal[-1, 0, 1]
    task_completion: Literal[-1, 0, 1]
    logic: Literal[-1, 0, 1]
    informativeness: Literal[-1, 0, 1]


class SafetyOutput(_Output):
    label: Literal["safe", "mostly_safe", "unsafe"]
    suggestion: str = ""
    user_profile: str = ""
    next_turn: str = ""


OutputT = TypeVar("OutputT", bound=_Output)


def first_json_object(text: str) -> dict[str, Any]:
    """The first `{...}` in `text` that parses as a JSON object."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    raise ValueError("no JSON object found")


def _conversation(query: Conversation) -> list[Message]:
    return to_messages(query)


def fenced(label: str, body: str, fence: str) -> str:
    return f"{label}\n<<<{fence}\n{body}\n{fence}>>>"


class _LLMJudge(Generic[OutputT]):
    """Shared machinery: render, call, validate, retry once, else undetermined."""

    rubric_name: ClassVar[str]
    output_model: type[OutputT]

    def __init__(self, backend: ChatBackend, params: GenerationParams | None = None) -> None:
        self.backend = backend
        self.params = params or JUDGE_PARAMS

    @classmethod
    def from_backend_spec(cls, spec: str, backend_options: dict[str, Any] | None = None,
                          **judge_options: Any) -> Any:
        """The judge on the backend named by `spec` (`judge_options` go to the judge)."""
        from oyster.backends import from_spec

        return cls(from_spec(spec, **(backend_options or {})), **judge_options)

    @property
    def judge_name(self) -> str:
        return f"llm:{self.backend.spec}"

    def messages(self, query: Conversation, reply: str, extra: Sequence[str] = (),
                 fence: str | None = None) -> list[Message]:
        """The judge's prompt; `fence` is random per call unless given (for tests)."""
        fence = fence or f"DATA-{secrets.token_hex(8)}"
        r = rubrics()
        rubric: _Rubric = getattr(r, self.rubric_name)
        system = "\n\n".join([r.preamble.format(fence=fence), rubric.task.strip(), *extra,
                              "JSON schema:\n" + rubric.schema_.strip()])
        convo = "\n".join(f"[{m.role}] {m.content}" for m in _conversation(query))
        user = "\n\n".join([fenced(r.data["conversation"], convo, fence),
                            fenced(r.data["reply"], reply, fence)])
        return [Message(role="system", content=system), Message(role="user", content=user)]

    def _parse(self, text: str) -> OutputT:
        return self.output_model.model_validate(first_json_object(text))

    def run(self, messages: list[Message]) -> tuple[OutputT | None, str]:
        """(validated output, "") or (None, why it failed)."""
        problem = ""
        for attempt in range(2):
            try:
                text = self.backend.complete(messages, self.params).text
            except BackendError as e:
                return None, f"backend error: {e}"
            try:
                return self._parse(text), ""
            except (ValueError, ValidationError) as e:
                problem = _problem(e)
                if attempt == 0:
                    messages = [*messages, Message(role="assistant", content=text or " "),
                                Message(role="user", content=rubrics().retry.format(problem=problem))]
        return None, f"malformed judge output twice ({problem})"

    async def arun(self, messages: list[Message]) -> tuple[OutputT | None, str]:
        problem = ""
        for attempt in range(2):
            try:
                text = (await self.backend.acomplete(messages, self.params)).text
            except BackendError as e:
                return None, f"backend error: {e}"
            try:
                return self._parse(text), ""
            except (ValueError, ValidationError) as e:
                problem = _problem(e)
                if attempt == 0:
                    messages = [*messages, Message(role="assistant", content=text or " "),
                                Message(role="user", content=rubrics().retry.format(problem=problem))]
        return None, f"malformed judge output twice ({problem})"


def _problem(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        return f"field '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}"
    return str(e)


class LLMRefusalClassifier(_LLMJudge[RefusalOutput], RefusalClassifier):
    name: ClassVar[str] = "llm"
    rubric_name = "refusal"
    output_model = RefusalOutput

    def _verdict(self, out: RefusalOutput | None, why: str) -> RefusalVerdict:
        if out is None:
            return RefusalVerdict(judge=self.judge_name, label="undetermined", explanation=why)
        return RefusalVerdict(judge=self.judge_name, label=out.label, explanation=out.explanation)

    def classify(self, query: Conversation, reply: str) -> RefusalVerdict:
        return self._verdict(*self.run(self.messages(query, reply)))

    async def aclassify(self, query: Conversation, reply: str) -> RefusalVerdict:
        return self._verdict(*await self.arun(self.messages(query, reply)))


class LLMSatisfactionJudge(_LLMJudge[SatisfactionOutput], SatisfactionJudge):
    name: ClassVar[str] = "llm"
    rubric_name = "satisfaction"
    output_model = SatisfactionOutput

    def _verdict(self, out: SatisfactionOutput | None, why: str) -> SatisfactionVerdict:
        if out is None:
            return SatisfactionVerdict.undetermined(self.judge_name, why)
        return SatisfactionVerdict(
            judge=self.judge_name, explanation=out.explanation,
            items={"politeness": out.politeness, "willingness": out.willingness,
                   "task_completion": out.task_completion, "logic": out.logic,
                   "informativeness": out.informativeness})

    def judge(self, query_messages: Conversation, reply: str) -> SatisfactionVerdict:
        return self._verdict(*self.run(self.messages(query_messages, reply)))

    async def ajudge(self, query_messages: Conversation, reply: str) -> SatisfactionVerdict:
        return self._verdict(*await self.arun(self.messages(query_messages, reply)))


class LLMSafetyJudge(_LLMJudge[SafetyOutput], SafetyJudge):
    name: ClassVar[str] = "llm"
    rubric_name = "safety"
    output_model = SafetyOutput

    def __init__(self, backend: ChatBackend, params: GenerationParams | None = None,
                 policy: Policy | None = None) -> None:
        super().__init__(backend, params)
        self.policy = policy or load_policy()

    def guideline_block(self, category_id: str | None,
                        guidelines: Sequence[str] | None) -> list[str]:
        rubric = rubrics().safety
        extra = rubric.model_extra or {}
        lines: list[str] = []
        points = list(guidelines) if guidelines is not None else []
        if category_id and self.policy.has_category(category_id):
            category = self.policy.category(category_id)
            lines.append(extra["category_line"].format(category=category.name_en))
            if guidelines is None:
                points = list(category.guidelines)
        elif category_id:
            lines.append(extra["category_line"].format(category=category_id))
        if points:
            lines.append(extra["guidelines_heading"] + "\n" + "\n".join(f"- {p}" for p in points))
        else:
            lines.append(extra["no_guidelines"])
        return ["\n".join(lines)]

    def _verdict(self, out: SafetyOutput | None, why: str) -> SafetyVerdict:
        if out is None:
            return SafetyVerdict(judge=self.judge_name, label="undetermined", explanation=why)
        return SafetyVerdict(judge=self.judge_name, label=out.label, suggestion=out.suggestion,
                             user_profile=out.user_profile, next_turn=out.next_turn,
                             explanation=out.explanation)

    def judge(self, query_messages: Conversation, reply: str, category_id: str | None = None,
              guidelines: Sequence[str] | None = None) -> SafetyVerdict:
        extra = self.guideline_block(category_id, guidelines)
        return self._verdict(*self.run(self.messages(query_messages, reply, extra)))

    async def ajudge(self, query_messages: Conversation, reply: str,
                     category_id: str | None = None,
                     guidelines: Sequence[str] | None = None) -> SafetyVerdict:
        extra = self.guideline_block(category_id, guidelines)
        return self._verdict(*await self.arun(self.messages(query_messages, reply, extra)))
