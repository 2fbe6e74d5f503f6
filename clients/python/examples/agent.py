#!/usr/bin/env python3
"""Example agent: registers as a specialist and works through whatever Switchboard assigns it.

    python examples/agent.py --address localhost:50051 --type backend --capabilities sql,grpc

Each subtask's payload is JSON such as {"title": "...", "work_ms": 200}; the "work" is a sleep of
that long (default --work-ms). A payload with "fail": true is reported as a failure. Stops on
SIGINT/SIGTERM (deregistering, so the server requeues anything unfinished) or after --max-tasks.

With auth on, pass the agent's token (`switchboard token issue --role agent --specialist ID`) as
--token or SWITCHBOARD_TOKEN, and with TLS the CA that signed the server's certificate as --tls-ca
(and a client certificate as --tls-cert/--tls-key for mutual TLS); a refused token exits 1.

Only one live process may hold a specialist id: a second one with the same --id exits 1 unless it
passes --take-over (for a replacement, e.g. a restart under a supervisor), which supersedes the
first; the first then exits 3 (its unfinished work is retried by the server), without deregistering.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import grpc

import switchboard


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
    parser.add_argument("--type", required=True, help="specialist type, e.g. frontend")
    parser.add_argument("--capabilities", default="", help="comma-separated, e.g. react,css")
    parser.add_argument("--id", default="", help="specialist id (default: the server mints one)")
    parser.add_argument("--max-concurrency", type=int, default=2)
    parser.add_argument("--work-ms", type=int, default=100, help="simulated work per subtask")
    parser.add_argument("--max-tasks", type=int, default=None, help="exit after this many")
    parser.add_argument(
        "--take-over",
        action="store_true",
        help="replace a live process registered with the same --id (its work is retried); "
        "without it this agent exits 1 while that process lives",
    )
    add_connection_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    agent = switchboard.Agent(
        args.address,
        args.type,
        [c for c in args.capabilities.split(",") if c],
        specialist_id=args.id,
        max_concurrency=args.max_concurrency,
        labels={"example": "python-agent"},
        take_over=args.take_over,
        connect_options=connection_options(args),
    )

    def work(job: switchboard.Work) -> switchboard.Outcome:
        spec = job.json() or {}
        title = spec.get("title", job.subtask_id)
        print(f"{agent.specialist_id}: working on {job.subtask_id} ({title}), attempt {job.attempt}", flush=True)
        # Simulated work; a real agent checks job.revoked between steps and gives up when it is set.
        if job.wait_revoked(spec.get("work_ms", args.work_ms) / 1000):
            return switchboard.Outcome(success=False, detail="revoked")
        if spec.get("fail"):
            return switchboard.Outcome(success=False, quality_score=0.0, detail="payload asked to fail")
        print(f"{agent.specialist_id}: done {job.subtask_id} (epoch {job.epoch})", flush=True)
        return switchboard.Outcome(success=True, quality_score=0.9, detail=f"{title}: done")

    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        # stop() joins threads; run it off the signal handler so the main loop wakes and returns.
        threading.Thread(target=agent.stop, kwargs={"deregister": True}, daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        agent.client.wait_ready(timeout=30)
        agent.start()
    except switchboard.AlreadyRegistered as error:
        print(
            f"agent: {args.id} is held by another live process ({error.detail}); "
            "pass --take-over if this process replaces it",
            file=sys.stderr,
            flush=True,
        )
        agent.stop()
        return 1
    except grpc.RpcError as error:
        reason = refused(error)
        if reason is None:
            raise
        print(f"agent: {reason}", file=sys.stderr, flush=True)
        agent.stop()
        return 1
    print(f"agent {agent.specialist_id} ({args.type}) ready", flush=True)
    try:
        handled = agent.run(work, workers=max(1, args.max_concurrency), max_tasks=args.max_tasks)
    except switchboard.Superseded as superseded:
        agent.stop()
        print(f"agent {agent.specialist_id}: {superseded}", file=sys.stderr, flush=True)
        return 3
    if not stopping.is_set():
        agent.stop(deregister=True)
    print(f"agent {agent.specialist_id} handled {handled} subtasks", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
