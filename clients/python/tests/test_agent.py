"""The hand-written layer (connect, Client, Agent) against a real server."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
import pytest

import switchboard
from switchboard.v1 import assign_service_pb2, register_service_pb2, types_pb2

ASSIGNED = types_pb2.ASSIGNMENT_STATE_ASSIGNED
COMPLETED = types_pb2.ASSIGNMENT_STATE_COMPLETED
FAILED = types_pb2.ASSIGNMENT_STATE_FAILED
QUEUED = types_pb2.ASSIGNMENT_STATE_QUEUED
BLOCKED = types_pb2.ASSIGNMENT_STATE_BLOCKED


def test_package_ships_stubs_and_type_stubs():
    v1 = Path(switchboard.types_pb2.__file__).parent
    for name in ("types", "assign_service", "register_service", "queue_service", "performance_service"):
        assert (v1 / f"{name}_pb2.py").is_file()
        assert (v1 / f"{name}_pb2.pyi").is_file(), "the .pyi type stubs are part of the package"
    assert (v1 / "assign_service_pb2_grpc.py").is_file()
    assert (Path(switchboard.__file__).parent / "py.typed").is_file()


def test_connect_and_stubs(server):
    with switchboard.connect(server.address) as client:
        client.wait_ready(timeout=5, service="switchboard.v1.AssignService")
        reply = client.register.Register(
            register_service_pb2.RegisterRequest(specialist_type="frontend", capabilities=["react"])
        )
        assert reply.specialist.specialist_id == "specialist-frontend-1"
        assignment = client.submit("t1", "frontend", required_capabilities=["react"])
        assert assignment.state == ASSIGNED
        assert assignment.specialist_id == "specialist-frontend-1"
        assert client.get_assignment("t1").epoch == assignment.epoch


def test_wait_ready_times_out_without_server():
    client = switchboard.connect("127.0.0.1:1")
    with pytest.raises(TimeoutError):
        client.wait_ready(timeout=0.5)
    client.close()


def test_agent_heartbeats_keep_the_lease(make_server):
    srv = make_server("--lease-ttl-ms", "1000", "--heartbeat-interval-ms", "100", "--sweep-interval-ms", "50")
    with switchboard.Agent(srv.client, "backend", ["sql"], specialist_id="be-1") as agent:
        assert agent.heartbeat_interval == pytest.approx(0.1)
        assert agent.lease_ttl == pytest.approx(1.0)
        assert agent.incarnation, "Register returns the incarnation every heartbeat quotes"
        assigned = srv.client.submit("job-1", "backend", required_capabilities=["sql"])
        assert assigned.specialist_id == "be-1"
        work = agent.next_work(timeout=5)
        assert work is not None and work.subtask_id == "job-1" and work.epoch == assigned.epoch
        # Over two lease lengths pass: only the background heartbeats keep it alive.
        time.sleep(2.5)
        specialist = srv.client.register.GetSpecialist(
            register_service_pb2.GetSpecialistRequest(specialist_id="be-1")
        ).specialist
        assert specialist.availability == types_pb2.AVAILABILITY_ONLINE
        assert specialist.active_assignments == 1
        assert agent.superseded is None and not work.revoked
        done = agent.complete(work, quality_score=0.8)
        assert done.state == COMPLETED
        assert agent.held() == []
    # Leaving deregisters.
    with pytest.raises(grpc.RpcError) as error:
        srv.client.register.GetSpecialist(register_service_pb2.GetSpecialistRequest(specialist_id="be-1"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_agent_run_reports_outcomes_and_failures_cascade(server):
    client = server.client
    client.submit("a", "backend", required_capabilities=["sql"])
    client.submit("b", "backend", required_capabilities=["sql"], depends_on=["a"])
    assert client.get_assignment("b").state == BLOCKED
    client.submit("ok", "backend", required_capabilities=["sql"])

    def handler(work: switchboard.Work):
        if work.subtask_id == "a":
            raise RuntimeError("boom")
        return switchboard.Outcome(quality_score=0.7, detail="fine")

    agent = switchboard.Agent(client, "backend", ["sql"], specialist_id="be-1", max_concurrency=2)
    handled = agent.run(handler, max_tasks=2)
    agent.stop(deregister=True)
    assert handled == 2
    final = client.wait(["a", "b", "ok"], timeout=10)
    assert final["a"].state == FAILED and "boom" in final["a"].detail
    assert final["b"].state == FAILED, "a failed dependency fails its dependents"
    assert final["ok"].state == COMPLETED


def test_cancel_revokes_and_report_is_fenced(server):
    client = server.client
    revoked: list[str] = []
    with switchboard.Agent(client, "docs", ["markdown"], on_revoked=lambda w: revoked.append(w.subtask_id)) as agent:
        client.submit("doc-1", "docs", required_capabilities=["markdown"])
        work = agent.next_work(timeout=5)
        assert work is not None and work.subtask_id == "doc-1"
        client.assign.Cancel(assign_service_pb2.CancelRequest(subtask_id="doc-1", reason="not needed"))
        assert work.wait_revoked(timeout=5), "the REVOKED event marks the work"
        assert revoked == ["doc-1"]
        with pytest.raises(switchboard.AssignmentLost):
            agent.complete(work)
        assert client.get_assignment("doc-1").state == types_pb2.ASSIGNMENT_STATE_CANCELLED
        assert agent.held() == []


def test_lapsed_lease_moves_work_and_fences_the_old_holder(make_server):
    srv = make_server("--lease-ttl-ms", "1000", "--heartbeat-interval-ms", "100", "--sweep-interval-ms", "50")
    client = srv.client
    slow = switchboard.Agent(client, "testing", ["pytest"], specialist_id="slow").start()
    client.submit("flaky", "testing", required_capabilities=["pytest"])
    first = slow.next_work(timeout=5)
    assert first is not None and first.attempt == 1
    slow.stop()  # no more heartbeats, no deregistration: the lease lapses
    with switchboard.Agent(client, "testing", ["pytest"], specialist_id="fresh") as fresh:
        second = fresh.next_work(timeout=10)
        assert second is not None and second.subtask_id == "flaky"
        assert second.attempt == 2 and second.epoch > first.epoch
        with pytest.raises(switchboard.AssignmentLost):
            slow.complete(first)  # stale epoch: FAILED_PRECONDITION, nothing changes
        assert fresh.complete(second).state == COMPLETED


def test_registering_again_keeps_the_incarnation_and_its_work(make_server):
    """register() and set_availability() quote the agent's incarnation: the registration changes in place."""
    srv = make_server("--lease-ttl-ms", "1000", "--heartbeat-interval-ms", "100", "--sweep-interval-ms", "50")
    with switchboard.Agent(srv.client, "backend", ["sql"], specialist_id="be-2") as agent:
        incarnation = agent.incarnation
        srv.client.submit("kept", "backend", required_capabilities=["sql"])
        work = agent.next_work(timeout=5)
        assert work is not None
        agent.capabilities = ["sql", "grpc"]
        agent.register()
        assert agent.incarnation == incarnation
        agent.set_availability(types_pb2.AVAILABILITY_BUSY)
        time.sleep(0.5)  # several heartbeats under the same incarnation
        specialist = srv.client.register.GetSpecialist(
            register_service_pb2.GetSpecialistRequest(specialist_id="be-2")
        ).specialist
        assert sorted(specialist.capabilities) == ["grpc", "sql"]
        assert specialist.availability == types_pb2.AVAILABILITY_BUSY
        assert specialist.active_assignments == 1
        assert not work.revoked and agent.superseded is None
        assert agent.complete(work).state == COMPLETED


def test_second_agent_with_the_same_id_is_refused(server):
    client = server.client
    with switchboard.Agent(client, "backend", ["sql"], specialist_id="be-1") as first:
        second = switchboard.Agent(client, "backend", ["sql"], specialist_id="be-1")
        with pytest.raises(switchboard.AlreadyRegistered) as refused:
            second.start()
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert isinstance(refused.value, grpc.RpcError)
        assert "take_over=True" in str(refused.value)
        second.stop()
        # The first is untouched: it still takes and reports work.
        client.submit("still-mine", "backend", required_capabilities=["sql"])
        work = first.next_work(timeout=5)
        assert work is not None and work.attempt == 1
        assert first.complete(work).state == COMPLETED
        assert first.superseded is None


def test_take_over_supersedes_the_first_agent(server):
    client = server.client
    first = switchboard.Agent(client, "backend", ["sql"], specialist_id="be-1").start()
    try:
        client.submit("held", "backend", required_capabilities=["sql"])
        started: queue.Queue = queue.Queue()
        outcome: queue.Queue = queue.Queue()

        def handler(work: switchboard.Work):
            started.put(work)
            work.wait_revoked(30)  # works until taken away
            return True

        def run() -> None:
            try:
                outcome.put(first.run(handler))
            except Exception as error:  # handed to the test's thread
                outcome.put(error)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        held = started.get(timeout=5)
        assert held.subtask_id == "held" and held.attempt == 1

        with switchboard.Agent(client, "backend", ["sql"], specialist_id="be-1", take_over=True) as second:
            assert second.incarnation and second.incarnation != first.incarnation
            ended = outcome.get(timeout=10)
            assert isinstance(ended, switchboard.Superseded), ended
            assert first.superseded is not None and "be-1" in str(first.superseded)
            assert held.revoked, "the work of a superseded agent is no longer its to report"
            with pytest.raises(switchboard.Superseded):
                first.next_work(timeout=1)
            with pytest.raises(switchboard.AssignmentLost):
                first.complete(held)

            again = second.next_work(timeout=10)
            assert again is not None and again.subtask_id == "held"
            assert again.attempt == 2 and again.epoch > held.epoch
            first.stop(deregister=True)  # superseded: leaves the id to the second
            assert client.register.GetSpecialist(
                register_service_pb2.GetSpecialistRequest(specialist_id="be-1")
            ).specialist.active_assignments == 1
            assert second.complete(again).state == COMPLETED
            assert second.superseded is None
    finally:
        first.stop()


def _watch_into(call, events: queue.Queue) -> threading.Thread:
    def read():
        try:
            for event in call:
                events.put(event)
        except grpc.RpcError as error:
            events.put(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_watch_stream_replays_in_flight_work_on_reconnect(server):
    """The raw protocol: drop the stream, work arrives meanwhile, the new stream replays all of it."""
    client = server.client
    registered = client.register.Register(
        register_service_pb2.RegisterRequest(
            specialist_id="fe-1", specialist_type="frontend", capabilities=["react"], max_concurrency=3
        )
    )
    request = assign_service_pb2.WatchAssignmentsRequest(specialist_id="fe-1", incarnation=registered.incarnation)
    events: queue.Queue = queue.Queue()
    call = client.assign.WatchAssignments(request)
    _watch_into(call, events)
    a = client.submit("A", "frontend", required_capabilities=["react"])
    got = events.get(timeout=5)
    assert got.kind == assign_service_pb2.WATCH_EVENT_KIND_ASSIGNED and got.assignment.subtask_id == "A"

    call.cancel()  # the stream drops
    assert isinstance(events.get(timeout=5), grpc.RpcError)
    b = client.submit("B", "frontend", required_capabilities=["react"])  # assigned while disconnected
    assert b.state == ASSIGNED and b.specialist_id == "fe-1"

    events = queue.Queue()
    call = client.assign.WatchAssignments(request)
    _watch_into(call, events)
    replay = [events.get(timeout=5), events.get(timeout=5)]
    assert {(e.assignment.subtask_id, e.assignment.epoch) for e in replay} == {("A", a.epoch), ("B", b.epoch)}
    assert all(e.kind == assign_service_pb2.WATCH_EVENT_KIND_ASSIGNED for e in replay)
    assert all(e.subtask.subtask_id == e.assignment.subtask_id for e in replay)
    with pytest.raises(queue.Empty):
        events.get(timeout=0.3)  # nothing twice
    call.cancel()


def test_agent_reconnects_without_losing_or_repeating_work(server):
    client = server.client
    with switchboard.Agent(client, "frontend", ["react"], specialist_id="fe-1", max_concurrency=3) as agent:
        assert agent.wait_connected(timeout=5)
        client.submit("A", "frontend", required_capabilities=["react"])
        a = agent.next_work(timeout=5)
        assert a is not None and a.subtask_id == "A"

        for round_ in range(3):
            agent.reconnect()
            client.submit(f"B{round_}", "frontend", required_capabilities=["react"])
            b = agent.next_work(timeout=5)
            assert b is not None and b.subtask_id == f"B{round_}"
            assert agent.complete(b).state == COMPLETED
        deadline = time.monotonic() + 5
        while agent.reconnects < 3 and time.monotonic() < deadline:
            agent.wait_connected(timeout=1)
            time.sleep(0.01)
        assert agent.reconnects >= 3
        assert agent.wait_connected(timeout=5)
        assert agent.next_work(timeout=0.5) is None, "A is replayed by the server but handed out once"
        assert not a.revoked
        assert agent.complete(a).state == COMPLETED


def test_agent_survives_being_deregistered(server):
    client = server.client
    with switchboard.Agent(client, "backend", ["sql"], specialist_id="be-9") as agent:
        client.submit("x", "backend", required_capabilities=["sql"])
        x = agent.next_work(timeout=5)
        assert x is not None
        client.register.Deregister(register_service_pb2.DeregisterRequest(specialist_id="be-9"))
        # The stream ends NOT_FOUND; the agent re-registers (x comes back to it: it is the only one).
        assert x.wait_revoked(timeout=5)
        again = agent.next_work(timeout=10)
        assert again is not None and again.subtask_id == "x" and again.epoch > x.epoch
        assert agent.complete(again).state == COMPLETED


def test_wait_polls_until_finished(server):
    client = server.client
    client.submit("w1", "docs", required_capabilities=["markdown"])
    assert client.get_assignment("w1").state == QUEUED
    with pytest.raises(TimeoutError):
        client.wait(["w1"], timeout=0.3)
    seen: list[str] = []
    with switchboard.Agent(client, "docs", ["markdown"]) as agent:
        finisher = threading.Thread(target=lambda: agent.complete(agent.next_work(timeout=5)))
        finisher.start()
        final = client.wait(["w1"], timeout=10, on_change=lambda a: seen.append(switchboard.state_name(a.state)))
        finisher.join()
    assert final["w1"].state == COMPLETED
    assert seen[-1] == "COMPLETED"


def test_agent_rides_out_a_server_restart(make_server):
    """The stream ends UNAVAILABLE on shutdown; the agent reconnects with backoff, finds itself unknown
    to the new (empty, in-memory) server, registers again and takes new work. Work held from the old
    server is revoked."""
    old = make_server()
    client = switchboard.connect(old.address)  # the agent's own channel, kept across the restart
    agent = switchboard.Agent(
        client, "backend", ["sql"], specialist_id="be-r", reconnect_delay=(0.05, 0.2)
    ).start()
    try:
        old.client.submit("before", "backend", required_capabilities=["sql"])
        before = agent.next_work(timeout=5)
        assert before is not None
        old.stop()
        new = make_server(listen=old.address)
        assert before.wait_revoked(timeout=15), "work of the old server is gone"
        new.client.submit("after", "backend", required_capabilities=["sql"])
        after = agent.next_work(timeout=15)
        assert after is not None and after.subtask_id == "after"
        assert agent.complete(after).state == COMPLETED
    finally:
        agent.stop(deregister=True)
        client.close()
