"""A product's landing sensor ticked as the daemon ticks it, for tests and benchmarks."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import dagster as dg

from batch_ml.config import ProjectConfig
from batch_ml.definitions import build_definitions
from batch_ml.platform.product import Product
from batch_ml.platform.resources import LandingZone, TableStore


class LandingSensor:
    """Ticks a product's real landing sensor definition, carrying its cursor like the daemon
    does, on a real instance (where it finds the runs it requested)."""

    def __init__(
        self, product: Product, cfg: ProjectConfig, instance: dg.DagsterInstance | None = None
    ):
        self.cfg = cfg
        self.instance = instance or dg.DagsterInstance.ephemeral()
        self.sensor = build_definitions(cfg, products=[product]).resolve_sensor_def(
            product.landing_sensor
        )
        self.resources = {
            "landing": LandingZone(root=str(cfg.paths.landing)),
            "tables": TableStore(
                tables_root=str(cfg.paths.tables), warehouse_path=str(cfg.paths.warehouse)
            ),
        }
        self.cursor = None
        self.logs: list[str] = []  # the last tick's log: "LEVEL message"

    def tick(self) -> dg.SensorResult:
        logs = self.logs = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                logs.append(f"{record.levelname} {record.getMessage()}")

        with dg.build_sensor_context(
            cursor=self.cursor, resources=self.resources, instance=self.instance
        ) as ctx:
            ctx.log.addHandler(Collect())
            result = self.sensor(ctx)
        self.cursor = result.cursor
        return result


def age(*paths: Path, seconds: float = 120) -> None:
    """Set the files' modification time `seconds` in the past: settled for the sensor."""
    past = time.time() - seconds
    for p in paths:
        os.utime(p, (past, past))


def landing_files(cfg: ProjectConfig) -> list[Path]:
    return [p for p in cfg.paths.landing.rglob("*") if p.is_file()]
