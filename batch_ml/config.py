"""Project configuration: loaded from a TOML file, never from code.

`BATCH_ML_CONFIG` names the file (default: `batch_ml.toml` in the current directory);
`BATCH_ML_DATA_ROOT` overrides its `data.root`, so the same code runs against a local
folder now and another root later.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_ENV = "BATCH_ML_CONFIG"
DATA_ROOT_ENV = "BATCH_ML_DATA_ROOT"
DEFAULT_CONFIG_FILE = "batch_ml.toml"

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class ConfigError(ValueError):
    """The project configuration file is invalid."""


def validate_identifier(name: str, what: str = "column") -> str:
    """Column and table names reach SQL and file paths: only plain snake_case is allowed."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(f"invalid {what} name {name!r}: use lower-case letters, digits and _")
    return name


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"


@dataclass(frozen=True)
class ForecastConfig:
    horizon: int = 14
    lookback_days: int = 56
    training_weeks: int = 12
    min_history_days: int = 84
    seed: int = 42
    num_threads: int = 2


@dataclass(frozen=True)
class FeatureConfig:
    known_in_advance: tuple[str, ...] = ()
    calendar: tuple[str, ...] = ()
    product_attributes: tuple[str, ...] = ()
    store_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngestConfig:
    """Row problems that send a row to quarantine instead of failing its file (see
    `batch_ml.ingest.contract.ROW_RULES`), up to this fraction of a file's rows."""

    quarantine: tuple[str, ...] = ()
    max_quarantined_fraction: float = 0.0
    # A landing file modified less than this many seconds ago may still be being written.
    settle_seconds: float = 10.0
    # The landing sensor hashes every file again at least this often, even when nothing in
    # its size, mtime, inode or ctime says it changed.
    rehash_seconds: float = 3600.0


@dataclass(frozen=True)
class PromotionConfig:
    """The champion/challenger gate: a challenger must beat the champion's backtest WAPE by
    this relative margin (0.02: at least 2 % lower) and beat every baseline."""

    margin: float = 0.02
    # Population stability above this on a feature or the predictions is a drift warning.
    drift_psi_warn: float = 0.25


@dataclass(frozen=True)
class BackfillConfig:
    """How many partitions one backfill run covers. Fewer, larger runs pay Dagster's run
    start-up fewer times; a run's memory grows with its days (features of 30k series: about
    0.15 GB a day) and one bad file fails its whole run."""

    days_per_run: int = 31
    weeks_per_run: int = 8


@dataclass(frozen=True)
class DemoConfig:
    stores: int = 6
    items: int = 40
    start_date: dt.date = dt.date(2025, 1, 1)
    days: int = 365
    seed: int = 7


@dataclass(frozen=True)
class ProjectConfig:
    paths: DataPaths
    start_date: dt.date
    end_date: dt.date | None = None
    timezone: str = "UTC"
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)

    @property
    def first_model_week(self) -> dt.date:
        """Monday of the first week with `min_history_days` of history before it."""
        earliest = self.start_date + dt.timedelta(days=self.forecast.min_history_days)
        return earliest + dt.timedelta(days=(7 - earliest.weekday()) % 7)


def _date(value: object, key: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{key}: expected a YYYY-MM-DD date, got {value!r}") from exc


def _names(section: dict, key: str) -> tuple[str, ...]:
    return tuple(validate_identifier(n) for n in section.get(key, []))


def parse_config(raw: dict, base_dir: Path) -> ProjectConfig:
    data = raw.get("data", {})
    root = Path(os.environ.get(DATA_ROOT_ENV) or data.get("root", "data"))
    if not root.is_absolute():
        root = (base_dir / root).resolve()
    cal = raw.get("calendar", {})
    if "start_date" not in cal:
        raise ConfigError("calendar.start_date is required")
    fc = raw.get("forecast", {})
    forecast = ForecastConfig(**{k: int(v) for k, v in fc.items()})
    if forecast.horizon < 1 or forecast.lookback_days < 28:
        raise ConfigError("forecast.horizon must be >= 1 and forecast.lookback_days >= 28")
    feats = raw.get("features", {})
    features = FeatureConfig(
        known_in_advance=_names(feats, "known_in_advance"),
        calendar=_names(feats, "calendar"),
        product_attributes=_names(feats, "product_attributes"),
        store_attributes=_names(feats, "store_attributes"),
    )
    ing = raw.get("ingest", {})
    ingest = IngestConfig(
        quarantine=tuple(str(r) for r in ing.get("quarantine", [])),
        max_quarantined_fraction=float(ing.get("max_quarantined_fraction", 0.0)),
        settle_seconds=float(ing.get("settle_seconds", 10.0)),
        rehash_seconds=float(ing.get("rehash_seconds", IngestConfig.rehash_seconds)),
    )
    if ingest.rehash_seconds <= 0:
        raise ConfigError(f"ingest.rehash_seconds must be > 0, got {ingest.rehash_seconds}")
    promo = raw.get("promotion", {})
    promotion = PromotionConfig(**{k: float(v) for k, v in promo.items()})
    if not 0 <= promotion.margin < 1:
        raise ConfigError(f"promotion.margin must be in [0, 1), got {promotion.margin}")
    backfill = BackfillConfig(**{k: int(v) for k, v in raw.get("backfill", {}).items()})
    if backfill.days_per_run < 1 or backfill.weeks_per_run < 1:
        raise ConfigError("backfill.days_per_run and backfill.weeks_per_run must be >= 1")
    demo_raw = dict(raw.get("demo", {}))
    if "start_date" in demo_raw:
        demo_raw["start_date"] = _date(demo_raw["start_date"], "demo.start_date")
    return ProjectConfig(
        paths=DataPaths(root),
        start_date=_date(cal["start_date"], "calendar.start_date"),
        end_date=_date(cal["end_date"], "calendar.end_date") if cal.get("end_date") else None,
        timezone=cal.get("timezone", "UTC"),
        forecast=forecast,
        features=features,
        ingest=ingest,
        demo=DemoConfig(**demo_raw),
        promotion=promotion,
        backfill=backfill,
    )


def load_config(path: str | os.PathLike | None = None) -> ProjectConfig:
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE).resolve()
    if not path.exists():
        raise ConfigError(f"project config {path} not found (set {CONFIG_ENV})")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    return parse_config(raw, path.parent)
