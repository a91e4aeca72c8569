"""A seeded simulator of a retailer that writes landing files following the data contract.

Demand per store x item and day is a negative-binomial draw around a mean built from:
item level x store size x weekly pattern (per category) x yearly season x trend x
promotion uplift x price elasticity x holiday effect x launch ramp-up; stock-outs censor
demand to zero and stores are closed on some holidays. A quarter of the items are slow
movers with intermittent zero demand; some items launch during the period. Plans
(prices, promotions, opening) are published each day for the next `horizon` days.
The same arguments give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from batch_ml.products.forecasting.config import settings

CATEGORIES = ("grocery", "household", "snacks", "beverages")
# Day-of-week multipliers (Mon..Sun) per category.
WEEKLY = {
    "grocery": (0.9, 0.85, 0.9, 0.95, 1.15, 1.35, 0.9),
    "household": (1.1, 1.05, 1.0, 1.0, 1.0, 1.2, 0.65),
    "snacks": (0.8, 0.8, 0.85, 0.95, 1.25, 1.45, 1.1),
    "beverages": (0.85, 0.85, 0.9, 0.95, 1.2, 1.4, 1.05),
}
YEARLY_AMPLITUDE = {"grocery": 0.1, "household": 0.05, "snacks": 0.15, "beverages": 0.35}
PROMO_UPLIFT = {"grocery": 0.4, "household": 0.6, "snacks": 0.9, "beverages": 0.7}
REGIONS = ("north", "south", "east", "west")
STORE_SIZES = {"small": 0.6, "medium": 1.0, "large": 1.6}
# (month, day): (demand multiplier, stores closed)
HOLIDAYS = {
    (1, 1): (0.0, True),
    (5, 1): (0.7, False),
    (7, 4): (1.3, False),
    (10, 31): (1.4, False),
    (11, 27): (0.6, False),
    (12, 24): (1.6, False),
    (12, 25): (0.0, True),
    (12, 31): (1.3, False),
}


@dataclass(frozen=True)
class SimulationSpec:
    stores: int = 6
    items: int = 40
    start_date: dt.date = dt.date(2025, 1, 1)
    days: int = 365
    seed: int = 7
    horizon: int = 14


def spec_from_config(cfg) -> SimulationSpec:
    """The simulation the project config's [demo] section describes."""
    d = settings(cfg).demo
    horizon = settings(cfg).forecast.horizon
    return SimulationSpec(
        stores=d.stores,
        items=d.items,
        start_date=d.start_date,
        days=d.days,
        seed=d.seed,
        horizon=horizon,
    )


def _atomic_write(path: Path, write) -> None:
    """The retailer's side of the contract: files appear under their final name complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def simulate(spec: SimulationSpec) -> dict[str, pl.DataFrame]:
    """Simulate the retailer; return the frames the landing files are written from."""
    rng = np.random.default_rng(spec.seed)
    n_days = spec.days + spec.horizon  # plans reach `horizon` days past the last sales day
    dates = [spec.start_date + dt.timedelta(days=d) for d in range(n_days)]
    n_s, n_i = spec.stores, spec.items

    stores = pl.DataFrame(
        {
            "store_id": [f"S{s + 1:02d}" for s in range(n_s)],
            "region": [REGIONS[s % len(REGIONS)] for s in range(n_s)],
            "store_size": [list(STORE_SIZES)[int(x)] for x in rng.integers(0, 3, n_s)],
        }
    )
    store_factor = np.array([STORE_SIZES[z] for z in stores["store_size"]])

    category = [CATEGORIES[int(c)] for c in rng.integers(0, len(CATEGORIES), n_i)]
    base_price = np.round(np.exp(rng.normal(1.6, 0.6, n_i)), 2)
    slow = rng.random(n_i) < 0.25
    level = np.where(slow, rng.uniform(0.15, 0.8, n_i), np.exp(rng.normal(2.0, 0.6, n_i)))
    elasticity = rng.uniform(0.8, 2.2, n_i)
    trend = rng.normal(0.0, 0.25, n_i)  # relative growth per year
    launch_offset = np.where(
        rng.random(n_i) < 0.15,
        rng.integers(30, max(31, spec.days - 60), n_i),
        -rng.integers(30, 1000, n_i),
    )
    launch = [spec.start_date + dt.timedelta(days=int(o)) for o in launch_offset]
    products = pl.DataFrame(
        {
            "item_id": [f"I{i + 1:03d}" for i in range(n_i)],
            "category": category,
            "base_price": base_price,
            "launch_date": launch,
        }
    )

    day_idx = np.arange(n_days)
    dow = np.array([d.weekday() for d in dates])
    doy = np.array([d.timetuple().tm_yday for d in dates])
    hol_mult = np.ones(n_days)
    closed = np.zeros(n_days, dtype=bool)
    is_holiday = np.zeros(n_days, dtype=np.int8)
    for k, d in enumerate(dates):
        if (d.month, d.day) in HOLIDAYS:
            hol_mult[k], closed[k] = HOLIDAYS[(d.month, d.day)]
            is_holiday[k] = 1

    # Per item x day multipliers: season, trend, launch ramp-up (shape days x items).
    weekly = np.array([[WEEKLY[c][w] for c in category] for w in dow])
    yearly = 1 + np.array([YEARLY_AMPLITUDE[c] for c in category])[None, :] * np.sin(
        2 * np.pi * (doy[:, None] - 100) / 365.25
    )
    # Linear growth; over several years a declining item levels off instead of going negative.
    growth = np.maximum(1 + trend[None, :] * day_idx[:, None] / 365.0, 0.1)
    age = day_idx[:, None] - launch_offset[None, :]
    launched = age >= 0
    ramp = np.clip((age + 1) / 30.0, 0.05, 1.0)

    # Plans: promotions in runs of 3-7 days, about 8% of days, and occasional price moves.
    shape = (n_days, n_s, n_i)
    on_promo = np.zeros(shape, dtype=np.int8)
    starts = rng.random(shape) < 0.018
    run_len = rng.integers(3, 8, shape)
    for t, s, i in zip(*np.nonzero(starts), strict=True):
        on_promo[t : t + run_len[t, s, i], s, i] = 1
    discount = rng.choice([0.1, 0.15, 0.2, 0.3], size=(n_s, n_i))
    price_move = np.cumprod(
        np.where(rng.random((n_days, n_i)) < 0.004, rng.uniform(0.9, 1.12, (n_days, n_i)), 1.0),
        axis=0,
    )
    regular_price = base_price[None, :] * price_move  # days x items
    price = np.round(regular_price[:, None, :] * (1 - discount[None] * on_promo), 2)

    uplift = np.array([PROMO_UPLIFT[c] for c in category])
    mean = (
        level[None, None, :]
        * store_factor[None, :, None]
        * (weekly * yearly * growth * ramp)[:, None, :]
        * (1 + uplift[None, None, :] * on_promo)
        * (price / base_price[None, None, :]) ** (-elasticity[None, None, :])
        * hol_mult[:, None, None]
    )
    # Negative binomial as a gamma-Poisson mixture (dispersion 6).
    units = rng.poisson(rng.gamma(6.0, mean / 6.0)).astype(np.int64)
    stockout_start = rng.random(shape) < 0.003
    stockout_len = rng.integers(1, 6, shape)
    for t, s, i in zip(*np.nonzero(stockout_start), strict=True):
        units[t : t + stockout_len[t, s, i], s, i] = 0

    t_idx, s_idx, i_idx = np.meshgrid(
        np.arange(n_days), np.arange(n_s), np.arange(n_i), indexing="ij"
    )
    grid = (
        pl.DataFrame(
            {
                "t": t_idx.ravel(),
                "s": s_idx.ravel(),
                "i": i_idx.ravel(),
                "units": units.ravel(),
                "price": price.ravel(),
                "on_promo": on_promo.ravel(),
                "launched": np.broadcast_to(launched[:, None, :], shape).ravel(),
                "closed": np.broadcast_to(closed[:, None, None], shape).ravel(),
            }
        )
        .with_columns(
            date=pl.lit(pl.Series(dates)).gather(pl.col("t")),
            store_id=pl.lit(stores["store_id"]).gather(pl.col("s")),
            item_id=pl.lit(products["item_id"]).gather(pl.col("i")),
        )
        .filter("launched")
    )

    sales = grid.filter(pl.col("t") < spec.days, ~pl.col("closed")).select(
        "date", "store_id", "item_id", "units", "price", pl.col("on_promo").cast(pl.Int64)
    )
    plans = grid.select(
        "date",
        "store_id",
        "item_id",
        "price",
        pl.col("on_promo").cast(pl.Float64),
        is_open=(~pl.col("closed")).cast(pl.Float64),
    )
    calendar = pl.DataFrame({"date": dates, "is_holiday": is_holiday.astype(np.float64)})
    return {
        "sales": sales,
        "plans": plans,
        "calendar": calendar,
        "products": products,
        "stores": stores,
    }


def write_landing(spec: SimulationSpec, landing_root: Path) -> dict[str, int]:
    """Write all landing files for the simulated period; return how many of each."""
    frames = simulate(spec)
    root = Path(landing_root)
    counts = {"sales": 0, "plans": 0}
    sales = frames["sales"].sort("date", "store_id", "item_id")
    for k in range(spec.days):
        day = spec.start_date + dt.timedelta(days=k)
        # Every day gets a file; a day when all stores are closed has only the header.
        part = sales.filter(pl.col("date") == day)
        path = root / "sales" / f"sales_{day.isoformat()}.csv"
        _atomic_write(path, lambda p, part=part: part.write_csv(p))
        counts["sales"] += 1
    plans = frames["plans"].sort("date", "store_id", "item_id")
    for k in range(spec.days):
        day = spec.start_date + dt.timedelta(days=k)
        window = plans.filter(
            pl.col("date") > day, pl.col("date") <= day + dt.timedelta(days=spec.horizon)
        )
        path = root / "plans" / f"plans_{day.isoformat()}.parquet"
        _atomic_write(path, lambda p, w=window: w.write_parquet(p))
        counts["plans"] += 1
    _atomic_write(
        root / "calendar" / "calendar.parquet", lambda p: frames["calendar"].write_parquet(p)
    )
    for name in ("products", "stores"):
        records = frames[name].with_columns(pl.col(pl.Date).cast(pl.String)).to_dicts()
        _atomic_write(
            root / name / f"{name}.json", lambda p, r=records: p.write_text(json.dumps(r, indent=1))
        )
    counts.update(calendar=1, products=1, stores=1)
    return counts


def generate(cfg, force: bool = False) -> dict[str, int] | None:
    """Write the demo landing files unless sales files are already there (`force`: rewrite)."""
    from batch_ml.platform.sources.landing import discover
    from batch_ml.products.forecasting.sources import project_sources

    existing, _ = discover(cfg.paths.landing, project_sources(cfg)["sales"])
    if existing and not force:
        return None
    return write_landing(spec_from_config(cfg), cfg.paths.landing)


def summarize(cfg, instance) -> tuple[list[str], dict]:
    """The demo's forecast accuracy (from the report's metadata) and the model: console
    lines and JSON values."""
    import dagster as dg

    def latest(key: str) -> dict:
        records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
        metadata = records[0].asset_materialization.metadata if records else {}
        return {k: v.value for k, v in metadata.items()}

    report, model = latest("accuracy_report"), latest("demand_model")
    values = {
        "evaluation_window": [report.get("first_day"), report.get("last_day")],
        "model_version": model.get("model_version"),
        "champion_version": report.get("champion_version"),
        "wape_model": report.get("wape_model"),
        "wape_seasonal_naive": report.get("wape_seasonal_naive"),
        "wape_moving_average": report.get("wape_moving_average"),
        "report": report.get("report"),
    }
    improvement = 1 - values["wape_model"] / values["wape_seasonal_naive"]
    first, last = values["evaluation_window"]
    lines = [
        f"Forecast accuracy {first}..{last} (WAPE, lower is better):",
        f"  model            {values['wape_model']:.3f}   "
        f"({improvement:.1%} lower than seasonal naive)",
        f"  seasonal naive   {values['wape_seasonal_naive']:.3f}",
        f"  moving average   {values['wape_moving_average']:.3f}",
        f"Predictions: view `predictions` in {cfg.paths.warehouse} (open it read-only)",
        f"Report: {values['report']}",
    ]
    return lines, values
