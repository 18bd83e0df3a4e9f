"""Risk assessment: what risk a conversation carries, in what form, and who is likely asking.

`from_spec(spec, policy)` builds an assessor by name:
- `lexicon` — fast rules over category patterns and cue phrases,
- `local` — packaged embeddings + trained heads + attack detectors (multilingual);
  `local:PATH` — the same with the heads artefact at PATH,
- `default` — the best assessor available in this installation (`local`, else `lexicon`),
- `llm:BACKEND` / `ensemble[:BACKEND]` — a chat model, alone or only where `local` is unsure.
"""

from __future__ import annotations

from oyster.assess.base import (
    Assessment,
    Assessor,
    AttackFinding,
    CategoryScore,
    PayloadFinding,
    TurnAssessment,
)
from oyster.errors import AssessorError
from oyster.taxonomy.policy import Policy

__all__ = ["Assessment", "Assessor", "AttackFinding", "CategoryScore", "PayloadFinding",
           "TurnAssessment", "from_spec"]


def from_spec(spec: str, policy: Policy) -> Assessor:
    """Build the assessor named by `spec` for `policy`.

    - `lexicon`: rules over category patterns and cue phrases (no model);
    - `local`: the packaged embedding model + trained heads + attack detectors;
      `local:PATH`: with the heads artefact at PATH (e.g. heads just trained elsewhere);
    - `default`: `local` when its model and heads are installed, else `lexicon`;
    - `llm:BACKEND`: a chat model (any `oyster.backends` spec) judges the current turn,
      falling back to `local` on malformed output;
    - `ensemble` / `ensemble:BACKEND`: `local` first, the model only where it is unsure.
    """
    spec = spec.strip()
    if spec == "lexicon":
        from oyster.assess.lexicon import LexiconAssessor

        return LexiconAssessor(policy)
    if spec == "local" or spec.startswith("local:"):
        from oyster.assess.local import LocalAssessor

        return LocalAssessor(policy, heads=spec.partition(":")[2] or None)
    if spec == "default":
        from oyster.assess.local import local_available

        if local_available():
            from oyster.assess.local import LocalAssessor

            return LocalAssessor(policy)
        from oyster.assess.lexicon import LexiconAssessor

        return LexiconAssessor(policy)
    if spec.startswith("llm:") or spec == "ensemble" or spec.startswith("ensemble:"):
        from oyster.assess.llm import EnsembleAssessor, LLMAssessor

        kind, _, backend_spec = spec.partition(":")
        local = from_spec("default", policy)
        llm = None
        if backend_spec:
            from oyster.backends import from_spec as backend_from_spec

            llm = LLMAssessor(policy, backend_from_spec(backend_spec), local)
        if kind == "llm":
            if llm is None:
                raise AssessorError("assessor 'llm:BACKEND' needs a backend spec, "
                                    "e.g. llm:openai:gpt-4o-mini@http://localhost:8000/v1")
            return llm
        return EnsembleAssessor(policy, local, llm)
    raise AssessorError(f"unknown assessor {spec!r}; choose from: lexicon, local[:HEADS], default, "
                        "llm:BACKEND, ensemble[:BACKEND]")
