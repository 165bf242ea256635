"""Fleet simulator: a hidden ground-truth QoE for real devices x real models, and policies run against it.

`edgesel-sim` (see :mod:`edgesel_tools.sim.cli`) runs every policy on the same stream of requests and writes
``report.json`` + ``regret.png``; :mod:`edgesel_tools.sim.replay` estimates a policy offline from a decision
log. The latency / energy / QoE model is documented in ``docs/simulator.md``.
"""

from edgesel_tools.sim.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["Scenario", "ScenarioError", "load_scenario"]
