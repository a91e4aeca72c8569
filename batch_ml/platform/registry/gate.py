"""Champion/challenger promotion and the champion timeline (pure, no Dagster).

Each weekly model (the challenger) is scored on the same backtest rows as the current
champion and the baselines (the product's scoring: e.g. the rows whose outcomes fall in the
policy's `backtest_days` days before the challenger's week, which neither model was fitted
on). A `GatePolicy` says which metric, in which direction, against which baselines and by
which relative margin. A challenger becomes champion only if it is valid (finite score,
better than every baseline) and better than the champion by the margin. People can override
the gate with recorded overrides:

- `pin` V: V is champion from the effective day on, and the gate keeps it until `unpin`;
- `unpin`: the gate decides again from the next model week on;
- `rollback` [V]: V (default: the champion before the current one) is champion again; the gate
  goes on comparing new challengers against it.

The champion of day D is the gate's decision for D's model week, then every override
effective in that week up to D. Overrides take effect on their effective day and never
rewrite an earlier day, so a backfill of a past day reproduces what was predicted then.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import polars as pl

# What serves a day before any model passed the gate: `<prefix><the best baseline>`.
BASELINE_PREFIX = "baseline:"
ACTIONS = ("pin", "unpin", "rollback")
OVERRIDE_SCHEMA = {
    "override_id": pl.String,
    "effective_date": pl.Date,
    "action": pl.String,
    "model_version": pl.String,
    "reason": pl.String,
    "requested_by": pl.String,
    "recorded_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class GatePolicy:
    """How a product's gate judges models. `margin` is relative: 0.02 means the challenger's
    score must be at least 2 % of the champion's better than it. `baselines` are the names
    of the scores of the methods every model must beat (and that serve until one does)."""

    metric: str
    higher_is_better: bool
    baselines: tuple[str, ...]
    margin: float
    backtest_days: int

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 1:
            raise ValueError(f"the gate's margin must be in [0, 1), got {self.margin}")
        if self.backtest_days < 1:
            raise ValueError(f"the gate's backtest window must be >= 1 day: {self.backtest_days}")

    @property
    def comparison(self) -> str:
        return ">=" if self.higher_is_better else "<="

    def at_least_as_good(self, score: float, other: float) -> bool:
        return score >= other if self.higher_is_better else score <= other

    def required(self, champion: float) -> float:
        """The score a challenger needs to replace a champion scoring `champion`."""
        better = 1 + self.margin if self.higher_is_better else 1 - self.margin
        worse = 1 - self.margin if self.higher_is_better else 1 + self.margin
        # Relative to the champion's magnitude, so a negative score moves the right way.
        return champion * (better if champion >= 0 else worse)

    def best_baseline(self, scores: Mapping[str, float | None]) -> str:
        """The baseline with the best finite score (the first baseline when none has one)."""
        finite = [b for b in self.baselines if _finite(scores.get(b))]
        if not finite:
            return self.baselines[0]
        sign = -1 if self.higher_is_better else 1
        return min(finite, key=lambda b: sign * scores[b])

    def beats_baselines(self, score: float | None, scores: Mapping[str, float | None]) -> bool:
        """Finite and strictly better than every baseline with a finite score."""
        return _finite(score) and not any(
            _finite(scores.get(b)) and self.at_least_as_good(scores[b], score)
            for b in self.baselines
        )


@dataclass(frozen=True)
class ChampionState:
    champion: str | None = None
    pinned: bool = False
    previous: str | None = None  # the champion before the current one (rollback target)

    def with_champion(self, version: str, pinned: bool) -> ChampionState:
        if version == self.champion:
            return replace(self, pinned=pinned)
        return ChampionState(champion=version, pinned=pinned, previous=self.champion)


@dataclass(frozen=True)
class Override:
    effective_date: dt.date
    action: str
    model_version: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    decision: str  # promoted | rejected | kept | held
    reason: str
    state: ChampionState


class OverrideError(ValueError):
    """An override that cannot apply (unknown action, nothing to roll back to)."""


def apply_override(state: ChampionState, override: Override) -> ChampionState:
    if override.action == "pin":
        if not override.model_version:
            raise OverrideError("pin needs a model version")
        return state.with_champion(override.model_version, pinned=True)
    if override.action == "unpin":
        return replace(state, pinned=False)
    if override.action == "rollback":
        target = override.model_version or state.previous
        if not target:
            raise OverrideError(
                f"rollback on {override.effective_date}: there is no earlier champion"
            )
        return state.with_champion(target, pinned=False)
    raise OverrideError(f"unknown override action {override.action!r}; expected {ACTIONS}")


def apply_overrides(
    state: ChampionState, overrides: Iterable[Override], after: dt.date | None, upto: dt.date
) -> ChampionState:
    """Apply the overrides effective in (after, upto], in effective-date order."""
    for o in sorted(overrides, key=lambda o: o.effective_date):
        if (after is None or o.effective_date > after) and o.effective_date <= upto:
            state = apply_override(state, o)
    return state


def overrides_from_frame(frame: pl.DataFrame) -> list[Override]:
    """Overrides in the order they were recorded (the stable tie-break within a day)."""
    rows = frame.sort("effective_date", "recorded_at").iter_rows(named=True)
    return [
        Override(r["effective_date"], r["action"], r["model_version"] or None, r["reason"] or "")
        for r in rows
    ]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def decide(
    state: ChampionState,
    challenger: str,
    scores: Mapping[str, float | None],
    policy: GatePolicy,
) -> Decision:
    """The gate for one challenger. `scores` are the policy's metric keyed by `challenger`,
    the champion's version (when there is one) and the policy's baselines."""
    metric = policy.metric
    mine = scores.get(challenger)
    if not _finite(mine):
        return Decision("rejected", f"the challenger's backtest {metric} is not finite", state)
    beaten_by = [
        b
        for b in policy.baselines
        if _finite(scores.get(b)) and policy.at_least_as_good(scores[b], mine)
    ]
    if beaten_by:
        return Decision(
            "rejected",
            f"the challenger ({metric} {mine:.4f}) does not beat the "
            f"{', '.join(beaten_by)} baseline",
            state,
        )
    if state.champion == challenger:
        return Decision("kept", "the challenger is the champion (same model bytes)", state)
    if state.pinned:
        return Decision("held", f"the champion {state.champion} is pinned", state)
    if state.champion is None:
        return Decision(
            "promoted",
            "first valid model: no champion yet",
            state.with_champion(challenger, pinned=False),
        )
    theirs = scores.get(state.champion)
    if not _finite(theirs):
        return Decision(
            "promoted",
            f"the champion {state.champion} has no finite backtest {metric}",
            state.with_champion(challenger, pinned=False),
        )
    needed = policy.required(theirs)
    if policy.at_least_as_good(mine, needed):
        return Decision(
            "promoted",
            f"{metric} {mine:.4f} beats the champion's {theirs:.4f} by at least "
            f"{policy.margin:.1%}",
            state.with_champion(challenger, pinned=False),
        )
    return Decision(
        "rejected",
        f"{metric} {mine:.4f} does not beat the champion's {theirs:.4f} by {policy.margin:.1%} "
        f"(needs {policy.comparison} {needed:.4f})",
        state,
    )


def state_from_row(row: Mapping | None) -> ChampionState:
    if not row:
        return ChampionState()
    return ChampionState(row["champion_version"], bool(row["pinned"]), row["previous_champion"])


def champion_on(
    day: dt.date, week_state: ChampionState, week: dt.date, overrides: Iterable[Override]
) -> ChampionState:
    """Champion of day `day`: the gate's state for its week `week`, then the
    overrides effective after the week's start up to `day`."""
    return apply_overrides(week_state, overrides, after=week, upto=day)


class UndecidedWeekError(LookupError):
    """The gate has no decision for the week of a day yet."""


def serving_version(
    gate: pl.DataFrame, overrides: Iterable[Override], day: dt.date, baseline_prefix: str
) -> str:
    """The model that serves day `day`: the gate's champion for its week, then the overrides
    up to `day`; until a model beats the baselines, the week's best baseline by the policy's
    direction (`fallback_baseline`, as `<baseline_prefix><baseline>`)."""
    week = day - dt.timedelta(days=day.weekday())
    rows = gate.filter(pl.col("model_week") == week)
    if rows.is_empty():
        raise UndecidedWeekError(f"the gate has not decided week {week} yet")
    row = rows.row(0, named=True)
    state = champion_on(day, state_from_row(row), week, overrides)
    return state.champion or f"{baseline_prefix}{row['fallback_baseline']}"
