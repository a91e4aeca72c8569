"""The platform's gate assets for a product other than forecasting: a classifier judged by
accuracy (higher is better) against a constant baseline, on a real Dagster instance."""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
import pytest

from batch_ml.platform.registry.assets import ROWS, GateSpec, build_gate_assets, gate_schema
from batch_ml.platform.registry.gate import GatePolicy
from batch_ml.platform.registry.model import RuleModel, register_rule
from batch_ml.platform.resources import ModelStore, ParquetTableIOManager, TableStore
from batch_ml.platform.storage.tables import PartitionedTable

# Runs the gate's Dagster assets in-process (a toy product's Definitions, not the project's).
pytestmark = pytest.mark.definitions

WEEKS = [dt.date(2025, 1, 6), dt.date(2025, 1, 13), dt.date(2025, 1, 20)]
# The rule's threshold per week: week 2's model calls everything positive (no better than
# the baseline), week 3's is right everywhere.
THRESHOLDS = {WEEKS[0]: 0.3, WEEKS[1]: -1.5, WEEKS[2]: 0.0}
POLICY = GatePolicy("accuracy", True, ("always_positive",), margin=0.05, backtest_days=7)
LABELS = pl.DataFrame({"x": np.linspace(-1, 1, 201)}).with_columns(label=pl.col("x") > 0)


@register_rule("test_gate_threshold")
def _threshold(frame: pl.DataFrame, params: dict) -> np.ndarray:
    p = (frame["x"].to_numpy() > params["threshold"]).astype(float)
    return np.column_stack([1 - p, p])


def _accuracy(probabilities: np.ndarray) -> float:
    return float(((probabilities[:, 1] > 0.5) == LABELS["label"].to_numpy()).mean())


def _definitions(root) -> dg.Definitions:
    weekly = dg.WeeklyPartitionsDefinition(
        start_date=WEEKS[0].isoformat(), end_date="2025-01-27", day_offset=1
    )

    @dg.asset(name="toy_labels")
    def toy_labels():
        return LABELS

    @dg.asset(name="toy_model", partitions_def=weekly, metadata={"partition_column": "model_week"})
    def toy_model(context, model_store: ModelStore):
        week = dt.date.fromisoformat(context.partition_key)
        model = RuleModel.fit(
            LABELS,
            "label",
            ["x"],
            {"threshold": THRESHOLDS[week]},
            0,
            1,
            rule="test_gate_threshold",
        )
        model_store.save(model.to_bytes(), model.card())
        valid = _accuracy(model.predict(LABELS))
        return pl.DataFrame(
            {"model_week": [week], "model_version": [model.version], "valid_accuracy": [valid]}
        )

    def score(scoring, week, versions):
        labels = scoring.inputs["toy_labels"].collect()
        scores = {v: _accuracy(scoring.load_model(v).predict(labels)) for v in versions}
        return {**scores, "always_positive": float(labels["label"].mean()), ROWS: labels.height}

    gate = build_gate_assets(
        GateSpec(
            policy=POLICY,
            registry_asset="toy_model",
            gate_asset="toy_gate",
            overrides_asset="toy_overrides",
            score=score,
            ins={"toy_labels": dg.AssetIn()},
            pinnable=lambda row: POLICY.beats_baselines(
                row["valid_accuracy"], {"always_positive": 0.5}
            ),
            partitions_def=weekly,
            previous_week=dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
            timezone="UTC",
            group="toy",
            owners=["team:toys"],
        )
    )
    tables = {"tables_root": str(root / "tables"), "warehouse_path": str(root / "w.duckdb")}
    return dg.Definitions(
        assets=[toy_labels, toy_model, *gate],
        resources={
            "io_manager": ParquetTableIOManager(**tables),
            "tables": TableStore(**tables),
            "model_store": ModelStore(root=str(root / "models")),
        },
    )


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    defs = _definitions(root)
    with dg.DagsterInstance.ephemeral() as instance:
        assert (
            defs.resolve_implicit_global_asset_job_def()
            .execute_in_process(instance=instance, asset_selection=[dg.AssetKey("toy_labels")])
            .success
        )
        for week in WEEKS:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance,
                partition_key=week.isoformat(),
                asset_selection=[dg.AssetKey("toy_model"), dg.AssetKey("toy_gate")],
            )
            assert result.success
        yield root, defs, instance


def test_a_higher_score_wins_by_the_margin_and_the_columns_are_the_policys(decided):
    root, _, _ = decided
    gate = PartitionedTable(root / "tables", "toy_gate").read().sort("model_week")
    assert gate.columns == list(gate_schema(POLICY))
    assert gate["decision"].to_list() == ["promoted", "rejected", "promoted"]
    assert gate["metric"].unique().to_list() == ["accuracy"]
    assert gate["higher_is_better"].all() and (gate["backtest_days"] == 7).all()
    first, worse, better = gate.rows(named=True)
    assert first["challenger_score"] > first["always_positive_score"]
    assert worse["challenger_score"] < worse["champion_score"] == first["challenger_score"]
    assert worse["champion_version"] == first["challenger_version"]
    assert better["champion_version"] == better["challenger_version"]
    assert better["previous_champion"] == first["challenger_version"]
    assert better["champion_after_score"] == better["challenger_score"]
    assert (gate["fallback_baseline"] == "always_positive").all()
    assert (gate["backtest_rows"] == LABELS.height).all()


def test_a_model_that_failed_validation_cannot_be_pinned(decided):
    root, defs, instance = decided
    worse = PartitionedTable(root / "tables", "toy_model").read().sort("model_week").row(1)
    job = dg.define_asset_job("pin", selection=["toy_overrides"])
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("pin")

    def pin(version):
        config = {"action": "pin", "model_version": version, "reason": "test"}
        return resolved.execute_in_process(
            instance=instance,
            run_config={"ops": {"toy_overrides": {"config": config}}},
            raise_on_error=False,
        )

    assert worse[2] < 0.5 and not pin(worse[1]).success
    assert not PartitionedTable(root / "tables", "toy_overrides").partitions()
    best = PartitionedTable(root / "tables", "toy_model").read().sort("model_week").row(2)
    assert pin(best[1]).success
    stored = PartitionedTable(root / "tables", "toy_overrides").read()
    assert stored.select("action", "model_version").rows() == [("pin", best[1])]
