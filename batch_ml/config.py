"""Project configuration: loaded from a TOML file, never from code.

`BATCH_ML_CONFIG` names the file (default: `batch_ml.toml` in the current directory);
`BATCH_ML_DATA_ROOT` overrides its `data.root`, so the same code runs against a local
folder now and another root later. The platform's tables ([data], [calendar], [ingest],
[backfill]) are parsed here; each product's table (`[forecasting]`, ...) by the product's own
`config.parse_section`, found through `batch_ml.products.CATALOG`. A product is enabled when
its table is present and does not say `enabled = false`.
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_ENV = "BATCH_ML_CONFIG"
DATA_ROOT_ENV = "BATCH_ML_DATA_ROOT"
DEFAULT_CONFIG_FILE = "batch_ml.toml"

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

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
class IngestLimits:
    """Size and shape limits of a landing file, and the magnitude bound of its numbers.

    They keep a malformed or hostile file from costing minutes or memory before it fails, and
    keep values such as 1e308 (which overflow sums and squares to inf) out of the tables. The
    defaults are far above what the demo and the 30k-series benchmark deliver (a 30k-row sales
    file, a 420k-row plans file, 7 columns, JSON 2 levels deep).
    """

    max_columns: int = 1_000
    max_line_bytes: int = 1_048_576  # CSV only: JSON may legitimately be one long line
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
class BackfillConfig:
    """How many partitions one backfill run covers. Fewer, larger runs pay Dagster's run
    start-up fewer times; a run's memory grows with its days (features of 30k series: about
    0.15 GB a day) and one bad file fails its whole run."""

    days_per_run: int = 31
    weeks_per_run: int = 8


@dataclass(frozen=True)
class ProjectConfig:
    paths: DataPaths
    start_date: dt.date
    end_date: dt.date | None = None
    timezone: str = "UTC"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)
    # Enabled product name -> its parsed config (the product's own type).
    products: dict[str, Any] = field(default_factory=dict)

    def product(self, name: str) -> Any:
        try:
            return self.products[name]
        except KeyError:
            raise ConfigError(
                f"product {name!r} is not enabled in this project (enabled: "
                f"{sorted(self.products)}); add its [{name}] table"
            ) from None


def next_monday(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


def first_model_week(start_date: dt.date, min_history_days: int) -> dt.date:
    """The Monday of the first week with `min_history_days` of data after `start_date`: a
    product's first model week (computed with the config, before Dagster is imported)."""
    return next_monday(start_date + dt.timedelta(days=min_history_days))


def parse_date(value: object, key: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"{key}: expected a YYYY-MM-DD date, got {value!r}") from exc


def _limits(section: dict) -> IngestLimits:
    """`[ingest] max_columns`, `max_line_bytes`, `max_json_depth`, `max_rows` (positive
    integers) and `max_abs_value` (a positive finite number)."""
    values = number_fields(IngestLimits, section, "ingest")
    for name, value in values.items():
        if not (0 < value < float("inf")):
            raise ConfigError(f"ingest.{name}: expected a positive finite number, got {value!r}")
    return IngestLimits(**values)


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


def _names_of(*classes) -> set[str]:
    return {f.name for cls in classes for f in fields(cls)}


# Every table and key the project file may hold: anything else is a typo or a setting of
# another version, and silently ignoring it would run with a default the user did not choose.
KNOWN_KEYS = {
    "data": {"root"},
    "calendar": {"start_date", "end_date", "timezone"},
    "ingest": (_names_of(IngestConfig) - {"limits"}) | _names_of(IngestLimits),
    "backfill": _names_of(BackfillConfig),
}
# Tables of earlier versions, and where their settings live now.
MOVED_TABLES = {
    "forecast": "[forecasting]",
    "features": "[forecasting.features]",
    "promotion": "[forecasting.promotion]",
    "demo": "[forecasting.demo]",
}


def check_known_keys(raw: dict, known: dict[str, set[str]]) -> None:
    """Every table of `raw` is one of `known` and holds only its keys."""
    for section, value in raw.items():
        if section not in known:
            moved = f"; it moved to {MOVED_TABLES[section]}" if section in MOVED_TABLES else ""
            raise ConfigError(f"unknown table [{section}]{moved}; known: {sorted(known)}")
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table, got {value!r}")
        unknown = sorted(set(value) - known[section])
        if unknown:
            raise ConfigError(
                f"unknown key(s) {[f'{section}.{k}' for k in unknown]}; "
                f"[{section}] knows {sorted(known[section])}"
            )


def number_fields(cls, raw: dict, section: str) -> dict:
    """`raw`'s values for the fields of dataclass `cls`, as the fields' types (int or float)."""
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        value, kind = raw[f.name], type(f.default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{section}.{f.name}: expected a number, got {value!r}")
        if kind is int and value != int(value):
            raise ConfigError(f"{section}.{f.name}: expected a whole number, got {value!r}")
        values[f.name] = kind(value)
    return values


def _products(raw: dict, base_dir: Path) -> dict[str, Any]:
    """The enabled products' configs, each parsed by its package's `config.parse_section`
    (relative paths in a product's table are relative to `base_dir`, the config's folder)."""
    from batch_ml.products import CATALOG  # a table of package names, importing nothing

    parsed = {}
    for name, package in CATALOG.items():
        section = dict(raw.get(name, {}))
        if name not in raw or not section.pop("enabled", True):
            continue
        parsed[name] = importlib.import_module(f"{package}.config").parse_section(section, base_dir)
    return parsed


def parse_config(raw: dict, base_dir: Path) -> ProjectConfig:
    from batch_ml.products import CATALOG

    platform = {k: v for k, v in raw.items() if k not in CATALOG}
    check_known_keys(platform, KNOWN_KEYS)
    for name in CATALOG:
        if name in raw and not isinstance(raw[name], dict):
            raise ConfigError(f"[{name}] must be a table, got {raw[name]!r}")
    root = _data_root(raw, base_dir)
    cal = raw.get("calendar", {})
    if "start_date" not in cal:
        raise ConfigError("calendar.start_date is required")
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
    backfill = BackfillConfig(**number_fields(BackfillConfig, raw.get("backfill", {}), "backfill"))
    if backfill.days_per_run < 1 or backfill.weeks_per_run < 1:
        raise ConfigError("backfill.days_per_run and backfill.weeks_per_run must be >= 1")
    return ProjectConfig(
        paths=DataPaths(root),
        start_date=parse_date(cal["start_date"], "calendar.start_date"),
        end_date=parse_date(cal["end_date"], "calendar.end_date") if cal.get("end_date") else None,
        timezone=cal.get("timezone", "UTC"),
        ingest=ingest,
        backfill=backfill,
        products=_products(raw, base_dir),
    )


def load_config(path: str | os.PathLike | None = None) -> ProjectConfig:
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE).resolve()
    if not path.exists():
        raise ConfigError(f"project config {path} not found (set {CONFIG_ENV})")
    with path.open("rb") as f:
        raw = tomllib.load(f)
    return parse_config(raw, path.parent)
