from edgesel.v1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddModelRequest(_message.Message):
    __slots__ = ["model", "space"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.Model
    space: str
    def __init__(self, space: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ...) -> None: ...

class AddModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.Model
    def __init__(self, model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ...) -> None: ...

class ClassReport(_message.Message):
    __slots__ = ["device_class", "holdout", "lift", "policy"]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    LIFT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    device_class: str
    holdout: GroupOutcomes
    lift: Lift
    policy: GroupOutcomes
    def __init__(self, device_class: _Optional[str] = ..., policy: _Optional[_Union[GroupOutcomes, _Mapping]] = ..., holdout: _Optional[_Union[GroupOutcomes, _Mapping]] = ..., lift: _Optional[_Union[Lift, _Mapping]] = ...) -> None: ...

class ExportStateRequest(_message.Message):
    __slots__ = ["space"]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    space: str
    def __init__(self, space: _Optional[str] = ...) -> None: ...

class ExportStateResponse(_message.Message):
    __slots__ = ["export_time", "format", "policy", "policy_version", "state"]
    EXPORT_TIME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    export_time: _timestamp_pb2.Timestamp
    format: str
    policy: str
    policy_version: str
    state: bytes
    def __init__(self, state: _Optional[bytes] = ..., format: _Optional[str] = ..., policy: _Optional[str] = ..., policy_version: _Optional[str] = ..., export_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetArmStatsRequest(_message.Message):
    __slots__ = ["model_id", "space"]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    space: str
    def __init__(self, space: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class GetArmStatsResponse(_message.Message):
    __slots__ = ["arms", "policy", "policy_version", "total_updates"]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_UPDATES_FIELD_NUMBER: _ClassVar[int]
    arms: _containers.RepeatedCompositeFieldContainer[_types_pb2.ArmStats]
    policy: str
    policy_version: str
    total_updates: int
    def __init__(self, arms: _Optional[_Iterable[_Union[_types_pb2.ArmStats, _Mapping]]] = ..., policy: _Optional[str] = ..., policy_version: _Optional[str] = ..., total_updates: _Optional[int] = ...) -> None: ...

class GetSpaceReportRequest(_message.Message):
    __slots__ = ["space"]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    space: str
    def __init__(self, space: _Optional[str] = ...) -> None: ...

class GetSpaceReportResponse(_message.Message):
    __slots__ = ["holdout_model", "holdout_share", "policy_version", "since_start", "space", "window", "window_s", "withdrawals_total", "withdrawn"]
    HOLDOUT_MODEL_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_SHARE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    SINCE_START_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWALS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    holdout_model: str
    holdout_share: float
    policy_version: str
    since_start: PeriodReport
    space: str
    window: PeriodReport
    window_s: float
    withdrawals_total: int
    withdrawn: _containers.RepeatedCompositeFieldContainer[Withdrawal]
    def __init__(self, space: _Optional[str] = ..., holdout_model: _Optional[str] = ..., holdout_share: _Optional[float] = ..., window_s: _Optional[float] = ..., since_start: _Optional[_Union[PeriodReport, _Mapping]] = ..., window: _Optional[_Union[PeriodReport, _Mapping]] = ..., withdrawn: _Optional[_Iterable[_Union[Withdrawal, _Mapping]]] = ..., policy_version: _Optional[str] = ..., withdrawals_total: _Optional[int] = ...) -> None: ...

class GroupOutcomes(_message.Message):
    __slots__ = ["failure_rate", "mean_qoe", "n", "p50_latency_ms", "p95_latency_ms"]
    FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_QOE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    P50_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    failure_rate: float
    mean_qoe: float
    n: int
    p50_latency_ms: float
    p95_latency_ms: float
    def __init__(self, n: _Optional[int] = ..., mean_qoe: _Optional[float] = ..., p50_latency_ms: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., failure_rate: _Optional[float] = ...) -> None: ...

class ImportModelsRequest(_message.Message):
    __slots__ = ["add", "space", "update"]
    ADD_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    add: _containers.RepeatedCompositeFieldContainer[_types_pb2.Model]
    space: str
    update: _containers.RepeatedCompositeFieldContainer[_types_pb2.Model]
    def __init__(self, space: _Optional[str] = ..., add: _Optional[_Iterable[_Union[_types_pb2.Model, _Mapping]]] = ..., update: _Optional[_Iterable[_Union[_types_pb2.Model, _Mapping]]] = ...) -> None: ...

class ImportModelsResponse(_message.Message):
    __slots__ = ["models", "policy_version"]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_types_pb2.Model]
    policy_version: str
    def __init__(self, models: _Optional[_Iterable[_Union[_types_pb2.Model, _Mapping]]] = ..., policy_version: _Optional[str] = ...) -> None: ...

class ImportStateRequest(_message.Message):
    __slots__ = ["format", "space", "state"]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    format: str
    space: str
    state: bytes
    def __init__(self, space: _Optional[str] = ..., state: _Optional[bytes] = ..., format: _Optional[str] = ...) -> None: ...

class ImportStateResponse(_message.Message):
    __slots__ = ["policy_version"]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    def __init__(self, policy_version: _Optional[str] = ...) -> None: ...

class Lift(_message.Message):
    __slots__ = ["absolute", "absolute_ci95_high", "absolute_ci95_low", "relative", "relative_ci95_high", "relative_ci95_low"]
    ABSOLUTE_CI95_HIGH_FIELD_NUMBER: _ClassVar[int]
    ABSOLUTE_CI95_LOW_FIELD_NUMBER: _ClassVar[int]
    ABSOLUTE_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_CI95_HIGH_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_CI95_LOW_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_FIELD_NUMBER: _ClassVar[int]
    absolute: float
    absolute_ci95_high: float
    absolute_ci95_low: float
    relative: float
    relative_ci95_high: float
    relative_ci95_low: float
    def __init__(self, absolute: _Optional[float] = ..., absolute_ci95_low: _Optional[float] = ..., absolute_ci95_high: _Optional[float] = ..., relative: _Optional[float] = ..., relative_ci95_low: _Optional[float] = ..., relative_ci95_high: _Optional[float] = ...) -> None: ...

class LiftGuardrailRequest(_message.Message):
    __slots__ = ["device_class", "model_id", "space"]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    device_class: str
    model_id: str
    space: str
    def __init__(self, space: _Optional[str] = ..., model_id: _Optional[str] = ..., device_class: _Optional[str] = ...) -> None: ...

class LiftGuardrailResponse(_message.Message):
    __slots__ = ["lifted"]
    LIFTED_FIELD_NUMBER: _ClassVar[int]
    lifted: bool
    def __init__(self, lifted: bool = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ["include_retired", "space"]
    INCLUDE_RETIRED_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    include_retired: bool
    space: str
    def __init__(self, space: _Optional[str] = ..., include_retired: bool = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ["models"]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_types_pb2.Model]
    def __init__(self, models: _Optional[_Iterable[_Union[_types_pb2.Model, _Mapping]]] = ...) -> None: ...

class ListSpacesRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListSpacesResponse(_message.Message):
    __slots__ = ["spaces"]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[_types_pb2.Space]
    def __init__(self, spaces: _Optional[_Iterable[_Union[_types_pb2.Space, _Mapping]]] = ...) -> None: ...

class PeriodReport(_message.Message):
    __slots__ = ["classes", "pooled"]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    POOLED_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[ClassReport]
    pooled: ClassReport
    def __init__(self, classes: _Optional[_Iterable[_Union[ClassReport, _Mapping]]] = ..., pooled: _Optional[_Union[ClassReport, _Mapping]] = ...) -> None: ...

class ResetStateRequest(_message.Message):
    __slots__ = ["space"]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    space: str
    def __init__(self, space: _Optional[str] = ...) -> None: ...

class ResetStateResponse(_message.Message):
    __slots__ = ["policy_version"]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    policy_version: str
    def __init__(self, policy_version: _Optional[str] = ...) -> None: ...

class RetireModelRequest(_message.Message):
    __slots__ = ["model_id", "space"]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    space: str
    def __init__(self, space: _Optional[str] = ..., model_id: _Optional[str] = ...) -> None: ...

class RetireModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.Model
    def __init__(self, model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ...) -> None: ...

class UpdateModelRequest(_message.Message):
    __slots__ = ["model", "space"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.Model
    space: str
    def __init__(self, space: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ...) -> None: ...

class UpdateModelResponse(_message.Message):
    __slots__ = ["model"]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _types_pb2.Model
    def __init__(self, model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ...) -> None: ...

class Withdrawal(_message.Message):
    __slots__ = ["device_class", "guardrail", "limit", "model_id", "seq", "time", "value"]
    DEVICE_CLASS_FIELD_NUMBER: _ClassVar[int]
    GUARDRAIL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    device_class: str
    guardrail: str
    limit: float
    model_id: str
    seq: int
    time: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, model_id: _Optional[str] = ..., device_class: _Optional[str] = ..., guardrail: _Optional[str] = ..., value: _Optional[float] = ..., limit: _Optional[float] = ..., seq: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
