import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailureReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_REASON_UNSPECIFIED: _ClassVar[FailureReason]
    FAILURE_REASON_LOAD_ERROR: _ClassVar[FailureReason]
    FAILURE_REASON_OUT_OF_MEMORY: _ClassVar[FailureReason]
    FAILURE_REASON_UNSUPPORTED_OP: _ClassVar[FailureReason]
    FAILURE_REASON_TIMEOUT: _ClassVar[FailureReason]
    FAILURE_REASON_OTHER: _ClassVar[FailureReason]
FAILURE_REASON_UNSPECIFIED: FailureReason
FAILURE_REASON_LOAD_ERROR: FailureReason
FAILURE_REASON_OUT_OF_MEMORY: FailureReason
FAILURE_REASON_UNSUPPORTED_OP: FailureReason
FAILURE_REASON_TIMEOUT: FailureReason
FAILURE_REASON_OTHER: FailureReason

class Model(_message.Message):
    __slots__ = ("model_id", "version", "artifact_uri", "features", "metadata", "retired", "labels")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    version: str
    artifact_uri: str
    features: _containers.ScalarMap[str, float]
    metadata: _containers.ScalarMap[str, str]
    retired: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., retired: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Preferences(_message.Message):
    __slots__ = ("latency_budget_ms", "max_model_size_mb", "qoe_weights")
    class QoeWeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LATENCY_BUDGET_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    QOE_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    latency_budget_ms: float
    max_model_size_mb: float
    qoe_weights: _containers.ScalarMap[str, float]
    def __init__(self, latency_budget_ms: _Optional[float] = ..., max_model_size_mb: _Optional[float] = ..., qoe_weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RankedModel(_message.Message):
    __slots__ = ("model_id", "expected_qoe", "exploration_bonus", "score")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_QOE_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_BONUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    expected_qoe: float
    exploration_bonus: float
    score: float
    def __init__(self, model_id: _Optional[str] = ..., expected_qoe: _Optional[float] = ..., exploration_bonus: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Measurements(_message.Message):
    __slots__ = ("user_rating", "latency_ms", "energy_mj", "accuracy", "failed", "failure_reason")
    USER_RATING_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_MJ_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    user_rating: float
    latency_ms: float
    energy_mj: float
    accuracy: float
    failed: bool
    failure_reason: FailureReason
    def __init__(self, user_rating: _Optional[float] = ..., latency_ms: _Optional[float] = ..., energy_mj: _Optional[float] = ..., accuracy: _Optional[float] = ..., failed: _Optional[bool] = ..., failure_reason: _Optional[_Union[FailureReason, str]] = ...) -> None: ...

class ArmStats(_message.Message):
    __slots__ = ("model_id", "retired", "n_selections", "n_updates", "mean_reward", "theta_norm", "reward_sum", "last_update_time")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    N_SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    N_UPDATES_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    THETA_NORM_FIELD_NUMBER: _ClassVar[int]
    REWARD_SUM_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    retired: bool
    n_selections: int
    n_updates: int
    mean_reward: float
    theta_norm: float
    reward_sum: float
    last_update_time: _timestamp_pb2.Timestamp
    def __init__(self, model_id: _Optional[str] = ..., retired: _Optional[bool] = ..., n_selections: _Optional[int] = ..., n_updates: _Optional[int] = ..., mean_reward: _Optional[float] = ..., theta_norm: _Optional[float] = ..., reward_sum: _Optional[float] = ..., last_update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Space(_message.Message):
    __slots__ = ("name", "description", "policy", "policy_version", "device_feature_names", "model_feature_names", "active_model_count", "retired_model_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    RETIRED_MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    policy: str
    policy_version: str
    device_feature_names: _containers.RepeatedScalarFieldContainer[str]
    model_feature_names: _containers.RepeatedScalarFieldContainer[str]
    active_model_count: int
    retired_model_count: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., policy: _Optional[str] = ..., policy_version: _Optional[str] = ..., device_feature_names: _Optional[_Iterable[str]] = ..., model_feature_names: _Optional[_Iterable[str]] = ..., active_model_count: _Optional[int] = ..., retired_model_count: _Optional[int] = ...) -> None: ...
