"""The drift report as one self-contained HTML file: a summary table, then per column both sides' distributions
overlaid (Plotly; its JavaScript embedded once, so the file works offline)."""

from __future__ import annotations

import html
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.monitor._drift import ColumnDrift, DriftReport

__all__ = ["render_drift_html"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem}.summary{color:#555}table{border-collapse:collapse;margin:.5rem 0 1rem}
td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}td.n{text-align:right;
font-variant-numeric:tabular-nums}.drift{color:#c62828;font-weight:600}.ok{color:#2e7d32}.skip{color:#777}
section.column{margin-bottom:2rem}.chart{min-height:320px}
"""


def _h(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}"


def _verdict(column: ColumnDrift) -> str:
    if column.drifted is None:
        return "<span class=skip>not compared</span>"
    return "<span class=drift>drift</span>" if column.drifted else "<span class=ok>no drift</span>"


def _summary(report: DriftReport) -> str:
    rows = [
        "<table><tr><th>column</th><th>type</th><th>metric</th><th>value</th><th>threshold</th><th>verdict</th>"
        "<th>note</th></tr>"
    ]
    for index, c in enumerate(report.columns):
        rows.append(
            f"<tr><td><a href='#column-{index}'>{_h(c.column)}</a></td><td>{_h(c.type)}</td><td>{_h(c.metric)}</td>"
            f"<td class=n>{_number(c.value)}</td><td class=n>{_number(c.threshold)}</td><td>{_verdict(c)}</td>"
            f"<td>{_h(c.message)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _figure(column: ColumnDrift) -> dict[str, Any]:
    chart = column.chart or {}
    layout: dict[str, Any] = {
        "title": {"text": f"{column.column}: reference and current"},
        "barmode": "overlay",
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "plot_bgcolor": "white",
        "yaxis": {"title": {"text": "share of rows"}, "tickformat": ".0%", "gridcolor": "#eee"},
        "xaxis": {"gridcolor": "#eee", "automargin": True},
    }
    if chart.get("kind") == "numeric":
        edges = chart["edges"]
        centers = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
        width = [b - a for a, b in itertools.pairwise(edges)]
        x: dict[str, Any] = {"x": centers, "width": width}
    else:
        x = {"x": chart.get("labels", [])}
        layout["xaxis"]["type"] = "category"
    return {
        "data": [
            {"type": "bar", "name": "reference", "y": chart.get("reference", []), "opacity": 0.55, **x},
            {"type": "bar", "name": "current", "y": chart.get("current", []), "opacity": 0.55, **x},
        ],
        "layout": layout,
    }


def render_drift_html(report: DriftReport) -> str:
    import plotly.io as pio

    verdict = "drifted" if report.drifted else "did not drift"
    parts = [
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n",
        f"<title>Drift: {_h(report.current)} against {_h(report.reference)}</title>\n<style>{_STYLE}</style>\n",
        "</head>\n<body>\n",
        f"<h1>Drift of {_h(report.current)} against {_h(report.reference)}</h1>",
        f"<p class=summary>The data {verdict}: {report.share_drifted:.0%} of compared columns drifted "
        f"(threshold {report.drift_share:.0%}) · rows: {report.rows['reference']:,} reference, "
        f"{report.rows['current']:,} current · {report.seconds:.2f} s</p>",
    ]
    parts += [f"<p class=summary>{_h(m)}</p>" for m in report.messages]
    parts += ["<h2>Columns</h2>", _summary(report)]
    first = True
    for index, column in enumerate(report.columns):
        parts.append(f"<section class=column id=column-{index}><h3>{_h(column.column)} {_verdict(column)}</h3>")
        if column.chart:
            parts.append(
                pio.to_html(
                    _figure(column),
                    full_html=False,
                    include_plotlyjs=first,
                    validate=False,
                    config={"displaylogo": False, "responsive": True},
                    default_height="320px",
                    div_id=f"chart-{index}",
                )
            )
            first = False
        elif column.message:
            parts.append(f"<p class=skip>{_h(column.message)}</p>")
        parts.append("</section>")
    parts.append("\n</body>\n</html>\n")
    return "".join(parts)
