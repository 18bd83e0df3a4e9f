"""Utilities and commitment.

    U(a) = Σ_θ p(θ) Σ_r P(r|θ,a) [α·Retention(θ,r) − β·Harm(θ,a,r)] − γ·Cost(a)
    Harm(θ,a,r) = scale · (exposure(a)·misuse(θ) + reaction_harm(θ,r)
                           + premise_weight · premise_harm(θ)·premise_left(a))
    scale = category severity × level_scale(level)

`premise_weight` (from `game.false_premise`) is 1 where a false belief can hurt the person
or someone in their care (physical-harm categories), less elsewhere, 0 by default.

Every function here is pure: the same inputs always give the same numbers, so a decision
can be recomputed (and audited) from the message history alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from oyster._memo import memo_by_identity
from oyster.policy import GameParams, StrategySpec
from oyster.types import REACTIONS, STRATEGIES, USER_TYPES, Level, Reaction, Strategy, UserType

Table = dict[UserType, dict[Strategy, float]]


def reaction_probabilities(
    params: GameParams, strategies: Mapping[Strategy, StrategySpec], user_type: UserType,
    strategy: Strategy,
) -> dict[Reaction, float]:
    """P(reaction | type, strategy): the follower's anticipated response."""
    model = params.behaviour
    if model.kind == "table":
        assert model.table is not None  # guaranteed by validation
        return dict(model.table[user_type][strategy])
    fit = model.fit[user_type][strategy]
    guidance = strategies[strategy].guidance
    payoff = {
        r: fit * model.reaction_fit[r] + guidance * model.reaction_guidance[r]
        + model.disposition[user_type][r]
        for r in REACTIONS
    }
    top = max(payoff.values())
    weights = {r: math.exp(model.rationality * (u - top)) for r, u in payoff.items()}
    total = sum(weights.values())
    return {r: w / total for r, w in weights.items()}


def harm_scale(params: GameParams, severity: float, level: Level) -> float:
    """How much harm counts for this query: category severity times the level's scale."""
    return severity * params.level_scale[level]


class GameTables(BaseModel):
    """Everything that does not depend on the query: reaction probabilities, expected
    retention, and expected harm per unit of harm scale, for every (type, strategy)."""

    model_config = ConfigDict(frozen=True)

    reactions: dict[UserType, dict[Strategy, dict[Reaction, float]]]
    retention: Table
    unit_harm: Table
    unit_premise: Table  # harm of a false premise left standing, per unit scale and weight


@memo_by_identity
def game_tables(params: GameParams, strategies: Mapping[Strategy, StrategySpec]) -> GameTables:
    """The query-independent tables, computed once per policy."""
    reactions = {t: {a: reaction_probabilities(params, strategies, t, a) for a in STRATEGIES}
                 for t in USER_TYPES}
    retention: Table = {}
    unit_harm: Table = {}
    premise = params.false_premise.harm
    unit_premise: Table = {t: {a: premise[t] * strategies[a].premise_left for a in STRATEGIES}
                           for t in USER_TYPES}
    for t in USER_TYPES:
        retention[t], unit_harm[t] = {}, {}
        for a in STRATEGIES:
            probs = reactions[t][a]
            exposure = strategies[a].exposure * params.misuse[t]
            retention[t][a] = sum(p * params.retention[t][r] for r, p in probs.items())
            unit_harm[t][a] = sum(p * (exposure + params.reaction_harm[t][r])
                                  for r, p in probs.items())
    return GameTables(reactions=reactions, retention=retention, unit_harm=unit_harm,
                      unit_premise=unit_premise)


def leader_values(
    params: GameParams, strategies: Mapping[Strategy, StrategySpec], severity: float,
    level: Level, premise_weight: float = 0.0,
) -> Table:
    """V(θ, a): the leader's expected utility of strategy a against a user of type θ."""
    tables = game_tables(params, strategies)
    scale = harm_scale(params, severity, level)
    return {
        t: {
            a: params.alpha * tables.retention[t][a]
            - params.beta * scale * (tables.unit_harm[t][a]
                                     + premise_weight * tables.unit_premise[t][a])
            - params.gamma * strategies[a].cost
            for a in STRATEGIES
        }
        for t in USER_TYPES
    }


def expected_utilities(
    params: GameParams, strategies: Mapping[Strategy, StrategySpec],
    posterior: Mapping[UserType, float], severity: float, level: Level,
    premise_weight: float = 0.0,
) -> dict[Strategy, float]:
    """U(a) = Σ_θ p(θ)·V(θ, a) for every strategy."""
    values = leader_values(params, strategies, severity, level, premise_weight)
    return {a: sum(posterior[t] * values[t][a] for t in USER_TYPES) for a in STRATEGIES}


class StrategyChoice(BaseModel):
    """The leader's commitment and everything needed to explain it."""

    model_config = ConfigDict(frozen=True)

    strategy: Strategy
    utilities: dict[Strategy, float]
    expected_harm: dict[Strategy, float]
    expected_retention: dict[Strategy, float]
    reactions: dict[Strategy, dict[Reaction, float]]

    def why(self) -> str:
        """One line: the winner, its margin, and what it anticipates."""
        ranked = sorted(self.utilities.items(), key=lambda kv: kv[1], reverse=True)
        (best, u_best), (second, u_second) = ranked[0], ranked[1]
        top_reaction = max(self.reactions[best].items(), key=lambda kv: kv[1])[0]
        return (f"{best} (U={u_best:+.2f}) beats {second} ({u_second:+.2f}); "
                f"expected harm {self.expected_harm[best]:.2f}, "
                f"most likely reaction: {top_reaction.replace('_', ' ')}")


def choose_strategy(
    params: GameParams, strategies: Mapping[Strategy, StrategySpec],
    posterior: Mapping[UserType, float], severity: float, level: Level,
    premise_weight: float = 0.0,
) -> StrategyChoice:
    """Pure commitment to argmax_a U(a); ties go to the safer (later-listed) strategy."""
    tables = game_tables(params, strategies)
    scale = harm_scale(params, severity, level)
    utilities: dict[Strategy, float] = {}
    harm: dict[Strategy, float] = {}
    retention: dict[Strategy, float] = {}
    for a in STRATEGIES:
        retention[a] = sum(posterior[t] * tables.retention[t][a] for t in USER_TYPES)
        harm[a] = scale * sum(posterior[t] * (tables.unit_harm[t][a]
                                              + premise_weight * tables.unit_premise[t][a])
                              for t in USER_TYPES)
        utilities[a] = (params.alpha * retention[a] - params.beta * harm[a]
                        - params.gamma * strategies[a].cost)
    best = max(reversed(STRATEGIES), key=lambda a: utilities[a])
    reactions = {
        a: {r: sum(posterior[t] * tables.reactions[t][a][r] for t in USER_TYPES)
            for r in REACTIONS}
        for a in STRATEGIES
    }
    return StrategyChoice(
        strategy=best,
        utilities={a: round(u, 4) for a, u in utilities.items()},
        expected_harm={a: round(h, 4) for a, h in harm.items()},
        expected_retention={a: round(r, 4) for a, r in retention.items()},
        reactions={a: {r: round(p, 4) for r, p in rs.items()} for a, rs in reactions.items()},
    )
