"""Python client for Switchboard, the gRPC control plane that hands work to AI agents.

- `connect(address, token=..., tls_ca=..., tls_cert=..., tls_key=...)` -> `Client`: the generated
  stubs (`client.register`, `client.assign`, `client.queue`, `client.performance`, `client.health`)
  plus `submit`, `get_assignment`, `wait` for orchestrators. Calls refused for now
  (RESOURCE_EXHAUSTED, UNAVAILABLE) are retried a bounded number of times, waiting the server's
  RetryInfo delay (`RetryPolicy`, `retry_delay`, `NO_RETRY`).
- `Agent`: registers a specialist, heartbeats in the background, yields its assignments from
  WatchAssignments (reconnecting without losing work), reports completion with epoch fencing.
  `AlreadyRegistered`: another live process holds the id (pass `take_over=True` to replace it);
  `Superseded`: another process took the id over and this agent stopped.
- `switchboard.v1`: the generated messages and stubs (`types_pb2`, `assign_service_pb2`, ...).
"""

from switchboard.agent import Agent, AlreadyRegistered, AssignmentLost, Outcome, Superseded, Work
from switchboard.client import TERMINAL_STATES, Client, connect, state_name
from switchboard.retry import NO_RETRY, RetryPolicy, retry_delay
from switchboard.v1 import (
    assign_service_pb2,
    assign_service_pb2_grpc,
    performance_service_pb2,
    performance_service_pb2_grpc,
    queue_service_pb2,
    queue_service_pb2_grpc,
    register_service_pb2,
    register_service_pb2_grpc,
    types_pb2,
)

__all__ = [
    "Agent",
    "AlreadyRegistered",
    "AssignmentLost",
    "Client",
    "NO_RETRY",
    "Outcome",
    "RetryPolicy",
    "Superseded",
    "TERMINAL_STATES",
    "Work",
    "connect",
    "retry_delay",
    "state_name",
    "assign_service_pb2",
    "assign_service_pb2_grpc",
    "performance_service_pb2",
    "performance_service_pb2_grpc",
    "queue_service_pb2",
    "queue_service_pb2_grpc",
    "register_service_pb2",
    "register_service_pb2_grpc",
    "types_pb2",
]
