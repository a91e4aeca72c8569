"""The evaluation report on synthetic data built so that the right answers are known."""

import base64
import datetime as dt
import os

import numpy as np
import polars as pl
import pytest

from batch_ml.harness.browser import CHROMIUM, report_image_count, report_text, screenshot_report
from batch_ml.products.forecasting.metrics import SUM_COLUMNS, error_sums, roll_up
from batch_ml.products.forecasting.report import (
    METHODS,
    Report,
    ReportInputs,
    pick_series,
    write_evaluation_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START = dt.date(2024, 3, 1)
DAYS, LEADS = 60, 7
WORST = ("S2", "I2-drinks-4")  # big volume, a model that is far off
TINY = ("S1", "I1-food-0")  # almost no sales and a forecast of 1/day: huge WAPE, must not win
HOSTILE = "<script>alert(1)</script>"


def synthetic_inputs(store_names=("S1", "S2")) -> ReportInputs:
    """2 stores x 2 categories x 5 items, 60 target days, leads 1-7. The model's noise is a
    quarter to a third of the baselines' (so it wins), except on WORST; TINY sells almost
    nothing. The accuracy sums come from the same rows as the series, via error_sums."""
    rng = np.random.default_rng(7)
    dates = [START + dt.timedelta(days=d) for d in range(DAYS)]
    weekly = 1 + 0.3 * np.sin(2 * np.pi * np.arange(DAYS) / 7)
    rows = []
    for s, store in enumerate(store_names):
        for category in ("food", "drinks"):
            for i in range(5):
                item = f"I{s + 1}-{category}-{i}"
                key = (f"S{s + 1}", item)
                level = 0.02 if key == TINY else 10.0 + 4 * i + 3 * s + 6 * (category == "food")
                actual = rng.poisson(level * weekly).astype(float)
                for lead in range(1, LEADS + 1):
                    spread = level * (0.08 + 0.02 * lead)
                    noise = {
                        m: rng.normal(0, spread * k, DAYS)
                        for m, k in (("model", 1), ("seasonal_naive", 4), ("moving_average", 3))
                    }
                    if key == WORST:
                        noise["model"] = level * (1.5 + rng.random(DAYS))
                    if key == TINY:
                        noise["model"] = np.ones(DAYS)
                    for m in METHODS:
                        forecast = np.clip(actual + noise[m], 0, None)
                        rows.append(
                            pl.DataFrame(
                                {"target_date": dates, "actual": actual, "forecast": forecast}
                            ).with_columns(
                                lead=pl.lit(lead, pl.Int32),
                                method=pl.lit(m),
                                store_id=pl.lit(store),
                                category=pl.lit(category),
                                item_id=pl.lit(item),
                            )
                        )
    long = pl.concat(rows)
    accuracy = (
        long.group_by("target_date", "lead", "method", "store_id", "category")
        .agg(error_sums(pl.col("actual"), pl.col("forecast")))
        .sort("target_date", "lead", "method", "store_id", "category")
    )
    series = (
        long.filter(pl.col("lead") == 1)
        .pivot(
            on="method", index=["target_date", "store_id", "item_id", "actual"], values="forecast"
        )
        .select("target_date", "store_id", "item_id", "actual", *METHODS)
    )
    variables = ["prediction", "lag_7", "price", "day_of_week"]
    drift = pl.DataFrame(
        {
            "date": [d for d in dates for _ in variables],
            "variable": variables * DAYS,
            "psi": [
                0.01 + 0.005 * d * (v == "price") + 0.002 * k
                for d in range(DAYS)
                for k, v in enumerate(variables)
            ],
        }
    )
    features = [f"feature_{k:02d}" for k in range(25)]
    importance = pl.DataFrame({"feature": features, "gain": [1000.0 / (k + 1) for k in range(25)]})
    weeks = [dt.date(2024, 2, 5) + dt.timedelta(weeks=k) for k in range(4)]
    decisions = pl.DataFrame(
        {
            "model_week": weeks,
            "model_version": ["v1", "v2", "v3", "v4"],
            "decision": ["promoted", "rejected", "promoted", "rolled_back"],
            "reason": ["first model", "worse than champion", "beats champion by 4%", "bad week"],
            "challenger_wape": [0.21, 0.25, 0.19, 0.30],
            "champion_wape": [None, 0.21, 0.21, 0.19],
            "seasonal_naive_wape": [0.4, 0.41, 0.39, 0.4],
            "moving_average_wape": [0.35, 0.36, 0.34, 0.35],
            "champion_version": ["v1", "v1", "v3", "v1"],
        }
    )
    return ReportInputs(accuracy, series, drift, importance, decisions)


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    return synthetic_inputs()


@pytest.fixture(scope="module")
def report(inputs, tmp_path_factory) -> Report:
    return write_evaluation_report(inputs, tmp_path_factory.mktemp("report") / "out")


def test_headline_is_the_roll_up_of_the_input(inputs, report):
    # Exact up to the last bits: Polars' parallel group-by sums floats in a varying order, so
    # two roll_up calls on the same frame can differ by one ulp.
    overall = {r["method"]: r for r in roll_up(inputs.accuracy, ["method"]).iter_rows(named=True)}
    for m in METHODS:
        assert report.headline[f"wape_{m}"] == pytest.approx(overall[m]["wape"], rel=1e-12)
    best = min(overall["seasonal_naive"]["wape"], overall["moving_average"]["wape"])
    improvement = 1 - overall["model"]["wape"] / best
    assert report.headline["improvement_vs_best_baseline"] == pytest.approx(improvement, rel=1e-12)
    assert report.headline["improvement_vs_best_baseline"] > 0.3  # the model wins by design
    assert report.headline["days"] == DAYS
    assert report.headline["series"] == 20
    assert report.headline["max_psi_last_day"] == pytest.approx(0.01 + 0.005 * (DAYS - 1) + 0.004)
    text = report.html_path.read_text()
    assert "Current champion model: <b>v1</b>" in text  # after the roll-back


def test_a_worse_model_shows_a_negative_improvement(inputs, tmp_path):
    swapped = inputs.accuracy.with_columns(
        method=pl.col("method").replace({"model": "seasonal_naive", "seasonal_naive": "model"})
    )
    worse = ReportInputs(swapped, inputs.series, inputs.drift, inputs.importance, inputs.decisions)
    headline = write_evaluation_report(worse, tmp_path).headline
    assert headline["wape_model"] > headline["wape_seasonal_naive"]
    assert headline["improvement_vs_seasonal_naive"] < 0
    assert headline["improvement_vs_best_baseline"] < 0


def test_roll_up_tables_sum_back_to_the_overall_count(inputs, report):
    overall = report.tables["overall"].select("method", "n").sort("method")
    assert overall["n"].to_list() == [DAYS * LEADS * 20] * 3
    for name in ("by_lead", "by_week", "by_month", "by_store", "by_category", "daily"):
        table = report.tables[name]
        summed = table.group_by("method").agg(pl.col("n").sum()).sort("method")
        assert summed.equals(overall), name
        for column in SUM_COLUMNS[1:]:
            total = table.filter(pl.col("method") == "model")[column].sum()
            assert total == pytest.approx(inputs.accuracy.filter(method="model")[column].sum())
    assert report.tables["by_lead"]["lead"].unique().sort().to_list() == list(range(1, 8))
    assert report.tables["by_month"]["month"].unique().to_list() == [
        dt.date(2024, 3, 1),
        dt.date(2024, 4, 1),
    ]
    by_lead = report.tables["by_lead"].filter(method="model").sort("lead")["wape"].to_list()
    assert by_lead == sorted(by_lead)  # the synthetic error grows with the lead


def test_largest_and_worst_series(inputs, report):
    totals = inputs.series.group_by("store_id", "item_id").agg(pl.col("actual").sum())
    expected = totals.sort("actual", descending=True).head(3).select("store_id", "item_id")
    largest, worst = pick_series(inputs.series)
    assert largest.select("store_id", "item_id").rows() == expected.rows()
    assert worst.row(0)[:2] == WORST
    assert TINY not in [r[:2] for r in worst.rows()]
    tiny_wape = (
        inputs.series.filter(store_id=TINY[0], item_id=TINY[1])
        .select((pl.col("model") - pl.col("actual")).abs().sum() / pl.col("actual").sum())
        .item()
    )
    assert tiny_wape > worst["wape"][0]  # the highest WAPE of all, but not worth a look
    assert report.tables["worst_series"].equals(worst)
    assert worst["total_actual"].min() >= totals["actual"].median()


def test_pngs_exist_are_valid_and_embedded(report):
    assert set(report.png_paths) == {
        "lead",
        "daily",
        "store",
        "category",
        "largest_series",
        "worst_series",
        "importance",
        "drift",
    }
    text = report.html_path.read_text()
    for name, path in report.png_paths.items():
        assert path.parent == report.html_path.parent
        assert path.name == f"evaluation_{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 10_000, name  # a drawn plot, not an empty canvas
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in text, name
    assert report.html_path.name == "evaluation_report.html"
    assert not list(report.html_path.parent.glob(".*"))  # no temporary files left behind


def test_hostile_store_id_is_escaped(tmp_path):
    report = write_evaluation_report(synthetic_inputs(("S1", HOSTILE)), tmp_path)
    text = report.html_path.read_text()
    assert HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text


def test_empty_optional_frames_explain_themselves(inputs, tmp_path):
    empty = ReportInputs(
        inputs.accuracy,
        inputs.series.head(0),
        inputs.drift.head(0),
        inputs.importance.head(0),
        inputs.decisions.head(0),
        title="Empty & co",
    )
    write_evaluation_report(inputs, tmp_path)  # an earlier, complete report in the same folder
    report = write_evaluation_report(empty, tmp_path)
    text = report.html_path.read_text()
    for sentence in (
        "No forecast series were provided.",
        "No feature importance is available for the champion.",
        "No drift measurements are available yet.",
        "No champion/challenger decisions have been recorded.",
    ):
        assert sentence in text
    assert "<h1>Empty &amp; co</h1>" in text
    assert set(report.png_paths) == {"lead", "daily", "store", "category"}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        p.name for p in report.png_paths.values()
    )  # no stale plot of the earlier report passes for this one's
    assert report.headline["series"] == 0
    assert report.headline["max_psi_last_day"] != report.headline["max_psi_last_day"]  # NaN


def test_no_category_and_a_missing_method(inputs, tmp_path):
    accuracy = inputs.accuracy.filter(pl.col("method") != "moving_average").with_columns(
        category=pl.lit(None, pl.String)
    )
    bare = ReportInputs(accuracy, inputs.series, inputs.drift, inputs.importance, inputs.decisions)
    report = write_evaluation_report(bare, tmp_path)
    assert "The data has no product category." in report.html_path.read_text()
    assert "category" not in report.png_paths
    assert report.headline["wape_moving_average"] != report.headline["wape_moving_average"]
    assert (
        report.headline["improvement_vs_best_baseline"]
        == report.headline["improvement_vs_seasonal_naive"]
    )


def test_empty_accuracy_raises(inputs, tmp_path):
    empty = ReportInputs(
        inputs.accuracy.head(0), inputs.series, inputs.drift, inputs.importance, inputs.decisions
    )
    with pytest.raises(ValueError, match="no accuracy rows"):
        write_evaluation_report(empty, tmp_path)
    assert not (tmp_path / "evaluation_report.html").exists()


def test_two_runs_are_byte_identical(inputs, report, tmp_path):
    again = write_evaluation_report(inputs, tmp_path)
    assert again.html_path.read_bytes() == report.html_path.read_bytes()
    assert again.png_paths.keys() == report.png_paths.keys()
    for name, path in report.png_paths.items():
        assert again.png_paths[name].read_bytes() == path.read_bytes(), name


@pytest.mark.integration
def test_the_report_in_a_browser(report):
    if CHROMIUM is None:
        # Not hidden on CI: `make test` installs Debian's chromium when it runs as root.
        assert not os.environ.get("CI"), "chromium is missing on CI"
        pytest.skip("chromium is not installed: apt-get install chromium")
    png = screenshot_report(report.html_path, "evaluation-report-synthetic")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 50_000  # text, cards and the first plot, not a blank page
    text = report_text(report.html_path)
    for heading in (
        "Demand forecast evaluation",
        "Accuracy by lead time",
        "Error over time",
        "Accuracy by store and category",
        "Actual vs forecast",
        "Feature importance",
        "Drift",
        "Model decisions",
    ):
        assert heading in text
    assert report_image_count(report.html_path) == len(report.png_paths)
