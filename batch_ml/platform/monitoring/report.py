"""Report scaffolding for any product: one self-contained HTML page of sections, tables and
matplotlib plots, with every plot also written beside the page as a PNG.

Pure (no Dagster). Plots are drawn on `matplotlib.figure.Figure` objects (Agg canvas, no
pyplot state) and saved without a timestamp or version stamp, so the same inputs give
byte-identical files; every PNG is embedded as a data URI, so the HTML file alone opens
anywhere. Files are replaced atomically: a reader never sees half a report.
"""

from __future__ import annotations

import base64
import html
import io
import os
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import polars as pl
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

WIDTH, DPI = 10.0, 110
STYLE = {
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "text.parse_math": False,  # ids with "$" are text, not maths
}
# Cell values shown in colour (gate decisions, drift levels): CSS classes of the same name.
CLASSED = ("promoted", "rejected", "pinned", "rolled_back", "watch", "drift")
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1140px;margin:2em auto;padding:0 1em;"
    "color:#222}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}"
    "img{max-width:100%;display:block;margin:1em 0}.meta{color:#555}"
    ".cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:8px;"
    "padding:.8em 1.2em;min-width:160px}.card b{font-size:1.8em;display:block}"
    ".card span{color:#555;font-size:.9em}table{border-collapse:collapse;margin:1em 0;"
    "font-size:.9em}th,td{border-bottom:1px solid #e5e5e5;padding:.3em .7em;text-align:left}"
    "th{background:#f5f5f5}td{white-space:nowrap}td:last-child{white-space:normal}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".na{color:#aaa}.empty{color:#777;font-style:italic}.promoted{color:#0a7a2f;font-weight:600}"
    ".rejected{color:#b00020}.rolled_back{color:#b35c00;font-weight:600}"
    ".pinned{color:#555}.drift{color:#b00020;font-weight:600}.watch{color:#b35c00}"
)


@dataclass(frozen=True)
class TableFormat:
    """How a product's tables read: column headers, and which float columns are shares."""

    headers: Mapping[str, str] = field(default_factory=dict)
    percent: Callable[[str], bool] = lambda column: False
    classed: Collection[str] = CLASSED

    def cell(self, column: str, value: object) -> str:
        if value is None:
            return "<td class='na'>–</td>"
        if isinstance(value, float):
            text = (
                f"{value:.1%}"
                if self.percent(column)
                else f"{value:,.1f}"
                if abs(value) >= 100
                else f"{value:.3f}"
            )
            return f"<td class='num'>{text}</td>"
        if isinstance(value, int):
            return f"<td class='num'>{value:,}</td>"
        text = html.escape(str(value))
        return f"<td class='{value}'>{text}</td>" if value in self.classed else f"<td>{text}</td>"

    def table(self, frame: pl.DataFrame) -> str:
        head = "".join(
            f"<th>{html.escape(self.headers.get(c, c.replace('_', ' ')))}</th>"
            for c in frame.columns
        )
        rows = "".join(
            "<tr>"
            + "".join(self.cell(c, v) for c, v in zip(frame.columns, r, strict=True))
            + "</tr>"
            for r in frame.iter_rows()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def new_figure(ncols: int = 1, height: float = 4.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def label_axes(ax, title: str, xlabel: str, ylabel: str, x: str = "", y: str = "") -> None:
    """Title and labels; x or y "date" (concise date ticks), "pct" (percent) or "int" ticks."""
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    for axis, kind in ((ax.xaxis, x), (ax.yaxis, y)):
        if kind == "date":
            locator = AutoDateLocator(maxticks=8)
            axis.set_major_locator(locator)
            axis.set_major_formatter(ConciseDateFormatter(locator, show_offset=False))
        elif kind == "pct":
            axis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        elif kind == "int":
            axis.set_major_locator(MaxNLocator(integer=True))
    if y == "pct":
        ax.set_ylim(bottom=0)


def atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def render_png(build: Callable[..., Figure], *args: object) -> bytes:
    """PNG bytes of a figure; no timestamp or version stamp, so the same input, same bytes."""
    with matplotlib.rc_context(STYLE):
        buffer = io.BytesIO()
        build(*args).savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


class ReportPage:
    """A report under construction in `folder`: plots (`<prefix>_<name>.png`, embedded in the
    page too), then `write` the page of sections."""

    def __init__(self, folder: Path, prefix: str):
        self.folder, self.prefix = folder, prefix
        self.png_paths: dict[str, Path] = {}
        self._images: dict[str, str] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def plot(self, name: str, build: Callable[..., Figure], *args: object, present=True) -> None:
        path = self.folder / f"{self.prefix}_{name}.png"
        if not present:
            path.unlink(missing_ok=True)  # an earlier run's plot must not pass for this one's
            return
        data = render_png(build, *args)
        atomic_write(path, data)
        self.png_paths[name] = path
        self._images[name] = base64.b64encode(data).decode("ascii")

    def figure(self, name: str, table: str = "") -> str:
        """The plot `name` as an image (nothing if it was not drawn), then `table`'s HTML."""
        if name not in self._images:
            return ""
        alt = html.escape(name.replace("_", " "))
        return f"<img src='data:image/png;base64,{self._images[name]}' alt='{alt}'>" + table

    @staticmethod
    def section(title: str, body: str, empty: str) -> str:
        """A titled section; `empty` says why when there is nothing to show."""
        return f"<h2>{html.escape(title)}</h2>" + (
            body or f"<p class='empty'>{html.escape(empty)}</p>"
        )

    def write(self, file_name: str, title: str, body: list[str]) -> Path:
        page = (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{CSS}</style></head><body>{''.join(body)}"
            "</body></html>\n"
        )
        path = self.folder / file_name
        atomic_write(path, page.encode("utf-8"))
        return path
