"""The drift report as one self-contained HTML file: a summary table, then per column both sides' distributions
overlaid (Plotly; its JavaScript embedded once, so the file works offline)."""

from __future__ import annotations

import html
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.monitor._drift import ColumnDrift, DriftReport

__all__ = ["render_drift_html", "render_history_html"]

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


def render_history_html(monitor: Any, results: list[Any]) -> str:
    """A monitor's results over time as one self-contained HTML file: the share of drifted columns and each
    column's drift value, the performance metrics, and a table of every run with its alert."""
    import plotly.io as pio

    ordered = sorted(results, key=lambda r: r.at)
    times = [r.window_end.isoformat() for r in ordered]
    share = [r.signals.get("drift", {}).get("share_drifted") for r in ordered]
    columns: dict[str, list[Any]] = {}
    for i, r in enumerate(ordered):
        for name, found in r.signals.get("drift", {}).get("columns", {}).items():
            columns.setdefault(name, [None] * len(ordered))[i] = found.get("value")
    metrics: dict[str, list[Any]] = {}
    for i, r in enumerate(ordered):
        for name, value in r.signals.get("performance", {}).get("metrics", {}).items():
            metrics.setdefault(name, [None] * len(ordered))[i] = value
    alerts = [r.window_end.isoformat() for r in ordered if r.status == "alert"]
    layout: dict[str, Any] = {
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "plot_bgcolor": "white",
        "xaxis": {"gridcolor": "#eee", "title": {"text": "window end (UTC)"}},
        "yaxis": {"gridcolor": "#eee"},
    }
    drift_figure: dict[str, Any] = {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "share of drifted columns",
                "x": times,
                "y": share,
                "line": {"width": 3},
            },
            *[
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": name,
                    "x": times,
                    "y": values,
                    "yaxis": "y2",
                    "opacity": 0.6,
                }
                for name, values in sorted(columns.items())
            ],
            {
                "type": "scatter",
                "mode": "markers",
                "name": "alert",
                "x": alerts,
                "y": [1.02] * len(alerts),
                "marker": {"symbol": "triangle-down", "size": 12, "color": "#c62828"},
            },
        ],
        "layout": {
            **layout,
            "title": {"text": "Drift over time"},
            "yaxis": {"gridcolor": "#eee", "title": {"text": "share drifted"}, "range": [0, 1.05], "tickformat": ".0%"},
            "yaxis2": {"title": {"text": "column drift value"}, "overlaying": "y", "side": "right", "showgrid": False},
        },
    }
    figures = [drift_figure]
    if metrics:
        figures.append(
            {
                "data": [
                    {"type": "scatter", "mode": "lines+markers", "name": name, "x": times, "y": values}
                    for name, values in sorted(metrics.items())
                ],
                "layout": {**layout, "title": {"text": "Performance over time (labelled requests)"}},
            }
        )
    parts = [
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n",
        f"<title>Monitor {_h(monitor.name)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        f"<h1>Monitor {_h(monitor.name)} of endpoint {_h(monitor.endpoint)}</h1>",
        f"<p class=summary>{len(ordered)} runs · signals {_h(', '.join(monitor.signals))} · window "
        f"{_h(monitor.window)} · reference {_h(monitor.reference or 'the served model profile')}</p>",
    ]
    for index, figure in enumerate(figures):
        parts.append(
            pio.to_html(
                figure,
                full_html=False,
                include_plotlyjs=index == 0,
                validate=False,
                config={"displaylogo": False, "responsive": True},
                default_height="360px",
                div_id=f"history-{index}",
            )
        )
    parts.append("<h2>Runs</h2><table><tr><th>window end</th><th>rows</th><th>status</th><th>message</th></tr>")
    for r in reversed(ordered):
        style = {"alert": "drift", "ok": "ok"}.get(r.status, "skip")
        parts.append(
            f"<tr><td>{_h(r.window_end.strftime('%Y-%m-%d %H:%M:%S'))}</td><td class=n>{r.rows:,}</td>"
            f"<td class={style}>{_h(r.status)}</td><td>{_h(r.message)}</td></tr>"
        )
    parts.append("</table>\n</body>\n</html>\n")
    return "".join(parts)
