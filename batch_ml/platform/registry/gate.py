"""Champion/challenger promotion and the champion timeline (pure, no Dagster).

Each weekly model (the challenger) is scored on the same backtest rows as the current
champion and the baselines: the forecasts whose targets fall in the last VALIDATION_DAYS days
before the challenger's week, which neither model was fitted on. A challenger becomes champion
only if it is valid (finite score, beats every baseline) and beats the champion by `margin`
(relative WAPE). People can override the gate with recorded overrides:

- `pin` V: V is champion from the effective day on, and the gate keeps it until `unpin`;
- `unpin`: the gate decides again from the next model week on;
- `rollback` [V]: V (default: the champion before the current one) is champion again; the gate
  goes on comparing new challengers against it.

The champion of forecast day D is the gate's decision for D's model week, then every override
effective in that week up to D. Overrides take effect on their effective day and never
rewrite an earlier day, so a backfill of a past day reproduces what was predicted then.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import polars as pl

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
    margin: float,
) -> Decision:
    """The gate for one challenger. `scores` are backtest WAPEs keyed by `challenger`, the
    champion's version (when there is one) and the baselines `seasonal_naive`, `moving_average`.
    """
    mine = scores.get(challenger)
    baselines = {k: scores.get(k) for k in ("seasonal_naive", "moving_average")}
    if not _finite(mine):
        return Decision("rejected", "the challenger's backtest WAPE is not finite", state)
    beaten_by = [k for k, v in baselines.items() if _finite(v) and v <= mine]
    if beaten_by:
        return Decision(
            "rejected",
            f"the challenger ({mine:.4f}) does not beat the {', '.join(beaten_by)} baseline",
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
            f"the champion {state.champion} has no finite backtest WAPE",
            state.with_champion(challenger, pinned=False),
        )
    needed = theirs * (1 - margin)
    if mine <= needed:
        return Decision(
            "promoted",
            f"{mine:.4f} beats the champion's {theirs:.4f} by at least {margin:.1%}",
            state.with_champion(challenger, pinned=False),
        )
    return Decision(
        "rejected",
        f"{mine:.4f} does not beat the champion's {theirs:.4f} by {margin:.1%} "
        f"(needs <= {needed:.4f})",
        state,
    )


def state_from_row(row: Mapping | None) -> ChampionState:
    if not row:
        return ChampionState()
    return ChampionState(row["champion_version"], bool(row["pinned"]), row["previous_champion"])


def champion_on(
    day: dt.date, week_state: ChampionState, week: dt.date, overrides: Iterable[Override]
) -> ChampionState:
    """Champion of forecast day `day`: the gate's state for its week `week`, then the
    overrides effective after the week's start up to `day`."""
    return apply_overrides(week_state, overrides, after=week, upto=day)


class UndecidedWeekError(LookupError):
    """The gate has no decision for the week of a forecast day yet."""


def serving_version(
    gate: pl.DataFrame, overrides: Iterable[Override], day: dt.date, baseline_prefix: str
) -> str:
    """The model that serves forecast day `day`: the gate's champion for its week, then the
    overrides up to `day`; until a model beats the baselines, the week's best baseline
    (`<baseline_prefix><method>`)."""
    week = day - dt.timedelta(days=day.weekday())
    rows = gate.filter(pl.col("model_week") == week)
    if rows.is_empty():
        raise UndecidedWeekError(f"the gate has not decided week {week} yet (model_promotion)")
    row = rows.row(0, named=True)
    state = champion_on(day, state_from_row(row), week, overrides)
    return state.champion or f"{baseline_prefix}{row['fallback_baseline']}"
