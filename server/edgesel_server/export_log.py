"""Export a space's stored decisions and rewards as a decision log for offline evaluation.

The format is the simulator's (docs/simulator.md, "Decision log"), so `edgesel-sim replay` can estimate how
another policy or other settings would have done on real traffic:

    edgesel-server --config edgesel.toml --data-dir DIR --export-log decisions.jsonl --space NAME
    edgesel-sim replay --log decisions.jsonl --policy hybrid_linucb,disjoint_linucb

Propensities are exact when the space used forced sampling (`policy.forced_sampling > 0`); a deterministic
UCB policy logs 1.0 for its pick, which makes IPS estimates of other policies meaningless: the header says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgesel_server.config import ServerConfig
from edgesel_server.engine import Engine


def export_decision_log(cfg: ServerConfig, space_name: str, out: Path) -> int:
    """Write the log; returns the number of decision lines."""
    engine = Engine(cfg)
    engine.load_read_only()  # the catalog (snapshot + log) gives every arm's model vector; writes nothing
    try:
        space = engine.space(space_name)
        eps = space.cfg.policy.forced_sampling  # the config's setting (qoe_model: always 0)
        n = 0
        with out.open("w", encoding="utf-8") as fh:
            header = {
                "type": "header",
                "format": "edgesel-decision-log",
                "version": 1,
                "device_dim": len(space.device_schema),
                "model_dim": len(space.model_schema),
                "device_features": space.device_schema.columns,  # one name per vector column
                "model_features": space.model_schema.columns,
                "source": f"edgesel-server space {space_name!r}, policy {space.cfg.policy.kind}",
                "propensities": "exact" if eps > 0 else "deterministic policy (1.0 for its pick)",
            }
            fh.write(json.dumps(header) + "\n")
            vectors = space.model_vectors()
            arms = {model_id: [float(v) for v in vec] for model_id, vec in vectors.items()}
            fh.write(json.dumps({"type": "arms", "add": arms, "remove": []}) + "\n")
            all_ids = list(vectors)
            for d, reward in engine.store.decision_log(space_name):
                propensity = d.propensity if math.isfinite(d.propensity) and d.propensity > 0 else 1.0
                line = {
                    "type": "decision",
                    "event_id": d.event_id,
                    "round": n,
                    "context": [float(v) for v in d.x],
                    "eligible": d.eligible or all_ids,
                    "arm": d.model_id,
                    "propensity": propensity,
                    "reward": reward,
                    # the report's group (holdout.py: policy, holdout, or excluded) and device class
                    "group": d.group,
                    "device_class": d.device_class,
                }
                fh.write(json.dumps(line) + "\n")
                n += 1
        return n
    finally:
        engine.store.close()
