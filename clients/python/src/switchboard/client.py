"""A connection to a Switchboard server: the four generated stubs plus orchestrator helpers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchboard.channel import PathLike, open_channel
from switchboard.retry import RetryPolicy
from switchboard.v1 import (
    assign_service_pb2,
    assign_service_pb2_grpc,
    performance_service_pb2_grpc,
    queue_service_pb2_grpc,
    register_service_pb2_grpc,
    types_pb2,
)

#: States after which a subtask never changes again.
TERMINAL_STATES = frozenset(
    {
        types_pb2.ASSIGNMENT_STATE_COMPLETED,
        types_pb2.ASSIGNMENT_STATE_FAILED,
        types_pb2.ASSIGNMENT_STATE_CANCELLED,
    }
)


def state_name(state: int) -> str:
    """`ASSIGNMENT_STATE_COMPLETED` -> `COMPLETED`."""
    return types_pb2.AssignmentState.Name(state).removeprefix("ASSIGNMENT_STATE_")


class Client:
    """The generated stubs on one channel, plus a few helpers for orchestrators.

    `register`, `assign`, `queue`, `performance` and `health` are the generated stubs
    (`switchboard.v1.*_pb2_grpc.*Stub`, `grpc.health.v1.HealthStub`); every RPC of the API is there.
    """

    def __init__(self, channel: grpc.Channel, address: str = ""):
        self.channel = channel
        self.address = address
        self.register = register_service_pb2_grpc.RegisterServiceStub(channel)
        self.assign = assign_service_pb2_grpc.AssignServiceStub(channel)
        self.queue = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.performance = performance_service_pb2_grpc.PerformanceServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)

    # -- lifecycle -------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 10.0, service: str = "") -> None:
        """Polls grpc.health.v1 until the server reports SERVING (for `service`, "" = the whole server).

        Raises TimeoutError when it does not within `timeout` seconds, and the call's error at once
        when the server refuses the caller (UNAUTHENTICATED: no valid token; PERMISSION_DENIED).
        """
        deadline = time.monotonic() + timeout
        delay = 0.02
        last: object = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.address or 'server'} not SERVING after {timeout}s (last: {last})")
            try:
                reply = self.health.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=min(1.0, remaining)
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as error:
                if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise
                last = error.code()
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- orchestrator helpers --------------------------------------------------------------------

    def submit(
        self,
        subtask_id: str,
        specialist_type: str,
        *,
        required_capabilities: Iterable[str] = (),
        priority: int = 0,
        parent_id: str = "",
        depends_on: Iterable[str] = (),
        payload: bytes = b"",
        require_all_capabilities: bool = False,
        timeout: float | None = 60.0,
    ) -> types_pb2.Assignment:
        """Assign: the subtask is ASSIGNED, QUEUED or BLOCKED (on `depends_on`) when this returns.

        Idempotent: submitting the same subtask again returns its current assignment, so the call
        is retried (see `connect`'s `retry`) when rate limited or when the server is unavailable;
        `timeout` covers those retries.
        """
        reply = self.assign.Assign(
            assign_service_pb2.AssignRequest(
                subtask_id=subtask_id,
                specialist_type=specialist_type,
                required_capabilities=list(required_capabilities),
                priority=priority,
                parent_id=parent_id,
                depends_on=list(depends_on),
                payload=payload,
                require_all_capabilities=require_all_capabilities,
            ),
            timeout=timeout,
        )
        return reply.assignment

    def get_assignment(self, subtask_id: str, timeout: float | None = 10.0) -> types_pb2.Assignment:
        reply = self.assign.GetAssignment(
            assign_service_pb2.GetAssignmentRequest(subtask_id=subtask_id), timeout=timeout
        )
        return reply.assignment

    def wait(
        self,
        subtask_ids: Sequence[str],
        *,
        timeout: float | None = None,
        initial_delay: float = 0.05,
        max_delay: float = 1.0,
        on_change=None,
    ) -> Mapping[str, types_pb2.Assignment]:
        """Polls GetAssignment with exponential backoff until every subtask is COMPLETED, FAILED or CANCELLED.

        Returns the final assignments by id. `on_change(assignment)` is called whenever a subtask's
        state (or holder) changes. The delay goes back to `initial_delay` after any change, so a
        busy plan is followed closely and an idle one costs little. Raises TimeoutError.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: dict[str, tuple[int, str, int]] = {}
        final: dict[str, types_pb2.Assignment] = {}
        delay = initial_delay
        while True:
            changed = False
            for subtask_id in subtask_ids:
                if subtask_id in final:
                    continue
                assignment = self.get_assignment(subtask_id)
                key = (assignment.state, assignment.specialist_id, assignment.epoch)
                if seen.get(subtask_id) != key:
                    seen[subtask_id] = key
                    changed = True
                    if on_change is not None:
                        on_change(assignment)
                if assignment.state in TERMINAL_STATES:
                    final[subtask_id] = assignment
            if len(final) == len(subtask_ids):
                return {subtask_id: final[subtask_id] for subtask_id in subtask_ids}
            delay = initial_delay if changed else min(delay * 2, max_delay)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pending = [s for s in subtask_ids if s not in final]
                    raise TimeoutError(f"still not finished after {timeout}s: {', '.join(pending)}")
                delay = min(delay, remaining)
            time.sleep(delay)


def connect(
    address: str,
    *,
    token: str = "",
    caller_id: str = "",
    tls: bool = False,
    tls_ca: PathLike | None = None,
    tls_cert: PathLike | None = None,
    tls_key: PathLike | None = None,
    tls_server_name: str = "",
    retry: RetryPolicy | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> Client:
    """Opens a channel to a Switchboard server at `address` (host:port) and returns a Client.

    - `token`: a bearer token (from `switchboard token issue`), sent as `authorization: Bearer
      <token>` on every call. Over a plaintext channel it travels in clear: use TLS off loopback.
    - `caller_id`: sent as `x-caller-id`, the caller's name for per-caller limits (the Assign rate
      limit) when the server does not take it from a token or client certificate.
    - TLS is on with `tls=True` (the system's roots), `tls_ca` (a PEM file with the CA that signed
      the server's certificate) or `tls_cert` + `tls_key` (PEM files of a client certificate and its
      key, for mutual TLS). `tls_server_name` overrides the name checked in the server certificate.
    - `retry`: bounded retries of RESOURCE_EXHAUSTED and UNAVAILABLE, waiting the server's
      RetryInfo delay (see `switchboard.retry`); default `RetryPolicy()` (5 retries),
      `switchboard.NO_RETRY` turns them off.

    The channel connects lazily; call `Client.wait_ready()` to wait for the server.
    """
    channel = open_channel(
        address,
        token=token,
        caller_id=caller_id,
        tls=tls,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_server_name=tls_server_name,
        retry=retry,
        options=options,
    )
    return Client(channel, address)
