"""Stage `model`: the champion/challenger gate and the people's overrides (pin, rollback)."""

import datetime as dt
import hashlib
from typing import Literal
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
from pydantic import Field

from batch_ml.platform.common import (
    BRING_UP_TO_DATE_DESPITE_OVERRIDES,
    OVERRIDES,
    OWNERS,
    TRANSIENT_RETRY,
    BuildContext,
    measured,
)
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.registry.gate import (
    OVERRIDE_SCHEMA,
    ChampionState,
    Override,
    OverrideError,
    apply_override,
    apply_overrides,
    decide,
    overrides_from_frame,
    state_from_row,
)
from batch_ml.platform.resources import ModelStore, TableStore
from batch_ml.platform.storage.tables import UNPARTITIONED
from batch_ml.products.forecasting.partitions import ForecastMappings
from batch_ml.products.forecasting.training import (
    backtest_examples,
    backtest_wapes,
    load_booster,
    training_examples,
)

GROUP = "model"
# Explicit types: a week with no champion yet has None in the champion columns, and a
# one-week run must not store them as Null columns the next week's run cannot extend.
GATE_SCHEMA = {
    "model_week": pl.Date,
    "challenger_version": pl.String,
    "decision": pl.String,
    "reason": pl.String,
    "challenger_wape": pl.Float64,
    "champion_before": pl.String,
    "champion_wape": pl.Float64,
    "fallback_baseline": pl.String,
    "seasonal_naive_wape": pl.Float64,
    "moving_average_wape": pl.Float64,
    "backtest_rows": pl.Int64,
    "margin": pl.Float64,
    "champion_version": pl.String,
    "champion_after_wape": pl.Float64,
    "pinned": pl.Boolean,
    "previous_champion": pl.String,
}


def read_overrides(tables: TableStore) -> list[Override]:
    """Every recorded override (none while the table does not exist yet)."""
    table = tables.table(OVERRIDES)
    if UNPARTITIONED not in table.partitions():
        return []
    return overrides_from_frame(table.read([UNPARTITIONED]))


def champion_at(tables: TableStore, overrides: list[Override], day: dt.date) -> ChampionState:
    """The champion state of forecast day `day` from the stored gate decisions."""
    gate = tables.table("model_promotion")
    decided = (
        gate.scan().filter(pl.col("model_week") <= day).sort("model_week").collect()
        if gate.partitions()
        else pl.DataFrame()
    )
    last = decided.row(-1, named=True) if decided.height else None
    state = state_from_row(last)
    return apply_overrides(state, overrides, after=last["model_week"] if last else None, upto=day)


class ChampionOverrideConfig(dg.Config):
    """A person's decision about the champion, recorded with a reason."""

    action: Literal["pin", "unpin", "rollback"]
    model_version: str = Field(
        default="", description="pin: required; rollback: optional (default: previous champion)"
    )
    effective_date: str = Field(
        default="", description="first forecast day it applies to, YYYY-MM-DD (default: tomorrow)"
    )
    reason: str
    requested_by: str = ""


def _is_valid(row: dict) -> bool:
    mine = row["valid_wape_model"]
    baselines = [row["valid_wape_seasonal_naive"], row["valid_wape_moving_average"]]
    return mine is not None and all(b is None or mine < b for b in baselines)


def build(b: BuildContext) -> list:
    maps = ForecastMappings.from_config(b.cfg)
    margin = b.cfg.promotion.margin
    tz = ZoneInfo(b.cfg.timezone)

    @dg.asset(
        name=OVERRIDES,
        group_name=GROUP,
        kinds={"polars"},
        owners=OWNERS,
        description=(
            "People's decisions about the champion (pin, unpin, rollback) with the day they take "
            "effect, the reason and who asked; written by `champion_override_job` (or "
            "`batch-ml champion ...`). Rows are only ever added. An override applies from its "
            "effective day on and never rewrites forecasts of earlier days."
        ),
    )
    def champion_overrides(
        context: dg.AssetExecutionContext, config: ChampionOverrideConfig, tables: TableStore
    ):
        today = dt.datetime.now(tz).date()
        effective = (
            dt.date.fromisoformat(config.effective_date)
            if config.effective_date
            else today + dt.timedelta(days=1)
        )
        version = config.model_version or None
        if version:
            # Only a model trained for a week up to the effective day existed then: pinning a
            # later one would forecast with data from the future.
            registry_table = tables.table("demand_model")
            if not registry_table.partitions():
                raise dg.Failure("no model has been trained yet", allow_retries=False)
            registry = registry_table.read()
            rows = registry.filter(
                pl.col("model_version") == version, pl.col("model_week") <= effective
            )
            if rows.is_empty():
                raise dg.Failure(
                    f"model {version!r} is not in the registry of models trained for weeks up "
                    f"to {effective}",
                    allow_retries=False,
                )
            if not _is_valid(rows.row(0, named=True)):
                raise dg.Failure(
                    f"model {version} failed validation (it does not beat the baselines on "
                    "its validation days): it cannot be champion",
                    allow_retries=False,
                )
        existing = read_overrides(tables)
        new = Override(effective, config.action, version, config.reason)
        try:
            apply_override(champion_at(tables, existing, effective), new)
        except OverrideError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        recorded_at = dt.datetime.now(dt.UTC)
        key = f"{recorded_at.isoformat()}|{config.action}|{version}|{effective}|{config.reason}"
        row = pl.DataFrame(
            {
                "override_id": [hashlib.sha256(key.encode()).hexdigest()[:16]],
                "effective_date": [effective],
                "action": [config.action],
                "model_version": [version],
                "reason": [config.reason],
                "requested_by": [config.requested_by or None],
                "recorded_at": [recorded_at],
            },
            schema=OVERRIDE_SCHEMA,
        )
        table = tables.table(OVERRIDES)
        old = (
            table.read([UNPARTITIONED])
            if UNPARTITIONED in table.partitions()
            else pl.DataFrame(schema=OVERRIDE_SCHEMA)
        )
        context.log.info(
            f"{config.action} {version or ''} from {effective}: {config.reason} "
            f"({len(existing)} earlier override(s) kept)"
        )
        return dg.Output(
            pl.concat([old, row]),
            metadata={
                "action": config.action,
                "model_version": version or "",
                "effective_date": effective.isoformat(),
                "reason": config.reason,
                "overrides": old.height + 1,
            },
        )

    @dg.asset(
        name="model_promotion",
        group_name=GROUP,
        partitions_def=b.parts.weekly,
        # The gate of week W continues from week W - 1: a range runs in week order, in one run.
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"lightgbm", "polars"},
        owners=OWNERS,
        retry_policy=TRANSIENT_RETRY,
        code_version="promotion-v1",
        automation_condition=BRING_UP_TO_DATE_DESPITE_OVERRIDES,
        metadata={"partition_column": "model_week"},
        ins={
            "demand_model": dg.AssetIn(),
            "demand_features": dg.AssetIn(partition_mapping=maps.backtest_origins),
            "sales": dg.AssetIn(partition_mapping=maps.backtest_targets),
            "model_promotion": dg.AssetIn(partition_mapping=maps.previous_week),
        },
        deps=[OVERRIDES],
        check_specs=[
            dg.AssetCheckSpec(
                "champion_beats_baselines",
                asset="model_promotion",
                description="On each week's backtest the champion still beats both baselines "
                "(WARN: a champion that fell behind needs a person's attention).",
            )
        ],
        description=(
            "Champion/challenger gate per model week: the new model, the current champion and "
            "the baselines are scored on the same backtest rows (targets in the 14 days before "
            f"the week); the challenger is promoted only if it beats the champion by {margin:.0%} "
            "and every baseline. Pins and rollbacks from `champion_overrides` are applied in "
            "effective-date order. One row per week: decision, reason, scores, champion after."
        ),
    )
    def model_promotion(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        tables: TableStore,
        demand_model: pl.LazyFrame,
        demand_features: pl.LazyFrame,
        sales: pl.LazyFrame,
        model_promotion: pl.LazyFrame,
    ):
        weeks = partition_dates(context)
        overrides = read_overrides(tables)
        registry = demand_model.collect()
        # The run continues from the decision of the week before its first week (rows of its
        # own weeks, stored by an earlier run, are redone, not continued from).
        before = model_promotion.collect()
        if before.width:
            before = before.filter(pl.col("model_week") < weeks[0])
        last = before.sort("model_week").row(-1, named=True) if before.height else None
        state = state_from_row(last)
        decided_until = last["model_week"] if last else None
        boosters: dict = {}
        rows = []
        with measured(len(context.partition_keys)) as cost:
            for week in weeks:
                state = apply_overrides(state, overrides, after=decided_until, upto=week)
                challenger = registry.filter(pl.col("model_week") == week).row(0, named=True)
                version = challenger["model_version"]
                examples = backtest_examples(
                    training_examples(demand_features, sales, cutoff=week), week
                ).collect()
                versions = {version} | ({state.champion} if state.champion else set())
                for v in versions - boosters.keys():
                    boosters[v] = load_booster(model_store.load(v))
                scores = backtest_wapes(examples, {v: boosters[v] for v in versions})
                before_state = state
                decision = decide(state, version, scores, margin)
                state = decision.state
                decided_until = week
                rows.append(
                    {
                        "model_week": week,
                        "challenger_version": version,
                        "decision": decision.decision,
                        "reason": decision.reason,
                        "challenger_wape": scores.get(version),
                        "champion_before": before_state.champion,
                        "champion_wape": scores.get(before_state.champion)
                        if before_state.champion
                        else None,
                        "fallback_baseline": min(
                            ("seasonal_naive", "moving_average"),
                            key=lambda m: (scores.get(m) is None, scores.get(m) or 0.0),
                        ),
                        "seasonal_naive_wape": scores.get("seasonal_naive"),
                        "moving_average_wape": scores.get("moving_average"),
                        "backtest_rows": examples.height,
                        "margin": margin,
                        "champion_version": state.champion,
                        "champion_after_wape": scores.get(state.champion),
                        "pinned": state.pinned,
                        "previous_champion": state.previous,
                    }
                )
                context.log.info(f"week {week}: {decision.decision} {version}: {decision.reason}")
        frame = pl.DataFrame(rows, schema=GATE_SCHEMA)
        latest = rows[-1]
        yield dg.Output(
            frame,
            metadata={
                **cost,
                "decision": latest["decision"],
                "reason": latest["reason"],
                "champion_version": latest["champion_version"] or "",
                "challenger_wape": latest["challenger_wape"],
                "champion_wape": latest["champion_wape"],
                "promotions": sum(r["decision"] == "promoted" for r in rows),
            },
        )
        behind = [
            r["model_week"].isoformat()
            for r in rows
            if r["champion_after_wape"] is None
            or any(
                b is not None and b <= r["champion_after_wape"]
                for b in (r["seasonal_naive_wape"], r["moving_average_wape"])
            )
        ]
        yield dg.AssetCheckResult(
            check_name="champion_beats_baselines",
            passed=not behind,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "champion_version": latest["champion_version"] or "",
                "weeks_behind_a_baseline": ", ".join(behind),
            },
        )

    return [champion_overrides, model_promotion]
