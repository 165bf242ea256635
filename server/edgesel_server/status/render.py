"""The status page as HTML: one section per space, inline SVG charts (svg.py), tables; no script at all.

Every string that comes from the configuration, the catalog or a request (space and model names, device
classes, failure reasons) is escaped here or in svg.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from edgesel_server.status import svg
from edgesel_server.status.history import HistoryView, Sample
from edgesel_server.status.view import SpaceStatus

REFRESH_S = 30
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 4px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}.note{color:#666;font-size:12px}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}tr.retired td{color:#999}
.chart{display:block;margin:6px 0;background:#fcfcfc;border:1px solid #eee}
.chart .grid{stroke:#eee}.chart .axis{stroke:#888}.chart text{fill:#333;font-size:11px}
.chart .chart-title{font-size:13px;font-weight:600}.chart .chart-empty{fill:#999;font-size:13px}
nav a{margin-right:12px}.pair{display:flex;flex-wrap:wrap;gap:12px}
"""


def _num(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t > 0 else "never"


def _table(
    kind: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    left: int = 1,
    greyed: Sequence[bool] = (),
) -> str:
    """Cells are HTML already (callers escape); the first `left` columns are text, the rest numbers; rows
    whose `greyed` flag is set are shown dimmed (retired models)."""
    head = "".join(
        f'<th class="l">{escape(h)}</th>' if i < left else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for i, row in enumerate(rows):
        cls = ' class="retired"' if i < len(greyed) and greyed[i] else ""
        cells = "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    if not rows:
        body.append(f'<tr><td class="l" colspan="{len(headers)}">none</td></tr>')
    return (
        f'<table data-table="{escape(kind)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _mid(s: Sample) -> float:
    return (s.start + (s.end if s.end is not None else s.start)) / 2


def _span(h: HistoryView) -> tuple[float, float]:
    if not h.closed:
        return (h.started, h.started + h.sample_s)
    end = h.closed[-1].end
    return (h.closed[0].start, end if end is not None else h.closed[-1].start)


def _history_note(h: HistoryView | None) -> str:
    if h is None:
        return '<p class="note">No history is kept for this space.</p>'
    return (
        f'<p class="note">Charts: in memory since this process started ({escape(_when(h.started))}), one '
        f"sample every {h.sample_s:g} s, the newest {h.max_samples} kept ({len(h.closed)} so far); a restart "
        "empties them. Tables: from the durable log (they survive restarts and agree across replicas), "
        "except the list of recent failures.</p>"
    )


def _charts(st: SpaceStatus, colors: dict[str, str]) -> str:
    h = st.history
    if h is None:
        return ""
    span = _span(h)
    qoe = [svg.Series("policy", [(_mid(s), s.mean_qoe("policy")) for s in h.closed], svg.color(0))]
    if st.holdout_model:
        qoe.append(svg.Series("holdout", [(_mid(s), s.mean_qoe("holdout")) for s in h.closed], svg.color(1)))
    bonus = [svg.Series("mean bonus", [(_mid(s), s.mean_bonus) for s in h.closed], svg.color(4))]
    explored = [
        svg.Series(
            "exploratory",
            [(_mid(s), s.exploratory / s.decisions if s.decisions else None) for s in h.closed],
            svg.color(6),
        )
    ]
    failures = [(s.start, s.end or s.start, float(s.failures)) for s in h.closed]
    title_qoe = "Mean QoE per sample: policy vs holdout" if st.holdout_model else "Mean QoE per sample"
    return "".join(
        (
            "<h3>QoE over time</h3>",
            svg.line_chart(qoe, kind="qoe", title=title_qoe, y_label="mean QoE", span=span),
            "<h3>Model share per device class</h3>",
            '<p class="note">Decisions of the policy (holdout excluded) over the kept history.</p>',
            svg.stacked_shares(h.picks(), colors, kind="share", title="Share of each model per device class"),
            "<h3>Exploration</h3>",
            '<div class="pair">',
            svg.line_chart(
                bonus,
                kind="bonus",
                title="Mean exploration bonus per sample",
                y_label="bonus",
                span=span,
                width=520,
            ),
            svg.line_chart(
                explored,
                kind="explored",
                title="Exploratory share of decisions per sample",
                y_label="share",
                span=span,
                width=520,
            ),
            "</div>",
            "<h3>Failures</h3>",
            svg.bar_chart(
                failures,
                kind="failures",
                title="Feedback saying the model did not run, per sample",
                y_label="failures",
                span=span,
            ),
        )
    )


def _lift_rows(period: dict[str, Any]) -> list[list[str]]:
    cells = {**period["classes"], "all classes": period["all"]}
    rows = []
    for cls, cell in cells.items():
        p, h, lf = cell["policy"], cell["holdout"], cell["lift"]
        ci = f"[{_num(lf['ci95'][0])}, {_num(lf['ci95'][1])}]" if lf else "–"
        rows.append(
            [
                escape(cls),
                str(p["n"]),
                _num(p["mean_qoe"]),
                str(h["n"]),
                _num(h["mean_qoe"]),
                _num(lf["absolute"]) if lf else "–",
                ci,
                _num(p["failure_rate"]),
            ]
        )
    return rows


def _lift(st: SpaceStatus) -> str:
    rep = st.report
    headers = [
        "device class", "policy n", "policy QoE", "holdout n", "holdout QoE", "lift", "95 % CI",
        "policy failure rate",
    ]  # fmt: skip
    since, window = _lift_rows(rep["since_start"]), _lift_rows(rep["window"])
    title = "Lift: policy minus holdout (durable)"
    if not st.holdout_model:  # the holdout columns would be empty
        keep = (0, 1, 2, 7)
        headers = [headers[i] for i in keep]
        since, window = ([[r[i] for i in keep] for r in rows] for rows in (since, window))
        title = "QoE of the policy (durable)"
    return "".join(
        (
            f"<h3>{title}</h3>",
            '<p class="note">Over the whole log:</p>',
            _table("lift", headers, since),
            f'<p class="note">Over the last {rep["window_s"]:g} s:</p>',
            _table("lift-window", headers, window),
        )
    )


def _guardrails(st: SpaceStatus) -> str:
    rep = st.report
    events = [
        [
            escape(str(g.get("event", ""))),
            escape(str(g.get("model_id", ""))),
            escape(str(g.get("device_class", ""))),
            escape(str(g.get("reason", ""))),
            _num(g.get("value")),
            _num(g.get("limit")),
            str(g.get("seq", "")),
            escape(_when(float(g.get("created", 0.0)))),
        ]
        for g in reversed(rep["guardrail_history"])
    ]
    recent = []
    if st.history is not None:
        recent = [
            [escape(x) for x in (_when(f.at), f.model_id, f.device_class, f.group, f.reason)]
            for f in reversed(st.history.failures)
        ]
    return "".join(
        (
            "<h3>Guardrail events (durable, newest first)</h3>",
            f'<p class="note">{len(rep["withdrawn"])} (model, device class) pairs withdrawn now.</p>',
            _table(
                "guardrails",
                ["event", "model", "device class", "guardrail", "value", "limit", "log seq", "time"],
                events,
                left=4,
            ),
            "<h3>Recent failures (since process start, newest first)</h3>",
            _table("failures", ["time", "model", "device class", "group", "reason"], recent, left=5),
        )
    )


def _catalog(st: SpaceStatus) -> str:
    rows = []
    for a in st.arms:
        status = "retired" if a.retired else "active"
        rows.append(
            [
                escape(a.model_id),
                escape(a.version),
                escape(", ".join(a.withdrawn_from)) or "–",
                str(a.n_selections),
                str(a.n_updates),
                _num(a.mean_reward if a.n_updates else None),
                _num(a.reward_sum),
                _num(a.theta_norm) if st.policy != "qoe_model" else "–",
                escape(_when(a.last_update)),
                status,
            ]
        )
    note = (
        f'<p class="note">The store could not be read: {escape(st.store_error)} (decisions show 0).</p>'
        if st.store_error
        else ""
    )
    headers = [
        "model", "version", "withdrawn from", "decisions", "updates", "mean reward", "reward sum", "‖θ‖",
        "last update", "status",
    ]  # fmt: skip
    greyed = [a.retired for a in st.arms]
    return (
        "<h3>Catalog and arm statistics (durable)</h3>"
        + note
        + _table("catalog", headers, rows, left=3, greyed=greyed)
    )


def space_section(st: SpaceStatus) -> str:
    colors = {a.model_id: svg.color(i) for i, a in enumerate(st.arms)}
    holdout = (
        f"holdout: <b>{escape(st.holdout_model)}</b> for {st.holdout_share:.1%} of installations"
        if st.holdout_model
        else "no holdout"
    )
    classes = (
        f"device class: feature <b>{escape(st.device_class_feature)}</b>"
        if st.device_class_feature
        else 'one device class, "all"'
    )
    desc = f"<p>{escape(st.description)}</p>" if st.description else ""
    return "".join(
        (
            f'<section class="space" data-space="{escape(st.name)}" id="space-{escape(quote(st.name))}">',
            f"<h2>{escape(st.name)}</h2>",
            desc,
            f"<p>policy <b>{escape(st.policy)}</b> · {holdout} · {classes} · log position {st.applied_seq} · "
            f"{st.pending} decisions waiting for feedback</p>",
            _history_note(st.history),
            _charts(st, colors),
            _lift(st),
            _guardrails(st),
            _catalog(st),
            "</section>",
        )
    )


def page(statuses: Sequence[SpaceStatus], *, all_spaces: Sequence[str], prefix: str = "/status") -> str:
    """The whole document; `all_spaces` are linked at the top (the page may show only some of them)."""
    now = statuses[0].now if statuses else time.time()
    nav = "".join(
        f'<a href="{escape(prefix)}/{escape(quote(n, safe=""))}">{escape(n)}</a>' for n in all_spaces
    )
    body = "".join(space_section(st) for st in statuses)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}"><title>edgesel status</title>'
        f"<style>{STYLE}</style></head><body><h1>edgesel status</h1>"
        f'<p class="note">As of {escape(_when(now))}; refreshes every {REFRESH_S} s. '
        f'<a href="{escape(prefix)}">all spaces</a></p><nav>{nav}</nav>{body}</body></html>'
    )
