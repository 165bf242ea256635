import datetime

from edgesel.v1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_STATUS_UNSPECIFIED: _ClassVar[FeedbackStatus]
    FEEDBACK_STATUS_ACCEPTED: _ClassVar[FeedbackStatus]
    FEEDBACK_STATUS_DUPLICATE: _ClassVar[FeedbackStatus]
FEEDBACK_STATUS_UNSPECIFIED: FeedbackStatus
FEEDBACK_STATUS_ACCEPTED: FeedbackStatus
FEEDBACK_STATUS_DUPLICATE: FeedbackStatus

class SelectRequest(_message.Message):
    __slots__ = ("space", "device_features", "eligible_model_ids", "preferences", "request_id", "include_ranking", "device_labels")
    class DeviceFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class DeviceLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPACE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RANKING_FIELD_NUMBER: _ClassVar[int]
    DEVICE_LABELS_FIELD_NUMBER: _ClassVar[int]
    space: str
    device_features: _containers.ScalarMap[str, float]
    eligible_model_ids: _containers.RepeatedScalarFieldContainer[str]
    preferences: _types_pb2.Preferences
    request_id: str
    include_ranking: bool
    device_labels: _containers.ScalarMap[str, str]
    def __init__(self, space: _Optional[str] = ..., device_features: _Optional[_Mapping[str, float]] = ..., eligible_model_ids: _Optional[_Iterable[str]] = ..., preferences: _Optional[_Union[_types_pb2.Preferences, _Mapping]] = ..., request_id: _Optional[str] = ..., include_ranking: _Optional[bool] = ..., device_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SelectResponse(_message.Message):
    __slots__ = ("event_id", "model", "expected_qoe", "exploration_bonus", "score", "exploratory", "feedback_deadline", "policy_version", "ranking", "request_user_rating")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_QOE_FIELD_NUMBER: _ClassVar[int]
    EXPLORATION_BONUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPLORATORY_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_USER_RATING_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    model: _types_pb2.Model
    expected_qoe: float
    exploration_bonus: float
    score: float
    exploratory: bool
    feedback_deadline: _timestamp_pb2.Timestamp
    policy_version: str
    ranking: _containers.RepeatedCompositeFieldContainer[_types_pb2.RankedModel]
    request_user_rating: bool
    def __init__(self, event_id: _Optional[str] = ..., model: _Optional[_Union[_types_pb2.Model, _Mapping]] = ..., expected_qoe: _Optional[float] = ..., exploration_bonus: _Optional[float] = ..., score: _Optional[float] = ..., exploratory: _Optional[bool] = ..., feedback_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., policy_version: _Optional[str] = ..., ranking: _Optional[_Iterable[_Union[_types_pb2.RankedModel, _Mapping]]] = ..., request_user_rating: _Optional[bool] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("event_id", "reward", "measurements")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    reward: float
    measurements: _types_pb2.Measurements
    def __init__(self, event_id: _Optional[str] = ..., reward: _Optional[float] = ..., measurements: _Optional[_Union[_types_pb2.Measurements, _Mapping]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("status", "reward")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    status: FeedbackStatus
    reward: float
    def __init__(self, status: _Optional[_Union[FeedbackStatus, str]] = ..., reward: _Optional[float] = ...) -> None: ...
