"""``conveyor train``: AutoML — learner and hyperparameter search under a time budget, tracked, optionally
registered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.train import AutoMLResult

_STATUS_STYLE = {"passed": "green", "fixed": "cyan", "warning": "yellow"}


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        ctx: typer.Context,
        data: Annotated[str, typer.Option("--data", "-d", help="Data version to train on, e.g. churn@latest.")],
        target: Annotated[str, typer.Option("--target", "-t", help="The column to predict.")],
        task: Annotated[
            str | None,
            typer.Option(help="classification, regression or forecasting; default: inferred from the target."),
        ] = None,
        time_budget: Annotated[
            float,
            typer.Option("--time-budget", help="Seconds for the whole search, evaluation included (strict)."),
        ] = 60.0,
        metric: Annotated[
            str | None,
            typer.Option(
                help="Metric to optimise: roc_auc, log_loss, accuracy, balanced_accuracy, f1_macro (classification); "
                "r2, rmse, mae (regression). Default: roc_auc / r2."
            ),
        ] = None,
        experiment: Annotated[
            str, typer.Option("--experiment", "-e", help="Experiment of the tracked run.")
        ] = "automl",
        register_as: Annotated[
            str | None, typer.Option("--register", help="Register the winning model under this name.")
        ] = None,
        alias: Annotated[
            str | None, typer.Option(help="With --register: point this alias (e.g. champion) at the new version.")
        ] = None,
        exclude: Annotated[
            list[str] | None, typer.Option("--exclude", "-x", help="A column the model must not see (repeat).")
        ] = None,
        allow_leak: Annotated[
            list[str] | None,
            typer.Option(
                "--allow-leak",
                help="A column legitimately that strong: the leakage check reports it without a warning (repeat).",
            ),
        ] = None,
        time_column: Annotated[
            str | None, typer.Option("--time-column", help="Forecasting: the column holding each row's time.")
        ] = None,
        series_id: Annotated[
            str | None, typer.Option("--series-id", help="Forecasting: the column naming each series (optional).")
        ] = None,
        horizon: Annotated[
            int | None, typer.Option(help="Forecasting: how many steps ahead to forecast.", min=1)
        ] = None,
        learner: Annotated[
            list[str] | None,
            typer.Option(
                "--learner",
                help="Search only this learner (repeat): linear, hist_gb, lightgbm, xgboost, random_forest, "
                "extra_trees.",
            ),
        ] = None,
        max_trials: Annotated[int | None, typer.Option(help="Stop after this many trials.", min=1)] = None,
        patience: Annotated[int, typer.Option(help="Stop after this many trials without improvement.", min=1)] = 100,
        folds: Annotated[
            int,
            typer.Option(
                help="Cross-validation folds (when the data is small for the budget; else one 10% holdout).",
                min=2,
                max=20,
            ),
        ] = 5,
        ensemble: Annotated[
            bool, typer.Option("--ensemble/--no-ensemble", help="Try an ensemble of the best trials.")
        ] = True,
        seed: Annotated[int, typer.Option(help="Seed of the splits and the search.")] = 0,
        n_jobs: Annotated[int, typer.Option("--n-jobs", help="Threads per trial.", min=1)] = 1,
        sensitive: Annotated[
            list[str] | None,
            typer.Option(
                "--sensitive",
                help="A column whose groups the model card compares for fairness (repeat; recorded on the run).",
            ),
        ] = None,
        json_output: JsonFlag = False,
    ) -> None:
        """Search learners and hyperparameters for TARGET under a strict time budget (AutoML).

        Featurisation is automatic and part of the model (it takes raw rows); a data guardrails report is shown
        and logged; every trial is a child run; the best model (or an ensemble of the best trials) is evaluated
        on held-out rows with charts saved to the run. With --task forecasting (--time-column, --horizon,
        optionally --series-id): lag, rolling and calendar features, rolling-origin validation, and a
        seasonal-naive baseline the model must beat.
        """
        out = Output(json_output)
        ws = open_workspace(ctx)
        with _Progress(out, time_budget) as update:
            result = ws.train.automl(
                data,
                target,
                task=task,
                metric=metric,
                time_budget=time_budget,
                experiment=experiment,
                register=register_as,
                alias=alias,
                exclude=exclude or (),
                allow_leaks=allow_leak or (),
                time_column=time_column,
                series_id=series_id,
                horizon=horizon,
                learners=learner or None,
                max_trials=max_trials,
                patience=patience,
                folds=folds,
                ensemble=ensemble,
                seed=seed,
                n_jobs=n_jobs,
                progress=update,
                **({"tags": {"sensitive": ",".join(sensitive)}} if sensitive else {}),
            )
        out.emit(result.to_json(), lambda console: _summary(console, result))


class _Progress:
    """A Rich progress bar on stderr (only on a terminal) that fills with the elapsed share of the budget."""

    def __init__(self, out: Output, budget: float) -> None:
        self.out, self.budget = out, budget
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> Any:
        if not self.out.interactive:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]AutoML[/]"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.out.err,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("starting…", total=self.budget)
        return self.update

    def update(self, elapsed: float, message: str) -> None:
        self.bar.update(self.task, completed=min(elapsed, self.budget), description=message)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summary(console: Console, result: AutoMLResult) -> None:
    from rich.table import Table

    console.print("[bold]Data guardrails[/]")
    table = Table("check", "status", "detail", box=None)
    for g in result.guardrails:
        style = _STATUS_STYLE.get(g.status, "")
        table.add_row(g.check, f"[{style}]{g.status}[/]", g.message)
    console.print(table)
    states = result.to_json()["trials_by_state"]
    console.print(
        f"\n[bold]{len(result.trials)} trials[/] in {result.seconds:.1f} s of a {result.time_budget:g} s budget "
        f"({', '.join(f'{v} {k}' for k, v in states.items() if v)}); stopped: {result.stopped_because}."
    )
    console.print(f"validation: {result.validation}")
    board = Table("trial", "learner", "state", result.metric, "seconds", box=None, title="Best trials")
    done = sorted(
        (t for t in result.trials if t.score is not None),
        key=lambda t: t.score or 0.0,
        reverse=result.metric in ("roc_auc", "accuracy", "balanced_accuracy", "f1_macro", "r2"),
    )
    for t in done[:8]:
        board.add_row(str(t.number), t.learner, t.state, f"{t.score:.4f}", f"{t.seconds:.2f}")
    console.print(board)
    if result.ensemble:
        members = ", ".join(
            f"{m['learner']} (trial {m['trial']}) {m['weight']:.2f}" for m in result.ensemble["members"]
        )
        console.print(
            f"ensemble of {members}: {result.metric} {result.ensemble['score']:.4f} vs best single "
            f"{result.ensemble['best_single_score']:.4f}"
        )
    console.print(f"\n[bold]best[/] {result.best_learner}: validation {result.metric} [bold]{result.score:.4f}[/]")
    if result.baseline is not None:
        b = result.baseline
        verdict = "beaten" if b["beaten"] else "[yellow]not beaten: the seasonal-naive forecast is kept[/]"
        console.print(f"seasonal-naive baseline (season {b['season']}): {result.metric} {b['score']:.4f} — {verdict}")
    if result.test_metrics:
        console.print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in result.test_metrics.items()))
    if result.feature_importance:
        top = ", ".join(f"{r['column']} {r['importance']:.3f}" for r in result.feature_importance[:5])
        console.print(f"most important: {top}")
    console.print(f"run {result.run_id} (report with charts: conveyor runs open {result.run_id})")
    if result.model_ref:
        console.print(f"registered [bold]{result.model_ref}[/]")
