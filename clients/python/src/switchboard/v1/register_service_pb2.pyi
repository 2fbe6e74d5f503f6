import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from switchboard.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterRequest(_message.Message):
    __slots__ = ("specialist_id", "specialist_type", "capabilities", "max_concurrency", "labels", "availability", "incarnation", "take_over")
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
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    TAKE_OVER_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    specialist_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    availability: _types_pb2.Availability
    incarnation: str
    take_over: bool
    def __init__(self, specialist_id: _Optional[str] = ..., specialist_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., availability: _Optional[_Union[_types_pb2.Availability, str]] = ..., incarnation: _Optional[str] = ..., take_over: _Optional[bool] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("specialist", "heartbeat_interval_ms", "lease_ttl_ms", "incarnation")
    SPECIALIST_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    specialist: _types_pb2.Specialist
    heartbeat_interval_ms: int
    lease_ttl_ms: int
    incarnation: str
    def __init__(self, specialist: _Optional[_Union[_types_pb2.Specialist, _Mapping]] = ..., heartbeat_interval_ms: _Optional[int] = ..., lease_ttl_ms: _Optional[int] = ..., incarnation: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("specialist_id", "availability", "incarnation")
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    availability: _types_pb2.Availability
    incarnation: str
    def __init__(self, specialist_id: _Optional[str] = ..., availability: _Optional[_Union[_types_pb2.Availability, str]] = ..., incarnation: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("specialist", "lease_expires_at")
    SPECIALIST_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    specialist: _types_pb2.Specialist
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, specialist: _Optional[_Union[_types_pb2.Specialist, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("specialist_id",)
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    def __init__(self, specialist_id: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ("requeued_subtask_ids",)
    REQUEUED_SUBTASK_IDS_FIELD_NUMBER: _ClassVar[int]
    requeued_subtask_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, requeued_subtask_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSpecialistRequest(_message.Message):
    __slots__ = ("specialist_id",)
    SPECIALIST_ID_FIELD_NUMBER: _ClassVar[int]
    specialist_id: str
    def __init__(self, specialist_id: _Optional[str] = ...) -> None: ...

class GetSpecialistResponse(_message.Message):
    __slots__ = ("specialist",)
    SPECIALIST_FIELD_NUMBER: _ClassVar[int]
    specialist: _types_pb2.Specialist
    def __init__(self, specialist: _Optional[_Union[_types_pb2.Specialist, _Mapping]] = ...) -> None: ...

class ListSpecialistsRequest(_message.Message):
    __slots__ = ("specialist_type", "page_size", "page_token")
    SPECIALIST_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    specialist_type: str
    page_size: int
    page_token: str
    def __init__(self, specialist_type: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSpecialistsResponse(_message.Message):
    __slots__ = ("specialists", "next_page_token")
    SPECIALISTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    specialists: _containers.RepeatedCompositeFieldContainer[_types_pb2.Specialist]
    next_page_token: str
    def __init__(self, specialists: _Optional[_Iterable[_Union[_types_pb2.Specialist, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
