"""The validation report's HTML document (:mod:`dsm.stages.report`): the page and its print style
sheet, one sign for every bias column, figures embedded as base64 PNG and tables as HTML.

Printable: no scroll boxes or fixed heights (a printed scroll box loses its hidden rows); in
print, full width, figures and table rows kept whole, table headers repeated on every page.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from dsm.storeref import StoreRef


class Pending(Protocol):
    """Bytes to come (a Dask future): ``result()`` waits for them, or raises the error that
    made them."""

    def result(self) -> Any: ...


FIGURES: dict[str, str] = {
    "model_scores_per_period": "Model R and RMSE per period",
    "table4": "Table 4 summary",
    "skill_periods": "Twin skill per period",
    "site_scatter": "Scatter per site",
    "site_timeseries": "Time series at sites with precipitation",
    "monthly_maps": "Monthly mean maps",
    "annual_maps": "Annual mean maps",
    "daily_mean": "Multi-year daily mean (regional average)",
    "importance": "Variable importance",
    "partial_correlation_map": "Partial correlation map",
    "subset_maps": "Regional subset: monthly mean maps",
}
TABLES: dict[str, str] = {
    "period_table": "Per-period models",
    "table4": "Table 4: mean over periods",
    "split_comparison": "Date split vs spatial-block split (test scores)",
    "twin_skill": "Twin skill against the 1 km truth",
    "twin_skill_stations": "Twin skill at the in situ stations",
    "twin_skill_periods": "Twin skill per period",
    "insitu_summary": "In situ scores: all sites and per network",
    "insitu_sites": "In situ scores per site",
    "stations": "Stations",
    "problems": "Inputs left out",
    "monthly_means": "Regional mean per month",
    "importance": "Variable importance",
    "partial_correlation": "Partial correlation at weather stations",
    "subset": "Regional subset: mean per month",
}

BIAS_STATEMENT = ("Sign of the bias in every table and figure of this report: bias = map − reference: positive "
                  "means the map is wetter (its mean soil moisture is above that of the reference: the in situ "
                  "daily means at the stations, the 1 km truth on the twin).")
BIAS_HEADER = "map − reference"
_BIAS_COLUMNS = ("bias", "bias_lo", "bias_hi")

# Printable: no scroll boxes or fixed heights (a printed scroll box loses its hidden rows); in
# print, full width, figures and table rows kept whole, table headers repeated on every page.
_CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}th,td{padding:2px 8px;border-bottom:1px solid #eee;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0;break-inside:avoid;page-break-inside:avoid}figure img{max-width:100%;height:auto}
figcaption{font-size:12px;color:#555}
.note{background:#fff8e0;padding:.4em .8em;border-left:3px solid #e0b000;font-size:13px}
.bias{font-weight:600}code{background:#f4f4f4;padding:0 3px}
@page{margin:12mm}
@media print{
body{max-width:none;width:100%;margin:0;font-size:10pt}
h2,h3{break-after:avoid;page-break-after:avoid}
figure,.note,tr{break-inside:avoid;page-break-inside:avoid}
table{width:100%;font-size:8pt}th,td{padding:1px 3px}th{overflow-wrap:anywhere}
thead{display:table-header-group}tfoot{display:table-footer-group}
th{background:#f4f4f4;-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"""


def bias_headers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its bias columns headed ``bias (map − reference)`` (``bias_lo``, ``bias_hi``
    likewise) and without ``bias_convention``; the values must already be map minus reference."""
    out = frame.drop(columns=[c for c in ("bias_convention",) if c in frame.columns])
    return out.rename(columns={c: f"{c} ({BIAS_HEADER})" for c in _BIAS_COLUMNS if c in out.columns})


@dataclass
class Report:
    """The parts of a report, in order; rendered by :meth:`html`."""

    title: str
    parts: list[str | Callable[[], str]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def heading(self, text: str, level: int = 2) -> None:
        """Add a heading."""
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, note: bool = False, cls_name: str | None = None) -> None:
        """Add a paragraph (escaped)."""
        names = " ".join(n for n in ("note" if note else None, cls_name) if n)
        cls = f' class="{names}"' if names else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def figure(self, key: str, png: bytes | Pending, caption: str) -> None:
        """Embed a PNG as base64: its bytes, or bytes to come (:meth:`FigureDir.draw` on a
        cluster), taken when the page is rendered (:meth:`html`)."""
        self.figures[key] = caption

        def part() -> str:
            data = base64.b64encode(png if isinstance(png, bytes) else png.result()).decode("ascii")
            return (f'<figure data-figure="{key}"><img alt="{html.escape(FIGURES.get(key, key))}" '
                    f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>')

        self.parts.append(part)

    def table(self, key: str, frame: pd.DataFrame, caption: str | None = None, index: bool = False) -> None:
        """Add a table, all its rows (numbers with 4 significant decimals, NaN as an em dash)."""
        self.tables[key] = frame
        body = frame.to_html(index=index, border=0, na_rep="—", float_format=lambda v: f"{v:.4g}", escape=True)
        cap = f"<h3>{html.escape(caption or TABLES.get(key, key))}</h3>"
        self.parts.append(f'<div data-table="{key}">{cap}{body}</div>')

    def missing(self, key: str, why: str) -> None:
        """Say why a figure or table is not there."""
        self.parts.append(f'<p class="note" data-missing="{key}">{html.escape(FIGURES.get(key) or TABLES.get(key, key))}'
                          f": not available: {html.escape(why)}</p>")

    def html(self) -> str:
        """The whole document."""
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><p>Generated {now} by dsm.</p>"
                + "\n".join(p if isinstance(p, str) else p() for p in self.parts) + "</body></html>\n")


@dataclass(frozen=True)
class FigureDir:
    """Where the report's figures go: a folder (local path or fsspec URL, with its options), and
    where they are drawn: here, or, with ``submit`` (a Dask client's ``submit``), on its workers."""

    root: StoreRef
    submit: Callable[..., Pending] | None = None

    def draw(self, name: str, fn: Callable[..., str], *args: Any, **kwargs: Any) -> bytes | Pending:
        """Draw the figure file ``name`` with ``fn(*args, dest=self.ref(name), **kwargs)`` (a figure
        function of :mod:`dsm.figures`: it writes the PNG and returns its URL) and return the PNG's
        bytes for :meth:`Report.figure`: drawn here, or with ``submit`` by a task on a worker, so
        the figures are drawn side by side while this process goes on (the bytes to come)."""
        if self.submit is None:
            return draw_png(self, name, fn, args, kwargs)
        return self.submit(draw_png, FigureDir(self.root), name, fn, args, kwargs, pure=False)

    def ref(self, name: str) -> StoreRef:
        """The location of the figure file ``name`` (the folder's options)."""
        return self.root.join(name)

    def png(self, url: str) -> bytes:
        """The bytes of a figure written under this folder (its URL, as the figure functions
        return it), read with the folder's options (to embed in the report)."""
        fs, path = self.root.at(url).fs()
        return bytes(fs.cat_file(path))


def draw_png(figs: FigureDir, name: str, fn: Callable[..., str], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> bytes:
    """:meth:`FigureDir.draw` in this process (a worker's task with ``submit``): the PNG's bytes."""
    return figs.png(fn(*args, dest=figs.ref(name), **kwargs))
