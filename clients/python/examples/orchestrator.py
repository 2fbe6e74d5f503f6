#!/usr/bin/env python3
"""Example orchestrator: splits a feature into subtasks with dependencies and waits for them.

    python examples/orchestrator.py --address localhost:50051

The plan (one run = one parent id, so runs never collide):

    schema (backend: sql) -> api (backend: grpc) -> form (frontend: react) -> e2e (testing: playwright)
                                                 \\-> docs (docs: markdown)      (e2e also needs api)

Every subtask is submitted up front: those with unfinished dependencies are BLOCKED and Switchboard
routes each one the moment its last dependency completes. The orchestrator then polls
GetAssignment with backoff until all are finished and exits 0 if every one COMPLETED
(1 if any FAILED or was CANCELLED, 2 on --timeout). Start agents for the four types first, e.g.
examples/agent.py --type backend --capabilities sql,grpc (and frontend/react, testing/playwright,
docs/markdown).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import switchboard

# (name, type, capabilities, depends_on)
PLAN = [
    ("schema", "backend", ["sql"], []),
    ("api", "backend", ["grpc"], ["schema"]),
    ("form", "frontend", ["react"], ["api"]),
    ("e2e", "testing", ["playwright"], ["api", "form"]),
    ("docs", "docs", ["markdown"], ["api"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="localhost:50051", help="Switchboard gRPC address")
    parser.add_argument("--run-id", default="", help="parent id and subtask id prefix (default: random)")
    parser.add_argument("--work-ms", type=int, default=100, help="how long each subtask asks its agent to work")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the plan")
    args = parser.parse_args(argv)
    run_id = args.run_id or f"signup-{uuid.uuid4().hex[:8]}"

    with switchboard.connect(args.address) as client:
        client.wait_ready(timeout=30)
        ids = []
        started = time.monotonic()
        for name, specialist_type, capabilities, depends_on in PLAN:  # dependencies first
            subtask_id = f"{run_id}-{name}"
            payload = json.dumps({"title": f"{name} for {run_id}", "work_ms": args.work_ms}).encode()
            assignment = client.submit(
                subtask_id,
                specialist_type,
                required_capabilities=capabilities,
                parent_id=run_id,
                depends_on=[f"{run_id}-{d}" for d in depends_on],
                payload=payload,
            )
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
