"""The sentiment report's content: overall and weekly macro-F1 of the served model and the
baselines, per-class precision and recall, the confusion matrix, gate decisions, products
whose negative share rose, and drift. Pure (no Dagster): frames in, an HTML page with PNG
plots out (on the platform's report scaffolding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from matplotlib.figure import Figure

from batch_ml.platform.monitoring.report import ReportPage, TableFormat, label_axes, new_figure
from batch_ml.products.sentiment.evaluation import SCORERS, count_column, scores_from_counts
from batch_ml.products.sentiment.sources import LABELLED

FILE_NAME = "sentiment_report.html"
TABLES = TableFormat(percent=lambda c: c.startswith(("share", "recent_share", "baseline_share")))


@dataclass(frozen=True)
class SentimentReport:
    html_path: Path
    headline: dict[str, float]  # macro_f1_<scorer>, accuracy_<scorer>
    overall: pl.DataFrame  # one row per scorer: its scores over every evaluated day


def overall_scores(accuracy: pl.DataFrame, classes: Sequence[str], by: Sequence[str] = ()):
    """Scores per scorer (and `by`) from the summed confusion counts."""
    counts = [count_column(t, p) for t in classes for p in classes]
    summed = accuracy.group_by("scorer", *by).agg(pl.col(counts).sum(), pl.col("reviews").sum())
    rows = [
        {**{k: r[k] for k in ("scorer", *by, "reviews")}, **scores_from_counts(r, classes)}
        for r in summed.iter_rows(named=True)
    ]
    order = {s: k for k, s in enumerate(SCORERS)}
    return pl.DataFrame(rows).sort(*by, pl.col("scorer").replace_strict(order, default=99))


def _weekly_plot(weekly: pl.DataFrame) -> Figure:
    fig, (ax,) = new_figure()
    for (scorer,), rows in weekly.sort("week").group_by("scorer", maintain_order=True):
        ax.plot(rows["week"].to_list(), rows["macro_f1"].to_list(), marker="o", label=scorer)
    ax.legend()
    label_axes(ax, "Macro-F1 per week of label arrival", "week", "macro-F1", x="date")
    return fig


def _confusion_plot(overall: pl.DataFrame, raw: pl.DataFrame, classes: Sequence[str]) -> Figure:
    fig, (ax,) = new_figure(height=4.6)
    served = raw.filter(pl.col("scorer") == SCORERS[0])
    matrix = [[int(served[count_column(t, p)].sum()) for p in classes] for t in classes]
    ax.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            ax.text(j, i, f"{n:,}", ha="center", va="center")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.grid(False)
    label_axes(ax, "Confusion matrix of the served predictions", "predicted", "true")
    return fig


def write_report(
    accuracy: pl.DataFrame,
    rollup: pl.DataFrame,
    drift: pl.DataFrame,
    decisions: pl.DataFrame,
    classes: Sequence[str],
    folder: Path,
) -> SentimentReport:
    page = ReportPage(Path(folder), "sentiment")
    evaluated = accuracy.filter(pl.col("reviews") > 0)
    overall = overall_scores(evaluated, classes) if evaluated.height else pl.DataFrame()
    weekly = (
        overall_scores(
            evaluated.with_columns(pl.col(LABELLED).dt.truncate("1w").alias("week")),
            classes,
            by=("week",),
        )
        if evaluated.height
        else pl.DataFrame()
    )
    page.plot("weekly", _weekly_plot, weekly, present=weekly.height > 0)
    page.plot(
        "confusion", _confusion_plot, overall, evaluated, classes, present=evaluated.height > 0
    )
    headline = {
        f"{metric}_{r['scorer']}": r[metric]
        for r in overall.iter_rows(named=True)
        for metric in ("macro_f1", "accuracy")
    }
    per_class = (
        overall.select(
            "scorer",
            "reviews",
            "macro_f1",
            "accuracy",
            *(f"{m}_{c}" for c in classes for m in ("precision", "recall", "f1")),
        )
        if overall.height
        else overall
    )
    rising = (
        rollup.filter(pl.col("negative_rising"))
        .sort("day", "p_value", descending=[True, False])
        .head(20)
        if rollup.height
        else rollup
    )
    worst_drift = (
        drift.filter(pl.col("psi").is_not_null()).sort("psi", descending=True).head(10)
        if drift.height
        else drift
    )
    first, last = (
        (evaluated[LABELLED].min(), evaluated[LABELLED].max()) if evaluated.height else (None, None)
    )
    body = [
        "<h1>Sentiment: evaluation report</h1>",
        f"<p class='meta'>Labels that arrived {first} .. {last}; scores from the summed "
        "confusion counts of every day (served: each review by its day's champion).</p>",
        page.section(
            "Macro-F1 and per-class scores",
            TABLES.table(per_class) if per_class.height else "",
            "no labelled reviews yet",
        ),
        page.section("Over time", page.figure("weekly"), "no labelled reviews yet"),
        page.section("Confusion matrix", page.figure("confusion"), "no labelled reviews yet"),
        page.section(
            "Gate decisions",
            TABLES.table(decisions) if decisions.height else "",
            "no model week decided yet",
        ),
        page.section(
            "Products whose negative share rose",
            TABLES.table(rising) if rising.height else "",
            "no product's negative share rose significantly",
        ),
        page.section(
            "Drift (largest PSI)",
            TABLES.table(worst_drift) if worst_drift.height else "",
            "no drift figures yet",
        ),
    ]
    path = page.write(FILE_NAME, "Sentiment evaluation", body)
    return SentimentReport(path, headline, overall)
