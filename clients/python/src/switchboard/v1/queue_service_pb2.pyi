import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetQueuePositionRequest(_message.Message):
    __slots__ = ("subtask_id",)
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    def __init__(self, subtask_id: _Optional[str] = ...) -> None: ...

class GetQueuePositionResponse(_message.Message):
    __slots__ = ("subtask_id", "routed_type", "queue_position", "queue_depth")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTED_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    routed_type: str
    queue_position: int
    queue_depth: int
    def __init__(self, subtask_id: _Optional[str] = ..., routed_type: _Optional[str] = ..., queue_position: _Optional[int] = ..., queue_depth: _Optional[int] = ...) -> None: ...

class ListQueueRequest(_message.Message):
    __slots__ = ("specialist_type", "page_size", "page_token")
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    specialist_type: str
    page_size: int
    page_token: str
    def __init__(self, specialist_type: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueuedSubtask(_message.Message):
    __slots__ = ("subtask_id", "queue_position", "priority", "attempt", "required_capabilities", "enqueued_at")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ENQUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    queue_position: int
    priority: int
    attempt: int
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    enqueued_at: _timestamp_pb2.Timestamp
    def __init__(self, subtask_id: _Optional[str] = ..., queue_position: _Optional[int] = ..., priority: _Optional[int] = ..., attempt: _Optional[int] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., enqueued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListQueueResponse(_message.Message):
    __slots__ = ("subtasks", "queue_depth", "next_page_token")
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    subtasks: _containers.RepeatedCompositeFieldContainer[QueuedSubtask]
    queue_depth: int
    next_page_token: str
    def __init__(self, subtasks: _Optional[_Iterable[_Union[QueuedSubtask, _Mapping]]] = ..., queue_depth: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ("specialist_type",)
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    specialist_type: str
    def __init__(self, specialist_type: _Optional[str] = ...) -> None: ...

class AvailabilityCounts(_message.Message):
    __slots__ = ("online", "idle", "busy", "away", "offline")
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    AWAY_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    online: int
    idle: int
    busy: int
    away: int
    offline: int
    def __init__(self, online: _Optional[int] = ..., idle: _Optional[int] = ..., busy: _Optional[int] = ..., away: _Optional[int] = ..., offline: _Optional[int] = ...) -> None: ...

class TypeQueueStats(_message.Message):
    __slots__ = ("specialist_type", "depth", "oldest_wait_ms", "specialists", "active_assignments", "blocked", "free_capacity")
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    SPECIALISTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    FREE_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    specialist_type: str
    depth: int
    oldest_wait_ms: int
    specialists: AvailabilityCounts
    active_assignments: int
    blocked: int
    free_capacity: int
    def __init__(self, specialist_type: _Optional[str] = ..., depth: _Optional[int] = ..., oldest_wait_ms: _Optional[int] = ..., specialists: _Optional[_Union[AvailabilityCounts, _Mapping]] = ..., active_assignments: _Optional[int] = ..., blocked: _Optional[int] = ..., free_capacity: _Optional[int] = ...) -> None: ...

class GetQueueStatsResponse(_message.Message):
    __slots__ = ("types",)
    TYPES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedCompositeFieldContainer[TypeQueueStats]
    def __init__(self, types: _Optional[_Iterable[_Union[TypeQueueStats, _Mapping]]] = ...) -> None: ...
