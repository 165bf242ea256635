"""`edgesel.toml`: the server settings and the selection spaces it serves.

Every problem is reported as a ConfigError naming the offending key (`space[0].policy.alpha`), so an
operator never has to guess which line of the file is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesel_server import toml as tomllib
from edgesel_server.catalog import Catalog, CatalogError, Model
from edgesel_server.core import POLICIES
from edgesel_server.guardrails import GuardrailConfig
from edgesel_server.qoe import QoeFunction
from edgesel_server.schema import AnyFeatureSpec, CategoricalSpec, FeatureSchema, FeatureSpec

MISSING_FEEDBACK_ACTIONS = ("drop", "default")
REWARD_AGGREGATIONS = ("first", "mean", "last", "min")
DURABILITY_MODES = ("fsync", "process")
STATUS_MODES = ("loopback", "on", "off")
FEATURE_KINDS = ("numeric", "categorical")


class ConfigError(ValueError):
    """The configuration file is invalid."""


@dataclass(frozen=True)
class PolicyConfig:
    # qoe_model learns the measurements and applies each request's preferences (docs/core.md); the default.
    kind: str = "qoe_model"
    alpha: float = 1.0  # default per kind: DEFAULT_ALPHA
    lam: float = 1.0
    refactor_every: int = 1000
    seed: int = 0
    # μLinUCB-style forced sampling: with this probability a Select picks uniformly among the eligible models,
    # so the learner cannot get stuck and every logged decision has a known propensity for offline evaluation.
    forced_sampling: float = 0.0
    # Forgetting (docs/core.md, "Forgetting"): learned statistics are discounted so that an observation's
    # weight halves every `half_life` applied feedback events, so the policy follows firmware/OS/app changes;
    # 0 = no forgetting. For qoe_model each target forgets so on its own updates ("The QoE model").
    half_life: int = 0
    # Conservative exploration (qoe_model only): explore only while the QoE obtained stays >= (1 - max_loss)
    # x what this model would have given.
    baseline_model: str | None = None
    max_loss: float = 0.05


@dataclass(frozen=True)
class HoldoutConfig:
    """`[space.holdout]`: a stable share of installations always gets the incumbent `model`
    (docs/holdout.md)."""

    model: str
    share: float


@dataclass(frozen=True)
class ReportConfig:
    """`[space.report]`: how GetSpaceReport splits devices into classes, and its sliding window."""

    device_class: str | None = None  # a device feature's name; None: one class, "all"
    window_s: float = 3600.0


# qoe_model's exploration is already in reward units (docs/core.md); the LinUCB family's α multiplies raw
# standard errors of the scalar reward.
DEFAULT_ALPHA = {"qoe_model": 1.0, "disjoint_linucb": 0.5, "hybrid_linucb": 0.5, "lin_ts": 0.5}


@dataclass
class SpaceConfig:
    name: str
    device_features: list[AnyFeatureSpec]
    model_features: list[AnyFeatureSpec]
    models: list[Model]
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    qoe: QoeFunction = field(default_factory=QoeFunction)
    reward_window_s: float = 600.0
    on_missing_feedback: str = "drop"
    default_reward: float = 0.0
    # Several Feedbacks per decision: "first" learns the first at once (later ones are DUPLICATE); "mean",
    # "last" and "min" record every one and learn their aggregate once, when the window closes
    # (docs/rewards.md).
    reward_aggregation: str = "first"
    # Ask the device to solicit a user rating when the pick was exploratory or its bonus is at least this.
    rating_request_min_bonus: float = 0.1
    description: str = ""  # shown by ListSpaces
    holdout: HoldoutConfig | None = None
    report: ReportConfig = field(default_factory=ReportConfig)
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)


@dataclass(frozen=True)
class TlsConfig:
    """`[server.tls]`: the server's certificate and key; a client CA turns on mutual TLS."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True)
class AuthConfig:
    """`[server.auth]`: bearer tokens (files with one token a line, or comma-separated env variables)."""

    device_tokens_file: Path | None = None
    device_tokens_env: str | None = None
    admin_tokens_file: Path | None = None
    admin_tokens_env: str | None = None
    # Feedback for a decision is accepted only from the token that asked for it.
    bind_feedback_to_token: bool = False


@dataclass(frozen=True)
class MetricsConfig:
    """`[server.metrics]` beyond `listen`: who may read the metrics port and its status page (docs/status.md).

    `status`: "loopback" (default) serves /status only to clients connecting from a loopback address, "on" to
    anyone who can reach the port, "off" never. With tokens, every path of the port needs one of them."""

    status: str = "loopback"
    tokens_file: Path | None = None
    tokens_env: str | None = None
    # The status page's in-memory history: one sample every `sample_s` seconds, the newest `samples` kept.
    sample_s: float = 10.0
    samples: int = 360

    @property
    def has_tokens(self) -> bool:
        return bool(self.tokens_file or self.tokens_env)


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    data_dir: Path = Path("edgesel-data")
    store: str = "sqlite"
    durability: str = "fsync"
    # Under load, how long the store's writer waits for more writes to share a commit (store/base.py).
    commit_delay_ms: float = 2.0
    snapshot_every: int = 1000
    max_message_bytes: int = 1 << 20
    max_features: int = 256
    max_eligible: int = 10_000
    # Bounds memory (a pending decision takes ~0.5 KB); the oldest are closed early beyond it.
    max_pending_decisions: int = 250_000
    # Decisions answered while the store is down wait in memory (in order) until it is back; beyond this
    # many, Select fails with UNAVAILABLE instead.
    max_unsaved_decisions: int = 100_000
    decision_retention_s: float = 7 * 24 * 3600.0
    # Requests per second per principal (bearer token, or peer address without auth); 0 turns it off.
    rate_limit_per_s: float = 0.0
    rate_burst: int = 0  # 0: one second's worth
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    metrics_listen: str | None = None  # `[server.metrics] listen`; no metrics endpoint when None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    spaces: list[SpaceConfig] = field(default_factory=list)


class _Reader:
    """Typed access to a TOML table that remembers where it is, for error messages."""

    def __init__(self, table: Mapping[str, Any], where: str) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where or 'config'} must be a table")
        self.table = table
        self.where = where
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise ConfigError(f"{self._key(key)} is required")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise ConfigError(f"{self._key(key)} must be {getattr(kind, '__name__', kind)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self._key(key)} must be finite, got {value!r}")
        return value

    def sub(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict, {}), self._key(key))

    def list_of_tables(self, key: str) -> list[_Reader]:
        items = self.get(key, list, [])
        return [_Reader(t, f"{self._key(key)}[{i}]") for i, t in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(f"unknown key(s) in {self.where or 'config'}: {', '.join(unknown)}")


def _feature(t: _Reader) -> AnyFeatureSpec:
    name = t.get("name", str)
    kind = t.get("kind", str, "numeric")
    if kind == "categorical":
        values = t.get("values", list)
        if any(not isinstance(v, str) for v in values):
            raise ConfigError(f"{t.where}.values must be a list of strings, got {values!r}")
        return CategoricalSpec(
            name=name,
            values=tuple(values),
            default=t.get("default", str, None),
            unknown=t.get("unknown", str, "error"),
        )
    if kind != "numeric":
        raise ConfigError(f"{t.where}.kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
    return FeatureSpec(
        name=name,
        min=t.get("min", float),
        max=t.get("max", float),
        transform=t.get("transform", str, "linear"),
        default=t.get("default", float, None),
        clip=t.get("clip", bool, False),
    )


def _features(r: _Reader, key: str) -> list[AnyFeatureSpec]:
    specs = []
    for t in r.list_of_tables(key):
        try:
            specs.append(_feature(t))
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(f"{t.where}: {e}") from None
        t.done()
    return specs


def _check_catalog(space: SpaceConfig, where: str) -> None:
    """The schemas are consistent and every configured model fits the model schema, so a bad catalog entry
    is reported by its key now rather than as a start-up failure later."""
    try:
        FeatureSchema(space.device_features, kind="device")
        model_schema = FeatureSchema(space.model_features, kind="model")
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    catalog = Catalog(model_schema)
    for i, model in enumerate(space.models):
        try:
            catalog.add(model)
        except CatalogError as e:
            raise ConfigError(f"{where}.models[{i}]: {e}") from None


def _space(r: _Reader) -> SpaceConfig:
    name = r.get("name", str)
    if not name or not name.isprintable() or len(name) > 128:
        raise ConfigError(f"{r.where}.name must be 1-128 printable characters")
    p = r.sub("policy")
    kind = p.get("kind", str, PolicyConfig.kind)
    policy = PolicyConfig(
        kind=kind,
        alpha=p.get("alpha", float, DEFAULT_ALPHA.get(kind, PolicyConfig.alpha)),
        lam=p.get("lam", float, PolicyConfig.lam),
        refactor_every=p.get("refactor_every", int, PolicyConfig.refactor_every),
        seed=p.get("seed", int, PolicyConfig.seed),
        forced_sampling=p.get("forced_sampling", float, PolicyConfig.forced_sampling),
        half_life=p.get("half_life", int, PolicyConfig.half_life),
        baseline_model=p.get("baseline_model", str, None),
        max_loss=p.get("max_loss", float, PolicyConfig.max_loss),
    )
    p.done()
    if policy.kind not in POLICIES:
        raise ConfigError(f"{p.where}.kind must be one of {', '.join(POLICIES)}, got {policy.kind!r}")
    if policy.alpha < 0 or policy.lam <= 0 or policy.refactor_every < 1:
        raise ConfigError(f"{p.where}: needs alpha >= 0, lam > 0, refactor_every >= 1")
    if not 0.0 <= policy.forced_sampling <= 1.0:
        raise ConfigError(f"{p.where}.forced_sampling must be in [0, 1]")
    if not 0 <= policy.half_life < 2**63:
        raise ConfigError(
            f"{p.where}.half_life must be an integer >= 0 (applied events; 0 = no forgetting), "
            f"got {policy.half_life}"
        )
    if policy.forced_sampling > 0 and policy.kind == "qoe_model":
        raise ConfigError(f'{p.where}.forced_sampling is not available with kind = "qoe_model" (yet)')
    if policy.baseline_model is not None and policy.kind != "qoe_model":
        raise ConfigError(f'{p.where}.baseline_model needs kind = "qoe_model"')
    if not 0.0 <= policy.max_loss <= 1.0:
        raise ConfigError(f"{p.where}.max_loss must be in [0, 1]")
    q = r.sub("qoe")
    defaults = QoeFunction()
    try:
        qoe = QoeFunction(
            weights={k: float(v) for k, v in q.get("weights", dict, defaults.weights).items()},
            rating_min=q.get("rating_min", float, defaults.rating_min),
            rating_max=q.get("rating_max", float, defaults.rating_max),
            latency_budget_ms=q.get("latency_budget_ms", float, defaults.latency_budget_ms),
            energy_budget_mj=q.get("energy_budget_mj", float, defaults.energy_budget_mj),
            reward_min=q.get("reward_min", float, defaults.reward_min),
            reward_max=q.get("reward_max", float, defaults.reward_max),
            accuracy_floor=q.get("accuracy_floor", float, defaults.accuracy_floor),
            accuracy_ceiling=q.get("accuracy_ceiling", float, defaults.accuracy_ceiling),
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{q.where}: {e}") from None
    q.done()
    models = []
    for t in r.list_of_tables("models"):
        try:
            models.append(Model.from_dict(t.table))
        except (KeyError, CatalogError, ValueError, TypeError) as e:
            raise ConfigError(f"{t.where}: {e}") from None
    space = SpaceConfig(
        name=name,
        device_features=_features(r, "device_features"),
        model_features=_features(r, "model_features"),
        models=models,
        policy=policy,
        qoe=qoe,
        reward_window_s=r.get("reward_window_s", float, 600.0),
        on_missing_feedback=r.get("on_missing_feedback", str, "drop"),
        default_reward=r.get("default_reward", float, 0.0),
        reward_aggregation=r.get("reward_aggregation", str, "first"),
        rating_request_min_bonus=r.get("rating_request_min_bonus", float, 0.1),
        description=r.get("description", str, ""),
        holdout=_holdout(r),
        report=_report(r),
        guardrails=_guardrails(r),
    )
    r.done()
    if not space.device_features:
        raise ConfigError(f"{r.where}: declare at least one device feature")
    _check_catalog(space, r.where)
    if space.reward_window_s <= 0:
        raise ConfigError(f"{r.where}.reward_window_s must be > 0")
    if space.on_missing_feedback not in MISSING_FEEDBACK_ACTIONS:
        raise ConfigError(f"{r.where}.on_missing_feedback must be one of {MISSING_FEEDBACK_ACTIONS}")
    if space.reward_aggregation not in REWARD_AGGREGATIONS:
        raise ConfigError(
            f"{r.where}.reward_aggregation must be one of {', '.join(REWARD_AGGREGATIONS)}, "
            f"got {space.reward_aggregation!r}"
        )
    try:
        qoe.check_reward(space.default_reward)
    except ValueError as e:
        raise ConfigError(f"{r.where}.default_reward: {e}") from None
    if space.holdout is not None and space.holdout.model not in {m.id for m in space.models}:
        raise ConfigError(
            f"{r.where}.holdout.model {space.holdout.model!r} is not one of the space's configured models"
        )
    cls = space.report.device_class
    if cls is not None and cls not in {f.name for f in space.device_features}:
        raise ConfigError(f"{r.where}.report.device_class {cls!r} is not one of the space's device features")
    return space


def _holdout(r: _Reader) -> HoldoutConfig | None:
    if "holdout" not in r.table:
        r.used.add("holdout")
        return None
    h = r.sub("holdout")
    cfg = HoldoutConfig(model=h.get("model", str), share=h.get("share", float))
    h.done()
    if not 0.0 < cfg.share < 1.0:
        raise ConfigError(f"{h.where}.share must be in (0, 1), got {cfg.share}")
    return cfg


def _report(r: _Reader) -> ReportConfig:
    t = r.sub("report")
    cfg = ReportConfig(
        device_class=t.get("device_class", str, None), window_s=t.get("window_s", float, 3600.0)
    )
    t.done()
    if cfg.window_s <= 0:
        raise ConfigError(f"{t.where}.window_s must be > 0, got {cfg.window_s}")
    return cfg


def _guardrails(r: _Reader) -> GuardrailConfig:
    t = r.sub("guardrails")
    d = GuardrailConfig()
    values = {
        "max_failure_rate": t.get("max_failure_rate", float, None),
        "max_p95_latency_ratio": t.get("max_p95_latency_ratio", float, None),
        "window": t.get("window", int, d.window),
        "min_observations": t.get("min_observations", int, d.min_observations),
    }
    t.done()
    try:
        return GuardrailConfig(**values)
    except ValueError as e:
        # GuardrailConfig's messages start with the key's name
        raise ConfigError(f"{t.where}.{e}") from None


def _path(r: _Reader, key: str, base_dir: Path) -> Path | None:
    """An optional file path, relative to the config file's folder."""
    value = r.get(key, str, None)
    if value is None:
        return None
    if not value:
        raise ConfigError(f"{r._key(key)} must not be empty")
    return base_dir / value


def _tls(r: _Reader, base_dir: Path) -> TlsConfig:
    cert, key = _path(r, "cert_file", base_dir), _path(r, "key_file", base_dir)
    if cert is None or key is None:
        raise ConfigError(f"{r.where}: cert_file and key_file are both required")
    tls = TlsConfig(cert_file=cert, key_file=key, client_ca_file=_path(r, "client_ca_file", base_dir))
    r.done()
    return tls


def _auth(r: _Reader, base_dir: Path) -> AuthConfig:
    auth = AuthConfig(
        device_tokens_file=_path(r, "device_tokens_file", base_dir),
        device_tokens_env=r.get("device_tokens_env", str, None),
        admin_tokens_file=_path(r, "admin_tokens_file", base_dir),
        admin_tokens_env=r.get("admin_tokens_env", str, None),
        bind_feedback_to_token=r.get("bind_feedback_to_token", bool, False),
    )
    r.done()
    sources = (auth.device_tokens_file, auth.device_tokens_env, auth.admin_tokens_file, auth.admin_tokens_env)
    if all(not src for src in sources):
        raise ConfigError(f"{r.where}: name at least one token file or environment variable")
    return auth


def _metrics(r: _Reader, base_dir: Path) -> MetricsConfig:
    d = MetricsConfig()
    m = MetricsConfig(
        status=r.get("status", str, d.status),
        tokens_file=_path(r, "tokens_file", base_dir),
        tokens_env=r.get("tokens_env", str, None),
        sample_s=r.get("status_sample_s", float, d.sample_s),
        samples=r.get("status_samples", int, d.samples),
    )
    r.done()
    if m.status not in STATUS_MODES:
        raise ConfigError(f"{r.where}.status must be one of {', '.join(STATUS_MODES)}, got {m.status!r}")
    if not m.sample_s > 0:
        raise ConfigError(f"{r.where}.status_sample_s must be > 0, got {m.sample_s}")
    if not 1 <= m.samples <= 100_000:
        raise ConfigError(f"{r.where}.status_samples must be in [1, 100000], got {m.samples}")
    return m


def _host_port(value: str, where: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where} must be HOST:PORT, got {value!r}")
    return value


def parse_config(data: Mapping[str, Any], *, base_dir: Path = Path(".")) -> ServerConfig:
    root = _Reader(data, "")
    s = root.sub("server")
    cfg = ServerConfig(
        listen=s.get("listen", str, ServerConfig.listen),
        data_dir=base_dir / s.get("data_dir", str, str(ServerConfig.data_dir)),
        store=s.get("store", str, ServerConfig.store),
        durability=s.get("durability", str, ServerConfig.durability),
        commit_delay_ms=s.get("commit_delay_ms", float, ServerConfig.commit_delay_ms),
        snapshot_every=s.get("snapshot_every", int, ServerConfig.snapshot_every),
        max_message_bytes=s.get("max_message_bytes", int, ServerConfig.max_message_bytes),
        max_features=s.get("max_features", int, ServerConfig.max_features),
        max_eligible=s.get("max_eligible", int, ServerConfig.max_eligible),
        max_pending_decisions=s.get("max_pending_decisions", int, ServerConfig.max_pending_decisions),
        max_unsaved_decisions=s.get("max_unsaved_decisions", int, ServerConfig.max_unsaved_decisions),
        decision_retention_s=s.get("decision_retention_s", float, ServerConfig.decision_retention_s),
        rate_limit_per_s=s.get("rate_limit_per_s", float, ServerConfig.rate_limit_per_s),
        rate_burst=s.get("rate_burst", int, ServerConfig.rate_burst),
    )
    if "tls" in s.table:
        cfg.tls = _tls(s.sub("tls"), base_dir)
    if "auth" in s.table:
        cfg.auth = _auth(s.sub("auth"), base_dir)
    if "metrics" in s.table:
        m = s.sub("metrics")
        cfg.metrics_listen = _host_port(m.get("listen", str), f"{m.where}.listen")
        cfg.metrics = _metrics(m, base_dir)
    s.done()
    if cfg.rate_limit_per_s < 0 or cfg.rate_burst < 0:
        raise ConfigError("server.rate_limit_per_s and server.rate_burst must be >= 0")
    if not 0 <= cfg.commit_delay_ms <= 100:
        raise ConfigError(f"server.commit_delay_ms must be between 0 and 100, got {cfg.commit_delay_ms}")
    if cfg.durability not in DURABILITY_MODES:
        raise ConfigError(f"server.durability must be one of {DURABILITY_MODES}")
    if cfg.store != "sqlite" and not cfg.store.startswith("redis://"):
        raise ConfigError(f"server.store must be 'sqlite' or a redis:// URL, got {cfg.store!r}")
    for key in (
        "snapshot_every",
        "max_message_bytes",
        "max_features",
        "max_eligible",
        "max_pending_decisions",
        "max_unsaved_decisions",
    ):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"server.{key} must be >= 1")
    cfg.spaces = [_space(t) for t in root.list_of_tables("space")]
    root.done()
    if not cfg.spaces:
        raise ConfigError("declare at least one [[space]]")
    names = [sp.name for sp in cfg.spaces]
    if len(set(names)) != len(names):
        raise ConfigError(f"space names must be unique, got {names}")
    return cfg


def load_config(path: str | Path) -> ServerConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None
    try:
        return parse_config(data, base_dir=path.parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
