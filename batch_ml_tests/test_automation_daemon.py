"""A user who only drops files and keeps the daemon running sees predictions and reports appear.

History up to 2025-05-09 is materialized in-process (`run_pipeline`, as `batch-ml demo` does)
on a temporary instance; the files of the last day, 2025-05-10 (a Saturday: its model week
already exists), are held back. Then a real `dagster-webserver` and `dagster-daemon run` start
on that instance with nothing stopped or started by hand. The landing sensor must start no run
for the history (the ingestion log knows those files). Once the held-back files are dropped
into the landing folder, the landing sensor must start one `forecasting_daily_job` run for
2025-05-10: the day's whole chain (sales, plans, features, predictions, their drift and
forecast_accuracy) in that one run; declarative automation (`AutomationCondition.eager()` on
accuracy_report) must then rewrite the accuracy report, and nothing else runs. No champion
override was ever recorded: its absence must not hold the predictions back.

Dagster would add `default_automation_condition_sensor` for the eager assets, created STOPPED:
with nothing switched on, dropped files would stop at the daily run. The code location
therefore declares its own automation sensor, running by default; this test proves the whole
chain with nothing switched on by hand: eager() fires for the report once the day's accuracy
is in, and does not redo what the daily run materialized.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
import warnings

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.tags import AUTOMATION_CONDITION_TAG, PARTITION_NAME_TAG, SENSOR_NAME_TAG

from batch_ml.cli import run_pipeline
from batch_ml.config import load_config
from batch_ml.harness.graphql import MATERIALIZATIONS, RUNS, SENSOR_TICKS
from batch_ml.harness.project import write_config
from batch_ml.harness.services import DagsterServices, Webserver, daemon_and_webserver, dagster_home
from batch_ml.products.forecasting.demo import spec_from_config, write_landing
from batch_ml.products.forecasting.product import PRODUCT

pytestmark = pytest.mark.integration

START = dt.date(2025, 1, 1)
DAYS = 130  # 2025-01-01 .. 2025-05-10
DAY = "2025-05-10"  # the last day: held back, then dropped while the daemon runs
LANDING_SENSOR = PRODUCT.landing_sensor
# The sensor Dagster adds for assets with an automation condition that no declared automation
# sensor targets; a declared AutomationConditionSensorDefinition may replace it (any name).
DEFAULT_AUTOMATION_SENSOR = "default_automation_condition_sensor"
# The automation sensor the code location declares (it replaces Dagster's default one).
AUTOMATION_SENSOR = "batch_ml_automation_sensor"
AUTOMATION_SENSOR_TYPES = {"AUTOMATION", "AUTO_MATERIALIZE"}
INGESTED = ("sales", "plans", "demand_features")  # the daily run, partition DAY
AUTOMATED = ("predictions", "prediction_drift", "forecast_accuracy")  # the same run
REPORT = "accuracy_report"  # eager(), unpartitioned
TIMEOUT = 360  # drop -> report rewritten (about 110 s alone; CI runs two test files at once)
FAILED = {"FAILURE", "CANCELED", "CANCELING"}
DONE = {"SUCCESS", *FAILED}


def sensors(web: Webserver) -> dict[str, dict]:
    repos = web.graphql(SENSOR_TICKS)["repositoriesOrError"]["nodes"]
    return {s["name"]: s for r in repos for s in r["sensors"]}


def runs(web: Webserver) -> list[dict]:
    found = web.graphql(RUNS)["runsOrError"]["results"]
    for run in found:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return found


def materializations_since(web: Webserver, since: float) -> dict[str, list[dict]]:
    """asset -> its materializations after `since` (epoch seconds), newest first."""
    keys = [{"path": [a]} for a in (*INGESTED, *AUTOMATED, REPORT)]
    nodes = web.graphql(MATERIALIZATIONS, {"keys": keys})["assetNodes"]
    return {
        n["assetKey"]["path"][-1]: [
            m for m in n["assetMaterializations"] if int(m["timestamp"]) / 1000 > since
        ]
        for n in nodes
    }


def automation_sensor(web: Webserver) -> dict:
    """The one automation condition sensor of the code location (the asset daemon runs it)."""
    (found,) = [s for s in sensors(web).values() if s["sensorType"] in AUTOMATION_SENSOR_TYPES]
    return found


def sensor_runs(all_runs: list[dict], sensor: str) -> list[dict]:
    return [r for r in all_runs if r["tags"].get(SENSOR_NAME_TAG) == sensor]


def wait_for(what: str, check, services: DagsterServices, deadline: float, poll: float = 1.0):
    """Poll `check()` until it returns something truthy; fail early on a failed run."""
    while time.monotonic() < deadline:
        if services.daemon.process.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited:\n{services.daemon.log.read_text()[-3000:]}")
        bad = [r for r in runs(services.webserver) if r["status"] in FAILED]
        assert not bad, f"a run failed while waiting for {what}: {bad}"
        result = check()
        if result:
            return result
        time.sleep(poll)
    states = {
        n: (s["sensorState"]["status"], s["sensorState"]["ticks"][:3])
        for n, s in sensors(services.webserver).items()
    }
    raise TimeoutError(
        f"{what}: not within the deadline.\nsensors: {states}\nruns: {runs(services.webserver)}"
        f"\ndaemon log:\n{services.daemon.log.read_text()[-4000:]}"
    )


def run_scenario(tmp_path, monkeypatch, capsys):
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    config = write_config(tmp_path, start=START, days=DAYS)
    with config.open("a") as f:
        f.write("\n[ingest]\nsettle_seconds = 0\n")
    cfg = load_config(config)
    assert cfg.ingest.settle_seconds == 0
    write_landing(spec_from_config(cfg), cfg.paths.landing)
    held = tmp_path / "held_back"
    held_files = {
        cfg.paths.landing / "sales" / f"sales_{DAY}.csv": held / f"sales_{DAY}.csv",
        cfg.paths.landing / "plans" / f"plans_{DAY}.parquet": held / f"plans_{DAY}.parquet",
    }
    held.mkdir()
    for landing_path, held_path in held_files.items():
        shutil.move(landing_path, held_path)

    # 1. History up to the day before, materialized in-process on the instance.
    home = dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        with dg.DagsterInstance.get() as instance:
            history = run_pipeline(cfg, instance)["forecasting"]
            pipeline_run_ids = {r.run_id for r in instance.get_runs()}
    assert history["last_day"] == dt.date.fromisoformat(DAY) - dt.timedelta(days=1)
    assert len(pipeline_run_ids) == 5  # one run per stage
    report_files = sorted(cfg.paths.reports.glob("*.html"))
    assert report_files, list(cfg.paths.reports.iterdir())
    report_mtimes = {p: p.stat().st_mtime for p in report_files}
    timings["history"] = time.monotonic() - t0

    launched_at = time.time()
    with daemon_and_webserver(home, config, tmp_path / "logs") as services:
        web = services.webserver
        timings.update(services.startup)

        # 2. Both sensors run without anyone touching the UI. Declarative automation only
        # happens through the automation sensor: if it is stopped, nothing follows the
        # ingest run (the asset daemon evaluates no condition).
        states = {n: s["sensorState"]["status"] for n, s in sensors(web).items()}
        assert states[LANDING_SENSOR] == "RUNNING", states
        automation = automation_sensor(web)["name"]
        assert automation == AUTOMATION_SENSOR, states
        assert states[automation] == "RUNNING", (
            f"{automation} is {states[automation]}: Dagster creates "
            f"{DEFAULT_AUTOMATION_SENSOR} with default_status STOPPED, so "
            "AutomationCondition.eager() is never evaluated and dropped files stop at the "
            f"ingest run (sensor states: {states})"
        )

        # Each ticks once and starts nothing: the ingestion log knows the history's files,
        # and every latest-window partition is up to date.
        def first_ticks():
            found = {}
            for name in (LANDING_SENSOR, automation):
                ticks = sensors(web)[name]["sensorState"]["ticks"]
                done = [t for t in ticks if t["status"] != "STARTED"]
                if not done:
                    return None
                found[name] = done[-1]
            return found

        ticks = wait_for("a tick of both sensors", first_ticks, services, time.monotonic() + 90)
        for name, tick in ticks.items():
            assert tick["status"] == "SKIPPED", (name, tick)
            assert tick["runIds"] == [], (name, tick)
            timings[f"first_tick_{name}"] = tick["timestamp"] - launched_at
        assert "no new or changed landing files" in ticks[LANDING_SENSOR]["skipReason"], ticks
        assert {r["runId"] for r in runs(web)} == pipeline_run_ids

        # 3. The user drops the held-back files.
        for landing_path, held_path in held_files.items():
            shutil.copy2(held_path, landing_path)  # keeps the (past) mtime: settled
        dropped, dropped_at = time.monotonic(), time.time()
        deadline = dropped + TIMEOUT

        def ingest_done():
            found = sensor_runs(runs(web), LANDING_SENSOR)
            return found if found and all(r["status"] in DONE for r in found) else None

        (ingest,) = wait_for("the landing sensor's daily run", ingest_done, services, deadline)
        timings["drop_to_ingest_done"] = ingest["endTime"] - dropped_at
        assert ingest["status"] == "SUCCESS", ingest
        assert ingest["jobName"] == PRODUCT.daily_job
        assert ingest["tags"][PARTITION_NAME_TAG] == DAY
        assert ingest["tags"]["batch_ml/trigger"] == "new"
        assert ingest["tags"]["batch_ml/files"] == (
            f"plans/plans_{DAY}.parquet, sales/sales_{DAY}.csv"
        )

        # 4. The day's chain is in, and declarative automation follows with the report.
        def automated(asset: str):
            def check():
                found = materializations_since(web, dropped_at)[asset]
                return found[-1] if found else None

            return check

        events = {}
        for asset in (*AUTOMATED, REPORT):
            events[asset] = wait_for(f"{asset} materialized", automated(asset), services, deadline)
            timings[f"drop_to_{asset}"] = int(events[asset]["timestamp"]) / 1000 - dropped_at

        # Once every run has ended (a materialization precedes its run's end: blocking checks
        # run after it), the next automation tick requests nothing: all is up to date.
        def all_ended():
            found = runs(web)
            return (
                max(r["endTime"] for r in found)
                if all(r["status"] in DONE for r in found)
                else None
            )

        last_end = wait_for("every run ended", all_ended, services, deadline)

        def quiet_tick():
            ticks = sensors(web)[automation]["sensorState"]["ticks"]
            return next(
                (t for t in ticks if t["timestamp"] > last_end and t["status"] != "STARTED"),
                None,
            )

        quiet = wait_for(
            "an automation tick after the last run", quiet_tick, services, deadline + 60
        )
        assert quiet["status"] == "SKIPPED" and quiet["runIds"] == [], quiet
        final_runs = runs(web)

    for service in services.services:
        assert service.clean_exit, (service.name, service.returncode, service.log.read_text())

    # 5. Only the expected runs, all successful.
    assert all(r["status"] == "SUCCESS" for r in final_runs), final_runs
    automation_runs = [r for r in final_runs if r["tags"].get(AUTOMATION_CONDITION_TAG)]
    assert {r["runId"] for r in final_runs} == pipeline_run_ids | {ingest["runId"]} | {
        r["runId"] for r in automation_runs
    }
    assert all(
        r["tags"].get(SENSOR_NAME_TAG) == automation and r["startTime"] > dropped_at
        for r in automation_runs
    ), automation_runs

    def materialized_by(instance, run_ids: set[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key in instance.get_asset_keys():
            records = instance.fetch_materializations(key, limit=10_000).records
            parts = sorted(str(r.partition_key) for r in records if r.run_id in run_ids)
            if parts:
                found[key.to_user_string()] = parts
        return found

    with dg.DagsterInstance.from_config(str(home)) as instance:
        by_sensor = materialized_by(instance, {ingest["runId"]})
        by_automation = materialized_by(instance, {r["runId"] for r in automation_runs})
    assert by_sensor == {a: [DAY] for a in (*INGESTED, *AUTOMATED)}, by_sensor
    assert by_automation == {REPORT: ["None"]}, by_automation

    with duckdb.connect(str(cfg.paths.warehouse), read_only=True) as con:
        (predicted,) = con.execute(
            "select count(*) from predictions where forecast_date = ?", [dt.date.fromisoformat(DAY)]
        ).fetchone()
    assert predicted > 0
    rewritten = [p for p in report_files if p.stat().st_mtime > dropped_at]
    assert rewritten, {p: (m, p.stat().st_mtime) for p, m in report_mtimes.items()}

    timings["total"] = time.monotonic() - t0
    with capsys.disabled():
        print(f"\nsensor states at start: {states}")
        for r in automation_runs:
            assets = [a["path"][-1] for a in r["assetSelection"]]
            print(
                f"automation run {r['runId'][:8]} {r['tags'].get(PARTITION_NAME_TAG)} {assets}: "
                f"start {r['startTime'] - dropped_at:.1f} s, end {r['endTime'] - dropped_at:.1f} s"
                " after the drop"
            )
        print("automation timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def test_dropped_files_flow_through_to_predictions_and_report(tmp_path, monkeypatch, capsys):
    run_scenario(tmp_path, monkeypatch, capsys)
