"""`batch-ml demo` as a user runs it: a real process, a persistent DAGSTER_HOME, DuckDB on disk."""

import json
import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from batch_ml.config import load_config

from .conftest import write_config


def _demo(config, home):
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "batch_ml.cli", "--config", str(config), "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout


@pytest.mark.integration
def test_demo_command_is_complete_idempotent_and_leaves_history(tmp_path, monkeypatch):
    config = write_config(tmp_path, days=120)
    home = tmp_path / "dagster_home"
    first, text = _demo(config, home)
    assert "Forecast accuracy" in text
    for key in (
        "partitions",
        "model_version",
        "wape_model",
        "wape_seasonal_naive",
        "wape_moving_average",
        "report",
    ):
        assert first[key] is not None, key
    assert first["partitions"]["sales"] == 120
    cfg = load_config(config)
    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        count = con.execute("select count(*) from predictions").fetchone()[0]
        dupes = con.execute(
            "select count(*) from (select forecast_date, target_date, store_id, item_id "
            "from predictions group by all having count(*) > 1)"
        ).fetchone()[0]
    assert count > 0 and dupes == 0

    second, _ = _demo(config, home)
    assert second["partitions"] == first["partitions"]
    assert second["model_version"] == first["model_version"]
    # Parallel float sums may differ in the last bit; the predictions themselves are identical.
    for key in ("wape_model", "wape_seasonal_naive"):
        assert second[key] == pytest.approx(first[key], rel=1e-9), key
    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from predictions").fetchone()[0] == count

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 10 and all(r.is_success for r in runs)
