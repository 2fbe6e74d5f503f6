"""Bounded retries of calls the server refused for now (RESOURCE_EXHAUSTED, UNAVAILABLE).

The server says how long to wait in a `google.rpc.RetryInfo` detail (the Assign rate limit, the
watch stream bound); without one the wait is an exponential backoff with jitter. Which calls are
repeated on which code:

- RESOURCE_EXHAUSTED carrying RetryInfo: every unary call. The server refused before acting and
  said when to come back.
- RESOURCE_EXHAUSTED without it, and UNAVAILABLE (which may come after the server acted, e.g. a
  connection lost mid-call): only calls that are safe to repeat. Assign (the same subtask id and
  content returns the existing assignment), Cancel, the reads, Heartbeat, ReportCompletion (the
  same report again returns the recorded result) and a Register that quotes its incarnation (it
  updates the same registration). Not a Register starting an incarnation, Release or Deregister:
  their repeat after the first one applied is refused (the Agent helper handles Release itself).

A call's timeout covers its retries: the client does not wait past it (when the server's delay does
not fit in what is left, the error is returned at once).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

log = logging.getLogger("switchboard.retry")

RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

_SAFE_TO_REPEAT = frozenset(
    {
        "/switchboard.v1.AssignService/Assign",
        "/switchboard.v1.AssignService/GetAssignment",
        "/switchboard.v1.AssignService/Cancel",
        "/switchboard.v1.QueueService/GetQueuePosition",
        "/switchboard.v1.QueueService/ListQueue",
        "/switchboard.v1.QueueService/GetQueueStats",
        "/switchboard.v1.RegisterService/Heartbeat",
        "/switchboard.v1.RegisterService/GetSpecialist",
        "/switchboard.v1.RegisterService/ListSpecialists",
        "/switchboard.v1.PerformanceService/ReportCompletion",
        "/switchboard.v1.PerformanceService/GetPerformance",
        "/switchboard.v1.PerformanceService/GetModelStatus",
    }
)
_REGISTER = "/switchboard.v1.RegisterService/Register"
_RETRYABLE_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (see the module's docstring for which calls).

    `max_retries` 0 turns retrying off. Without the server's delay, retry n (from 0) waits a random
    time between half and all of `initial_backoff * 2**n`, capped at `max_backoff`. `on_retry(method, error, delay,
    retry)` is called before each wait (e.g. to print "rate limited, retrying in 1.5s").
    """

    max_retries: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    on_retry: Callable[[str, grpc.RpcError, float, int], None] | None = None

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (from 0) when the server gave none."""
        ceiling = min(self.max_backoff, self.initial_backoff * (2**retry))
        return random.uniform(ceiling / 2, ceiling)


NO_RETRY = RetryPolicy(max_retries=0)


def retry_delay(error: grpc.RpcError) -> float | None:
    """The wait in seconds the server asked for in a `google.rpc.RetryInfo` detail, else None."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return _retry_delay_of_status(value)
            except ValueError:
                return None
    return None


def may_retry(method: str, request: object, error: grpc.RpcError, server_delay: float | None) -> bool:
    """Whether `method` answered `error` may be sent again (see the module's docstring)."""
    code = error.code()
    if code not in _RETRYABLE_CODES:
        return False
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and server_delay is not None:
        return True
    if method in _SAFE_TO_REPEAT:
        return True
    return method == _REGISTER and bool(getattr(request, "incarnation", ""))


class RetryInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Retries unary calls per `policy`; `switchboard.connect` installs it.

    A stub's `.future(...)` call returns only once the call (with its retries) has ended.
    """

    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    def intercept_unary_unary(self, continuation, client_call_details, request):
        method = client_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        timeout = client_call_details.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        details = client_call_details
        retry = 0
        while True:
            outcome = continuation(details, request)
            # (code() waits for the call to end: a `.future()` call returns once it has.)
            if retry >= self.policy.max_retries or outcome.code() == grpc.StatusCode.OK:
                return outcome
            server_delay = retry_delay(outcome)
            if not may_retry(method, request, outcome, server_delay):
                return outcome
            if server_delay is not None:
                # A little over the server's wait, so the token it promised has surely come.
                delay = server_delay * random.uniform(1.02, 1.1)
            else:
                delay = self.policy.backoff(retry)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= delay:
                    return outcome  # the wait does not fit in the caller's timeout
                details = replace_call_details(client_call_details, timeout=remaining - delay)
            if self.policy.on_retry is not None:
                self.policy.on_retry(method, outcome, delay, retry + 1)
            log.debug("%s: %s; retry %d in %.3fs", method, outcome.code().name, retry + 1, delay)
            time.sleep(delay)
            retry += 1


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def replace_call_details(details: grpc.ClientCallDetails, **changes: object) -> grpc.ClientCallDetails:
    """A copy of `details` (of an interceptor) with some fields changed, e.g. `timeout=2.0`."""
    fields = {
        name: getattr(details, name, None)
        for name in ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    }
    fields.update(changes)
    return _CallDetails(**fields)


# -- google.rpc.Status, read by hand ------------------------------------------------------------
# Only three messages and two wire types are needed, so no googleapis-common-protos dependency:
#   Status    { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
#   Any       { string type_url = 1; bytes value = 2; }
#   RetryInfo { google.protobuf.Duration retry_delay = 1; }
#   Duration  { int64 seconds = 1; int32 nanos = 2; }


def _retry_delay_of_status(status: bytes) -> float | None:
    for number, value in _fields(status):
        if number != 3 or not isinstance(value, bytes):
            continue
        any_fields = dict(_fields(value))
        if any_fields.get(1) != RETRY_INFO_TYPE.encode():
            continue
        retry_info = dict(_fields(any_fields.get(2, b"")))
        duration = retry_info.get(1)
        if not isinstance(duration, bytes):
            return None
        parts = dict(_fields(duration))
        seconds = _signed(parts.get(1, 0))
        nanos = _signed(parts.get(2, 0))
        return max(0.0, seconds + nanos / 1e9)
    return None


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a message: varints as int, length-delimited as bytes."""
    fields: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
            fields.append((number, value))
        elif wire_type == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise ValueError("truncated field")
            fields.append((number, data[position : position + length]))
            position += length
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _signed(value: int | bytes) -> int:
    """A varint read as the two's complement int64 it encodes."""
    if not isinstance(value, int):
        return 0
    return value - (1 << 64) if value >= 1 << 63 else value
