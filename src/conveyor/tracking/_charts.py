"""Charts of runs, as one offline HTML page (Plotly): parameters against metrics across runs, and metric
histories by step."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.tracking._runs import Comparison, Metric

__all__ = ["comparison_html"]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def comparison_html(comparison: Comparison, histories: dict[str, dict[str, list[Metric]]]) -> str:
    """A page comparing runs: a parallel-coordinates chart of parameters and final metrics, a table, and
    one line chart per metric logged at several steps (``histories[key][run_id]``)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    runs = comparison.runs
    labels = {r.id: r.name or r.id[-8:] for r in runs}
    figures: list[tuple[str, Any]] = []

    dimensions = []
    for kind, table in (("param", comparison.params), ("metric", comparison.metrics)):
        for key, by_run in table.items():
            values = [_number(by_run[r.id]) for r in runs]
            if kind == "param" and key not in comparison.differing_params:
                continue
            if any(v is None for v in values):
                texts = [str(by_run[r.id]) for r in runs]
                choices = sorted(set(texts))
                dimensions.append(
                    {
                        "label": f"{key}",
                        "values": [choices.index(t) for t in texts],
                        "tickvals": list(range(len(choices))),
                        "ticktext": choices,
                    }
                )
            else:
                dimensions.append({"label": f"{key}", "values": values})
    if dimensions and len(runs) > 1:
        colour_keys: list[str] = comparison.differing_metrics or list(comparison.metrics)
        colour_key = colour_keys[0] if colour_keys else None
        line: dict[str, Any] = {}
        if colour_key is not None:
            line = {
                "color": [_number(comparison.metrics[colour_key][r.id]) or 0 for r in runs],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": colour_key}},
            }
        figure = go.Figure(go.Parcoords(dimensions=dimensions, line=line))
        figure.update_layout(title="Parameters and metrics across runs", margin={"l": 80, "r": 80, "t": 80, "b": 40})
        figures.append(("parallel", figure))

    for key, series in histories.items():
        if not any(len(points) > 1 for points in series.values()):
            continue
        figure = go.Figure()
        for run_id, points in series.items():
            figure.add_trace(
                go.Scatter(x=[p.step for p in points], y=[p.value for p in points], mode="lines", name=labels[run_id])
            )
        figure.update_layout(title=f"{key} by step", xaxis_title="step", yaxis_title=key, plot_bgcolor="white")
        figures.append(("history", figure))

    rows = ["<tr><th></th>" + "".join(f"<th>{html.escape(labels[r.id])}</th>" for r in runs) + "</tr>"]
    for title, table, differing in (
        ("param", comparison.params, comparison.differing_params),
        ("metric", comparison.metrics, comparison.differing_metrics),
    ):
        for key, by_run in table.items():
            mark = " class=diff" if key in differing else ""
            cells = "".join(f"<td>{'' if by_run[r.id] is None else html.escape(_fmt(by_run[r.id]))}</td>" for r in runs)
            rows.append(f"<tr{mark}><th>{title}s.{html.escape(key)}</th>{cells}</tr>")
    charts = [
        pio.to_html(
            figure,
            full_html=False,
            include_plotlyjs=index == 0,
            config={"displaylogo": False, "responsive": True},
            default_height="420px",
        )
        for index, (_, figure) in enumerate(figures)
    ]
    style = (
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}"
        "table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}"
        "tr.diff th{color:#b35}"
    )
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n<title>Run comparison</title>\n"
        f"<style>{style}</style>\n</head>\n<body>\n<h1>Comparing {len(runs)} runs</h1>\n"
        + "\n".join(charts)
        + "\n<h2>Values</h2>\n<table>\n"
        + "\n".join(rows)
        + "\n</table>\n</body>\n</html>\n"
    )


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
