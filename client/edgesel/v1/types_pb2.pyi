from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FAILURE_REASON_LOAD_ERROR: FailureReason
FAILURE_REASON_OTHER: FailureReason
FAILURE_REASON_OUT_OF_MEMORY: FailureReason
FAILURE_REASON_TIMEOUT: FailureReason
FAILURE_REASON_UNSPECIFIED: FailureReason
FAILURE_REASON_UNSUPPORTED_OP: FailureReason

class ArmStats(_message.Message):
    __slots__ = ["last_update_time", "mean_reward", "model_id", "n_selections", "n_updates", "retired", "reward_sum", "theta_norm"]
    LAST_UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    N_SELECTIONS_FIELD_NUMBER: _ClassVar[int]
    N_UPDATES_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    REWARD_SUM_FIELD_NUMBER: _ClassVar[int]
    THETA_NORM_FIELD_NUMBER: _ClassVar[int]
    last_update_time: _timestamp_pb2.Timestamp
    mean_reward: float
    model_id: str
    n_selections: int
    n_updates: int
    retired: bool
    reward_sum: float
    theta_norm: float
    def __init__(self, model_id: _Optional[str] = ..., retired: bool = ..., n_selections: _Optional[int] = ..., n_updates: _Optional[int] = ..., mean_reward: _Optional[float] = ..., theta_norm: _Optional[float] = ..., reward_sum: _Optional[float] = ..., last_update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeatureSpec(_message.Message):
    __slots__ = ["default", "default_label", "max", "min", "name", "transform", "unknown", "values"]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LABEL_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    default: float
    default_label: str
    max: float
    min: float
    name: str
    transform: str
    unknown: str
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., transform: _Optional[str] = ..., default: _Optional[float] = ..., values: _Optional[_Iterable[str]] = ..., unknown: _Optional[str] = ..., default_label: _Optional[str] = ...) -> None: ...

class Measurements(_message.Message):
    __slots__ = ["accuracy", "energy_mj", "failed", "failure_reason", "latency_ms", "user_rating"]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_MJ_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    USER_RATING_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    energy_mj: float
    failed: bool
    failure_reason: FailureReason
    latency_ms: float
    user_rating: float
    def __init__(self, user_rating: _Optional[float] = ..., latency_ms: _Optional[float] = ..., energy_mj: _Optional[float] = ..., accuracy: _Optional[float] = ..., failed: bool = ..., failure_reason: _Optional[_Union[FailureReason, str]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ["artifact_uri", "features", "labels", "metadata", "model_id", "retired", "version"]
    class FeaturesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    artifact_uri: str
    features: _containers.ScalarMap[str, float]
    labels: _containers.ScalarMap[str, str]
    metadata: _containers.ScalarMap[str, str]
    model_id: str
    retired: bool
    version: str
    def __init__(self, model_id: _Optional[str] = ..., version: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., features: _Optional[_Mapping[str, float]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., retired: bool = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Preferences(_message.Message):
    __slots__ = ["latency_budget_ms", "max_model_size_mb", "qoe_weights"]
    class QoeWeightsEntry(_message.Message):
        __slots__ = ["key", "value"]
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
    __slots__ = ["expected_qoe", "exploration_bonus", "model_id", "score"]
    EXPECTED_QOE_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_BONUS_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    expected_qoe: float
    exploration_bonus: float
    model_id: str
    score: float
    def __init__(self, model_id: _Optional[str] = ..., expected_qoe: _Optional[float] = ..., exploration_bonus: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Space(_message.Message):
    __slots__ = ["active_model_count", "description", "device_feature_names", "device_features", "model_feature_names", "model_features", "name", "policy", "policy_version", "retired_model_count"]
    ACTIVE_MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RETIRED_MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    active_model_count: int
    description: str
    device_feature_names: _containers.RepeatedScalarFieldContainer[str]
    device_features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    model_feature_names: _containers.RepeatedScalarFieldContainer[str]
    model_features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    name: str
    policy: str
    policy_version: str
    retired_model_count: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., policy: _Optional[str] = ..., policy_version: _Optional[str] = ..., device_feature_names: _Optional[_Iterable[str]] = ..., model_feature_names: _Optional[_Iterable[str]] = ..., active_model_count: _Optional[int] = ..., retired_model_count: _Optional[int] = ..., device_features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., model_features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ...) -> None: ...

class FailureReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
