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
