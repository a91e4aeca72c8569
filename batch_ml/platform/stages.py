"""Asset factories for a product's stages that are the same in every product: a daily table
computed from other assets (features, evaluation), a weekly model trained on earlier days, and
daily predictions by the model that serves each day.

A product supplies pure functions on Polars frames (what to compute, how to train, how to
predict); the factories wire partitions, backfill batching, retries, automation, cost metadata,
the finite-values check, the model store and the champion of each day. The gate between the
model and the predictions is `batch_ml.platform.registry.assets.build_gate_assets`.
"""

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from batch_ml.platform.common import (
    BRING_UP_TO_DATE,
    TRANSIENT_RETRY,
    BuildContext,
    bring_up_to_date_ignoring,
    finite_values_check,
    finite_values_spec,
    measured,
    non_finite_counts,
)
from batch_ml.platform.partitions import overlapping, partition_dates
from batch_ml.platform.registry.assets import gate_schema, read_overrides
from batch_ml.platform.registry.gate import (
    BASELINE_PREFIX,
    GatePolicy,
    UndecidedWeekError,
    serving_version,
)
from batch_ml.platform.registry.model import Model

MODEL_VERSION = "model_version"
Inputs = Mapping[str, pl.LazyFrame]


@dataclass(frozen=True)
class DailyStage:
    """A daily table computed from other assets: `compute(days, inputs)` returns the rows of
    the step's days (a range in a backfill), each in its day by `partition_column`."""

    name: str
    stage: str  # the asset group's stage: features, evaluation, ...
    ins: Mapping[str, dg.AssetIn]
    compute: Callable[[list[dt.date], Inputs], pl.DataFrame]
    partition_column: str
    description: str
    kinds: frozenset[str] = frozenset({"polars"})
    code_version: str = "v1"


def daily_asset(b: BuildContext, spec: DailyStage) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.name,
        group_name=spec.stage,
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds=set(spec.kinds),
        retry_policy=TRANSIENT_RETRY,
        code_version=spec.code_version,
        automation_condition=BRING_UP_TO_DATE,
        metadata={"partition_column": spec.partition_column},
        check_specs=[finite_values_spec(spec.name)],
        ins=dict(spec.ins),
        description=spec.description,
    )
    def _daily(context: dg.AssetExecutionContext, **inputs: pl.LazyFrame):
        with measured(len(context.partition_keys)) as cost:
            frame = spec.compute(partition_dates(context), inputs)
        yield from finite_values_check(spec.name, frame)
        yield dg.Output(frame, metadata={**cost, "rows": frame.height})

    return _daily


@dataclass(frozen=True)
class TrainedModel:
    """What a product's training function returns for one week."""

    model: Model
    window: tuple[dt.date, dt.date]  # the first and last day the model learned from
    # Scores on the product's own validation rows, e.g. {"valid_accuracy": 0.91}: registry
    # columns and card entries.
    validation: Mapping[str, float]
    # A content hash of the training rows, so a card says what the model learned from.
    data_version: str
    details: Mapping[str, Any] = field(default_factory=dict)  # more of the card
    # Fitted state that is not a model, as more registry columns (scalars), e.g. the majority
    # class of the training labels, which a baseline serving the week needs.
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelStage:
    """A weekly model: `train(week, inputs)` fits the model of `week` on data strictly
    before it (`ins` map the week to earlier days). Rows of the asset are the registry."""

    name: str
    ins: Mapping[str, dg.AssetIn]
    train: Callable[[dt.date, Inputs], TrainedModel]
    description: str
    kinds: frozenset[str] = frozenset({"polars"})
    code_version: str = "model-v1"


def model_asset(b: BuildContext, spec: ModelStage) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.name,
        group_name="model",
        partitions_def=b.parts.weekly,
        backfill_policy=b.parts.weekly_backfill,
        kinds=set(spec.kinds),
        retry_policy=TRANSIENT_RETRY,
        code_version=spec.code_version,
        automation_condition=BRING_UP_TO_DATE,
        pool="cpu_heavy",
        metadata={"partition_column": "model_week"},
        required_resource_keys={"model_store"},
        ins=dict(spec.ins),
        description=spec.description,
    )
    def _model(context: dg.AssetExecutionContext, **inputs: pl.LazyFrame):
        rows = []
        with measured(len(context.partition_keys)) as cost:
            for week in partition_dates(context):
                trained = spec.train(week, inputs)
                model = trained.model
                card = model.card(
                    window=trained.window,
                    data_versions={"training": trained.data_version},
                    validation=trained.validation,
                    details=trained.details,
                )
                path = context.resources.model_store.save(model.to_bytes(), card)
                rows.append(
                    {
                        "model_week": week,
                        MODEL_VERSION: model.version,
                        "flavour": model.flavour,
                        "window_start": trained.window[0],
                        "window_end": trained.window[1],
                        **trained.validation,
                        **trained.state,
                        "data_version": trained.data_version,
                        "model_path": str(path),
                    }
                )
                context.log.info(f"week {week}: model {model.version} {trained.validation}")
        last = rows[-1]
        return dg.Output(
            pl.DataFrame(rows),
            metadata={
                **cost,
                MODEL_VERSION: last[MODEL_VERSION],
                **{k: float(v) for k, v in trained.validation.items()},
                "model_file": dg.MetadataValue.path(last["model_path"]),
            },
        )

    return _model


PREDICTIONS_CHECK = "finite_and_complete"


@dataclass(frozen=True)
class PredictionStage:
    """Daily predictions by the model that serves each day: the gate's champion of the day's
    week, then the overrides effective up to the day; until a model passed, the best baseline.
    `predict(model, served, day, inputs)` returns the day's rows from the day's partitions of
    `ins` (`model` is None when the baseline `served` serves); the factory sets
    `model_version`. Days before the first model week are stored empty, with the reason.
    `weekly_ins` are read over the weeks of the step's days (e.g. the model registry, whose
    row of a day's week holds a baseline's fitted state) and passed whole, beside the day's.

    Nothing is stored unless every prediction is finite and `incomplete(frame)` (counts of
    the product's own problems, e.g. series missing a lead) is all zeros: a blocking check.
    `summary(frame)` adds the product's metadata."""

    name: str
    gate_asset: str
    overrides_asset: str
    policy: GatePolicy
    ins: Mapping[str, dg.AssetIn]  # same-day inputs, read one partition per day
    predict: Callable[[Model | None, str, dt.date, Inputs], pl.DataFrame]
    schema: Mapping[str, pl.DataType]  # of the rows `predict` returns
    partition_column: str
    description: str
    incomplete: Callable[[pl.DataFrame], Mapping[str, int]] = lambda frame: {}
    summary: Callable[[pl.DataFrame], Mapping[str, Any]] = lambda frame: {}
    weekly_ins: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset({"polars"})
    code_version: str = "predictions-v1"


def prediction_asset(b: BuildContext, spec: PredictionStage) -> dg.AssetsDefinition:
    first_week = b.parts.first_week
    schema = {**spec.schema, MODEL_VERSION: pl.String}
    per_day = {
        name: dg.AssetIn(
            key=asset_in.key,
            partition_mapping=asset_in.partition_mapping,
            dagster_type=dict[str, pl.LazyFrame],  # one LazyFrame per partition (day)
        )
        for name, asset_in in spec.ins.items()
    }

    @dg.asset(
        name=spec.name,
        group_name="predictions",
        partitions_def=b.parts.daily,
        backfill_policy=b.parts.daily_backfill,
        kinds=set(spec.kinds),
        retry_policy=TRANSIENT_RETRY,
        code_version=spec.code_version,
        automation_condition=bring_up_to_date_ignoring(spec.overrides_asset),
        metadata={"partition_column": spec.partition_column},
        required_resource_keys={"model_store", "tables"},
        # Day D is served by the gate's decision for the week holding D (made from data
        # before the week began); overrides effective up to D apply on top.
        ins={
            **per_day,
            **{name: dg.AssetIn(partition_mapping=overlapping()) for name in spec.weekly_ins},
            spec.gate_asset: dg.AssetIn(partition_mapping=overlapping()),
        },
        deps=[spec.overrides_asset],
        check_specs=[
            dg.AssetCheckSpec(
                PREDICTIONS_CHECK,
                asset=spec.name,
                blocking=True,
                description="Every prediction is finite and none is missing (the product's "
                "completeness rule); otherwise nothing is stored.",
            )
        ],
        description=spec.description,
    )
    def _predictions(context: dg.AssetExecutionContext, **inputs):
        gate = inputs.pop(spec.gate_asset).collect()
        if not gate.width:  # no week decided yet
            gate = pl.DataFrame(schema=gate_schema(spec.policy))
        overrides = read_overrides(context.resources.tables, spec.overrides_asset)
        models: dict[str, Model] = {}
        frames, served, empty_days = [], set(), 0
        with measured(len(context.partition_keys)) as cost:
            for day in partition_dates(context):
                if day < first_week:
                    empty_days += 1
                    continue
                try:
                    version = serving_version(gate, overrides, day, BASELINE_PREFIX)
                except UndecidedWeekError as exc:
                    # Waiting would not help: the week's model and gate must be run. Earlier
                    # steps of the run (the day's sources and features) stay stored.
                    raise dg.Failure(
                        f"{exc}: predictions of {day} need it; run "
                        f"{b.product.training_job} for the week of {day}, then this day again",
                        allow_retries=False,
                    ) from exc
                model = None
                if not version.startswith(BASELINE_PREFIX):
                    if version not in models:
                        models[version] = context.resources.model_store.load(version)
                    model = models[version]
                day_inputs = {name: inputs[name][day.isoformat()] for name in per_day}
                day_inputs.update({name: inputs[name] for name in spec.weekly_ins})
                rows = spec.predict(model, version, day, day_inputs)
                frames.append(rows.with_columns(pl.lit(version).alias(MODEL_VERSION)))
                served.add(version)
            frame = pl.concat([pl.DataFrame(schema=schema), *frames], how="diagonal_relaxed")
        frame = frame.select(list(schema))
        problems = {"non_finite": sum(non_finite_counts(frame).values()), **spec.incomplete(frame)}
        check = dg.AssetCheckResult(
            check_name=PREDICTIONS_CHECK, passed=not any(problems.values()), metadata=problems
        )
        if any(problems.values()):
            yield check
            # Raised before the output is stored: a bad prediction never reaches the warehouse.
            raise dg.Failure(
                f"{spec.name}: {problems}: nothing was written",
                metadata=problems,
                allow_retries=False,
            )
        metadata = {
            **cost,
            "empty_days": empty_days,
            **spec.summary(frame),
            "model_versions": ", ".join(sorted(served)),
        }
        if empty_days:
            metadata["empty_reason"] = f"before the first model week {first_week}"
        yield dg.Output(frame, metadata=metadata)
        yield check

    return _predictions


def product_assets(b: BuildContext, stages: Sequence[Any]) -> list[dg.AssetsDefinition]:
    """The assets of a product's stage declarations, by their kind."""
    factories = {
        DailyStage: daily_asset,
        ModelStage: model_asset,
        PredictionStage: prediction_asset,
    }
    return [factories[type(stage)](b, stage) for stage in stages]
