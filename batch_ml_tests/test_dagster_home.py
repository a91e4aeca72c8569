"""A fresh DAGSTER_HOME is initialized once, under a lock, even when several commands start on
it at the same moment (real processes): its SQLite storage ends with one schema version."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from alembic.script import ScriptDirectory

from batch_ml.cli import HOME_MARKER, ensure_dagster_home
from batch_ml.harness.project import REPO, write_config

PROCESSES = 4
# Each process imports the CLI (and with it Dagster), says it is ready, and waits for all
# the others before initializing: they reach the fresh home together.
WORKER = """
import sys, time
from pathlib import Path
from batch_ml.cli import main

ready, index, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(ready / index).touch()
deadline = time.monotonic() + 120
while len(list(ready.iterdir())) < count:
    if time.monotonic() > deadline:
        sys.exit("barrier timed out")
    time.sleep(0.001)
sys.exit(main(["--config", sys.argv[4], "init-home", "--dagster-yaml", sys.argv[5]]))
"""


def _schema_versions(home: Path) -> dict[str, list[str]]:
    versions = {}
    for db in sorted(home.rglob("*.db")):
        with sqlite3.connect(db) as con:
            rows = con.execute("select version_num from alembic_version").fetchall()
        versions[str(db.relative_to(home))] = sorted(r[0] for r in rows)
    return versions


@dg.asset
def one_row() -> int:
    return 1


@pytest.mark.integration
def test_commands_starting_at_once_on_a_fresh_home_initialize_it_once(tmp_path):
    config, home, ready = write_config(tmp_path), tmp_path / "home", tmp_path / "ready"
    ready.mkdir()
    template = REPO / "dagster.yaml"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, ready, str(i), str(PROCESSES), config, template],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        assert f"Dagster instance: {home}" in out

    assert (home / "dagster.yaml").read_text() == template.read_text()
    assert (home / HOME_MARKER).exists()
    dagster_migrations = Path(dg.__file__).parent / "_core" / "storage" / "alembic"
    (head,) = ScriptDirectory(str(dagster_migrations)).get_heads()
    versions = _schema_versions(home)
    assert set(versions) == {"history/runs.db", "history/runs/index.db", "schedules/schedules.db"}
    assert all(v == [head] for v in versions.values()), versions

    # A normal command on the instance afterwards: a run, recorded.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([one_row], instance=instance).success
        assert [r.is_success for r in instance.get_runs()] == [True]
    assert all(v == [head] for v in _schema_versions(home).values())


def test_a_home_in_use_keeps_its_settings(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert ensure_dagster_home(REPO) == home
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    assert (home / HOME_MARKER).exists() and (home / "history" / "runs.db").exists()
