"""The two examples (examples/agent.py, examples/orchestrator.py) end to end against a real server."""

from __future__ import annotations

import signal
import subprocess

import switchboard
from switchboard.v1 import register_service_pb2, types_pb2

from conftest import Process, python_example

AGENTS = [
    ("be-1", "backend", "sql,grpc"),
    ("fe-1", "frontend", "react,css"),
    ("qa-1", "testing", "playwright"),
    ("doc-1", "docs", "markdown"),
]


def test_orchestrator_and_agents_end_to_end(server):
    agents = {
        specialist_id: Process(
            python_example(
                "agent.py", "--address", server.address, "--id", specialist_id, "--type", kind,
                "--capabilities", caps, "--work-ms", "50",
            )
        )
        for specialist_id, kind, caps in AGENTS
    }
    try:
        for specialist_id, agent in agents.items():
            assert agent.wait_for(f"agent {specialist_id}"), agent.output()
        orchestrator = subprocess.run(
            python_example("orchestrator.py", "--address", server.address, "--run-id", "feat", "--timeout", "60"),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert orchestrator.returncode == 0, orchestrator.stdout + orchestrator.stderr
        assert "plan feat: all 5 subtasks completed" in orchestrator.stdout
        # Dependants start BLOCKED and were routed as their dependencies completed.
        assert "submitted feat-api" in orchestrator.stdout and "BLOCKED" in orchestrator.stdout

        client = server.client
        final = {name: client.get_assignment(f"feat-{name}") for name in ("schema", "api", "form", "e2e", "docs")}
        assert all(a.state == types_pb2.ASSIGNMENT_STATE_COMPLETED for a in final.values())
        assert final["schema"].specialist_id == "be-1" and final["api"].specialist_id == "be-1"
        assert final["form"].specialist_id == "fe-1"
        assert final["e2e"].specialist_id == "qa-1"
        assert final["docs"].specialist_id == "doc-1"

        def finished(name):
            return final[name].finished_at.ToNanoseconds()

        def assigned(name):
            return final[name].assigned_at.ToNanoseconds()

        for before, after in [("schema", "api"), ("api", "form"), ("api", "e2e"), ("form", "e2e"), ("api", "docs")]:
            assert finished(before) <= assigned(after), f"{after} started before {before} finished"
        assert "done feat-form" in agents["fe-1"].output()
    finally:
        for agent in agents.values():
            if agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGTERM)
        codes = {specialist_id: agent.proc.wait(timeout=20) for specialist_id, agent in agents.items()}
    assert codes == {specialist_id: 0 for specialist_id in agents}, {k: a.output() for k, a in agents.items()}
    assert "handled 2 subtasks" in agents["be-1"].output()
    # The agents deregistered on SIGTERM.
    left = server.client.register.ListSpecialists(register_service_pb2.ListSpecialistsRequest())
    assert list(left.specialists) == []


def test_orchestrator_submits_a_big_plan_whole_under_the_rate_limit(make_server):
    """50 submissions (10 copies of the plan) against 40 Assigns a minute: the last ones wait the
    delay the server names (RetryInfo) and the plan still goes in whole and completes."""
    srv = make_server("--assign-rate-limit", "40")
    agents = {
        specialist_id: Process(
            python_example(
                "agent.py", "--address", srv.address, "--id", specialist_id, "--type", kind,
                "--capabilities", caps, "--work-ms", "5", "--max-concurrency", "10",
            )
        )
        for specialist_id, kind, caps in AGENTS
    }
    try:
        for specialist_id, agent in agents.items():
            assert agent.wait_for(f"agent {specialist_id} ("), agent.output()
        orchestrator = subprocess.run(
            python_example(
                "orchestrator.py", "--address", srv.address, "--run-id", "big", "--copies", "10",
                "--work-ms", "5", "--timeout", "90",
            ),
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert orchestrator.returncode == 0, orchestrator.stdout + orchestrator.stderr
        assert "plan big: all 50 subtasks completed" in orchestrator.stdout
        assert "Assign: RESOURCE_EXHAUSTED; retry 1 in 1." in orchestrator.stdout, orchestrator.stdout
    finally:
        for agent in agents.values():
            agent.proc.terminate()
        for agent in agents.values():
            agent.proc.wait(timeout=20)


def test_orchestrator_times_out_without_agents(server):
    result = subprocess.run(
        python_example("orchestrator.py", "--address", server.address, "--timeout", "0.5"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "timed out" in result.stdout


def test_agent_example_exits_after_max_tasks(server):
    server.client.submit("only", "docs", required_capabilities=["markdown"], payload=b'{"work_ms": 1}')
    result = subprocess.run(
        python_example(
            "agent.py", "--address", server.address, "--type", "docs", "--capabilities", "markdown",
            "--max-tasks", "1",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "handled 1 subtasks" in result.stdout
    assert server.client.get_assignment("only").state == types_pb2.ASSIGNMENT_STATE_COMPLETED
    assert switchboard.state_name(server.client.get_assignment("only").state) == "COMPLETED"


def test_agent_example_take_over(server):
    """A second agent with the same --id exits 1 unless --take-over; with it, the first exits 3 and
    its unfinished subtask goes to the new one as attempt 2."""
    common = ["--address", server.address, "--id", "be-1", "--type", "backend", "--capabilities", "sql"]
    first = Process(python_example("agent.py", *common, "--work-ms", "60000"))
    replacement = None
    try:
        assert first.wait_for("agent be-1 (backend) ready"), first.output()
        server.client.submit("long", "backend", required_capabilities=["sql"])
        assert first.wait_for("working on long (long), attempt 1"), first.output()

        refused = subprocess.run(python_example("agent.py", *common), capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "pass --take-over" in refused.stderr, refused.stderr

        replacement = Process(python_example("agent.py", *common, "--take-over", "--work-ms", "50"))
        assert first.proc.wait(timeout=20) == 3, first.output()
        assert "superseded" in first.output(), first.output()
        assert "handled" not in first.output(), "a superseded agent stops instead of carrying on"
        assert replacement.wait_for("working on long (long), attempt 2"), replacement.output()
        final = server.client.wait(["long"], timeout=30)
        assert final["long"].state == types_pb2.ASSIGNMENT_STATE_COMPLETED, final["long"]
        assert final["long"].attempt == 2 and final["long"].specialist_id == "be-1"
    finally:
        for process in (first, replacement):
            if process is not None and process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
    assert replacement.proc.wait(timeout=20) == 0, replacement.output()
