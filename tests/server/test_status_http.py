"""The metrics port: /metrics and /status of a real server that served traffic, the page's figures equal to
what was sent, bearer tokens on every path, the loopback rule of the status page, and its settings."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import CollectorRegistry

from edgesel_server.config import ConfigError, MetricsConfig, load_config, parse_config
from edgesel_server.engine import Engine
from edgesel_server.security import TokenRegistry
from edgesel_server.status.app import Access, MetricsPortApp, peer_is_loopback, warn_if_exposed
from edgesel_server.toml import loads as toml_loads
from tests.server.serverproc import ServerProcess
from tests.server.status_traffic import drive, get, metrics_listen, status_config

TOKEN = "scrape-4f1c8e2a9b7d6c5e3f0a1b2c"


def table(html: str, kind: str) -> list[list[str]]:
    m = re.search(rf'<table data-table="{kind}">.*?<tbody>(.*?)</tbody>', html, flags=re.S)
    assert m is not None, kind
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), flags=re.S)
    return [
        [unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows
    ]


def shares(html: str) -> Counter:
    """(device class, model) -> decisions, read from the share chart's bar titles."""
    out: Counter = Counter()
    for row, body in re.findall(r'<g class="share-row" data-row="([^"]*)">(.*?)</g>', html, flags=re.S):
        for model, n in re.findall(r"<title>([^<:]*): (\d+) \(", body):
            out[(unescape(row), unescape(model))] += int(n)
    return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    proc = ServerProcess(status_config(tmp_path), tmp_path / "data").start()
    try:
        yield proc, metrics_listen(proc)
    finally:
        proc.kill()


def test_the_page_shows_what_the_server_did(served: tuple[ServerProcess, str]) -> None:
    proc, listen = served
    sent = drive(proc.target)
    assert sent.failures > 0 and sent.feedback["holdout"] > 0
    code, html, headers = get(f"http://{listen}/status")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    catalog = {row[0]: row for row in table(html, "catalog")}
    assert sorted(catalog) == ["fast", "incumbent", "slow"]
    assert {m: int(row[3]) for m, row in catalog.items()} == {m: sent.decisions[m] for m in catalog}
    assert shares(html) == sent.policy_picks  # the holdout's decisions are not the policy's choices
    lift = {row[0]: row for row in table(html, "lift")}
    assert int(lift["all classes"][1]) == sent.feedback["policy"]
    assert int(lift["all classes"][3]) == sent.feedback["holdout"]
    failures = table(html, "failures")
    assert len(failures) == sent.failures
    assert {(r[1], r[2], r[4]) for r in failures} == {("slow", "exynos", "out_of_memory")}
    # Five failures in a row on exynos withdrew `slow` there (durable, from the log).
    events = table(html, "guardrails")
    assert [(r[0], r[1], r[2], r[3]) for r in events] == [("withdrawn", "slow", "exynos", "failure_rate")]
    assert catalog["slow"][2] == "exynos" and catalog["fast"][2] == "–"
    assert html.count('class="series" data-series="policy"') >= 1  # a QoE line from the closed samples
    # One space per page as well; an unknown one is a 404.
    code, one, _ = get(f"http://{listen}/status/fleet")
    assert code == 200 and 'data-space="fleet"' in one
    assert get(f"http://{listen}/status/nope")[0] == 404
    code, metrics, _ = get(f"http://{listen}/metrics")
    assert code == 200 and 'edgesel_decisions_total{space="fleet"} ' in metrics


def test_tokens_guard_every_path_of_the_port(tmp_path: Path) -> None:
    (tmp_path / "scrape-tokens.txt").write_text(f"# Prometheus\n{TOKEN}\n")
    config = status_config(tmp_path, 'tokens_file = "scrape-tokens.txt"\n')
    proc = ServerProcess(config, tmp_path / "data").start()
    try:
        listen = metrics_listen(proc)
        for path in ("/metrics", "/status", "/status/fleet", "/"):
            code, body, headers = get(f"http://{listen}{path}")
            assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
            assert "edgesel_" not in body and "fleet" not in body
            assert get(f"http://{listen}{path}", token="not-" + TOKEN)[0] == 401
            assert get(f"http://{listen}{path}", token=TOKEN)[0] == 200, path
    finally:
        proc.kill()
    assert not [line for line in proc.stderr_lines if TOKEN in line]


def test_status_off_leaves_metrics_on(tmp_path: Path) -> None:
    proc = ServerProcess(status_config(tmp_path, 'status = "off"\n'), tmp_path / "data").start()
    try:
        listen = metrics_listen(proc)
        assert get(f"http://{listen}/status")[0] == 404
        assert get(f"http://{listen}/metrics")[0] == 200
    finally:
        proc.kill()


@pytest.mark.parametrize(
    ("addr", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.5", False), ("192.168.1.20", False), ("::ffff:10.0.0.5", False), ("fe80::1%eth0", False),
     ("", False), ("not-an-ip", False)],
)  # fmt: skip
def test_peer_is_loopback(addr: str, loopback: bool) -> None:
    assert peer_is_loopback(addr) is loopback


def test_access_rule() -> None:
    tokens = TokenRegistry([TOKEN], ())
    far, near = "10.0.0.5", "127.0.0.1"
    loopback, on, off = Access("loopback", None), Access("on", None), Access("off", None)
    assert loopback.refusal("/status", near, None) is None
    assert loopback.refusal("/status/fleet", far, None) == (
        "403 Forbidden",
        'the status page answers loopback peers only ([server.metrics] status = "on" opens it)',
    )
    assert loopback.refusal("/metrics", far, None) is None  # metrics are not the status page
    assert on.refusal("/status", far, None) is None
    assert (
        off.refusal("/status", near, None) is not None
        and off.refusal("/status", near, None)[0] == "404 Not Found"
    )
    guarded = Access("on", tokens)
    for path in ("/metrics", "/status"):
        assert guarded.refusal(path, near, None)[0] == "401 Unauthorized"
        assert guarded.refusal(path, near, "Bearer wrong")[0] == "401 Unauthorized"
        assert guarded.refusal(path, near, f"Basic {TOKEN}")[0] == "401 Unauthorized"
        assert guarded.refusal(path, far, f"Bearer {TOKEN}") is None
    # A token does not open the page to far peers when it is loopback-only.
    assert Access("loopback", tokens).refusal("/status", far, f"Bearer {TOKEN}")[0] == "403 Forbidden"


def call(app: MetricsPortApp, path: str, remote: str, **environ: Any) -> tuple[str, bytes]:
    env: dict[str, Any] = {"PATH_INFO": path, "REMOTE_ADDR": remote, **environ}
    setup_testing_defaults(env)
    got: list[str] = []
    body = b"".join(app(env, lambda status, headers, exc_info=None: got.append(status)))
    return got[0], body


def test_the_app_refuses_far_peers_unless_the_page_is_on(tmp_path: Path) -> None:
    """The WSGI app itself, on a real engine, for peer addresses the tests cannot connect from."""
    cfg = load_config(status_config(tmp_path))
    cfg.data_dir = tmp_path / "data"
    engine = Engine(cfg)
    engine.start()
    try:
        registry = CollectorRegistry()
        near_only = MetricsPortApp(registry, engine, Access("loopback", None))
        assert call(near_only, "/status", "10.0.0.5")[0] == "403 Forbidden"
        assert call(near_only, "/status/fleet", "192.168.1.20")[0] == "403 Forbidden"
        status, body = call(near_only, "/status", "127.0.0.1")
        assert status == "200 OK" and b'data-table="catalog"' in body
        assert call(near_only, "/metrics", "10.0.0.5")[0] == "200 OK"
        opened = MetricsPortApp(registry, engine, Access("on", None))
        status, body = call(opened, "/status", "10.0.0.5")
        assert status == "200 OK" and b'data-space="fleet"' in body
        assert call(opened, "/status", "10.0.0.5", REQUEST_METHOD="POST")[0] == "405 Method Not Allowed"
        assert call(opened, "/elsewhere", "127.0.0.1")[0] == "404 Not Found"
        no_page = MetricsPortApp(registry, None, Access("on", None))
        assert call(no_page, "/status", "127.0.0.1")[0] == "404 Not Found"
    finally:
        asyncio.run(engine.close())


def _metrics(extra: str) -> MetricsConfig:
    space = '[[space]]\nname = "s"\n[[space.device_features]]\nname = "ram_gb"\nmin = 0\nmax = 64\n'
    text = f'[server.metrics]\nlisten = "127.0.0.1:9464"\n{extra}\n{space}[[space.models]]\nid = "m"\n'
    return parse_config(toml_loads(text)).metrics


def test_metrics_settings() -> None:
    default = _metrics("")
    assert (default.status, default.sample_s, default.samples, default.has_tokens) == (
        "loopback",
        10.0,
        360,
        False,
    )
    m = _metrics('status = "on"\ntokens_env = "SCRAPE"\nstatus_sample_s = 2\nstatus_samples = 10')
    assert (m.status, m.tokens_env, m.sample_s, m.samples, m.has_tokens) == ("on", "SCRAPE", 2.0, 10, True)
    for bad, key in [
        ('status = "public"', "server.metrics.status"),
        ("status_sample_s = 0", "server.metrics.status_sample_s"),
        ("status_samples = 0", "server.metrics.status_samples"),
        ('token_file = "x"', "server.metrics"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            _metrics(bad)


def test_an_exposed_metrics_port_without_tokens_warns(capsys: pytest.CaptureFixture[str]) -> None:
    warn_if_exposed("127.0.0.1:9464", MetricsConfig(status="on"))
    warn_if_exposed("0.0.0.0:9464", MetricsConfig(tokens_env="SCRAPE"))
    assert capsys.readouterr().err == ""
    warn_if_exposed("0.0.0.0:9464", MetricsConfig(status="on"))
    err = capsys.readouterr().err
    assert "WARNING" in err and "0.0.0.0:9464" in err and "status page" in err
    warn_if_exposed("10.0.0.7:9464", MetricsConfig())
    err = capsys.readouterr().err
    assert "WARNING" in err and "status page" not in err


def test_after_kill_9_the_tables_are_back_and_the_charts_start_empty(tmp_path: Path) -> None:
    config = status_config(tmp_path)
    proc = ServerProcess(config, tmp_path / "data").start()
    try:
        sent = drive(proc.target, n=60)
        before = get(f"http://{metrics_listen(proc)}/status")[1]
    finally:
        proc.kill()
    assert shares(before) == sent.policy_picks
    proc = ServerProcess(config, tmp_path / "data").start()
    try:
        code, after, _ = get(f"http://{metrics_listen(proc)}/status")
    finally:
        proc.kill()
    assert code == 200
    for durable in ("catalog", "lift", "lift-window", "guardrails"):
        assert table(after, durable) == table(before, durable), durable
    assert shares(after) == Counter() and "no decisions yet" in after
    assert table(after, "failures") == [["none"]] and table(before, "failures") != [["none"]]


def test_the_link_of_a_space_with_any_name_opens_its_page(tmp_path: Path) -> None:
    name = "flotte/ü 1&2"
    config = status_config(tmp_path)
    config.write_text(config.read_text().replace('name = "fleet"', f'name = "{name}"'))
    proc = ServerProcess(config, tmp_path / "data").start()
    try:
        listen = metrics_listen(proc)
        code, html, _ = get(f"http://{listen}/status")
        links = [unescape(h) for h in re.findall(r'<nav><a href="([^"]+)"', html)]
        assert code == 200 and links == ["/status/flotte%2F%C3%BC%201%262"]
        code, one, _ = get(f"http://{listen}{links[0]}")
        assert code == 200 and f'data-space="{name.replace("&", "&amp;")}"' in one
    finally:
        proc.kill()
