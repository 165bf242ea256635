"""The status page in a real browser: headless Chromium (Debian's `chromium`, installed by scripts/test.sh)
loads /status from a live server that served Select/Feedback traffic with a holdout; the DOM it built has
every chart and a catalog row for every model, and its screenshot (saved as out/status.png) shows the charts'
colours where the charts are."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import grpc

from edgesel.v1 import catalog_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel_server.status import svg
from tests.server.png import pixels
from tests.server.serverproc import ROOT, ServerProcess
from tests.server.status_traffic import drive, metrics_listen, status_config

WINDOW = (1200, 2600)
CHART_ROWS = 1300  # the screenshot's rows that hold the QoE and share charts (the page's top)
OUT = ROOT / "out"


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is needed (scripts/test.sh installs it: apt-get install chromium)"
    profile = tmp_path / "chromium-profile"
    cmd = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def catalog_ids(target: str) -> list[str]:
    with grpc.insecure_channel(target) as channel:
        reply = cat_grpc.CatalogServiceStub(channel).ListModels(
            catalog_pb2.ListModelsRequest(space="fleet", include_retired=True), timeout=10
        )
    return [m.model_id for m in reply.models]


def test_the_status_page_renders_in_chromium(tmp_path: Path) -> None:
    proc = ServerProcess(status_config(tmp_path), tmp_path / "data").start()
    try:
        listen = metrics_listen(proc)
        sent = drive(proc.target)
        url = f"http://{listen}/status"
        dom = chromium(tmp_path, "--dump-dom", url).stdout
        OUT.mkdir(exist_ok=True)
        shot = OUT / "status.png"
        shot.unlink(missing_ok=True)
        chromium(tmp_path, f"--screenshot={shot}", url)
        models = catalog_ids(proc.target)
    finally:
        proc.kill()

    # The DOM Chromium built: every chart, lines in the QoE chart for both groups, a share bar per class.
    charts = re.findall(r'<svg [^>]*data-chart="([^"]+)"', dom)
    assert sorted(charts) == ["bonus", "explored", "failures", "qoe", "share"]
    qoe = re.search(r'<svg [^>]*data-chart="qoe".*?</svg>', dom, flags=re.S)
    assert qoe is not None
    assert set(re.findall(r'<polyline [^>]*data-series="([^"]+)"', qoe.group(0))) == {"policy", "holdout"}
    assert sorted(re.findall(r'<g class="share-row" data-row="([^"]+)"', dom)) == ["exynos", "snapdragon"]
    failures = re.search(r'<svg [^>]*data-chart="failures".*?</svg>', dom, flags=re.S)
    assert failures is not None and sum(1 for _ in re.finditer(r'<rect class="bar"', failures.group(0))) >= 1
    catalog = re.search(r'<table data-table="catalog">.*?</table>', dom, flags=re.S)
    assert catalog is not None
    rows = re.findall(r'<tr(?: class="retired")?><td class="l">([^<]*)</td>', catalog.group(0))
    assert sorted(rows) == sorted(models) == ["fast", "incumbent", "slow"]
    assert sent.failures > 0

    # What it drew: a PNG of the window's size, with the charts' colours in the charts' part of the page.
    width, height, colors = pixels(shot.read_bytes(), max_rows=CHART_ROWS)
    assert (width, height) == WINDOW
    white = colors[(255, 255, 255)] + colors[(252, 252, 252)]
    assert white < 0.97 * width * CHART_ROWS  # not a blank page
    for i in range(3):  # policy/holdout lines and the three models' share segments use these
        hexc = svg.color(i)
        rgb = tuple(int(hexc[k : k + 2], 16) for k in (1, 3, 5))
        assert colors[rgb] > 200, (hexc, colors[rgb])
