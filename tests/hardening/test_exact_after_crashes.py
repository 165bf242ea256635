"""SIGKILL under load, restart on the same data directory, and the books must balance exactly.

16 raw-stub clients keep Select + Feedback going; the server is killed 5 times. Afterwards every acknowledged
Feedback re-sent is DUPLICATE with the reward that was applied; every answered Select whose Feedback was held
back (every 4th, some answered just before a kill) is ACCEPTED at its first Feedback, never NOT_FOUND;
GetArmStats equals the applied feedback arm by arm (n_updates, reward_sum, mean_reward; n_selections >=
n_updates), and an idle kill -9 changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from tests.hardening.crashload import (
    Books,
    CrashLoad,
    arm_stats,
    check_stats_equal_applied,
    export_state,
    settle,
)
from tests.hardening.support import tracebacks
from tests.server.serverproc import ServerProcess, write_config

KILLS = 5


def test_kill9_under_load_keeps_every_statistic_exact(tmp_path: Path) -> None:
    # Snapshots often, so that they are taken while the writer applies events (issue 11, defect 1).
    cfg = write_config(tmp_path, snapshot_every=25)
    data = tmp_path / "data"
    proc = ServerProcess(cfg, data).start()
    port = proc.port
    books = Books()
    try:
        for _ in range(KILLS):
            # Every 4th answered Select gets its first Feedback only after all the crashes.
            with CrashLoad([proc.target], books, workers=16, withhold=4) as load:
                load.wait_acked(load.acked_count() + 600)
                assert not tracebacks(proc), tracebacks(proc)
                proc.kill()
            proc = ServerProcess(cfg, data, port=port).start()
        assert not books.wrong, books.wrong[:5]
        assert books.withheld  # answered Selects whose first Feedback comes after the restarts
        applied = settle([proc.target], books)
        stats = arm_stats(proc.target)
        check_stats_equal_applied(stats, applied)
        # Idle kill -9: the restarted server's state and statistics are exactly the same.
        before_state, before_stats = export_state(proc.target), arm_stats(proc.target)
        proc.kill()
        proc = ServerProcess(cfg, data, port=port).start()
        assert export_state(proc.target) == before_state
        assert arm_stats(proc.target) == before_stats
    finally:
        proc.kill()
