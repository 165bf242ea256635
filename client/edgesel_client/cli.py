"""``edgesel``: the operator's command line for a running edgesel server (its CatalogService).

    edgesel --target HOST:PORT [--token T] [--tls-ca CA.pem [--tls-cert C.pem --tls-key K.pem]] [--json] \
        COMMAND ...

Commands: ``spaces``; ``models list|add|update|retire``; ``stats``; ``export``, ``import``, ``reset``.
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
EXIT_LOCAL_ERROR = 1  # a file that cannot be read or written, a malformed export file
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
  1  local problem: a file that cannot be read or written, a malformed export file
  2  bad command line
  3  server unreachable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED)
  4  not allowed (UNAUTHENTICATED, PERMISSION_DENIED)
  5  no such space or model (NOT_FOUND)
  6  request refused (INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE, ALREADY_EXISTS)
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


def cmd_report(session: Session, args: argparse.Namespace) -> None:
    raise CliError(
        "not supported by this server: the edgesel.v1 CatalogService it serves has no report RPC",
        EXIT_UNSUPPORTED,
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
    report = commands.add_parser("report", help="the holdout report (needs a server with a report RPC)")
    report.add_argument("space")
    report.set_defaults(run=cmd_report)
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
