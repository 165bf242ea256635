"""gRPC servicers: translate protobuf messages to Engine calls and exceptions to status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, selection_pb2, selection_pb2_grpc, types_pb2
from edgesel_server.catalog import Model
from edgesel_server.engine import Engine
from edgesel_server.errors import InvalidArgument, InvalidReward, abort, status_of
from edgesel_server.schema import CategoricalSpec, FeatureSchema
from edgesel_server.security import current_principal

log = logging.getLogger(__name__)

STATE_FORMAT = "edgesel-state-v1"

R = TypeVar("R")


def rpc(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Every failure becomes a status with its ErrorInfo reason (errors.py); anything unexpected is a bug:
    INTERNAL, logged with its traceback."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure must become a status, never a crash
            error = status_of(e)
            if error is not e:
                log.exception("internal error in %s", method.__name__)
            await abort(context, error)
            raise  # unreachable: abort raises

    return wrapper


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def model_message(m: Model) -> types_pb2.Model:
    """The model as a message, built once per state of the model (three map fields cost ~4 us per Select).
    Shared: callers copy it into their own message (a constructor or CopyFrom does), never change it."""
    return m.derived("message", _build_model_message)


def _build_model_message(m: Model) -> types_pb2.Model:
    return types_pb2.Model(
        model_id=m.id,
        version=m.version,
        artifact_uri=m.artifact_uri,
        features=m.features,
        metadata=m.metadata,
        retired=m.retired,
        labels=m.labels,
    )


def model_from_message(msg: types_pb2.Model) -> Model:
    return Model(
        id=msg.model_id,
        version=msg.version,
        artifact_uri=msg.artifact_uri,
        features=dict(msg.features),
        metadata=dict(msg.metadata),
        labels=dict(msg.labels),
    )


def feature_specs(schema: FeatureSchema) -> list[types_pb2.FeatureSpec]:
    out = []
    for f in schema.specs:
        if isinstance(f, CategoricalSpec):
            out.append(
                types_pb2.FeatureSpec(
                    name=f.name,
                    transform="categorical",
                    values=f.values,
                    unknown=f.unknown,
                    default_label=f.default,
                )
            )
        else:
            out.append(
                types_pb2.FeatureSpec(
                    name=f.name, min=f.min, max=f.max, transform=f.transform, default=f.default
                )
            )
    return out


def caller_identity(context: grpc.aio.ServicerContext) -> str:
    """Who is calling: a hash of the bearer token, set by the RPC guard ("" without auth).

    Never taken from client-supplied metadata, which anyone could forge."""
    return current_principal()


class SelectionServicer(selection_pb2_grpc.SelectionServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.bind_feedback = bool(engine.cfg.auth and engine.cfg.auth.bind_feedback_to_token)

    def _owner(self, context: grpc.aio.ServicerContext) -> str:
        """The identity a decision is bound to, if the config binds feedback to the token."""
        return caller_identity(context) if self.bind_feedback else ""

    @rpc
    async def Select(
        self, request: selection_pb2.SelectRequest, context: grpc.aio.ServicerContext
    ) -> selection_pb2.SelectResponse:
        prefs = request.preferences
        choice = await self.engine.select(
            request.space,
            request.device_features,
            list(request.eligible_model_ids),
            labels=request.device_labels,
            latency_budget_ms=prefs.latency_budget_ms if prefs.HasField("latency_budget_ms") else None,
            max_model_size_mb=prefs.max_model_size_mb if prefs.HasField("max_model_size_mb") else None,
            qoe_weights=dict(prefs.qoe_weights),
            include_ranking=request.include_ranking,
            owner=self._owner(context),
            request_id=request.request_id,
            caller=caller_identity(context),
            installation_id=request.installation_id,
            defer_activation=request.defer_activation,
        )
        d = choice.decision
        space = self.engine.spaces[d.space]
        response = selection_pb2.SelectResponse(
            event_id=d.event_id,
            model=model_message(choice.model),
            expected_qoe=d.expected_qoe,
            exploration_bonus=d.bonus,
            score=choice.score,
            exploratory=choice.exploratory,
            policy_version=str(d.policy_version),
            ranking=[
                types_pb2.RankedModel(model_id=i, expected_qoe=m, exploration_bonus=b, score=t)
                for i, m, b, t in choice.ranking
            ],
            request_user_rating=choice.exploratory or abs(d.bonus) >= space.cfg.rating_request_min_bonus,
        )
        # A deferred decision's window opens at Activate; until then its deadline is the activation's.
        deadline = response.activation_deadline if d.deferred else response.feedback_deadline
        deadline.FromNanoseconds(int(d.deadline * 1e9))  # what _timestamp gives, without a copy
        return response

    @rpc
    async def Feedback(
        self, request: selection_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> selection_pb2.FeedbackResponse:
        which = request.WhichOneof("qoe")
        if which is None:
            raise InvalidReward("feedback carries neither a reward nor measurements", field="qoe")
        reward = request.reward if which == "reward" else None
        measurements = {}
        failed, reason = False, ""
        if which == "measurements":
            m = request.measurements
            measurements = {
                f.name: v for f, v in m.ListFields() if f.name not in ("failed", "failure_reason")
            }
            failed = m.failed
            if m.failure_reason:
                name = types_pb2.FailureReason.Name(m.failure_reason)
                reason = name.removeprefix("FAILURE_REASON_").lower()
        result = await self.engine.feedback(
            request.event_id,
            reward,
            measurements,
            failed=failed,
            failure_reason=reason,
            owner=self._owner(context),
            request_id=request.request_id,
        )
        status = (
            selection_pb2.FEEDBACK_STATUS_DUPLICATE
            if result.duplicate
            else selection_pb2.FEEDBACK_STATUS_ACCEPTED
        )
        return selection_pb2.FeedbackResponse(status=status, reward=result.reward)

    @rpc
    async def Activate(
        self, request: selection_pb2.ActivateRequest, context: grpc.aio.ServicerContext
    ) -> selection_pb2.ActivateResponse:
        result = await self.engine.activate(
            request.event_id, installation_id=request.installation_id, owner=self._owner(context)
        )
        return selection_pb2.ActivateResponse(
            feedback_deadline=_timestamp(result.decision.deadline), already_activated=result.already_activated
        )


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @rpc
    async def ListSpaces(
        self, request: catalog_pb2.ListSpacesRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListSpacesResponse:
        spaces = []
        for s in self.engine.spaces.values():
            models = s.models(include_retired=True)
            spaces.append(
                types_pb2.Space(
                    name=s.name,
                    description=s.cfg.description,
                    policy=s.cfg.policy.kind,
                    policy_version=s.policy_version,
                    device_feature_names=s.device_schema.names,
                    model_feature_names=s.model_schema.names,
                    active_model_count=sum(not m.retired for m in models),
                    retired_model_count=sum(m.retired for m in models),
                    device_features=feature_specs(s.device_schema),
                    model_features=feature_specs(s.model_schema),
                )
            )
        return catalog_pb2.ListSpacesResponse(spaces=spaces)

    @rpc
    async def ListModels(
        self, request: catalog_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListModelsResponse:
        models = self.engine.space(request.space).models(include_retired=request.include_retired)
        return catalog_pb2.ListModelsResponse(models=[model_message(m) for m in models])

    @rpc
    async def AddModel(
        self, request: catalog_pb2.AddModelRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.AddModelResponse:
        model = await self.engine.add_model(request.space, model_from_message(request.model))
        return catalog_pb2.AddModelResponse(model=model_message(model))

    @rpc
    async def UpdateModel(
        self, request: catalog_pb2.UpdateModelRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.UpdateModelResponse:
        m = request.model
        model = await self.engine.update_model(
            request.space,
            m.model_id,
            version=m.version,
            artifact_uri=m.artifact_uri,
            metadata=dict(m.metadata),
            features=dict(m.features),
            labels=dict(m.labels),
        )
        return catalog_pb2.UpdateModelResponse(model=model_message(model))

    @rpc
    async def ImportModels(
        self, request: catalog_pb2.ImportModelsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ImportModelsResponse:
        models = await self.engine.import_models(
            request.space,
            [model_from_message(m) for m in request.add],
            [model_from_message(m) for m in request.update],
        )
        return catalog_pb2.ImportModelsResponse(
            models=[model_message(m) for m in models],
            policy_version=self.engine.space(request.space).policy_version,
        )

    @rpc
    async def RetireModel(
        self, request: catalog_pb2.RetireModelRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.RetireModelResponse:
        model = await self.engine.retire_model(request.space, request.model_id)
        return catalog_pb2.RetireModelResponse(model=model_message(model))

    @rpc
    async def GetArmStats(
        self, request: catalog_pb2.GetArmStatsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetArmStatsResponse:
        space = self.engine.space(request.space)
        model_id = request.model_id if request.HasField("model_id") else None
        rows = await self.engine.arm_stats(request.space, model_id)
        arms = []
        for r in rows:
            a = types_pb2.ArmStats(
                model_id=r["model_id"],
                retired=r["retired"],
                n_selections=r["n_selections"],
                n_updates=r["n_updates"],
                mean_reward=r["mean_reward"],
                theta_norm=r["theta_norm"],
                reward_sum=r["reward_sum"],
            )
            if r["last_update"]:
                a.last_update_time.CopyFrom(_timestamp(r["last_update"]))
            arms.append(a)
        return catalog_pb2.GetArmStatsResponse(
            arms=arms,
            policy=space.cfg.policy.kind,
            policy_version=space.policy_version,
            total_updates=space.total_updates,
        )

    @rpc
    async def ExportState(
        self, request: catalog_pb2.ExportStateRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ExportStateResponse:
        import time

        state, version = self.engine.export_state(request.space)
        return catalog_pb2.ExportStateResponse(
            state=state,
            format=STATE_FORMAT,
            policy=self.engine.space(request.space).cfg.policy.kind,
            policy_version=version,
            export_time=_timestamp(time.time()),
        )

    @rpc
    async def ImportState(
        self, request: catalog_pb2.ImportStateRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ImportStateResponse:
        if request.format and request.format != STATE_FORMAT:
            raise InvalidArgument(
                f"unsupported state format {request.format!r}; this server reads {STATE_FORMAT!r}"
            )
        version = await self.engine.import_state(request.space, request.state)
        return catalog_pb2.ImportStateResponse(policy_version=version)

    @rpc
    async def ResetState(
        self, request: catalog_pb2.ResetStateRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ResetStateResponse:
        version = await self.engine.reset(request.space)
        return catalog_pb2.ResetStateResponse(policy_version=version)

    @rpc
    async def GetSpaceReport(
        self, request: catalog_pb2.GetSpaceReportRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GetSpaceReportResponse:
        rep = self.engine.report(request.space)
        withdrawn = [
            catalog_pb2.Withdrawal(
                model_id=b["model_id"],
                device_class=b["device_class"],
                guardrail=b["reason"],
                value=b["value"],
                limit=b["limit"],
                seq=b["seq"],
                time=_timestamp(b["created"]),
            )
            for b in rep["withdrawn"]
        ]
        return catalog_pb2.GetSpaceReportResponse(
            space=request.space,
            holdout_model=rep["holdout_model"],
            holdout_share=rep["holdout_share"],
            window_s=rep["window_s"],
            since_start=_period(rep["since_start"]),
            window=_period(rep["window"]),
            withdrawn=withdrawn,
            policy_version=str(rep["seq"]),
            withdrawals_total=rep["withdrawals_total"],
        )

    @rpc
    async def LiftGuardrail(
        self, request: catalog_pb2.LiftGuardrailRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.LiftGuardrailResponse:
        lifted = await self.engine.lift_guardrail(request.space, request.model_id, request.device_class)
        return catalog_pb2.LiftGuardrailResponse(lifted=lifted)


POOLED = "POOLED"


def _outcomes(d: dict) -> catalog_pb2.GroupOutcomes:
    return catalog_pb2.GroupOutcomes(**{k: v for k, v in d.items() if v is not None})


def _class_report(name: str, cell: dict) -> catalog_pb2.ClassReport:
    out = catalog_pb2.ClassReport(
        device_class=name, policy=_outcomes(cell["policy"]), holdout=_outcomes(cell["holdout"])
    )
    lf = cell["lift"]
    if lf is not None:
        out.lift.absolute = lf["absolute"]
        out.lift.absolute_ci95_low, out.lift.absolute_ci95_high = lf["ci95"]
        if lf["relative"] is not None:
            out.lift.relative = lf["relative"]
            out.lift.relative_ci95_low, out.lift.relative_ci95_high = lf["relative_ci95"]
    return out


def _period(p: dict) -> catalog_pb2.PeriodReport:
    return catalog_pb2.PeriodReport(
        classes=[_class_report(c, cell) for c, cell in p["classes"].items()],
        pooled=_class_report(POOLED, p["all"]),
    )
