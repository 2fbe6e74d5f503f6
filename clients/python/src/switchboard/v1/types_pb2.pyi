import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Availability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AVAILABILITY_UNSPECIFIED: _ClassVar[Availability]
    AVAILABILITY_ONLINE: _ClassVar[Availability]
    AVAILABILITY_IDLE: _ClassVar[Availability]
    AVAILABILITY_BUSY: _ClassVar[Availability]
    AVAILABILITY_AWAY: _ClassVar[Availability]
    AVAILABILITY_OFFLINE: _ClassVar[Availability]

class AssignmentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSIGNMENT_STATE_UNSPECIFIED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_ASSIGNED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_QUEUED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_BLOCKED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_COMPLETED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_FAILED: _ClassVar[AssignmentState]
    ASSIGNMENT_STATE_CANCELLED: _ClassVar[AssignmentState]
AVAILABILITY_UNSPECIFIED: Availability
AVAILABILITY_ONLINE: Availability
AVAILABILITY_IDLE: Availability
AVAILABILITY_BUSY: Availability
AVAILABILITY_AWAY: Availability
AVAILABILITY_OFFLINE: Availability
ASSIGNMENT_STATE_UNSPECIFIED: AssignmentState
ASSIGNMENT_STATE_ASSIGNED: AssignmentState
ASSIGNMENT_STATE_QUEUED: AssignmentState
ASSIGNMENT_STATE_BLOCKED: AssignmentState
ASSIGNMENT_STATE_COMPLETED: AssignmentState
ASSIGNMENT_STATE_FAILED: AssignmentState
ASSIGNMENT_STATE_CANCELLED: AssignmentState

class Specialist(_message.Message):
    __slots__ = ("specialist_id", "specialist_type", "capabilities", "max_concurrency", "labels", "availability", "active_assignments", "registered_at", "last_heartbeat_at", "lease_expires_at", "performance")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    specialist_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    availability: Availability
    active_assignments: int
    registered_at: _timestamp_pb2.Timestamp
    last_heartbeat_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    performance: float
    def __init__(self, specialist_id: _Optional[str] = ..., specialist_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., availability: _Optional[_Union[Availability, str]] = ..., active_assignments: _Optional[int] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., performance: _Optional[float] = ...) -> None: ...

class ScoreFactor(_message.Message):
    __slots__ = ("value", "weight", "points")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    value: float
    weight: float
    points: float
    def __init__(self, value: _Optional[float] = ..., weight: _Optional[float] = ..., points: _Optional[float] = ...) -> None: ...

class ScoreBreakdown(_message.Message):
    __slots__ = ("capability", "load", "availability", "performance")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    capability: ScoreFactor
    load: ScoreFactor
    availability: ScoreFactor
    performance: ScoreFactor
    def __init__(self, capability: _Optional[_Union[ScoreFactor, _Mapping]] = ..., load: _Optional[_Union[ScoreFactor, _Mapping]] = ..., availability: _Optional[_Union[ScoreFactor, _Mapping]] = ..., performance: _Optional[_Union[ScoreFactor, _Mapping]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("subtask_id", "state", "specialist_id", "score", "assigned_at", "queue_position", "breakdown", "epoch", "attempt", "routed_type", "waiting_on", "detail", "created_at", "finished_at")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    BREAKDOWN_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ROUTED_TYPE_FIELD_NUMBER: _ClassVar[int]
    WAITING_ON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    state: AssignmentState
    specialist_id: str
    score: float
    assigned_at: _timestamp_pb2.Timestamp
    queue_position: int
    breakdown: ScoreBreakdown
    epoch: int
    attempt: int
    routed_type: str
    waiting_on: _containers.RepeatedScalarFieldContainer[str]
    detail: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, subtask_id: _Optional[str] = ..., state: _Optional[_Union[AssignmentState, str]] = ..., specialist_id: _Optional[str] = ..., score: _Optional[float] = ..., assigned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue_position: _Optional[int] = ..., breakdown: _Optional[_Union[ScoreBreakdown, _Mapping]] = ..., epoch: _Optional[int] = ..., attempt: _Optional[int] = ..., routed_type: _Optional[str] = ..., waiting_on: _Optional[_Iterable[str]] = ..., detail: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Subtask(_message.Message):
    __slots__ = ("subtask_id", "specialist_type", "required_capabilities", "priority", "parent_id", "depends_on", "payload", "require_all_capabilities", "created_at")
    SUBTASK_ID_FIELD_NUMBER: _ClassVar[int]
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ALL_CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    subtask_id: str
    specialist_type: str
    required_capabilities: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    parent_id: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    payload: bytes
    require_all_capabilities: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, subtask_id: _Optional[str] = ..., specialist_type: _Optional[str] = ..., required_capabilities: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., parent_id: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., payload: _Optional[bytes] = ..., require_all_capabilities: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
