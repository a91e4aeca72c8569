"""A second product made with the platform API alone, run end to end on a real Dagster instance:
daily XML files of labelled signals are ingested, a weekly scikit-learn classifier is trained on
earlier days, the gate picks the champion by accuracy (higher is better) against the majority
class, daily predictions land in the warehouse and are evaluated against the labels. The
product (below, up to `TINY`) names nothing of forecasting."""

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from batch_ml.config import load_config
from batch_ml.definitions import build_definitions
from batch_ml.harness.project import write_config
from batch_ml.platform.orchestration import catch_up_stages
from batch_ml.platform.partitions import preceding
from batch_ml.platform.product import PRODUCT_TAG, Product
from batch_ml.platform.registry.assets import ROWS, GateSpec, build_gate_assets
from batch_ml.platform.registry.gate import GatePolicy
from batch_ml.platform.registry.model import SklearnModel
from batch_ml.platform.sources.assets import source_asset
from batch_ml.platform.sources.contract import Source
from batch_ml.platform.stages import (
    DailyStage,
    ModelStage,
    PredictionStage,
    TrainedModel,
    product_assets,
)
from batch_ml.platform.storage.digest import frame_digest
from batch_ml.platform.storage.tables import PartitionedTable

pytestmark = pytest.mark.definitions

# -- the product --------------------------------------------------------------------------
SIGNALS = Source(
    name="signals",
    file_format="xml",
    required={"day": pl.Date(), "item": pl.String(), "x": pl.Float64(), "label": pl.Float64()},
    primary_key=("day", "item"),
    id_columns=("item",),
    date_column="day",
)
POLICY = GatePolicy("accuracy", True, ("majority",), margin=0.01, backtest_days=7)


def _train(week: dt.date, inputs) -> TrainedModel:
    rows = inputs["signals"].filter(pl.col("day") < week).collect()
    model = SklearnModel.fit(rows, "label", ["x"], {}, 0, 1, estimator=LogisticRegression)
    window = (rows["day"].min(), rows["day"].max())
    valid = {"valid_accuracy": _accuracy(model, rows)}
    return TrainedModel(model, window, valid, frame_digest(rows))


def _accuracy(model, rows: pl.DataFrame) -> float:
    return float(((model.predict(rows)[:, 1] > 0.5) == (rows["label"].to_numpy() > 0.5)).mean())


def _score(scoring, week, versions):
    rows = scoring.inputs["signals"].filter(pl.col("day") < week).collect()
    scores = {v: _accuracy(scoring.load_model(v), rows) for v in versions}
    return {**scores, "majority": float((rows["label"] > 0.5).mean()), ROWS: rows.height}


def _predict(model, served, day, inputs) -> pl.DataFrame:
    rows = inputs["signals"].filter(pl.col("day") == day).collect()
    p = model.predict(rows)[:, 1] if model else np.ones(rows.height)  # majority: positive
    return rows.select("day", "item").with_columns(p_positive=pl.Series(p))


def _evaluate(days, inputs) -> pl.DataFrame:
    joined = inputs["signal_scores"].join(inputs["signals"], on=["day", "item"]).collect()
    right = (pl.col("p_positive") > 0.5) == (pl.col("label") > 0.5)
    return joined.group_by("day", "model_version").agg(accuracy=right.mean(), n=pl.len())


def _assets(b) -> list:
    weeks = preceding(2)  # a model learns from the two weeks before its week
    gate = GateSpec(POLICY, "signal_model", "signal_gate", "signal_overrides", _score,
                    {"signals": dg.AssetIn(partition_mapping=weeks)}, lambda row: True,
                    b.parts.weekly, preceding(1), b.cfg.timezone, "model")  # fmt: skip
    stages = [
        ModelStage("signal_model", {"signals": dg.AssetIn(partition_mapping=weeks)}, _train,
                   "Logistic regression on x."),
        PredictionStage("signal_scores", "signal_gate", "signal_overrides", POLICY,
                        {"signals": dg.AssetIn()}, _predict,
                        {"day": pl.Date, "item": pl.String, "p_positive": pl.Float64}, "day",
                        "P(positive) per item."),
        DailyStage("signal_accuracy", "evaluation",
                   {"signal_scores": dg.AssetIn(), "signals": dg.AssetIn()}, _evaluate,
                   "day", "Accuracy of the day's predictions."),
    ]  # fmt: skip
    return [source_asset(SIGNALS, b), *build_gate_assets(gate), *product_assets(b, stages)]


TINY = Product(
    name="tiny", description="Daily signal classification.", owners=("team:tiny",),
    sources=lambda cfg: {"signals": SIGNALS}, first_week=lambda cfg: dt.date(2025, 1, 20),
    assets=_assets, reference=(), daily=("signals", "signal_scores", "signal_accuracy"),
    weekly=("signal_model", "signal_gate"), override="signal_overrides",
)  # fmt: skip
# -- end of the product -------------------------------------------------------------------

START, DAYS, PER_DAY = dt.date(2025, 1, 1), 35, 40


def _write_landing(root, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "signals"
    folder.mkdir(parents=True)
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        x = rng.normal(0.3, 1.0, PER_DAY)
        label = (x + rng.normal(0, 0.5, PER_DAY) > 0).astype(int)
        records = "".join(
            f"<record><day>{day}</day><item>i{k}</item><x>{x[k]:.4f}</x>"
            f"<label>{label[k]}</label></record>"
            for k in range(PER_DAY)
        )
        (folder / f"signals_{day}.xml").write_text(f"<signals>{records}</signals>")


def test_a_tiny_product_runs_end_to_end_on_the_platform_alone(tmp_path):
    cfg = load_config(write_config(tmp_path, start=START, days=DAYS))
    _write_landing(cfg.paths.landing)
    defs = build_definitions(cfg, products=[TINY])
    graph = defs.resolve_asset_graph()
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {
        "tiny_sources", "tiny_model", "tiny_predictions", "tiny_evaluation"
    }  # fmt: skip
    assert all(graph.get(k).tags[PRODUCT_TAG] == "tiny" for k in graph.get_all_asset_keys())
    last = START + dt.timedelta(days=DAYS - 1)
    stages = catch_up_stages(TINY, graph, START, last, TINY.first_week(cfg))
    with dg.DagsterInstance.ephemeral() as instance:
        for stage in stages:  # the daily chain up to the model, the weeks, the rest
            selection = [dg.AssetKey(a) for a in stage.assets] if stage.assets else None
            result = defs.resolve_job_def(stage.job).execute_in_process(
                instance=instance, tags=stage.tags, asset_selection=selection
            )
            assert result.success, stage

    tables = cfg.paths.tables
    gate = PartitionedTable(tables, "signal_gate").read().sort("model_week")
    assert gate["metric"].unique().to_list() == ["accuracy"] and gate["higher_is_better"].all()
    # The first model beats the majority class on its backtest, so it is promoted.
    first = gate.row(0, named=True)
    assert first["decision"] == "promoted" and first["challenger_score"] > first["majority_score"]
    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        served = con.sql(
            "select day, count(*), any_value(model_version) from signal_scores "
            "group by day order by day"
        ).fetchall()
        accuracy = con.sql("select day, accuracy from signal_accuracy order by day").fetchall()
    # Days from the first model week on are predicted by the champion; none before it.
    assert served[0][0] == TINY.first_week(cfg) and {n for _, n, _ in served} == {PER_DAY}
    assert {v for _, _, v in served} <= set(gate["champion_version"])
    assert [d for d, _ in accuracy] == [d for d, _, _ in served]
    assert min(a for _, a in accuracy) > 0.6


def test_two_products_load_into_one_code_location_each_with_its_groups_jobs_and_owners(
    tmp_path,
):
    from batch_ml.products.forecasting.product import PRODUCT

    cfg = load_config(write_config(tmp_path, start=START, days=DAYS))
    defs = build_definitions(cfg, products=[PRODUCT, TINY])
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    owners = {
        graph.get(k).tags[PRODUCT_TAG]: graph.get(k).owners for k in graph.get_all_asset_keys()
    }
    assert owners == {"forecasting": ["team:forecasting"], "tiny": ["team:tiny"]}
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {PRODUCT.daily_job, TINY.daily_job, PRODUCT.training_job, TINY.training_job} <= jobs
    sensors = {s.name for s in defs.sensors}
    assert {PRODUCT.landing_sensor, TINY.landing_sensor} <= sensors
