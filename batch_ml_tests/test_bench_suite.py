"""The benchmark suite's machinery on a tiny scale (`make bench` runs it at 1k and 30k series).

Nothing here asserts a timing: the figures are the benchmark's, this checks that it measures
what it says (both kinds of daily run do the same work, every figure is there).
"""

import json
import subprocess
import sys

import pytest

from batch_ml.harness.project import REPO

pytestmark = pytest.mark.integration


def test_scale_section_measures_dagster_and_floor_doing_the_same_work(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.suite", "--sections", "scale", "--scales", "smoke"]
        + ["--repeats", "1", "--out", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    scale = json.loads(out.read_text())["sections"]["scale"]["smoke"]
    assert scale["series"] == 20 and scale["setup"]["history"]["sales_days"] == 3 * 365
    for years, days in (("3y", 3 * 365), ("1y", 365)):
        daily = scale[f"daily_{years}"]
        assert daily["sales_days_stored"] == days
        # Same rows and content in every partition of D the run writes, Dagster or floor.
        assert daily["same_outputs"], daily["outputs"]
        assert set(daily["outputs"]) == {
            "sales",
            "plans",
            "demand_features",
            "predictions",
            "prediction_drift",
            "forecast_accuracy",
        }
        predictions = int(daily["outputs"]["predictions"].split()[0])
        assert predictions == 20 * 14  # every series, every lead
        for kind in ("dagster", "floor"):
            assert len(daily[kind]["seconds"]["values"]) == 1
            assert daily[kind]["peak_rss_mb"]["median"] > 50
        # The Dagster side is the day's ONE run of the daily job: every asset of the chain
        # materialized in it, with its own cost metadata.
        assert set(daily["dagster"]["assets"]) == set(daily["outputs"])
        # Each asset resets the process's high-water mark: the run's peak is still its highest.
        assert daily["dagster"]["peak_rss_mb"]["median"] >= max(
            a["peak_rss_mb"]["median"] for a in daily["dagster"]["assets"].values()
        )
        floor = daily["floor"]["stages"]
        assert set(floor) == {"sources_and_features", "predictions_and_drift", "accuracy"}
        assert daily["floor"]["seconds"]["median"] == pytest.approx(
            sum(part["seconds"]["median"] for part in floor.values()), abs=1e-2
        )
        assert daily["floor"]["steps"]["inference"]["rows"] == predictions
        # Dagster's event log cost is attributed: at least the six assets' planned and
        # materialization events, and part of the Dagster path's time, not more.
        stored = daily["dagster"]["event_store"]
        assert stored["events"] >= 2 * len(daily["outputs"])
        assert 0 < stored["seconds"]["median"] < daily["dagster"]["seconds"]["median"]
        assert daily["ratio_dagster_over_floor"] > 0
        assert daily["dagster_overhead_s"] == pytest.approx(
            daily["dagster"]["seconds"]["median"] - daily["floor"]["seconds"]["median"], abs=1e-2
        )
    assert set(scale["throughput"]) >= {"features_1_day", "training", "inference"}
    assert scale["memory_3y_over_1y"] > 0
    markdown = out.with_suffix(".md").read_text()
    assert "daily incremental run, 20 series" in markdown and "**NO**" not in markdown
    assert "through Dagster (one run of the daily job)" in markdown
    assert "Dagster's share: 3y: the Dagster path took" in markdown
