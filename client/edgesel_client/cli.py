"""``edgesel``: the operator's command line for a running edgesel server (its CatalogService).

    edgesel --target HOST:PORT [--token T] [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem]] [--json] \
        COMMAND ...

Commands: ``spaces``; ``models list|add|update|retire|import``; ``stats``; ``export``, ``import``, ``reset``;
``report``; ``guardrails lift``. ``models import`` builds catalog entries from a CSV file, an AI Hub model
suite or ONNX files (edgesel_client.catalog_import), shows the diff against the live catalog and applies it
as one logged change (the ImportModels RPC).
Tables for people by default, ``--json`` for scripts. A failed call prints the server's gRPC status, its
message and, when the server attached a ``google.rpc.ErrorInfo``, its reason, then exits with a code that
says what kind of failure it was (see ``EXIT_CODES``); ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import grpc

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, types_pb2
from edgesel_client.channel import auth_metadata, channel_credentials, merge_options
from edgesel_client.status_details import error_details

__all__ = ["EXIT_CODES", "main"]

TOKEN_ENV = "EDGESEL_TOKEN"
TARGET_ENV = "EDGESEL_TARGET"
DEFAULT_TARGET = "127.0.0.1:50051"
STATE_FILE_KIND = "edgesel-state-export"

EXIT_OK = 0
EXIT_LOCAL_ERROR = 1  # a file that cannot be read or written, a malformed export file or import source
EXIT_USAGE = 2  # argparse's own code for bad command lines
EXIT_UNAVAILABLE = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_REJECTED = 6
EXIT_UNSUPPORTED = 7
EXIT_SERVER_ERROR = 8

EXIT_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_AUTH,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_AUTH,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_REJECTED,
    grpc.StatusCode.FAILED_PRECONDITION: EXIT_REJECTED,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_REJECTED,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_REJECTED,
    grpc.StatusCode.UNIMPLEMENTED: EXIT_UNSUPPORTED,
}
"""Exit status per gRPC status code; any other code exits with EXIT_SERVER_ERROR (8)."""

EXIT_HELP = """exit status:
  0  success
  1  local problem: a file that cannot be read or written, a malformed export file, an import source
     with bad rows (every problem is listed with its row and column; nothing was sent)
  2  bad command line
  3  server unreachable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED)
  4  not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
  5  no such space or model (NOT_FOUND)
  6  request refused (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, ALREADY_EXISTS), or an import
     that would conflict with the live catalog (also after --dry-run)
  7  not supported by this server (UNIMPLEMENTED, or a command the server has no RPC for)
  8  any other server error (INTERNAL, UNKNOWN, RESOURCE_EXHAUSTED, ...)

environment: EDGESEL_TARGET (default for --target), EDGESEL_TOKEN (default for --token)"""


class CliError(Exception):
    """A failure to report on stderr, with the process exit status."""

    def __init__(self, message: str, exit_code: int, payload: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.payload = dict(payload or {"message": message})


def _rpc_failure(error: grpc.RpcError) -> CliError:
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    payload: dict[str, Any] = {"code": code.name, "message": details or ""}
    text = f"{code.name}: {details or '(no message)'}"
    info = error_details(error)
    if info is not None:
        payload.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        text += f" [reason: {info.reason}]"
    return CliError(text, EXIT_CODES.get(code, EXIT_SERVER_ERROR), payload)


# -- output -------------------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths)).rstrip()]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _kv(mapping: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_number(value)}" for key, value in sorted(mapping.items()))


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _timestamp(stamp: Any) -> str | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    moment = datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def _model_dict(model: types_pb2.Model) -> dict[str, Any]:
    return {
        "model_id": model.model_id,
        "version": model.version,
        "artifact_uri": model.artifact_uri,
        "features": dict(model.features),
        "labels": dict(model.labels),
        "metadata": dict(model.metadata),
        "retired": model.retired,
    }


def _space_dict(space: types_pb2.Space) -> dict[str, Any]:
    return {
        "name": space.name,
        "description": space.description,
        "policy": space.policy,
        "policy_version": space.policy_version,
        "device_feature_names": list(space.device_feature_names),
        "model_feature_names": list(space.model_feature_names),
        "active_model_count": space.active_model_count,
        "retired_model_count": space.retired_model_count,
    }


def _arm_dict(arm: types_pb2.ArmStats) -> dict[str, Any]:
    return {
        "model_id": arm.model_id,
        "retired": arm.retired,
        "n_selections": arm.n_selections,
        "n_updates": arm.n_updates,
        "mean_reward": arm.mean_reward,
        "reward_sum": arm.reward_sum,
        "theta_norm": arm.theta_norm,
        "last_update_time": _timestamp(arm.last_update_time),
    }


# -- commands -----------------------------------------------------------------------------------------------


class Session:
    """One channel to the server and the call options every command shares."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(args.json)
        self.timeout = float(args.timeout)
        self.metadata = auth_metadata(args.token)
        tls = args.tls or args.tls_ca is not None or args.tls_cert is not None or args.tls_key is not None
        if tls:
            try:
                credentials = channel_credentials(args.tls_ca, args.tls_key, args.tls_cert)
            except OSError as e:
                raise CliError(f"cannot read a TLS file: {e}", EXIT_LOCAL_ERROR) from e
            except ValueError as e:
                raise CliError(f"--tls-cert and --tls-key: {e}", EXIT_USAGE) from e
            self.channel = grpc.secure_channel(args.target, credentials, options=merge_options(None))
        else:
            self.channel = grpc.insecure_channel(args.target, options=merge_options(None))
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self.channel)

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as error:
            raise _rpc_failure(error) from None

    def emit(self, data: Any, human: str) -> None:
        print(json.dumps(data, indent=2, sort_keys=True) if self.json else human)


def _find_model(session: Session, space: str, model_id: str) -> types_pb2.Model:
    request = catalog_pb2.ListModelsRequest(space=space, include_retired=True)
    for model in session.call(session.catalog.ListModels, request).models:
        if model.model_id == model_id:
            return model  # type: ignore[no-any-return]
    raise CliError(f"NOT_FOUND: no model {model_id!r} in space {space!r}", EXIT_NOT_FOUND)


def cmd_spaces(session: Session, args: argparse.Namespace) -> None:
    spaces = session.call(session.catalog.ListSpaces, catalog_pb2.ListSpacesRequest()).spaces
    rows = [
        (s.name, s.policy, s.active_model_count, s.retired_model_count, s.policy_version, s.description)
        for s in spaces
    ]
    headers = ("SPACE", "POLICY", "ACTIVE", "RETIRED", "POLICY_VERSION", "DESCRIPTION")
    session.emit({"spaces": [_space_dict(s) for s in spaces]}, _table(headers, rows))


def cmd_models_list(session: Session, args: argparse.Namespace) -> None:
    request = catalog_pb2.ListModelsRequest(space=args.space, include_retired=args.all)
    models = session.call(session.catalog.ListModels, request).models
    rows = [
        (m.model_id, m.version, "retired" if m.retired else "active", m.artifact_uri, _kv(m.features))
        for m in models
    ]
    headers = ("MODEL", "VERSION", "STATE", "ARTIFACT_URI", "FEATURES")
    session.emit({"models": [_model_dict(m) for m in models]}, _table(headers, rows))


def _model_summary(verb: str, model: types_pb2.Model) -> str:
    return f"{verb} {model.model_id} (version {model.version or '-'}, {model.artifact_uri or 'no artifact'})"


def cmd_models_add(session: Session, args: argparse.Namespace) -> None:
    model = types_pb2.Model(
        model_id=args.model_id,
        version=args.version or "",
        artifact_uri=args.artifact_uri or "",
        features=dict(args.feature),
        metadata=dict(args.meta),
    )
    added = session.call(session.catalog.AddModel, catalog_pb2.AddModelRequest(space=args.space, model=model))
    session.emit({"model": _model_dict(added.model)}, _model_summary("added", added.model))


def cmd_models_update(session: Session, args: argparse.Namespace) -> None:
    # UpdateModel replaces version, artifact_uri and metadata: start from the stored model so that only the
    # fields given here change.
    current = _find_model(session, args.space, args.model_id)
    metadata = dict(current.metadata)
    metadata.update(dict(args.meta))
    for key in args.drop_meta:
        metadata.pop(key, None)
    model = types_pb2.Model(
        model_id=args.model_id,
        version=current.version if args.version is None else args.version,
        artifact_uri=current.artifact_uri if args.artifact_uri is None else args.artifact_uri,
        metadata=metadata,
    )
    request = catalog_pb2.UpdateModelRequest(space=args.space, model=model)
    updated = session.call(session.catalog.UpdateModel, request)
    session.emit({"model": _model_dict(updated.model)}, _model_summary("updated", updated.model))


def cmd_models_retire(session: Session, args: argparse.Namespace) -> None:
    request = catalog_pb2.RetireModelRequest(space=args.space, model_id=args.model_id)
    retired = session.call(session.catalog.RetireModel, request)
    session.emit({"model": _model_dict(retired.model)}, f"retired {retired.model.model_id}")


def _space(session: Session, name: str) -> types_pb2.Space:
    for space in session.call(session.catalog.ListSpaces, catalog_pb2.ListSpacesRequest()).spaces:
        if space.name == name:
            return space  # type: ignore[no-any-return]
    raise CliError(f"NOT_FOUND: no space {name!r} on this server", EXIT_NOT_FOUND)


def _import_candidates(args: argparse.Namespace, space: types_pb2.Space) -> tuple[list, list]:
    from edgesel_client.catalog_import import rows, sources

    mapping = rows.parse_map(args.map)
    constants = dict(args.feature)
    if args.csv is not None:
        return sources.csv_candidates(Path(args.csv), mapping, space, constants), []
    if args.aihub is not None:
        only = [m.strip() for m in (args.models or "").split(",") if m.strip()]
        return sources.aihub_candidates(Path(args.aihub), mapping, space, constants, only)
    return sources.onnx_candidates([Path(f) for f in args.onnx], mapping, space, constants), []


def _plan_table(plan: Any, skipped: Sequence[tuple[str, str]]) -> str:
    rows = [("add", c.model_id, _kv({**c.features, **c.labels})) for c in plan.added]
    rows += [("change", ch.candidate.model_id, ", ".join(ch.fields)) for ch in plan.changed]
    rows += [("unchanged", c.model_id, "") for c in plan.unchanged]
    rows += [("conflict", c.model_id, reason) for c, reason in plan.conflicts]
    rows += [("skipped", model, why) for model, why in skipped]
    counts = (
        f"{len(plan.added)} to add, {len(plan.changed)} to change, {len(plan.unchanged)} unchanged, "
        f"{len(plan.conflicts)} conflicting"
    )
    return _table(("ACTION", "MODEL", "DETAIL"), rows) + "\n" + counts


def cmd_models_import(session: Session, args: argparse.Namespace) -> None:
    from edgesel_client.catalog_import import diff, rows

    space = _space(session, args.space)
    try:
        candidates, skipped = _import_candidates(args, space)
        candidates = rows.validate(candidates, space)
    except rows.ImportInputError as e:
        raise CliError(f"nothing imported:\n{e}", EXIT_LOCAL_ERROR, {"problems": e.problems}) from e
    live = session.call(
        session.catalog.ListModels, catalog_pb2.ListModelsRequest(space=args.space, include_retired=True)
    ).models
    plan = diff.plan(candidates, live, space)
    data: dict[str, Any] = {"space": args.space, "dry_run": bool(args.dry_run), **plan.to_dict()}
    data["skipped"] = [{"model": m, "reason": why} for m, why in skipped]
    table = _plan_table(plan, skipped)
    if plan.conflicts:
        session.emit({**data, "applied": False}, table)  # the whole diff, then the refusal on stderr
        detail = "\n".join(f"{c.where}: {c.model_id}: {reason}" for c, reason in plan.conflicts)
        raise CliError(
            f"{'would conflict' if args.dry_run else 'nothing imported'}: {len(plan.conflicts)} model(s) "
            f"conflict with the live catalog\n{detail}",
            EXIT_REJECTED,
            {**data, "message": "conflicts with the live catalog"},
        )
    if args.dry_run or not (plan.added or plan.changed):
        data["applied"] = False
        session.emit(data, table + ("\n(dry run: nothing changed)" if args.dry_run else "\nnothing to do"))
        return
    request = catalog_pb2.ImportModelsRequest(
        space=args.space, add=[c.message() for c in plan.added], update=[ch.update for ch in plan.changed]
    )
    imported = session.call(session.catalog.ImportModels, request)
    data.update(applied=True, policy_version=imported.policy_version)
    session.emit(data, table + f"\nimported as one change (policy version {imported.policy_version})")


def cmd_stats(session: Session, args: argparse.Namespace) -> None:
    request = catalog_pb2.GetArmStatsRequest(space=args.space)
    if args.model is not None:
        request.model_id = args.model
    stats = session.call(session.catalog.GetArmStats, request)
    rows = [
        (
            a.model_id,
            "retired" if a.retired else "active",
            a.n_selections,
            a.n_updates,
            f"{a.mean_reward:.4f}",
            f"{a.theta_norm:.4f}",
            _timestamp(a.last_update_time) or "-",
        )
        for a in stats.arms
    ]
    headers = ("MODEL", "STATE", "SELECTIONS", "UPDATES", "MEAN_REWARD", "THETA_NORM", "LAST_UPDATE")
    summary = (
        f"space {args.space}: policy {stats.policy} ({stats.policy_version}), {stats.total_updates} updates"
    )
    data = {
        "space": args.space,
        "policy": stats.policy,
        "policy_version": stats.policy_version,
        "total_updates": stats.total_updates,
        "arms": [_arm_dict(a) for a in stats.arms],
    }
    session.emit(data, summary + "\n" + _table(headers, rows))


def cmd_export(session: Session, args: argparse.Namespace) -> None:
    exported = session.call(session.catalog.ExportState, catalog_pb2.ExportStateRequest(space=args.space))
    document = {
        "kind": STATE_FILE_KIND,
        "space": args.space,
        "format": exported.format,
        "policy": exported.policy,
        "policy_version": exported.policy_version,
        "export_time": _timestamp(exported.export_time),
        "state_base64": base64.b64encode(exported.state).decode("ascii"),
    }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as e:
        raise CliError(f"cannot write {args.output}: {e}", EXIT_LOCAL_ERROR) from e
    summary = {key: value for key, value in document.items() if key != "state_base64"}
    summary.update(file=args.output, state_bytes=len(exported.state))
    session.emit(
        summary,
        f"exported {args.space} ({exported.format}, {len(exported.state)} bytes, policy version "
        f"{exported.policy_version}) to {args.output}",
    )


def _read_export(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
        if not isinstance(document, dict) or document.get("kind") != STATE_FILE_KIND:
            raise ValueError(f"not an `edgesel export` file (kind must be {STATE_FILE_KIND!r})")
        document["state"] = base64.b64decode(document["state_base64"], validate=True)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e}", EXIT_LOCAL_ERROR) from e
    except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError and binascii.Error are ValueErrors
        raise CliError(f"{path}: malformed export file: {e}", EXIT_LOCAL_ERROR) from e
    return document


def cmd_import(session: Session, args: argparse.Namespace) -> None:
    document = _read_export(args.file)
    request = catalog_pb2.ImportStateRequest(
        space=args.space, state=document["state"], format=str(document.get("format", ""))
    )
    imported = session.call(session.catalog.ImportState, request)
    session.emit(
        {"space": args.space, "policy_version": imported.policy_version, "file": args.file},
        f"imported {args.file} into {args.space} (policy version {imported.policy_version})",
    )


def cmd_reset(session: Session, args: argparse.Namespace) -> None:
    if not args.yes:
        raise CliError(
            f"reset forgets everything learned in {args.space!r}; run again with --yes to do it", EXIT_USAGE
        )
    reset = session.call(session.catalog.ResetState, catalog_pb2.ResetStateRequest(space=args.space))
    session.emit(
        {"space": args.space, "policy_version": reset.policy_version},
        f"reset {args.space} (policy version {reset.policy_version})",
    )


def _optional(message: Any, name: str) -> float | None:
    return getattr(message, name) if message.HasField(name) else None


def _outcomes_dict(o: catalog_pb2.GroupOutcomes) -> dict[str, Any]:
    out: dict[str, Any] = {"n": o.n}
    for name in ("mean_qoe", "p50_latency_ms", "p95_latency_ms", "failure_rate"):
        out[name] = _optional(o, name)
    return out


def _lift_dict(c: catalog_pb2.ClassReport) -> dict[str, Any] | None:
    if not c.HasField("lift"):
        return None
    lf = c.lift
    relative = _optional(lf, "relative")
    return {
        "absolute": lf.absolute,
        "ci95": [lf.absolute_ci95_low, lf.absolute_ci95_high],
        "relative": relative,
        "relative_ci95": None if relative is None else [lf.relative_ci95_low, lf.relative_ci95_high],
    }


def _class_dict(c: catalog_pb2.ClassReport) -> dict[str, Any]:
    return {
        "device_class": c.device_class,
        "policy": _outcomes_dict(c.policy),
        "holdout": _outcomes_dict(c.holdout),
        "lift": _lift_dict(c),
    }


def _report_dict(space: str, r: catalog_pb2.GetSpaceReportResponse) -> dict[str, Any]:
    return {
        "space": space,
        "holdout_model": r.holdout_model,
        "holdout_share": r.holdout_share,
        "window_s": r.window_s,
        "policy_version": r.policy_version,
        "since_start": {
            "classes": [_class_dict(c) for c in r.since_start.classes],
            "pooled": _class_dict(r.since_start.pooled),
        },
        "window": {
            "classes": [_class_dict(c) for c in r.window.classes],
            "pooled": _class_dict(r.window.pooled),
        },
        "withdrawn": [
            {
                "model_id": w.model_id,
                "device_class": w.device_class,
                "guardrail": w.guardrail,
                "value": w.value,
                "limit": w.limit,
                "seq": w.seq,
                "time": _timestamp(w.time),
            }
            for w in r.withdrawn
        ],
        "withdrawals_total": r.withdrawals_total,
    }


def _cell(value: float | None, fmt: str = "{:.4g}") -> str:
    return "-" if value is None else fmt.format(value)


def _report_rows(period: str, classes: Iterable[dict[str, Any]]) -> list[tuple]:
    rows = []
    for c in classes:
        lf = c["lift"]
        lift = "-" if lf is None else f"{lf['absolute']:+.4f} [{lf['ci95'][0]:+.4f}, {lf['ci95'][1]:+.4f}]"
        rel = "-"
        if lf is not None and lf["relative"] is not None:
            rel = f"{lf['relative']:+.1%} [{lf['relative_ci95'][0]:+.1%}, {lf['relative_ci95'][1]:+.1%}]"
        for group in ("policy", "holdout"):
            g = c[group]
            rows.append(
                (
                    period,
                    c["device_class"],
                    group,
                    g["n"],
                    _cell(g["mean_qoe"]),
                    _cell(g["p50_latency_ms"]),
                    _cell(g["p95_latency_ms"]),
                    _cell(g["failure_rate"], "{:.2%}"),
                    lift if group == "policy" else "",
                    rel if group == "policy" else "",
                )
            )
    return rows


def cmd_report(session: Session, args: argparse.Namespace) -> None:
    response = session.call(
        session.catalog.GetSpaceReport, catalog_pb2.GetSpaceReportRequest(space=args.space)
    )
    data = _report_dict(args.space, response)
    holdout = (
        f"holdout {data['holdout_model']} ({data['holdout_share']:.1%} of installations)"
        if data["holdout_model"]
        else "no holdout configured"
    )
    window = f"window {data['window_s']:g} s"
    lines = [f"space {args.space}: {holdout}, {window}, policy version {data['policy_version']}"]
    rows = []
    for period in ("since_start", "window"):
        rows += _report_rows(period, data[period]["classes"] + [data[period]["pooled"]])
    headers = (
        "PERIOD",
        "CLASS",
        "GROUP",
        "N",
        "MEAN_QOE",
        "P50_MS",
        "P95_MS",
        "FAILED",
        "LIFT [95% CI]",
        "RELATIVE",
    )
    lines.append(_table(headers, rows))
    if data["withdrawn"]:
        lines.append("withdrawn by guardrails:")
        lines.append(
            _table(
                ("MODEL", "CLASS", "GUARDRAIL", "VALUE", "LIMIT", "SEQ", "TIME"),
                [
                    (
                        w["model_id"],
                        w["device_class"],
                        w["guardrail"],
                        f"{w['value']:.4g}",
                        f"{w['limit']:.4g}",
                        w["seq"],
                        w["time"] or "-",
                    )
                    for w in data["withdrawn"]
                ],
            )
        )
    session.emit(data, "\n".join(lines))


def cmd_guardrails_lift(session: Session, args: argparse.Namespace) -> None:
    request = catalog_pb2.LiftGuardrailRequest(
        space=args.space, model_id=args.model_id, device_class=args.device_class
    )
    lifted = session.call(session.catalog.LiftGuardrail, request).lifted
    verb = "lifted" if lifted else "nothing to lift: not withdrawn,"
    session.emit(
        {"space": args.space, "model_id": args.model_id, "device_class": args.device_class, "lifted": lifted},
        f"{verb} {args.model_id} on device class {args.device_class!r} in {args.space}",
    )


# -- command line -------------------------------------------------------------------------------------------


def _pair(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
        try:
            return key, kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key}: not a number: {value!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgesel",
        description="Manage a running edgesel server: spaces, model catalogs, learned state.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", default=os.environ.get(TARGET_ENV) or DEFAULT_TARGET, help="host:port")
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"admin bearer token (${TOKEN_ENV})"
    )
    parser.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    parser.add_argument("--tls-ca", metavar="PEM", help="CA certificates to verify the server with (TLS)")
    parser.add_argument("--tls-cert", metavar="PEM", help="client certificate chain (mutual TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="client private key (mutual TLS)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("spaces", help="list the spaces").set_defaults(run=cmd_spaces)

    models = commands.add_parser("models", help="list, add, update or retire models").add_subparsers(
        dest="models_command", required=True, metavar="ACTION"
    )
    listing = models.add_parser("list", help="the models of a space")
    listing.add_argument("space")
    listing.add_argument("--all", action="store_true", help="include retired models")
    listing.set_defaults(run=cmd_models_list)
    add = models.add_parser("add", help="add a model to a space's catalog")
    add.add_argument("space")
    add.add_argument("model_id")
    add.add_argument("--feature", "-f", type=_pair(float), action="append", default=[], metavar="NAME=NUMBER")
    add.add_argument("--version")
    add.add_argument("--artifact-uri")
    add.add_argument("--meta", type=_pair(str), action="append", default=[], metavar="KEY=VALUE")
    add.set_defaults(run=cmd_models_add)
    update = models.add_parser("update", help="change a model's version, artifact URI or metadata")
    update.add_argument("space")
    update.add_argument("model_id")
    update.add_argument("--version")
    update.add_argument("--artifact-uri")
    update.add_argument("--meta", type=_pair(str), action="append", default=[], metavar="KEY=VALUE")
    update.add_argument("--drop-meta", action="append", default=[], metavar="KEY")
    update.set_defaults(run=cmd_models_update)
    importing_models = models.add_parser(
        "import",
        help="add/update models from a CSV file, an AI Hub suite or ONNX files (one logged change)",
        description="Build catalog entries from a source, check them against the space's schema, show the "
        "diff against the live catalog (add / change / unchanged / conflict) and apply it as one change. "
        "Features are fixed once added: a source that gives other features for an existing id conflicts, "
        "and nothing is imported. See client/README.md for the mappings.",
    )
    importing_models.add_argument("--space", required=True)
    source = importing_models.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", help="a CSV file with a header row")
    source.add_argument("--aihub", metavar="DIR_OR_WHEEL", help="a qai-hub-models wheel or suite folder")
    source.add_argument("--onnx", nargs="+", metavar="FILE", help="ONNX model files (id: the file stem)")
    importing_models.add_argument(
        "--map", metavar="SRC=TARGET,...", help="column/field -> feature, label, id, version, artifact_uri, "
        "meta:KEY or - (ignore)"
    )  # fmt: skip
    importing_models.add_argument("--models", metavar="A,B", help="--aihub: only these models")
    importing_models.add_argument(
        "--feature", "-f", type=_pair(float), action="append", default=[], metavar="NAME=NUMBER",
        help="a value for every model whose source does not give this feature",
    )  # fmt: skip
    importing_models.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    importing_models.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    importing_models.set_defaults(run=cmd_models_import)
    retire = models.add_parser("retire", help="never select a model again (its history is kept)")
    retire.add_argument("space")
    retire.add_argument("model_id")
    retire.set_defaults(run=cmd_models_retire)

    stats = commands.add_parser("stats", help="per-model statistics of a space")
    stats.add_argument("space")
    stats.add_argument("--model", help="only this model")
    stats.set_defaults(run=cmd_stats)
    export = commands.add_parser("export", help="write a space's learned state to a file")
    export.add_argument("space")
    export.add_argument("--output", "-o", required=True, metavar="FILE")
    export.set_defaults(run=cmd_export)
    importing = commands.add_parser("import", help="replace a space's learned state by an exported one")
    importing.add_argument("space")
    importing.add_argument("file")
    importing.set_defaults(run=cmd_import)
    reset = commands.add_parser("reset", help="forget everything learned in a space (the catalog stays)")
    reset.add_argument("space")
    reset.add_argument("--yes", action="store_true", help="really do it")
    reset.set_defaults(run=cmd_reset)
    report = commands.add_parser("report", help="policy vs holdout: QoE, latency, failures, lift")
    report.add_argument("space")
    report.set_defaults(run=cmd_report)
    guardrails = commands.add_parser("guardrails", help="guardrail withdrawals").add_subparsers(
        dest="guardrails_command", required=True, metavar="ACTION"
    )
    lift = guardrails.add_parser("lift", help="offer a withdrawn model to a device class again")
    lift.add_argument("space")
    lift.add_argument("model_id")
    lift.add_argument("device_class")
    lift.set_defaults(run=cmd_guardrails_lift)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    session: Session | None = None
    try:
        session = Session(args)
        args.run(session, args)
        return EXIT_OK
    except CliError as failure:
        if args.json:
            print(json.dumps({"error": failure.payload}, sort_keys=True), file=sys.stderr)
        else:
            print(f"edgesel {args.command}: {failure}", file=sys.stderr)
        return failure.exit_code
    finally:
        if session is not None:
            session.channel.close()


if __name__ == "__main__":
    sys.exit(main())
