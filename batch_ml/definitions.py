"""The Dagster code location: every asset, check, job, schedule, sensor and resource.

Definitions are built from the project configuration (batch_ml.toml, or BATCH_ML_CONFIG), so
a test or another deployment builds the same graph over other data by passing a config.
"""

from __future__ import annotations

import logging

import dagster as dg
import duckdb

from batch_ml.config import ProjectConfig, load_config
from batch_ml.platform.common import BuildContext
from batch_ml.platform.orchestration import build_jobs, build_landing_sensor, build_schedules
from batch_ml.platform.resources import LandingZone, ModelStore, ParquetTableIOManager, TableStore
from batch_ml.platform.sources import assets as sources
from batch_ml.platform.storage.warehouse import refresh_views
from batch_ml.products.forecasting.assets import (
    evaluation,
    features,
    model,
    predictions,
    promotion,
)
from batch_ml.products.forecasting.product import PRODUCT
from batch_ml.products.forecasting.sources import project_sources

logger = logging.getLogger(__name__)
# A starting code location waits this long at most for another process rewriting the views.
STARTUP_LOCK_TIMEOUT_S = 5.0


def build_definitions(cfg: ProjectConfig) -> dg.Definitions:
    b = BuildContext.from_config(cfg, project_sources(cfg))
    assets = [
        *sources.build(b),
        *features.build(b),
        *model.build(b),
        *promotion.build(b),
        *predictions.build(b),
        *evaluation.build(b),
    ]
    jobs = build_jobs(b, PRODUCT)
    paths = cfg.paths
    return dg.Definitions(
        assets=assets,
        jobs=list(jobs.values()),
        schedules=build_schedules(b, PRODUCT, jobs),
        sensors=[
            build_landing_sensor(b, PRODUCT, jobs),
            # Dagster creates its default automation sensor STOPPED; ours runs from the start
            # so that a user who only drops files sees predictions and reports follow.
            dg.AutomationConditionSensorDefinition(
                "batch_ml_automation_sensor",
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            ),
        ],
        # Steps of a run execute in the run's process: a step subprocess costs ~3 s of
        # start-up here, more than most steps compute, and a backfill chunk is one or two steps.
        executor=dg.in_process_executor,
        resources={
            "io_manager": ParquetTableIOManager(
                tables_root=str(paths.tables), warehouse_path=str(paths.warehouse)
            ),
            "landing": LandingZone(root=str(paths.landing)),
            "model_store": ModelStore(root=str(paths.models)),
            "tables": TableStore(
                tables_root=str(paths.tables), warehouse_path=str(paths.warehouse)
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    cfg = load_config()
    try:
        # The platform opening this data root: views built for another place (a copied or
        # moved data folder) are rebuilt for this one. Not fatal: the next write retries.
        refresh_views(cfg.paths.warehouse, cfg.paths.tables, timeout_s=STARTUP_LOCK_TIMEOUT_S)
    except (duckdb.Error, OSError) as exc:  # e.g. a read-only data folder, a held lock
        logger.warning("warehouse views of %s not checked now: %s", cfg.paths.warehouse, exc)
    return build_definitions(cfg)
