#!/usr/bin/env python3
"""Example orchestrator: splits a feature into subtasks with dependencies and waits for them.

    python examples/orchestrator.py --address localhost:50051

The plan (one run = one parent id, so runs never collide):

    schema (backend: sql) -> api (backend: grpc) -> form (frontend: react) -> e2e (testing: playwright)
                                                 \\-> docs (docs: markdown)      (e2e also needs api)

Every subtask is submitted up front: those with unfinished dependencies are BLOCKED and Switchboard
routes each one the moment its last dependency completes. The orchestrator then polls
GetAssignment with backoff until all are finished and exits 0 if every one COMPLETED
(1 if any FAILED or was CANCELLED or a submission was refused, 2 on --timeout). Start agents for
the four types first, e.g. examples/agent.py --type backend --capabilities sql,grpc (and
frontend/react, testing/playwright, docs/markdown).

A submission the server rate-limits (RESOURCE_EXHAUSTED, the Assign limit per caller) is retried
after the delay the server gives, so a big plan (--copies N: N times the five steps) goes in whole,
only slower. With auth on, pass an orchestrator token as --token or SWITCHBOARD_TOKEN; TLS flags as
for examples/agent.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid

import grpc

import switchboard

# (name, type, capabilities, depends_on)
PLAN = [
    ("schema", "backend", ["sql"], []),
    ("api", "backend", ["grpc"], ["schema"]),
    ("form", "frontend", ["react"], ["api"]),
    ("e2e", "testing", ["playwright"], ["api", "form"]),
    ("docs", "docs", ["markdown"], ["api"]),
]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """--token, --tls-*, --caller-id; each defaults to its SWITCHBOARD_* environment variable."""
    for flag, env, help_text in (
        ("--token", "SWITCHBOARD_TOKEN", "bearer token (`switchboard token issue`)"),
        ("--tls-ca", "SWITCHBOARD_TLS_CA", "PEM file of the CA that signed the server's certificate; turns TLS on"),
        ("--tls-cert", "SWITCHBOARD_TLS_CERT", "client certificate (PEM file) for mutual TLS"),
        ("--tls-key", "SWITCHBOARD_TLS_KEY", "private key (PEM file) of --tls-cert"),
        ("--tls-server-name", "SWITCHBOARD_TLS_SERVER_NAME", "name to check in the server's certificate"),
        ("--caller-id", "SWITCHBOARD_CALLER_ID", "x-caller-id: this caller's name for limits when auth is off"),
    ):
        parser.add_argument(flag, default=os.environ.get(env, ""), help=f"{help_text} [env {env}]")


def connection_options(args: argparse.Namespace) -> dict:
    """switchboard.connect's keyword arguments from those flags ("" means not given)."""
    names = ("token", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "caller_id")
    return {name: getattr(args, name) for name in names}


def refused(error: grpc.RpcError) -> str | None:
    """A one-line explanation when the server refused the caller (no valid token, not allowed)."""
    if error.code() == grpc.StatusCode.UNAUTHENTICATED:
        return f"not authenticated ({error.details()}): pass --token or set SWITCHBOARD_TOKEN"
    if error.code() == grpc.StatusCode.PERMISSION_DENIED:
        return f"not allowed ({error.details()}): the token does not cover this"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="localhost:50051", help="Switchboard gRPC address")
    parser.add_argument("--run-id", default="", help="parent id and subtask id prefix (default: random)")
    parser.add_argument("--work-ms", type=int, default=100, help="how long each subtask asks its agent to work")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the plan")
    parser.add_argument(
        "--copies", type=int, default=1, help="submit the plan this many times (ids <run-id>-<n>-<step>)"
    )
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    run_id = args.run_id or f"signup-{uuid.uuid4().hex[:8]}"

    def on_retry(method: str, error: grpc.RpcError, delay: float, retry: int) -> None:
        # e.g. the Assign rate limit: the server's RetryInfo says how long until the next token
        print(f"{method.rsplit('/', 1)[-1]}: {error.code().name}; retry {retry} in {delay:.2f}s", flush=True)

    client = switchboard.connect(
        args.address, retry=switchboard.RetryPolicy(on_retry=on_retry), **connection_options(args)
    )
    with client:
        try:
            client.wait_ready(timeout=30)
        except grpc.RpcError as error:
            if refused(error) is None:
                raise
            print(f"orchestrator: {refused(error)}", file=sys.stderr, flush=True)
            return 1
        ids = []
        started = time.monotonic()
        for copy in range(1, args.copies + 1):
            prefix = run_id if args.copies == 1 else f"{run_id}-{copy}"
            for name, specialist_type, capabilities, depends_on in PLAN:  # dependencies first
                subtask_id = f"{prefix}-{name}"
                payload = json.dumps({"title": f"{name} for {prefix}", "work_ms": args.work_ms}).encode()
                try:
                    assignment = client.submit(
                        subtask_id,
                        specialist_type,
                        required_capabilities=capabilities,
                        parent_id=run_id,
                        depends_on=[f"{prefix}-{d}" for d in depends_on],
                        payload=payload,
                    )
                except grpc.RpcError as error:
                    reason = refused(error) or f"{error.code().name}: {error.details()}"
                    print(f"orchestrator: submitting {subtask_id}: {reason}", file=sys.stderr, flush=True)
                    return 1
                ids.append(subtask_id)
                print(f"submitted {subtask_id:<24} {switchboard.state_name(assignment.state)}", flush=True)

        def show(assignment: switchboard.types_pb2.Assignment) -> None:
            holder = f" -> {assignment.specialist_id}" if assignment.specialist_id else ""
            print(f"  {assignment.subtask_id:<24} {switchboard.state_name(assignment.state)}{holder}", flush=True)

        try:
            final = client.wait(ids, timeout=args.timeout, on_change=show)
        except TimeoutError as error:
            print(f"timed out: {error}", flush=True)
            return 2

    elapsed = time.monotonic() - started
    failed = [a for a in final.values() if a.state != switchboard.types_pb2.ASSIGNMENT_STATE_COMPLETED]
    for subtask_id, assignment in final.items():
        print(
            f"{subtask_id:<24} {switchboard.state_name(assignment.state):<10} by {assignment.specialist_id or '-'}"
            f" {assignment.detail}",
            flush=True,
        )
    if failed:
        print(f"plan {run_id}: {len(failed)} of {len(final)} subtasks did not complete", flush=True)
        return 1
    print(f"plan {run_id}: all {len(final)} subtasks completed in {elapsed:.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
