"""The Dagster code location: the platform's resources and automation, and every product the
project config enables, each with its assets, checks, jobs, schedules and sensor.

Definitions are built from the project configuration (batch_ml.toml, or BATCH_ML_CONFIG), so
a test or another deployment builds the same graph over other data by passing a config.
"""

from __future__ import annotations

import importlib
import logging

import dagster as dg
import duckdb

from batch_ml.config import ProjectConfig, load_config
from batch_ml.platform.orchestration import product_definitions
from batch_ml.platform.product import Product
from batch_ml.platform.resources import LandingZone, ModelStore, ParquetTableIOManager, TableStore
from batch_ml.platform.storage.warehouse import refresh_views
from batch_ml.products import CATALOG

logger = logging.getLogger(__name__)
# A starting code location waits this long at most for another process rewriting the views.
STARTUP_LOCK_TIMEOUT_S = 5.0


def enabled_products(cfg: ProjectConfig) -> list[Product]:
    """The declarations of the products the project config enables, in catalog order."""
    return [
        importlib.import_module(f"{package}.product").PRODUCT
        for name, package in CATALOG.items()
        if name in cfg.products
    ]


def build_definitions(cfg: ProjectConfig, products: list[Product] | None = None) -> dg.Definitions:
    """The platform's resources, executor and automation sensor, and every enabled product
    (or `products`, e.g. a product defined outside the catalog)."""
    paths = cfg.paths
    platform = dg.Definitions(
        sensors=[
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
    return dg.Definitions.merge(
        platform,
        *(
            product_definitions(cfg, p)
            for p in (enabled_products(cfg) if products is None else products)
        ),
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
