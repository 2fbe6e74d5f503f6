from switchboard.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCH_EVENT_KIND_UNSPECIFIED: _ClassVar[WatchEventKind]
    WATCH_EVENT_KIND_ASSIGNED: _ClassVar[WatchEventKind]
    WATCH_EVENT_KIND_REVOKED: _ClassVar[WatchEventKind]
WATCH_EVENT_KIND_UNSPECIFIED: WatchEventKind
WATCH_EVENT_KIND_ASSIGNED: WatchEventKind
WATCH_EVENT_KIND_REVOKED: WatchEventKind

class AssignRequest(_message.Message):
    __slots__ = ("subtask_id", "specialist_type", "required_capabilities", "priority", "parent_id", "depends_on", "payload", "require_all_capabilities", "description", "estimated_duration_ms")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ALL_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    specialist_type: str
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    parent_id: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    payload: bytes
    require_all_capabilities: bool
    description: str
    estimated_duration_ms: int
    def __init__(self, subtask_id: _Optional[str] = ..., specialist_type: _Optional[str] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., parent_id: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., payload: _Optional[bytes] = ..., require_all_capabilities: _Optional[bool] = ..., description: _Optional[str] = ..., estimated_duration_ms: _Optional[int] = ...) -> None: ...

class AssignResponse(_message.Message):
    __slots__ = ("subtask_id", "assignment")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    assignment: _types_pb2.Assignment
    def __init__(self, subtask_id: _Optional[str] = ..., assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ...) -> None: ...

class GetAssignmentRequest(_message.Message):
    __slots__ = ("subtask_id",)
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    def __init__(self, subtask_id: _Optional[str] = ...) -> None: ...

class GetAssignmentResponse(_message.Message):
    __slots__ = ("assignment", "subtask")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    assignment: _types_pb2.Assignment
    subtask: _types_pb2.Subtask
    def __init__(self, assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ..., subtask: _Optional[_Union[_types_pb2.Subtask, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("subtask_id", "specialist_id", "epoch", "reason", "incarnation")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    specialist_id: str
    epoch: int
    reason: str
    incarnation: str
    def __init__(self, subtask_id: _Optional[str] = ..., specialist_id: _Optional[str] = ..., epoch: _Optional[int] = ..., reason: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: _types_pb2.Assignment
    def __init__(self, assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("subtask_id", "reason")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    reason: str
    def __init__(self, subtask_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: _types_pb2.Assignment
    def __init__(self, assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ...) -> None: ...

class WatchAssignmentsRequest(_message.Message):
    __slots__ = ("specialist_id", "incarnation")
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    incarnation: str
    def __init__(self, specialist_id: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class WatchAssignmentsResponse(_message.Message):
    __slots__ = ("kind", "assignment", "subtask")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    kind: WatchEventKind
    assignment: _types_pb2.Assignment
    subtask: _types_pb2.Subtask
    def __init__(self, kind: _Optional[_Union[WatchEventKind, str]] = ..., assignment: _Optional[_Union[_types_pb2.Assignment, _Mapping]] = ..., subtask: _Optional[_Union[_types_pb2.Subtask, _Mapping]] = ...) -> None: ...
