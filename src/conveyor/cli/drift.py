"""``conveyor drift REFERENCE CURRENT``: ad-hoc drift between two data versions or files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command("drift")
    def drift(
        ctx: typer.Context,
        reference: Annotated[
            str,
            typer.Argument(
                help="Data version (name, name:3, name@latest), CSV/Parquet file, or a model version's reference "
                "profile (model:churn@champion)."
            ),
        ],
        current: Annotated[str, typer.Argument(help="Data version or CSV/Parquet file to compare with the reference.")],
        metric: Annotated[
            str | None,
            typer.Option("--metric", help="One metric for every column it applies to: psi, js, wasserstein, ks, chi2."),
        ] = None,
        threshold: Annotated[
            float | None, typer.Option("--threshold", help="Threshold of --metric (a p-value for ks and chi2).")
        ] = None,
        columns: Annotated[
            list[str] | None, typer.Option("--column", "-c", help="Only this column (repeat for more).")
        ] = None,
        prediction: Annotated[
            str | None, typer.Option("--prediction", help="The model's prediction column (prediction drift).")
        ] = None,
        html: Annotated[
            Path | None, typer.Option("--html", help="Write a self-contained HTML report (charts, no CDN) here.")
        ] = None,
        json_output: JsonFlag = False,
    ) -> None:
        """Compare the distribution of every column of CURRENT with REFERENCE.

        Defaults per column (as Evidently): numbers use KS up to 1,000 reference values and the normalised
        Wasserstein distance above; categories use chi-squared, then Jensen-Shannon. The data set drifted when
        half its compared columns did. Examples:

          conveyor drift churn:1 churn@latest

          conveyor drift train.parquet today.csv --metric psi --json --html drift.html

          conveyor drift model:churn@champion today.parquet
        """
        out = Output(json_output)
        options: dict[str, Any] = {
            "metric": metric,
            "columns": columns,
            "threshold": threshold,
            "prediction": prediction,
            "chart": html is not None,
        }
        from conveyor.monitor._service import _file_table, looks_like_path

        if looks_like_path(reference) and looks_like_path(current):
            # Two files: no workspace is needed, so none is looked for (or required).
            from conveyor.monitor import compute_drift

            report = compute_drift(
                _file_table(Path(reference), "reference"), _file_table(Path(current), "current"), **options
            )
        else:
            report = open_workspace(ctx).monitors.drift(reference, current, **options)
        if html is not None:
            from conveyor.cli.data_quality import _write_atomically

            out.note(f"Report written to {_write_atomically(html, report.to_html())}")

        def human(console: Console) -> None:
            from rich.table import Table

            table = Table("column", "type", "metric", "value", "threshold", "drift", box=None)
            for c in report.columns:
                verdict = "—" if c.drifted is None else ("[red]yes[/]" if c.drifted else "[green]no[/]")
                value = "—" if c.value is None else f"{c.value:.4g}"
                threshold_text = "—" if c.threshold is None else f"{c.threshold:g}"
                table.add_row(c.column, c.type, c.metric or "—", value, threshold_text, verdict)
            console.print(table)
            for c in report.columns:
                if c.message:
                    console.print(f"[dim]{c.column}: {c.message}[/]")
            for c in report.columns:
                if problems := _quality_problems(c.detail.get("quality")):
                    console.print(f"[yellow]{c.column}[/]: {problems}")
            for message in report.messages:
                console.print(f"[yellow]{message}[/]")
            mark = "[red]✗ drifted[/]" if report.drifted else "[green]✓ no drift[/]"
            console.print(
                f"{mark}: {report.share_drifted:.0%} of compared columns drifted "
                f"(threshold {report.drift_share:.0%}); {report.rows['reference']:,} reference rows, "
                f"{report.rows['current']:,} current rows, {report.seconds:.2f} s"
            )

        out.emit(report.to_dict(), human)


def _quality_problems(quality: dict[str, Any] | None) -> str:
    """One line on what is wrong with a current column's values (empty when nothing is)."""
    if not quality:
        return ""
    parts = []
    null_share, before = float(quality["null_share"]), float(quality["reference_null_share"])
    if null_share > before + 0.01:
        parts.append(f"{null_share:.1%} null (reference {before:.1%})")
    if quality.get("type_errors"):
        parts.append(f"{quality['type_errors']:,} values of the wrong type")
    if quality.get("out_of_range_share"):
        parts.append(f"{float(quality['out_of_range_share']):.1%} outside the reference's range")
    if quality.get("unseen_categories"):
        examples = ", ".join(repr(e) for e in quality["unseen_examples"])
        what = "unseen categories" if quality.get("unseen_exact") else "categories outside the reference's top 1,000"
        share = float(quality["unseen_share"])
        parts.append(f"{quality['unseen_categories']:,} {what} ({share:.1%} of rows: {examples})")
    return "; ".join(parts)
