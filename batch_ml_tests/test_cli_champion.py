"""`batch-ml champion --product NAME`: the command addresses any enabled product's champion
from its declaration (its override asset, the gate that reads it, its override job), here the
sentiment product's, on tables written directly; an unknown or disabled product is one line."""

import datetime as dt

import polars as pl
import pytest

from batch_ml.cli import main
from batch_ml.harness.project import write_config
from batch_ml.platform.registry.assets import gate_schema
from batch_ml.platform.storage.tables import UNPARTITIONED, PartitionedTable
from batch_ml.products.sentiment.assets.pipeline import METRIC, policy
from batch_ml.products.sentiment.config import SentimentConfig
from batch_ml.products.sentiment.evaluation import BASELINES

pytestmark = pytest.mark.definitions

WEEK = dt.date(2025, 3, 3)
CHAMPION, CHALLENGER = "c0ffee0000000001", "c0ffee0000000002"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project enabling forecasting and sentiment, with a DAGSTER_HOME of its own."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("BATCH_ML_CONFIG", raising=False)
    monkeypatch.delenv("BATCH_ML_DATA_ROOT", raising=False)
    config = write_config(tmp_path, sections={"sentiment": {"enabled": True}})
    return config, tmp_path / "data" / "tables"


def _gate_row(week: dt.date, **values) -> dict:
    row = dict.fromkeys(gate_schema(policy(SentimentConfig())))
    return {**row, "model_week": week, "metric": METRIC, "higher_is_better": True, **values}


def _write_sentiment_history(tables):
    """Two weeks of sentiment gate decisions and the registry rows of their models."""
    schema = gate_schema(policy(SentimentConfig()))
    nxt = WEEK + dt.timedelta(days=7)
    weeks = {
        WEEK: _gate_row(
            WEEK, challenger_version=CHAMPION, decision="promoted", reason="first model",
            champion_version=CHAMPION, pinned=False,
        ),
        nxt: _gate_row(
            nxt, challenger_version=CHALLENGER, decision="promoted", reason="beats champion",
            champion_version=CHALLENGER, pinned=False, previous_champion=CHAMPION,
        ),
    }  # fmt: skip
    for week, row in weeks.items():
        PartitionedTable(tables, "review_gate").write(
            week.isoformat(), pl.DataFrame([row], schema=schema)
        )
        version = row["challenger_version"]
        registry = {
            "model_week": [week],
            "model_version": [version],
            f"valid_{METRIC}": [0.7],
            **{f"valid_{METRIC}_{b}": [0.4] for b in BASELINES},
        }
        PartitionedTable(tables, "review_model").write(week.isoformat(), pl.DataFrame(registry))


def test_champion_show_and_pin_address_the_sentiment_product(project, capsys):
    config, tables = project
    assert main(["--config", str(config), "champion", "show", "--product", "sentiment"]) == 1
    assert "review_gate (sentiment_training_job)" in capsys.readouterr().out

    _write_sentiment_history(tables)
    assert main(["--config", str(config), "champion", "--product", "sentiment", "show"]) == 0
    shown = capsys.readouterr().out
    assert "sentiment: gate decisions (review_gate)" in shown
    assert CHAMPION in shown and CHALLENGER in shown and "beats champion" in shown

    effective = WEEK + dt.timedelta(days=9)
    pin = ["pin", CHAMPION, "--product", "sentiment", "--reason", "new model under review"]
    argv = ["--config", str(config), "champion", *pin, "--effective-date", effective.isoformat()]
    assert main([*argv, "--by", "test"]) == 0
    out = capsys.readouterr().out
    assert "sentiment: recorded pin in review_champion_overrides" in out
    assert "sentiment_daily_job" in out
    overrides = PartitionedTable(tables, "review_champion_overrides").read([UNPARTITIONED])
    assert overrides.select("action", "model_version", "effective_date", "requested_by").rows() == [
        ("pin", CHAMPION, effective, "test")
    ]
    # The forecasting product's overrides are untouched (it has none).
    assert not PartitionedTable(tables, "champion_overrides").partitions()

    # A model unknown to the sentiment registry is refused, and not recorded.
    refused = ["champion", "pin", "feedfacecafebeef", "--reason", "x", "--product", "sentiment"]
    assert main(["--config", str(config), *refused]) == 1
    assert "refused: model 'feedfacecafebeef' is not in the registry" in capsys.readouterr().out
    assert PartitionedTable(tables, "review_champion_overrides").read().height == 1

    assert main(["--config", str(config), "champion", "show", "--product", "sentiment"]) == 0
    shown = capsys.readouterr().out
    assert "sentiment: overrides (review_champion_overrides)" in shown
    assert "new model under review" in shown


def test_champion_without_product_is_forecasting_as_before(project, capsys):
    config, _ = project
    assert main(["--config", str(config), "champion", "show"]) == 1
    assert "forecasting: no gate decision yet: materialize model_promotion" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("product", "sections", "message"),
    [
        (
            "weather",
            {"sentiment": {"enabled": True}},
            "unknown product 'weather' (products: forecasting, sentiment; "
            "enabled: forecasting, sentiment)",
        ),
        ("sentiment", {}, "product 'sentiment' is not enabled in"),
    ],
)
def test_an_unknown_or_disabled_product_is_one_line_naming_the_products(
    tmp_path, monkeypatch, capsys, product, sections, message
):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    config = write_config(tmp_path, sections=sections)
    argv = ["--config", str(config), "champion", "pin", "v1", "--reason", "x", "--product", product]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err
    if not sections:
        assert lines[0].endswith("(enabled products: forecasting)")
    assert not (tmp_path / "dagster_home").exists()  # refused before touching the instance
