"""Project configuration: loaded from a TOML file, never from code.

`BATCH_ML_CONFIG` names the file (default: `batch_ml.toml` in the current directory);
`BATCH_ML_DATA_ROOT` overrides its `data.root`, so the same code runs against a local
folder now and another root later.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

CONFIG_ENV = "BATCH_ML_CONFIG"
DATA_ROOT_ENV = "BATCH_ML_DATA_ROOT"
DEFAULT_CONFIG_FILE = "batch_ml.toml"

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Columns the platform adds to stored source tables (plans: the day a plan was published).
FEATURE_LISTS = ("known_in_advance", "calendar", "product_attributes", "store_attributes")

logger = logging.getLogger(__name__)


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
    # Product and store attributes that are numbers; every other attribute is text.
    numeric_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngestLimits:
    """Size and shape limits of a landing file, and the magnitude bound of its numbers.

    They keep a malformed or hostile file from costing minutes or memory before it fails, and
    keep values such as 1e308 (which overflow sums and squares to inf) out of the tables. The
    defaults are far above what the demo and the 30k-series benchmark deliver (a 30k-row sales
    file, a 420k-row plans file, 7 columns, JSON 2 levels deep).
    """

    max_columns: int = 1_000
    max_line_bytes: int = 1_048_576  # CSV and JSON lines: JSON, XML may be one long line
    max_json_depth: int = 32
    max_rows: int = 10_000_000
    max_abs_value: float = 1e12


@dataclass(frozen=True)
class IngestConfig:
    """Row problems that send a row to quarantine instead of failing its file (see
    `batch_ml.platform.sources.contract.ROW_RULES`), up to this fraction of a file's rows."""

    quarantine: tuple[str, ...] = ()
    max_quarantined_fraction: float = 0.0
    # A landing file modified less than this many seconds ago may still be being written.
    settle_seconds: float = 10.0
    limits: IngestLimits = field(default_factory=IngestLimits)
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


def _limits(section: dict) -> IngestLimits:
    """`[ingest] max_columns`, `max_line_bytes`, `max_json_depth`, `max_rows` (positive
    integers) and `max_abs_value` (a positive finite number)."""
    values = {}
    for limit in fields(IngestLimits):
        name, kind = limit.name, type(limit.default)
        if name not in section:
            continue
        value = section[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"ingest.{name}: expected a number, got {value!r}")
        if kind is int and value != int(value):
            raise ConfigError(f"ingest.{name}: expected a whole number, got {value!r}")
        if not (0 < value < float("inf")):
            raise ConfigError(f"ingest.{name}: expected a positive finite number, got {value!r}")
        values[name] = kind(value)
    return IngestLimits(**values)


def _features(section: dict) -> FeatureConfig:
    features = FeatureConfig(
        known_in_advance=_names(section, "known_in_advance"),
        calendar=_names(section, "calendar"),
        product_attributes=_names(section, "product_attributes"),
        store_attributes=_names(section, "store_attributes"),
        numeric_attributes=_names(section, "numeric_attributes"),
    )
    attributes = {*features.product_attributes, *features.store_attributes}
    undeclared = [a for a in features.numeric_attributes if a not in attributes]
    if undeclared:
        raise ConfigError(
            f"features.numeric_attributes {undeclared} are not product or store attributes"
        )
    return features


def _data_root(raw: dict, base_dir: Path) -> Path:
    """The data root as a normalised absolute path (relative: to the config file's folder)."""
    key = DATA_ROOT_ENV if os.environ.get(DATA_ROOT_ENV) else "data.root"
    configured = os.environ.get(DATA_ROOT_ENV) or str(raw.get("data", {}).get("root", "data"))
    root = (base_dir / configured).resolve()  # an absolute `configured` replaces base_dir
    if ".." in Path(configured).parts:
        logger.warning("data root %r (%s) contains '..': using %s", configured, key, root)
    if "\\" in str(root):
        # DuckDB's glob splits a path at `\`, so the warehouse views could not read the tables.
        raise ConfigError(f"{key}: the data root {str(root)!r} contains a backslash")
    return root


def _check_feature_columns(features: FeatureConfig) -> None:
    """Declared covariates and attributes are columns of the same frames as the contract's
    own columns (keys, target, dates) and of each other: a name may be used once."""
    # They import this module.
    from batch_ml.products.forecasting.features import ID_COLUMNS
    from batch_ml.products.forecasting.sources import sources

    base = sources(FeatureConfig(), IngestLimits(), ForecastConfig().horizon)
    reserved = {c for s in base.values() for c in (*s.columns, *filter(None, [s.day_column]))}
    reserved |= set(ID_COLUMNS)
    # Sales files may carry the observed values of the known-in-advance covariates.
    observed_covariates = set(base["sales"].optional)
    owner: dict[str, str] = {}
    for key in FEATURE_LISTS:
        for name in getattr(features, key):
            if name in reserved and not (key == "known_in_advance" and name in observed_covariates):
                raise ConfigError(
                    f"features.{key}: column {name!r} is a column of the data contract "
                    f"({', '.join(sorted(reserved))}); name the column differently"
                )
            if name in owner:
                where = "twice" if owner[name] == key else f"also in features.{owner[name]}"
                raise ConfigError(f"features.{key}: column {name!r} is {where}")
            owner[name] = key


def _names_of(*classes) -> set[str]:
    return {f.name for cls in classes for f in fields(cls)}


# Every table and key the project file may hold: anything else is a typo or a setting of
# another version, and silently ignoring it would run with a default the user did not choose.
KNOWN_KEYS = {
    "data": {"root"},
    "calendar": {"start_date", "end_date", "timezone"},
    "forecast": _names_of(ForecastConfig),
    "features": _names_of(FeatureConfig),
    "ingest": (_names_of(IngestConfig) - {"limits"}) | _names_of(IngestLimits),
    "promotion": _names_of(PromotionConfig),
    "backfill": _names_of(BackfillConfig),
    "demo": _names_of(DemoConfig),
}


def _check_known_keys(raw: dict) -> None:
    for section, value in raw.items():
        if section not in KNOWN_KEYS:
            raise ConfigError(f"unknown table [{section}]; known: {sorted(KNOWN_KEYS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table, got {value!r}")
        unknown = sorted(set(value) - KNOWN_KEYS[section])
        if unknown:
            raise ConfigError(
                f"unknown key(s) {[f'{section}.{k}' for k in unknown]}; "
                f"[{section}] knows {sorted(KNOWN_KEYS[section])}"
            )


def parse_config(raw: dict, base_dir: Path) -> ProjectConfig:
    _check_known_keys(raw)
    root = _data_root(raw, base_dir)
    cal = raw.get("calendar", {})
    if "start_date" not in cal:
        raise ConfigError("calendar.start_date is required")
    fc = raw.get("forecast", {})
    forecast = ForecastConfig(**{k: int(v) for k, v in fc.items()})
    if forecast.horizon < 1 or forecast.lookback_days < 28:
        raise ConfigError("forecast.horizon must be >= 1 and forecast.lookback_days >= 28")
    features = _features(raw.get("features", {}))
    _check_feature_columns(features)
    ing = raw.get("ingest", {})
    ingest = IngestConfig(
        quarantine=tuple(str(r) for r in ing.get("quarantine", [])),
        max_quarantined_fraction=float(ing.get("max_quarantined_fraction", 0.0)),
        settle_seconds=float(ing.get("settle_seconds", 10.0)),
        limits=_limits(ing),
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
