"""Risk assessment: what risk a conversation carries, in what form, and who is likely asking.

`from_spec(spec, policy)` builds an assessor by name:
- `lexicon` — fast rules over category patterns and cue phrases,
- `default` — the best assessor available in this installation.
"""

from __future__ import annotations

from oyster.assess.base import (
    Assessment,
    Assessor,
    AttackFinding,
    CategoryScore,
    TurnAssessment,
)
from oyster.errors import AssessorError
from oyster.taxonomy.policy import Policy

__all__ = ["Assessment", "Assessor", "AttackFinding", "CategoryScore", "TurnAssessment",
           "from_spec"]


def from_spec(spec: str, policy: Policy) -> Assessor:
    """Build the assessor named by `spec` for `policy`."""
    if spec in ("lexicon", "default"):
        from oyster.assess.lexicon import LexiconAssessor

        return LexiconAssessor(policy)
    raise AssessorError(f"unknown assessor {spec!r}; choose from: lexicon, default")
