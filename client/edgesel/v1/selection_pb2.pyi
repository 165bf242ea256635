from edgesel.v1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FEEDBACK_STATUS_ACCEPTED: FeedbackStatus
FEEDBACK_STATUS_DUPLICATE: FeedbackStatus
FEEDBACK_STATUS_UNSPECIFIED: FeedbackStatus

class ActivateRequest(_message.Message):
    __slots__ = ["event_id", "installation_id"]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTALLATION_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    installation_id: str
    def __init__(self, event_id: _Optional[str] = ..., installation_id: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ["already_activated", "feedback_deadline"]
    ALREADY_ACTIVATED_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    already_activated: bool
    feedback_deadline: _timestamp_pb2.Timestamp
    def __init__(self, feedback_deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., already_activated: bool = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ["event_id", "measurements", "request_id", "reward"]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    measurements: _types_pb2.Measurements
    request_id: str
    reward: float
    def __init__(self, event_id: _Optional[str] = ..., reward: _Optional[float] = ..., measurements: _Optional[_Union[_types_pb2.Measurements, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ["reward", "status"]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    reward: float
    status: FeedbackStatus
    def __init__(self, status: _Optional[_Union[FeedbackStatus, str]] = ..., reward: _Optional[float] = ...) -> None: ...

class SelectRequest(_message.Message):
    __slots__ = ["defer_activation", "device_features", "device_labels", "eligible_model_ids", "include_ranking", "installation_id", "preferences", "request_id", "space"]
    class DeviceFeaturesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class DeviceLabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEFER_ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LABELS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RANKING_FIELD_NUMBER: _ClassVar[int]
    INSTALLATION_ID_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    defer_activation: bool
    device_features: _containers.ScalarMap[str, float]
    device_labels: _containers.ScalarMap[str, str]
    eligible_model_ids: _containers.RepeatedScalarFieldContainer[str]
    include_ranking: bool
    installation_id: str
    preferences: _types_pb2.Preferences
    request_id: str
    space: str
    def __init__(self, space: _Optional[str] = ..., device_features: _Optional[_Mapping[str, float]] = ..., eligible_model_ids: _Optional[_Iterable[str]] = ..., preferences: _Optional[_Union[_types_pb2.Preferences, _Mapping]] = ..., request_id: _Optional[str] = ..., include_ranking: bool = ..., device_labels: _Optional[_Mapping[str, str]] = ..., installation_id: _Optional[str] = ..., defer_activation: bool = ...) -> None: ...

class SelectResponse(_message.Message):
    __slots__ = ["activation_deadline", "event_id", "expected_qoe", "exploration_bonus", "exploratory", "feedback_deadline", "model", "policy_version", "ranking", "request_user_rating", "score"]
    ACTIVATION_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_QOE_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_BONUS_FIELD_NUMBER: _ClassVar[int]
    EXPLORATORY_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_USER_RATING_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    activation_deadline: _timestamp_pb2.Timestamp
    event_id: str
    expected_qoe: float
    exploration_bonus: float
    exploratory: bool
    feedback_deadline: _timestamp_pb2.Timestamp
    model: _types_pb2.Model
    policy_version: str
    ranking: _containers.RepeatedCompositeFieldContainer[_types_pb2.RankedModel]
    request_user_rating: bool
    score: float
    def __init__(self, event_id: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ..., expected_qoe: _Optional[float] = ..., exploration_bonus: _Optional[float] = ..., score: _Optional[float] = ..., exploratory: bool = ..., feedback_deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., policy_version: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[_types_pb2.RankedModel, _Mapping]]] = ..., request_user_rating: bool = ..., activation_deadline: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeedbackStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
