"""A self-contained HTML accuracy report (tables and an inline SVG chart, no JavaScript)."""

from __future__ import annotations

import html
import os
from pathlib import Path

import polars as pl

from batch_ml.ml.metrics import roll_up

METHOD_COLORS = {"model": "#1f77b4", "seasonal_naive": "#d62728", "moving_average": "#2ca02c"}
REPORT_NAME = "accuracy_report.html"


def accuracy_tables(daily: pl.DataFrame) -> dict[str, pl.DataFrame]:
    dated = daily.with_columns(
        week=pl.col("target_date").dt.truncate("1w"),
        month=pl.col("target_date").dt.truncate("1mo"),
    )
    return {
        "overall": roll_up(dated, ["method"]),
        "by_lead": roll_up(dated, ["method", "lead"]),
        "by_week": roll_up(dated, ["week", "method"]),
        "by_month": roll_up(dated, ["month", "method"]),
    }


def _table(frame: pl.DataFrame, columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for r in frame.select(columns).iter_rows():
        cells = "".join(
            f"<td>{v:.3f}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
            for v in r
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _line_chart(frame: pl.DataFrame, x: str, title: str, width=760, height=260) -> str:
    """WAPE per method along `x` as an SVG polyline chart."""
    data = frame.filter(pl.col("wape").is_not_null())
    if data.is_empty():
        return ""
    xs = sorted(data[x].unique().to_list())
    index = {v: i for i, v in enumerate(xs)}
    top = max(float(data["wape"].max()), 1e-9) * 1.1
    pad = 40

    def point(xv, yv):
        px = pad + (width - 2 * pad) * (index[xv] / max(len(xs) - 1, 1))
        py = height - pad - (height - 2 * pad) * (yv / top)
        return f"{px:.1f},{py:.1f}"

    lines, legend = [], []
    for k, (method, color) in enumerate(METHOD_COLORS.items()):
        part = data.filter(pl.col("method") == method).sort(x)
        pts = " ".join(point(a, w) for a, w in part.select(x, "wape").iter_rows())
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        legend.append(f'<text x="{pad + 160 * k}" y="18" fill="{color}">{method}</text>')
    ticks = "".join(
        f'<text x="4" y="{height - pad - (height - 2 * pad) * f:.0f}">{top * f:.2f}</text>'
        for f in (0, 0.5, 1)
    )
    return (
        f"<h3>{html.escape(title)}</h3><svg width='{width}' height='{height}' "
        f"font-size='12' role='img'><rect width='100%' height='100%' fill='#fafafa'/>"
        f"{ticks}{''.join(legend)}{''.join(lines)}</svg>"
    )


def write_accuracy_report(daily: pl.DataFrame, report_dir: Path) -> tuple[Path, dict]:
    tables = accuracy_tables(daily)
    metric_cols = ["n", "wape", "mae", "rmse", "bias"]
    first, last = daily["target_date"].min(), daily["target_date"].max()
    body = [
        "<h1>Demand forecast accuracy</h1>",
        f"<p>Target days {first} to {last}. WAPE = sum |error| / sum actual; bias = sum error /"
        " sum actual. Baselines use the same information as the model at each origin.</p>",
        "<h2>Overall</h2>",
        _table(tables["overall"], ["method", *metric_cols]),
        _line_chart(tables["by_lead"], "lead", "WAPE by lead time (days ahead)"),
        _line_chart(tables["by_week"], "week", "WAPE by week"),
        "<h2>By lead time</h2>",
        _table(tables["by_lead"], ["method", "lead", *metric_cols]),
        "<h2>By month</h2>",
        _table(tables["by_month"], ["month", "method", *metric_cols]),
    ]
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Forecast accuracy</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
        + "".join(body)
        + "</body></html>"
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / REPORT_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path, tables
