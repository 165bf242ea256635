"""The status page's HTML and SVG (status/render.py, status/svg.py): every string from the catalog, the config
or a request is escaped, an empty history and a space without a holdout render sensibly, and chart
coordinates stay inside the plot for any data."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel_server.guardrails import GuardrailConfig, Guardrails
from edgesel_server.lift import LiftTracker
from edgesel_server.status import render, svg
from edgesel_server.status.history import SpaceHistory
from edgesel_server.status.view import ArmRow, SpaceStatus

EVIL = '<script>alert("x")</script>&"\''
SVG_NS = "{http://www.w3.org/2000/svg}"


class Elements(HTMLParser):
    """Tag names and text of a document, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    p.close()
    return p


def svgs(html: str) -> list[ET.Element]:
    """Every inline chart, parsed as XML: it must be well-formed on its own."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def arm(model_id: str, **kw) -> ArmRow:
    base = dict(version="", retired=False, withdrawn_from=(), n_selections=0, n_updates=0, mean_reward=0.0,
                reward_sum=0.0, theta_norm=0.0, last_update=0.0)  # fmt: skip
    base.update(kw)
    return ArmRow(model_id=model_id, **base)


def status(
    *,
    name: str = "vision",
    arms: list[ArmRow] | None = None,
    history: SpaceHistory | None = None,
    holdout: str = "incumbent",
    lift: LiftTracker | None = None,
    guardrails: Guardrails | None = None,
) -> SpaceStatus:
    now = 1_000_000.0
    report = (lift or LiftTracker()).report(now)
    g = guardrails or Guardrails(GuardrailConfig())
    report["withdrawn"] = [
        {"model_id": b.model_id, "device_class": b.device_class} for b in g.withdrawn.values()
    ]
    report["guardrail_history"] = list(g.history)
    return SpaceStatus(
        name=name,
        description="",
        policy="qoe_model",
        holdout_model=holdout,
        holdout_share=0.1 if holdout else 0.0,
        device_class_feature="soc",
        applied_seq=12,
        pending=3,
        arms=arms if arms is not None else [arm("incumbent"), arm("fast")],
        report=report,
        history=history.view() if history is not None else None,
        now=now,
    )


def test_every_outside_string_is_escaped() -> None:
    h = SpaceHistory(1.0, 10, now=1_000_000.0 - 5)
    h.on_decision(EVIL, EVIL, 0.3, True, "policy")
    h.on_outcome("policy", EVIL, EVIL, 0.5, True, EVIL, 1_000_000.0 - 4)
    h.roll(1_000_000.0 - 4)
    lift = LiftTracker()
    for q in (0.1, 0.2, 0.3):
        lift.add("policy", EVIL, qoe=q, latency_ms=5.0, failed=False, at=1_000_000.0 - 3)
        lift.add("holdout", EVIL, qoe=q / 2, latency_ms=5.0, failed=False, at=1_000_000.0 - 3)
    guard = Guardrails(GuardrailConfig(max_failure_rate=0.1, window=2, min_observations=2))
    for seq in (1, 2):
        guard.observe(model_id=EVIL, device_class=EVIL, holdout=False, failed=True, latency_ms=None, seq=seq,
                      created=1_000_000.0 - 2)  # fmt: skip
    assert guard.withdrawn
    st_ = status(name=EVIL, arms=[arm(EVIL, version=EVIL, withdrawn_from=(EVIL,))], history=h, lift=lift,
                 guardrails=guard)  # fmt: skip
    st_ = SpaceStatus(**{**st_.__dict__, "description": EVIL, "holdout_model": EVIL,
                         "device_class_feature": EVIL})  # fmt: skip
    html = render.page([st_], all_spaces=[EVIL, "other"])
    doc = parse(html)
    assert "script" not in doc.tags
    assert not any(k.startswith("on") for k, _ in doc.attrs)
    assert EVIL in "".join(doc.text)  # shown, as text
    assert "<script>" not in html
    charts = svgs(html)
    assert {c.get("data-chart") for c in charts} == {"qoe", "share", "bonus", "explored", "failures"}
    share = next(c for c in charts if c.get("data-chart") == "share")
    assert [g.get("data-row") for g in share.iter(f"{SVG_NS}g") if g.get("data-row")] == [EVIL]
    # The space link is percent-encoded, then escaped.
    assert 'href="/status/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%26%22%27"' in html


def test_an_empty_history_still_shows_every_chart_and_every_catalog_model() -> None:
    html = render.page([status(history=SpaceHistory(10.0, 360, now=999_990.0))], all_spaces=["vision"])
    charts = svgs(html)
    assert len(charts) == 5
    empty = [c for c in charts if c.find(f"{SVG_NS}text[@class='chart-empty']") is not None]
    assert len(empty) == 5
    assert not re.search(r"<polyline|<rect class=\"(bar|share)\"", html)
    assert "0 so far" in html and "a restart empties them" in html
    rows = re.search(r'<table data-table="catalog">.*?</table>', html, flags=re.S)
    assert rows is not None
    assert re.findall(r'<tr><td class="l">([^<]*)</td>', rows.group(0)) == ["incumbent", "fast"]


def test_without_history_the_page_says_so_and_draws_no_chart() -> None:
    html = render.page([status(history=None)], all_spaces=["vision"])
    assert "No history is kept" in html and not svgs(html)


def test_a_space_without_holdout_has_no_holdout_line_or_columns() -> None:
    h = SpaceHistory(1.0, 10, now=0.0)
    for t in range(1, 4):
        h.on_decision("all", "fast", 0.1, False, "policy")
        h.on_outcome("policy", "all", "fast", 0.5 + t / 10, False, "", float(t))
        h.roll(float(t))
    lift = LiftTracker()
    lift.add("policy", "all", qoe=0.5, latency_ms=None, failed=False, at=999_999.0)
    html = render.page([status(history=h, holdout="", lift=lift)], all_spaces=["vision"])
    qoe = next(c for c in svgs(html) if c.get("data-chart") == "qoe")
    assert [p.get("data-series") for p in qoe.iter(f"{SVG_NS}polyline")] == ["policy"]
    table = re.search(r'<table data-table="lift">.*?</table>', html, flags=re.S)
    assert table is not None and "holdout" not in table.group(0)
    assert "no holdout" in html and "QoE of the policy" in html
    with_holdout = render.page([status(history=h, lift=lift)], all_spaces=["vision"])
    qoe = next(c for c in svgs(with_holdout) if c.get("data-chart") == "qoe")
    # The holdout had no reward in any sample: a series without points draws no line.
    assert [p.get("data-series") for p in qoe.iter(f"{SVG_NS}polyline")] == ["policy"]
    assert [t.text for t in qoe.iter(f"{SVG_NS}text") if t.text == "holdout"] == ["holdout"]  # legend


def test_retired_models_are_listed_dimmed() -> None:
    html = render.page([status(arms=[arm("old", retired=True), arm("new")])], all_spaces=["vision"])
    assert '<tr class="retired"><td class="l">old</td>' in html
    assert '<tr><td class="l">new</td>' in html


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), finite), min_size=1, max_size=60),
    t0=st.floats(min_value=0, max_value=2e9),
    dt=st.floats(min_value=1e-3, max_value=3600),
)
def test_line_points_stay_inside_the_plot_and_follow_time(
    values: list[float | None], t0: float, dt: float
) -> None:
    points = [(t0 + i * dt, v) for i, v in enumerate(values)]
    chart = ET.fromstring(
        svg.line_chart(
            [svg.Series("s", points, "#000")],
            kind="k",
            title="t",
            y_label="y",
            span=(t0, t0 + (len(values) - 1) * dt),
        )  # fmt: skip
    )
    width, height = float(chart.get("width", 0)), float(chart.get("height", 0))
    lines = []
    for line in chart.iter(f"{SVG_NS}polyline"):
        xy = [tuple(map(float, p.split(","))) for p in (line.get("points") or "").split()]
        assert [x for x, _ in xy] == sorted(x for x, _ in xy)  # time runs left to right
        lines += xy
    dots = [(float(c.get("cx", 0)), float(c.get("cy", 0))) for c in chart.iter(f"{SVG_NS}circle")]
    present = [v for v in values if v is not None]
    assert len(lines) == len(present)  # every value is on a line, in order
    for x, y in lines + dots:
        assert svg.MARGIN_LEFT - 0.1 <= x <= width - svg.MARGIN_RIGHT + 0.1
        assert svg.MARGIN_TOP - 0.1 <= y <= height - svg.MARGIN_BOTTOM + 0.1
    # A larger value is drawn higher (smaller y), to the 0.1 px the coordinates are written with.
    by_value = sorted(zip(present, (y for _, y in lines), strict=True))
    for (_, y_low), (_, y_high) in zip(by_value, by_value[1:], strict=False):
        assert y_high <= y_low + 0.1


@settings(max_examples=300, deadline=None)
@given(lo=finite, width=st.one_of(st.just(0.0), st.floats(min_value=1e-300, max_value=1e6)))
def test_nice_ticks_cover_the_range_with_round_steps(lo: float, width: float) -> None:
    hi = lo + width
    ticks = svg.nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert 2 <= len(ticks) <= 12
    assert ticks == sorted(set(ticks))
    step = (ticks[-1] - ticks[0]) / (len(ticks) - 1)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(abs(mantissa - m) < 1e-6 * m for m in (1.0, 2.0, 5.0, 10.0))
