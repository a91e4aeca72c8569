"""The champion/challenger gate as Dagster assets, for any product: a weekly gate asset and
the people's overrides asset (pin, unpin, rollback).

A product calls `build_gate_assets(GateSpec(...))` with its `GatePolicy`, the names of its
model registry asset (rows with `model_week` and `model_version`), of the gate asset and of
the overrides asset, and a scoring function: `(Scoring, week, versions) -> {version or
baseline: score, "rows": n}` that scores the challenger, the champion and the baselines on
the same backtest rows. The gate of week W continues from its decision for week W - 1.

The gate table has one row per model week; its columns are the same for every product:
the decision and reason, the metric and its direction, `challenger_score`, `champion_score`,
one `<baseline>_score` per baseline, `fallback_baseline` (the best baseline, which serves
until a model passes), the backtest's `rows`, and the champion state after the decision.
"""

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
from pydantic import Field

from batch_ml.platform.common import TRANSIENT_RETRY, measured
from batch_ml.platform.partitions import partition_dates
from batch_ml.platform.registry.gate import (
    OVERRIDE_SCHEMA,
    ChampionState,
    GatePolicy,
    Override,
    OverrideError,
    apply_override,
    apply_overrides,
    decide,
    overrides_from_frame,
    state_from_row,
)
from batch_ml.platform.registry.model import Model
from batch_ml.platform.resources import ModelStore, TableStore
from batch_ml.platform.storage.tables import UNPARTITIONED

ROWS = "rows"  # the scoring function's count of backtest rows


@dataclass(frozen=True)
class Scoring:
    """What a scoring function gets: the gate asset's inputs (its `ins`, as LazyFrames), a
    loader of stored models by version (each loaded once per run), the policy, the
    registry rows of the run's weeks (a baseline's fitted state is in its week's row), and
    a loader of a stored model's card (e.g. its `window_end`: what it never saw)."""

    inputs: Mapping[str, pl.LazyFrame]
    load_model: Callable[[str], Model]
    policy: GatePolicy
    registry: pl.DataFrame
    load_card: Callable[[str], Mapping[str, Any]]


Scorer = Callable[[Scoring, dt.date, Sequence[str]], Mapping[str, float | int | None]]


def gate_schema(policy: GatePolicy) -> dict[str, pl.DataType]:
    """The gate table's columns. Explicit types: a week with no champion yet has None in
    the champion columns, and a one-week run must not store them as Null columns the next
    week's run cannot extend."""
    return {
        "model_week": pl.Date,
        "challenger_version": pl.String,
        "decision": pl.String,
        "reason": pl.String,
        "metric": pl.String,
        "higher_is_better": pl.Boolean,
        "challenger_score": pl.Float64,
        "champion_before": pl.String,
        "champion_score": pl.Float64,
        "fallback_baseline": pl.String,
        **{baseline_column(b): pl.Float64 for b in policy.baselines},
        "backtest_rows": pl.Int64,
        "backtest_days": pl.Int64,
        "margin": pl.Float64,
        "champion_version": pl.String,
        "champion_after_score": pl.Float64,
        "pinned": pl.Boolean,
        "previous_champion": pl.String,
    }


def baseline_column(baseline: str) -> str:
    return f"{baseline}_score"


def read_overrides(tables: TableStore, overrides_asset: str) -> list[Override]:
    """Every recorded override (none while the table does not exist yet)."""
    table = tables.table(overrides_asset)
    if UNPARTITIONED not in table.partitions():
        return []
    return overrides_from_frame(table.read([UNPARTITIONED]))


def champion_at(
    tables: TableStore, gate_asset: str, overrides: list[Override], day: dt.date
) -> ChampionState:
    """The champion state of day `day` from the stored gate decisions."""
    gate = tables.table(gate_asset)
    decided = (
        gate.scan().filter(pl.col("model_week") <= day).sort("model_week").collect()
        if gate.partitions()
        else pl.DataFrame()
    )
    last = decided.row(-1, named=True) if decided.height else None
    state = state_from_row(last)
    return apply_overrides(state, overrides, after=last["model_week"] if last else None, upto=day)


def behind_baselines(rows: Sequence[Mapping], policy: GatePolicy) -> list[dt.date]:
    """Model weeks whose champion (after the decision) does not beat every baseline."""
    return [
        r["model_week"]
        for r in rows
        if not policy.beats_baselines(
            r["champion_after_score"],
            {b: r[baseline_column(b)] for b in policy.baselines},
        )
    ]


class ChampionOverrideConfig(dg.Config):
    """A person's decision about the champion, recorded with a reason."""

    action: Literal["pin", "unpin", "rollback"]
    model_version: str = Field(
        default="", description="pin: required; rollback: optional (default: previous champion)"
    )
    effective_date: str = Field(
        default="", description="first day it applies to, YYYY-MM-DD (default: tomorrow)"
    )
    reason: str
    requested_by: str = ""


@dataclass(frozen=True)
class GateSpec:
    """A product's gate. `ins` are the scoring function's inputs (with their partition
    mappings); `pinnable` says whether a registry row's model passed its own validation, so
    that a person may pin it. `schema_changes` declares changes of a stored gate table."""

    policy: GatePolicy
    registry_asset: str
    gate_asset: str
    overrides_asset: str
    score: Scorer
    ins: Mapping[str, dg.AssetIn]
    pinnable: Callable[[Mapping], bool]
    partitions_def: dg.PartitionsDefinition
    previous_week: dg.PartitionMapping
    timezone: str
    group: str
    # Owners besides the product's (which `Product.with_defaults` adds to every asset).
    owners: Sequence[str] = ()
    kinds: frozenset[str] = frozenset({"polars"})
    code_version: str = "gate-v1"
    schema_changes: Mapping[str, Sequence[str]] = field(default_factory=dict)


def build_gate_assets(spec: GateSpec) -> list[dg.AssetsDefinition]:
    policy = spec.policy
    tz = ZoneInfo(spec.timezone)
    schema = gate_schema(policy)
    # The overrides table exists only once a person has pinned or rolled back a model, and
    # eager() waits for every missing dependency: the gate must not wait for it.
    automation = dg.AutomationCondition.eager().ignore(
        dg.AssetSelection.assets(spec.overrides_asset)
    )
    direction = "higher" if policy.higher_is_better else "lower"
    baselines = ", ".join(policy.baselines)

    @dg.asset(
        name=spec.overrides_asset,
        group_name=spec.group,
        kinds={"polars"},
        owners=list(spec.owners),
        description=(
            "People's decisions about the champion (pin, unpin, rollback) with the day they take "
            "effect, the reason and who asked. Rows are only ever added. An override applies "
            "from its effective day on and never rewrites outputs of earlier days."
        ),
    )
    def overrides_asset(
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
            _check_pinnable(tables, spec, version, effective)
        existing = read_overrides(tables, spec.overrides_asset)
        new = Override(effective, config.action, version, config.reason)
        try:
            apply_override(champion_at(tables, spec.gate_asset, existing, effective), new)
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
        table = tables.table(spec.overrides_asset)
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

    check = "champion_beats_baselines"

    @dg.asset(
        name=spec.gate_asset,
        group_name=spec.group,
        partitions_def=spec.partitions_def,
        # The gate of week W continues from week W - 1: a range runs in week order, in one run.
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds=set(spec.kinds),
        owners=list(spec.owners),
        retry_policy=TRANSIENT_RETRY,
        code_version=spec.code_version,
        automation_condition=automation,
        metadata={
            "partition_column": "model_week",
            **({"schema_changes": dict(spec.schema_changes)} if spec.schema_changes else {}),
        },
        ins={
            spec.registry_asset: dg.AssetIn(),
            **spec.ins,
            spec.gate_asset: dg.AssetIn(partition_mapping=spec.previous_week),
        },
        deps=[spec.overrides_asset],
        check_specs=[
            dg.AssetCheckSpec(
                check,
                asset=spec.gate_asset,
                description=f"On each week's backtest the champion still beats every baseline "
                f"({baselines}) by {policy.metric} (WARN: a champion that fell behind needs a "
                "person's attention).",
            )
        ],
        description=(
            "Champion/challenger gate per model week: the new model, the current champion and "
            f"the baselines ({baselines}) are scored by {policy.metric} ({direction} is better) "
            f"on the same backtest rows ({policy.backtest_days} days before the week); the "
            f"challenger is promoted only if it beats the champion by {policy.margin:.0%} and "
            f"every baseline. Pins and rollbacks from `{spec.overrides_asset}` are applied in "
            "effective-date order. One row per week: decision, reason, scores, champion after."
        ),
    )
    def gate_asset(
        context: dg.AssetExecutionContext,
        model_store: ModelStore,
        tables: TableStore,
        **inputs: pl.LazyFrame,
    ):
        weeks = partition_dates(context)
        overrides = read_overrides(tables, spec.overrides_asset)
        registry = inputs[spec.registry_asset].collect()
        # The run continues from the decision of the week before its first week (rows of its
        # own weeks, stored by an earlier run, are redone, not continued from).
        before = inputs[spec.gate_asset].collect()
        if before.width:
            before = before.filter(pl.col("model_week") < weeks[0])
        last = before.sort("model_week").row(-1, named=True) if before.height else None
        state = state_from_row(last)
        decided_until = last["model_week"] if last else None
        models: dict[str, Model] = {}

        def load_model(version: str) -> Model:
            if version not in models:
                models[version] = model_store.load(version)
            return models[version]

        scoring = Scoring(
            {k: inputs[k] for k in spec.ins}, load_model, policy, registry, model_store.load_card
        )
        rows = []
        with measured(len(context.partition_keys)) as cost:
            for week in weeks:
                state = apply_overrides(state, overrides, after=decided_until, upto=week)
                trained = registry.filter(pl.col("model_week") == week)
                if trained.is_empty():
                    raise dg.Failure(f"{spec.registry_asset} has no model for week {week}")
                version = trained["model_version"][0]
                versions = [
                    version,
                    *([state.champion] if state.champion not in (None, version) else []),
                ]
                scores = dict(spec.score(scoring, week, versions))
                before_state = state
                decision = decide(state, version, scores, policy)
                state = decision.state
                decided_until = week
                rows.append(
                    {
                        "model_week": week,
                        "challenger_version": version,
                        "decision": decision.decision,
                        "reason": decision.reason,
                        "metric": policy.metric,
                        "higher_is_better": policy.higher_is_better,
                        "challenger_score": scores.get(version),
                        "champion_before": before_state.champion,
                        "champion_score": scores.get(before_state.champion)
                        if before_state.champion
                        else None,
                        "fallback_baseline": policy.best_baseline(scores),
                        **{baseline_column(b): scores.get(b) for b in policy.baselines},
                        "backtest_rows": scores.get(ROWS),
                        "backtest_days": policy.backtest_days,
                        "margin": policy.margin,
                        "champion_version": state.champion,
                        "champion_after_score": scores.get(state.champion),
                        "pinned": state.pinned,
                        "previous_champion": state.previous,
                    }
                )
                context.log.info(f"week {week}: {decision.decision} {version}: {decision.reason}")
        latest = rows[-1]
        yield dg.Output(
            pl.DataFrame(rows, schema=schema),
            metadata={
                **cost,
                "decision": latest["decision"],
                "reason": latest["reason"],
                "metric": policy.metric,
                "champion_version": latest["champion_version"] or "",
                "challenger_score": latest["challenger_score"],
                "champion_score": latest["champion_score"],
                "promotions": sum(r["decision"] == "promoted" for r in rows),
            },
        )
        behind = behind_baselines(rows, policy)
        yield dg.AssetCheckResult(
            check_name=check,
            passed=not behind,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "champion_version": latest["champion_version"] or "",
                "weeks_behind_a_baseline": ", ".join(w.isoformat() for w in behind),
            },
        )

    return [overrides_asset, gate_asset]


def _check_pinnable(tables: TableStore, spec: GateSpec, version: str, effective: dt.date) -> None:
    """Only a model trained for a week up to the effective day existed then (pinning a later
    one would predict with data from the future), and only one that passed validation."""
    registry_table = tables.table(spec.registry_asset)
    if not registry_table.partitions():
        raise dg.Failure("no model has been trained yet", allow_retries=False)
    rows = registry_table.read().filter(
        pl.col("model_version") == version, pl.col("model_week") <= effective
    )
    if rows.is_empty():
        raise dg.Failure(
            f"model {version!r} is not in the registry of models trained for weeks up to "
            f"{effective}",
            allow_retries=False,
        )
    if not spec.pinnable(rows.row(0, named=True)):
        raise dg.Failure(
            f"model {version} failed validation (it does not beat the baselines on its "
            "validation days): it cannot be champion",
            allow_retries=False,
        )
