"""Risk assessment: what risk a conversation carries, in what form, and who is likely asking.

`from_spec(spec, policy)` builds an assessor by name (registered in `ASSESSORS`; other
packages add theirs, see `oyster.registry`):
- `lexicon` — fast rules over category patterns and cue phrases,
- `local` — packaged embeddings + trained heads + attack detectors (multilingual);
  `local:PATH` — the same with the heads artefact at PATH,
- `default` — the best assessor available in this installation (`local`, else `lexicon`),
- `llm:BACKEND` / `ensemble[:BACKEND]` — a chat model, alone or only where `local` is unsure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oyster.assess.base import (
    Assessment,
    Assessor,
    AttackFinding,
    CategoryScore,
    PayloadFinding,
    TurnAssessment,
)
from oyster.errors import AssessorError
from oyster.registry import Registry
from oyster.taxonomy.policy import Policy

if TYPE_CHECKING:
    from oyster.assess.llm import LLMAssessor

__all__ = ["ASSESSORS", "Assessment", "Assessor", "AttackFinding", "CategoryScore",
           "PayloadFinding", "TurnAssessment", "from_spec"]


ASSESSORS: Registry[Assessor] = Registry("assessor", AssessorError)


def from_spec(spec: str, policy: Policy) -> Assessor:
    """Build the assessor named by `spec` for `policy` (see `ASSESSORS` for the names)."""
    return ASSESSORS.build(spec, policy)


@ASSESSORS.register("lexicon")
def _lexicon(policy: Policy) -> Assessor:
    """Rules over category patterns and cue phrases (no model)."""
    from oyster.assess.lexicon import LexiconAssessor

    return LexiconAssessor(policy)


@ASSESSORS.register("local[:HEADS]")
def _local(heads: str, policy: Policy) -> Assessor:
    """The packaged embedding model + trained heads + attack detectors; `local:PATH` uses the
    heads artefact at PATH (e.g. heads just trained elsewhere)."""
    from oyster.assess.local import LocalAssessor

    return LocalAssessor(policy, heads=heads or None)


@ASSESSORS.register("default")
def _default(policy: Policy) -> Assessor:
    """`local` when its model and heads are installed, else `lexicon`."""
    from oyster.assess.local import local_available

    return _local("", policy) if local_available() else _lexicon(policy)


def _llm_over(local: Assessor, backend_spec: str, policy: Policy) -> LLMAssessor:
    from oyster.assess.llm import LLMAssessor
    from oyster.backends import from_spec as backend_from_spec

    return LLMAssessor(policy, backend_from_spec(backend_spec), local)


@ASSESSORS.register("llm:BACKEND")
def _llm(backend_spec: str, policy: Policy) -> Assessor:
    """A chat model (any `oyster.backends` spec) judges the current turn, falling back to
    `default` on malformed output."""
    return _llm_over(_default(policy), backend_spec, policy)


@ASSESSORS.register("ensemble[:BACKEND]")
def _ensemble(backend_spec: str, policy: Policy) -> Assessor:
    """`default` first, the model only where it is unsure."""
    from oyster.assess.llm import EnsembleAssessor

    local = _default(policy)
    llm = _llm_over(local, backend_spec, policy) if backend_spec else None
    return EnsembleAssessor(policy, local, llm)
