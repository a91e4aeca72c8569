"""The evaluation report: one self-contained HTML file with tables and matplotlib plots, on
the platform's report scaffolding (`batch_ml.platform.monitoring.report`).

Pure (no Dagster): accuracy sums, forecast series, drift, feature importance and model
decisions in, `evaluation_report.html` plus `evaluation_<plot>.png` out. The same inputs give
byte-identical files (numbers are shown rounded: Polars' parallel sums may differ in the last
bit between runs, the text does not).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from batch_ml.platform.monitoring.report import ReportPage, TableFormat, label_axes, new_figure
from batch_ml.products.forecasting.metrics import SUM_COLUMNS, roll_up

REPORT_NAME = "evaluation_report.html"
METHODS = ("model", "seasonal_naive", "moving_average")
BASELINES = ("seasonal_naive", "moving_average")
LABELS = {"model": "Model", "seasonal_naive": "Seasonal naive", "moving_average": "Moving average"}
# Okabe-Ito colours (colour-blind safe), one per method everywhere; actuals in near-black.
COLORS = {"model": "#0072B2", "seasonal_naive": "#D55E00", "moving_average": "#009E73"}
ACTUAL_COLOR = "#222222"
PSI_WATCH, PSI_DRIFT = 0.1, 0.25
ACCURACY_COLUMNS = ("target_date", "lead", "method", "store_id", "category", *SUM_COLUMNS)


@dataclass(frozen=True)
class ReportInputs:
    """What the report shows; every frame but `accuracy` may be empty (same columns)."""

    accuracy: pl.DataFrame  # target_date, lead, method, store_id, category + SUM_COLUMNS
    series: pl.DataFrame  # target_date, store_id, item_id, actual, model, seasonal_naive, ...
    drift: pl.DataFrame  # date, variable, psi
    importance: pl.DataFrame  # feature, gain
    decisions: pl.DataFrame  # model_week, model_version, decision, reason, *_wape, ...
    title: str = "Demand forecast evaluation"


@dataclass(frozen=True)
class Report:
    """The written report: files, headline numbers (NaN where undefined) and the tables."""

    html_path: Path
    png_paths: dict[str, Path]
    headline: dict[str, float]
    tables: dict[str, pl.DataFrame]


def accuracy_tables(accuracy: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Roll-ups (sums and WAPE/MAE/RMSE/bias) of the accuracy sums, long format by method."""
    dated = accuracy.with_columns(
        week=pl.col("target_date").dt.truncate("1w"), month=pl.col("target_date").dt.truncate("1mo")
    )
    groups = {"overall": [], "by_lead": ["lead"], "by_week": ["week"], "by_month": ["month"]}
    groups |= {"by_store": ["store_id"], "by_category": ["category"], "daily": ["target_date"]}
    return {name: roll_up(dated, [*by, "method"]) for name, by in groups.items()}


def pick_series(series: pl.DataFrame, k: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The k largest series by total actual, and the k with the highest model WAPE among
    those whose total actual is at least the median series total (never a near-zero one)."""
    totals = (
        series.filter(pl.col("actual").is_not_null())
        .group_by("store_id", "item_id")
        .agg(
            total_actual=pl.col("actual").sum(),
            sum_abs_error=(pl.col("model") - pl.col("actual")).abs().sum(),
            scored=pl.col("model").is_not_null().sum(),
        )
        .with_columns(
            wape=pl.when((pl.col("total_actual") > 0) & (pl.col("scored") > 0)).then(
                pl.col("sum_abs_error") / pl.col("total_actual")
            )
        )
        .drop("scored")
    )
    keys = ["store_id", "item_id"]
    largest = totals.sort(["total_actual", *keys], descending=[True, False, False]).head(k)
    eligible = totals.filter(
        pl.col("total_actual") >= pl.col("total_actual").median(), pl.col("wape").is_not_null()
    )
    worst = eligible.sort(["wape", *keys], descending=[True, False, False]).head(k)
    return largest, worst


def _improvement(model: float | None, baseline: float | None) -> float:
    """Relative WAPE reduction of the model against a baseline (positive: model better)."""
    if model is None or not baseline:
        return float("nan")
    return 1.0 - model / baseline


def _values(column: pl.Series):
    """Float values for matplotlib, NaN where null (a gap in a line)."""
    return column.cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _wide(long: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """One display row per key: the model's n, WAPE per method and gain over the best baseline."""
    wide = long.pivot(on="method", index=by, values="wape", sort_columns=False)
    n = long.filter(pl.col("method") == "model").select(*by, "n")
    wide = wide.with_columns(pl.lit(None, pl.Float64).alias(m) for m in METHODS if m not in wide)
    best = pl.min_horizontal(*BASELINES)
    return (
        wide.join(n, on=by, how="left", nulls_equal=True)
        .with_columns(vs_best_baseline=pl.when(best > 0).then(1 - pl.col("model") / best))
        .select(*by, "n", *METHODS, "vs_best_baseline")
        .sort(by, nulls_last=True)
    )


HEADERS = {m: f"WAPE {LABELS[m].lower()}" for m in METHODS} | {
    "vs_best_baseline": "model vs best baseline",
    "sum_abs_error": "model abs error",
    "wape": "model WAPE",
    "psi": "PSI",
}
PERCENT = {*METHODS, "vs_best_baseline", "wape", "bias", "share"}
TABLES = TableFormat(
    headers=HEADERS, percent=lambda column: column in PERCENT or column.endswith("_wape")
)
_table = TABLES.table
_figure = new_figure
_axes = label_axes


def _lead_plot(by_lead: pl.DataFrame) -> Figure:
    fig, (ax,) = _figure()
    for m in METHODS:
        part = by_lead.filter(pl.col("method") == m).sort("lead")
        if part.height:
            ax.plot(part["lead"], _values(part["wape"]), "o-", color=COLORS[m], label=LABELS[m])
    _axes(ax, "WAPE by lead time", "Lead (days ahead)", "WAPE", x="int", y="pct")
    ax.legend()
    return fig


def _daily_plot(daily: pl.DataFrame) -> Figure:
    fig, (ax,) = _figure()
    for m in METHODS:
        part = daily.filter(pl.col("method") == m).sort("target_date")
        alpha = 0.45 if m == "model" else 0.8
        ax.plot(part["target_date"], _values(part["wape"]), color=COLORS[m], lw=1.2, alpha=alpha,
                label=LABELS[m])  # fmt: skip
    model = daily.filter(pl.col("method") == "model").sort("target_date")
    week = [pl.col(c).rolling_sum_by("target_date", "7d") for c in ("sum_abs_error", "sum_actual")]
    rolled = model.select(week[0] / week[1])
    ax.plot(model["target_date"], _values(rolled.to_series()), color=COLORS["model"], lw=3,
            label="Model, 7-day WAPE")  # fmt: skip
    _axes(ax, "Daily WAPE by method (all leads pooled)", "Target day", "WAPE", x="date", y="pct")
    fig.legend(ncols=4, loc="outside lower center")
    return fig


def _bars(long: pl.DataFrame, key: str, title: str) -> Figure:
    keyed = long.with_columns(pl.col(key).cast(pl.String).fill_null("(none)"))
    groups = sorted(keyed[key].unique().to_list())
    lookup = {(k, m): w for k, m, w in keyed.select(key, "method", "wape").iter_rows()}
    fig, (ax,) = _figure()
    width, many = 0.8 / len(METHODS), len(groups) > 8
    for i, m in enumerate(METHODS):
        ys = [_number(lookup.get((g, m))) for g in groups]
        bars = ax.bar([g + (i - 1) * width for g in range(len(groups))], ys, width=width,
                      color=COLORS[m], label=LABELS[m])  # fmt: skip
        if len(groups) <= 6:
            ax.bar_label(bars, labels=[f"{y:.0%}" if y == y else "" for y in ys], fontsize=9)
    ax.set_xticks(range(len(groups)), groups, rotation=45 if many else 0,
                  ha="right" if many else "center")  # fmt: skip
    _axes(ax, title, key.replace("_", " "), "WAPE", y="pct")
    ax.grid(axis="x", visible=False)
    fig.legend(ncols=3, loc="outside lower center")
    return fig


def _series_plot(series: pl.DataFrame, picked: pl.DataFrame, title: str) -> Figure:
    fig, axes = _figure(ncols=picked.height, height=3.8)
    for ax, row in zip(axes, picked.iter_rows(named=True), strict=True):
        one = series.filter(store_id=row["store_id"], item_id=row["item_id"]).sort("target_date")
        ax.plot(one["target_date"], _values(one["actual"]), color=ACTUAL_COLOR, lw=2,
                label="Actual")  # fmt: skip
        for m, style in (("model", "-"), ("seasonal_naive", "--")):
            ax.plot(one["target_date"], _values(one[m]), color=COLORS[m], ls=style, lw=1.5,
                    label=LABELS[m])  # fmt: skip
        wape = "n/a" if row["wape"] is None else f"{row['wape']:.0%}"
        name = f"{row['store_id']} / {row['item_id']}\nmodel WAPE {wape}"
        _axes(ax, name, "Target day", "Units", x="date")
        ax.title.set_fontsize(11)
    fig.suptitle(title, fontweight="bold")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
    return fig


def _importance_plot(shares: pl.DataFrame) -> Figure:
    fig, (ax,) = _figure(height=max(3.0, 0.32 * shares.height + 1.2))
    top = shares.reverse()  # largest at the top
    ax.barh(top["feature"].cast(pl.String).to_list(), _values(top["share"]), color=COLORS["model"])
    title = f"Feature importance of the champion (top {shares.height}, share of total gain)"
    _axes(ax, title, "Share of gain", "", x="pct")
    ax.grid(axis="y", visible=False)
    return fig


def _drift_plot(drift: pl.DataFrame, last: pl.DataFrame) -> Figure:
    fig, (ax,) = _figure(height=4.6)
    shown = last["variable"].head(8).to_list()  # the highest PSI on the last day
    others = sorted(set(drift["variable"].unique().to_list()) - set(shown))
    for variable in [*others, *shown]:
        part = drift.filter(pl.col("variable") == variable).sort("date")
        if variable in shown:
            style = {"lw": 2, "label": variable, "zorder": 3}
        else:
            label = f"other variables ({len(others)})" if variable == others[0] else None
            style = {"lw": 0.8, "color": "#bbbbbb", "zorder": 2, "label": label}
        ax.plot(part["date"], _values(part["psi"]), **style)
    top = max(float(drift["psi"].max() or 0.0) * 1.1, PSI_DRIFT * 1.3)
    ax.axhspan(PSI_WATCH, PSI_DRIFT, color="#f0c000", alpha=0.12, zorder=1)
    ax.axhspan(PSI_DRIFT, top, color="#d62728", alpha=0.08, zorder=1)
    for level, name in ((PSI_WATCH, "watch (0.1)"), (PSI_DRIFT, "drift (0.25)")):
        ax.axhline(level, color="#555555", ls="--", lw=1)
        ax.annotate(name, (0.005, level), xycoords=("axes fraction", "data"), va="bottom",
                    fontsize=9, color="#555555")  # fmt: skip
    _axes(ax, "Population stability index (PSI) per day", "Day", "PSI", x="date")
    ax.set_ylim(0, top)
    fig.legend(loc="outside right upper", fontsize=9)
    return fig


def _summary(inputs: ReportInputs) -> tuple[dict[str, float], dict[str, pl.DataFrame]]:
    """The headline numbers and the tables (accuracy roll-ups, picked series, last-day PSI)."""
    acc = inputs.accuracy
    missing = [c for c in ACCURACY_COLUMNS if c not in acc.columns]
    if missing:
        raise ValueError(f"the accuracy frame lacks the columns {missing}")
    if acc.is_empty():
        raise ValueError("no accuracy rows: nothing to evaluate (no forecast has its actuals yet)")
    tables = accuracy_tables(acc)
    overall = {r["method"]: r for r in tables["overall"].iter_rows(named=True)}
    wape = {m: overall.get(m, {}).get("wape") for m in METHODS}
    best = min((wape[b] for b in BASELINES if wape[b] is not None), default=None)
    drift = inputs.drift.filter(pl.col("psi").is_not_null())
    last = drift.filter(pl.col("date") == pl.col("date").max()).select("variable", "psi")
    status = pl.when(pl.col("psi") >= PSI_DRIFT).then(pl.lit("drift"))
    status = status.when(pl.col("psi") >= PSI_WATCH).then(pl.lit("watch")).otherwise(pl.lit("ok"))
    tables["drift_last_day"] = last.sort(
        ["psi", "variable"], descending=[True, False]
    ).with_columns(status=status)
    tables["largest_series"], tables["worst_series"] = pick_series(inputs.series)
    headline = {f"wape_{m}": _number(w) for m, w in wape.items()}
    headline |= {f"improvement_vs_{b}": _improvement(wape["model"], wape[b]) for b in BASELINES}
    return headline | {
        "best_baseline_wape": _number(best),
        "improvement_vs_best_baseline": _improvement(wape["model"], best),
        "bias_model": _number(overall.get("model", {}).get("bias")),
        "days": float(acc["target_date"].n_unique()),
        "leads": float(acc["lead"].n_unique()),
        "stores": float(acc["store_id"].n_unique()),
        "series": float(inputs.series.select("store_id", "item_id").n_unique()),
        "forecasts_scored": _number(overall.get("model", {}).get("n")),
        "max_psi_last_day": _number(last["psi"].max()),
    }, tables


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.1%}"


def write_evaluation_report(inputs: ReportInputs, report_dir: Path) -> Report:
    """Render the report into `report_dir`; raise ValueError if there is no accuracy data."""
    headline, tables = _summary(inputs)
    acc, series, e = inputs.accuracy, inputs.series, html.escape
    largest, worst = tables["largest_series"], tables["worst_series"]
    last = tables["drift_last_day"]
    drift = inputs.drift.filter(pl.col("psi").is_not_null())
    gain = float(inputs.importance["gain"].fill_null(0.0).sum())
    shares = inputs.importance.select("feature", share=pl.col("gain") / gain)
    shares = shares.sort(["share", "feature"], descending=[True, False]).head(20 if gain > 0 else 0)
    decisions = inputs.decisions.sort("model_week", maintain_order=True)
    decisions = decisions.select(pl.exclude("reason"), *({"reason"} & set(decisions.columns)))
    champion = str(decisions["champion_version"][-1]) if decisions.height else "unknown"
    has_category = bool(acc["category"].is_not_null().any())
    plots: dict[str, tuple] = {
        "lead": (_lead_plot, tables["by_lead"]),
        "daily": (_daily_plot, tables["daily"]),
        "store": (_bars, tables["by_store"], "store_id", "WAPE by store"),
        "category": (_bars, tables["by_category"], "category", "WAPE by category"),
        "largest_series": (_series_plot, series, largest, "Largest series: actual vs forecast"),
        "worst_series": (_series_plot, series, worst, "Worst series (volume at least the median)"),
        "importance": (_importance_plot, shares),
        "drift": (_drift_plot, drift, last),
    }
    present = {"category": has_category, "largest_series": largest.height > 0}
    present |= {"worst_series": worst.height > 0, "importance": shares.height > 0}
    present |= {"drift": drift.height > 0}
    page = ReportPage(report_dir, "evaluation")
    for name, (build, *args) in plots.items():
        page.plot(name, build, *args, present=present.get(name, True))
    figure, section = page.figure, page.section

    cards = "".join(
        f"<div class='card'><b style='color:{COLORS[m]}'>{_pct(headline[f'wape_{m}'])}</b>"
        f"<span>WAPE {e(LABELS[m].lower())}</span></div>"
        for m in METHODS
    )
    versus = ", ".join(
        f"{_pct(headline[f'improvement_vs_{b}'])} lower than {LABELS[b].lower()}" for b in BASELINES
    )
    body = [
        f"<h1>{e(inputs.title)}</h1><p class='meta'>Target days {acc['target_date'].min()} to "
        f"{acc['target_date'].max()}: {headline['days']:.0f} days, {headline['series']:.0f} "
        f"series in {headline['stores']:.0f} stores, leads {acc['lead'].min()} to "
        f"{acc['lead'].max()}. Current champion model: <b>{e(champion)}</b>.</p>",
        f"<div class='cards'>{cards}<div class='card'><b>"
        f"{_pct(headline['improvement_vs_best_baseline'])}</b><span>lower WAPE than the best "
        "baseline</span></div></div>",
        f"<p>The model's WAPE is {versus} (negative: worse). WAPE = sum |error| / sum actual "
        "over all leads and days; bias = sum error / sum actual.</p>",
        section(
            "Accuracy by lead time", figure("lead", _table(_wide(tables["by_lead"], ["lead"]))), ""
        ),
        section(
            "Error over time",
            figure("daily")
            + f"<h3>Weekly</h3>{_table(_wide(tables['by_week'], ['week']))}"
            + f"<h3>Monthly</h3>{_table(_wide(tables['by_month'], ['month']))}",
            "",
        ),
        section(
            "Accuracy by store and category",
            figure("store", _table(_wide(tables["by_store"], ["store_id"])))
            + (
                figure("category", _table(_wide(tables["by_category"], ["category"])))
                if has_category
                else "<p class='empty'>The data has no product category.</p>"
            ),
            "",
        ),
        section(
            "Actual vs forecast",
            figure("largest_series", _table(largest)) + figure("worst_series", _table(worst)),
            "No forecast series were provided.",
        ),
        section(
            "Feature importance",
            figure("importance"),
            "No feature importance is available for the champion.",
        ),
        section(
            "Drift",
            figure("drift")
            + (f"<h3>PSI on the last day, {drift['date'].max()}</h3>" if drift.height else "")
            + (_table(last) if drift.height else ""),
            "No drift measurements are available yet.",
        ),
        section(
            "Model decisions",
            _table(decisions) if decisions.height else "",
            "No champion/challenger decisions have been recorded.",
        ),
    ]
    html_path = page.write(REPORT_NAME, inputs.title, body)
    return Report(html_path=html_path, png_paths=page.png_paths, headline=headline, tables=tables)
