"""The posterior over user types, recomputed from the whole conversation every turn.

    p(θ | turns) ∝ prior(θ) · Π_t e_t(θ)^(strength · decay^age_t) · ρ^[θ = malicious and repeat]

`e_t` is the assessor's per-turn evidence (a distribution over types, read as a likelihood),
`age_t` counts user turns since turn t (0 for the newest), so an old risky turn fades
instead of re-triggering, and a refused risky ask that comes back moves mass toward
`malicious` by the factor ρ = `repeat_after_refusal`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from oyster.policy import GameParams
from oyster.types import USER_TYPES, UserType


class TypeEvidence(BaseModel):
    """What one user turn says about who is asking."""

    model_config = ConfigDict(frozen=True)

    likelihood: dict[UserType, float]
    repeats_refused_ask: bool = False


def _normalise(weights: Mapping[UserType, float], floor: float) -> dict[UserType, float]:
    total = sum(weights.values())
    # mix with a floor so every type stays possible and later evidence can move the belief back
    spare = 1.0 - floor * len(USER_TYPES)
    return {t: floor + spare * weights[t] / total for t in USER_TYPES}


def posterior_over_types(
    params: GameParams, turns: Sequence[TypeEvidence]
) -> dict[UserType, float]:
    """Posterior after all user turns (oldest first). With no turns: the prior."""
    belief = params.belief
    log_w = {t: math.log(params.prior[t]) for t in USER_TYPES}
    n = len(turns)
    for i, turn in enumerate(turns):
        age = n - 1 - i
        weight = belief.evidence_strength * belief.turn_decay**age
        total = sum(turn.likelihood.get(t, 0.0) for t in USER_TYPES)
        for t in USER_TYPES:
            lik = turn.likelihood.get(t, 0.0) / total if total > 0 else 0.25
            log_w[t] += weight * math.log(max(lik, 1e-4))
        if turn.repeats_refused_ask:
            log_w["malicious"] += math.log(belief.repeat_after_refusal)
    top = max(log_w.values())
    return _normalise({t: math.exp(v - top) for t, v in log_w.items()}, belief.floor)
