"""Run search (filter expressions → SQL, ordering, pages), comparison, child runs, latest-metric semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.errors import BadInput, NotFound


@pytest.fixture
def sweep(any_workspace):  # type: ignore[no-untyped-def]
    """12 runs in 'sweep' (learner lgbm/rf/linear, auc rising with i, lr), 2 in 'other'."""
    ws = any_workspace
    ids = []
    for i in range(12):
        learner = ("lgbm", "rf", "linear")[i % 3]
        with ws.runs.start("sweep", name=f"trial-{i}", tags={"team": "risk" if i < 6 else "growth"}) as run:
            run.log_params({"learner": learner, "lr": 0.01 * (i + 1), "depth": i})
            run.log_metric("auc", 0.5 + i * 0.04, step=1)
            if i % 2 == 0:
                run.log_metric("f1 score", i / 12)
        ids.append(run.id)
    for _ in range(2):
        with ws.runs.start("other") as run:
            run.log_metric("auc", 0.99)
    return ws, ids


def names(page) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.name for r in page.runs]


def test_filters_on_metrics_params_tags_and_attributes(sweep) -> None:  # type: ignore[no-untyped-def]
    ws, _ = sweep
    s = lambda f, **kw: names(ws.runs.search(f, experiments=["sweep"], order_by="name", **kw))  # noqa: E731
    assert s("metrics.auc > 0.8 and params.learner = 'lgbm'") == ["trial-9"]
    assert s("metrics.auc >= 0.88 AND params.learner != 'lgbm'") == ["trial-10", "trial-11"]
    assert s("params.learner in ('rf', 'linear') and tags.team = 'risk'") == [
        "trial-1",
        "trial-2",
        "trial-4",
        "trial-5",
    ]
    assert s("params.learner = 'lgbm' or metrics.auc > 0.92") == [
        "trial-0",
        "trial-11",
        "trial-3",
        "trial-6",
        "trial-9",
    ]
    assert s("not (metrics.auc < 0.88)") == ["trial-10", "trial-11"]
    assert s("params.depth > 9") == ["trial-10", "trial-11"], "a parameter compares numerically against a number"
    assert s("params.depth = 3") == ["trial-3"], "and as text for equality"
    assert s("metrics.`f1 score` is null and params.lr < 0.03") == ["trial-1"]
    assert s('metrics."f1 score" > 0.7') == ["trial-10"]
    assert s("name like 'trial-1%' and status = 'finished'") == ["trial-1", "trial-10", "trial-11"]
    assert s("tags.team ilike 'GROW%' and params.learner not in ('rf')") == [
        "trial-11",
        "trial-6",
        "trial-8",
        "trial-9",
    ]
    assert s("started_at > '2000-01-01' and ended_at is not null") == sorted(f"trial-{i}" for i in range(12))
    assert s(f"started_at > '{(datetime.now(UTC) + timedelta(days=1)).isoformat()}'") == []
    everywhere = ws.runs.search("metrics.auc > 0.95", order_by="experiment")
    assert [r.experiment for r in everywhere.runs] == ["other", "other"]


def test_ordering_and_pages(sweep) -> None:  # type: ignore[no-untyped-def]
    ws, ids = sweep
    page = ws.runs.search(experiments=["sweep"], order_by=["metrics.auc desc"], max_results=5)
    assert names(page) == ["trial-11", "trial-10", "trial-9", "trial-8", "trial-7"]
    seen = names(page)
    while page.next_page_token:
        page = ws.runs.search(
            experiments=["sweep"], order_by=["metrics.auc desc"], max_results=5, page_token=page.next_page_token
        )
        seen += names(page)
    assert seen == [f"trial-{i}" for i in reversed(range(12))]
    # runs without the metric sort last in both directions
    f1 = ws.runs.search(experiments=["sweep"], order_by="metrics.`f1 score` asc, name desc")
    assert names(f1)[:6] == ["trial-0", "trial-2", "trial-4", "trial-6", "trial-8", "trial-10"]
    assert names(f1)[6:] == ["trial-9", "trial-7", "trial-5", "trial-3", "trial-11", "trial-1"]
    by_param = ws.runs.search(experiments=["sweep"], order_by="params.learner, metrics.auc desc", max_results=3)
    assert names(by_param) == ["trial-9", "trial-6", "trial-3"]
    # the default is newest first
    assert [r.id for r in ws.runs.search(experiments=["sweep"]).runs] == list(reversed(ids))
    assert [r.id for r in ws.runs.list(experiment="sweep", limit=2)] == list(reversed(ids))[:2]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("metrics.auc >", "expected a number or a quoted value at the end"),
        ("metrics.auc > 'high'", "metrics.auc is a number"),
        ("auc > 0.8", "Unknown run attribute 'auc'"),
        ("metrics.auc > 0.8 and", "expected a field"),
        ("metrics.auc > 0.8 params.x = 1", "expected AND, OR or the end"),
        ("params.x = 'a' ;", "Cannot read the filter at character 16"),
        ("statsu = 'finished'", "Did you mean 'status'"),
        ("foo.bar = 1", "fields start with metrics., params., tags. or attributes."),
        ("started_at > 'yesterday'", "compares with a time"),
        ("(metrics.auc > 0.8", "expected ')'"),
    ],
)
def test_bad_filters_say_where_and_what(workspace, expression: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        workspace.runs.search(expression)


def test_bad_orderings_tokens_and_limits(sweep) -> None:  # type: ignore[no-untyped-def]
    ws, _ = sweep
    with pytest.raises(BadInput, match="Cannot read the ordering"):
        ws.runs.search(order_by="metrics.auc downwards")
    with pytest.raises(BadInput, match="not one this server gave out"):
        ws.runs.search(page_token="garbage!")
    token = ws.runs.search(experiments=["sweep"], max_results=2).next_page_token
    with pytest.raises(BadInput, match="belongs to another search"):
        ws.runs.search("status = 'finished'", experiments=["sweep"], max_results=2, page_token=token)
    with pytest.raises(BadInput, match="max_results"):
        ws.runs.search(max_results=0)
    with pytest.raises(NotFound, match="Did you mean 'sweep'"):
        ws.runs.search(experiments=["swep"])


def test_compare_child_runs_history_and_experiments(any_workspace) -> None:  # type: ignore[no-untyped-def]
    ws = any_workspace
    with ws.runs.start("cmp", name="parent") as parent:
        parent.log_params({"lr": 0.1, "seed": 7})
        with parent.child("a") as a:
            a.log_params({"lr": 0.1, "seed": 7})
            a.log_metric("auc", 0.8)
        with parent.child("b") as b:
            b.log_params({"lr": 0.2, "seed": 7})
            b.log_metrics({"auc": 0.9, "loss": 0.3})
    comparison = ws.runs.compare([a.id, b.id])
    assert comparison.params == {"lr": {a.id: "0.1", b.id: "0.2"}, "seed": {a.id: "7", b.id: "7"}}
    assert comparison.differing_params == ["lr"]
    assert comparison.metrics["loss"] == {a.id: None, b.id: 0.3}
    assert comparison.differing_metrics == ["auc", "loss"]
    children = ws.runs.search(f"parent_run_id = '{parent.id}'", order_by="name")
    assert names(children) == ["a", "b"]
    with pytest.raises(BadInput, match="at least two"):
        ws.runs.compare([a.id])
    with pytest.raises(NotFound, match="No run with id 'nope'"):
        ws.runs.compare([a.id, "nope"])
    with pytest.raises(NotFound, match="has no metric 'acu'. Did you mean 'auc'"):
        ws.runs.metric_history(a.id, "acu")
    with pytest.raises(NotFound, match="parent run"):
        ws.runs.start("cmp", parent_run_id="missing")
    [experiment] = ws.runs.experiments()
    assert (experiment.name, experiment.runs) == ("cmp", 3)


def test_the_latest_value_is_the_highest_step_whatever_the_order(any_workspace) -> None:  # type: ignore[no-untyped-def]
    ws = any_workspace
    with ws.runs.start("latest") as run:
        run.log_metric("loss", 0.5, step=10)
        run.flush()
        run.log_metric("loss", 0.9, step=3)  # a late value of an earlier step, in a later batch
        run.log_metric("loss", 0.7, step=10)  # the same step again: the newer value wins
    r = ws.runs.get(run.id)
    assert r.metrics == {"loss": 0.7}
    assert [(m.step, m.value) for m in ws.runs.metric_history(run.id, "loss")] == [(3, 0.9), (10, 0.5), (10, 0.7)]
    assert names(ws.runs.search("metrics.loss = 0.7")) == [""]
