"""docs/grafana/edgesel.json asks only for what the server exports: every PromQL expression parses, and every
metric it selects, with every label it matches on or groups by, is on /metrics of a live server that served
Select/Feedback traffic with a holdout (so the lift series exist)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser

from tests.server.serverproc import ROOT, ServerProcess
from tests.server.status_traffic import drive, get, metrics_listen, status_config

DASHBOARD = ROOT / "docs" / "grafana" / "edgesel.json"
# Grafana's variables, as Prometheus would see them after Grafana substitutes them.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$space": ".*"}
SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$")


def exprs(node: Any) -> Iterator[str]:
    """Every `expr` of every target, rows' nested panels included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def used(expr: str) -> tuple[dict[str, set[str]], set[str]]:
    """(metric -> label names its selectors match on, label names of by/on/ignoring clauses)."""
    selectors: dict[str, set[str]] = {}
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            selectors.setdefault(node.name, set()).update(m.name for m in node.matchers.matchers)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selectors, grouping


def exported(text: str) -> dict[str, set[str]]:
    """metric name -> its label names, from a Prometheus text exposition."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            labels = {kv.split("=", 1)[0] for kv in re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', m.group(2) or "")}
            out.setdefault(m.group(1), set()).update(labels)
    return out


def test_the_dashboard_uses_only_metrics_and_labels_the_server_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [substitute(e) for e in exprs(dashboard["panels"])]
    assert len(queries) >= 20
    # The template variable's query (label_values(metric, label)) names a metric too.
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    label_values = [re.fullmatch(r"label_values\((\w+), *(\w+)\)", d) for d in variables]
    assert all(label_values) and label_values

    proc = ServerProcess(status_config(tmp_path), tmp_path / "data").start()
    try:
        listen = metrics_listen(proc)
        drive(proc.target, n=60)
        code, text, _ = get(f"http://{listen}/metrics")
    finally:
        proc.kill()
    assert code == 200
    live = exported(text)
    all_labels = set().union(*live.values())

    for query in queries:
        selectors, grouping = used(query)
        assert selectors, query
        for metric, labels in selectors.items():
            assert metric in live, f"{metric} (in {query!r}) is not exported; exported: {sorted(live)}"
            assert labels <= live[metric], f"{metric} has no label {labels - live[metric]} ({query!r})"
        assert grouping <= all_labels, f"grouping by {grouping - all_labels} in {query!r}"
    for m in label_values:
        assert m is not None and m.group(1) in live and m.group(2) in live[m.group(1)]


def test_every_panel_has_its_own_place_on_the_grid() -> None:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
    assert len({p["id"] for p in panels}) == len(panels)
