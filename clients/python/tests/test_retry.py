"""Retries: RESOURCE_EXHAUSTED and UNAVAILABLE are retried a bounded number of times, waiting the
delay the server gives in a google.rpc.RetryInfo detail (the Assign rate limit), else backing off."""

from __future__ import annotations

import socket
import threading
import time

import grpc
import pytest

import switchboard
from switchboard.v1 import register_service_pb2, types_pb2


class Retries:
    """An on_retry hook that records (method, code, delay, retry) of every retry."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, grpc.StatusCode, float, int]] = []
        self._lock = threading.Lock()

    def __call__(self, method: str, error: grpc.RpcError, delay: float, retry: int) -> None:
        with self._lock:
            self.seen.append((method, error.code(), delay, retry))


def test_a_plan_of_48_goes_in_whole_under_the_assign_rate_limit(make_server):
    # 40 Assigns a minute per caller, bursting to 40: the last 8 of 48 each wait for the next token
    # (1.5 s), which the server names in RetryInfo.
    srv = make_server("--assign-rate-limit", "40")
    retries = Retries()
    client = srv.connect(caller_id="planner", retry=switchboard.RetryPolicy(on_retry=retries))
    ids = [f"plan-{n:02d}" for n in range(48)]
    started = time.monotonic()
    with switchboard.Agent(srv.client, "backend", ["sql"], specialist_id="be-1", max_concurrency=48) as agent:
        worker = threading.Thread(target=agent.run, args=(lambda work: None,), kwargs={"max_tasks": 48})
        worker.start()
        for n, subtask_id in enumerate(ids):
            # Every fourth one depends on the one before: dependants go in BLOCKED, as in a real plan.
            depends_on = [ids[n - 1]] if n % 4 == 3 else []
            assignment = client.submit(subtask_id, "backend", required_capabilities=["sql"], depends_on=depends_on)
            assert assignment.subtask_id == subtask_id
        submitted = time.monotonic() - started
        final = client.wait(ids, timeout=60)
        worker.join(timeout=30)
    client.close()

    assert all(a.state == types_pb2.ASSIGNMENT_STATE_COMPLETED for a in final.values()), final
    assert submitted < 45, f"48 submissions took {submitted:.1f}s"
    assigns = [r for r in retries.seen if r[0] == "/switchboard.v1.AssignService/Assign"]
    assert assigns, "the limit was hit and the submissions retried"
    assert all(code == grpc.StatusCode.RESOURCE_EXHAUSTED for _, code, _, _ in assigns)
    # The server's wait (about 1.5 s for the next token), not a 0.1 s first backoff: one retry each.
    assert all(delay >= 1.0 for _, _, delay, _ in assigns), assigns
    assert max(retry for *_, retry in assigns) <= 2, assigns


def test_caller_id_names_the_rate_limit_bucket_and_retry_delay_reads_retry_info(make_server):
    srv = make_server("--assign-rate-limit", "3")
    alice = srv.connect(caller_id="alice", retry=switchboard.NO_RETRY)
    bob = srv.connect(caller_id="bob", retry=switchboard.NO_RETRY)
    for n in range(3):
        alice.submit(f"a-{n}", "docs")
    with pytest.raises(grpc.RpcError) as refused:
        alice.submit("a-3", "docs")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # 3 a minute: the next token comes in up to 20 s.
    assert 10 < switchboard.retry_delay(refused.value) <= 20
    assert bob.submit("b-0", "docs").subtask_id == "b-0", "another caller id has its own bucket"
    alice.close()
    bob.close()


def test_no_retry_when_the_servers_wait_does_not_fit_the_timeout(make_server):
    srv = make_server("--assign-rate-limit", "1")
    retries = Retries()
    client = srv.connect(caller_id="one", retry=switchboard.RetryPolicy(on_retry=retries))
    client.submit("first", "docs")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        client.submit("second", "docs", timeout=2)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert time.monotonic() - started < 1.5, "a 60 s wait does not fit in 2 s: the error comes at once"
    assert retries.seen == []
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unavailable_is_retried_a_bounded_number_of_times_for_calls_safe_to_repeat():
    retries = Retries()
    policy = switchboard.RetryPolicy(max_retries=3, initial_backoff=0.02, max_backoff=0.1, on_retry=retries)
    with switchboard.connect(f"127.0.0.1:{free_port()}", retry=policy) as client:
        with pytest.raises(grpc.RpcError) as down:
            client.get_assignment("x", timeout=10)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        assert [retry for *_, retry in retries.seen] == [1, 2, 3]
        assert all(0.01 <= delay <= 0.1 for _, _, delay, _ in retries.seen), retries.seen

        retries.seen.clear()
        # Deregister is not repeated on UNAVAILABLE (a second one after the first applied fails).
        with pytest.raises(grpc.RpcError) as down:
            client.register.Deregister(register_service_pb2.DeregisterRequest(specialist_id="x"), timeout=10)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        assert retries.seen == []


class CuttingProxy:
    """A TCP proxy in front of a plaintext server that can lose one answer: once armed, it closes
    the connection where it would have passed on the server's next response HEADERS frame (HTTP/2),
    so the server has acted and the client hears UNAVAILABLE."""

    def __init__(self, target: str):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.cuts = 0
        self._armed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def lose_next_answer(self) -> None:
        self._armed.set()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump_requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump_responses, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _close(*sockets: socket.socket) -> None:
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _pump_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def _pump_responses(self, upstream: socket.socket, client: socket.socket) -> None:
        buffer = b""
        try:
            while data := upstream.recv(65536):
                buffer += data
                while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                    size = 9 + int.from_bytes(buffer[:3], "big")
                    frame, buffer = buffer[:size], buffer[size:]
                    kind, stream = frame[3], int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
                    if kind == 0x1 and stream != 0 and self._armed.is_set():
                        self._armed.clear()
                        self.cuts += 1
                        raise OSError("answer lost on purpose")
                    client.sendall(frame)
        except OSError:
            pass
        self._close(client, upstream)


@pytest.mark.parametrize("report", ["release", "complete"])
def test_a_report_whose_answer_was_lost_is_repeated_safely(server, report):
    """The server applied the Release (or ReportCompletion) but its answer was lost: the agent
    repeats it. A repeated report returns the recorded result; a repeated Release is refused
    (FAILED_PRECONDITION) and counts as released."""
    proxy = CuttingProxy(server.address)
    agent = switchboard.Agent(proxy.address, "backend", ["sql"], specialist_id="be-1")
    try:
        agent.start()
        server.client.submit("job", "backend", required_capabilities=["sql"])
        work = agent.next_work(timeout=10)
        assert work is not None
        proxy.lose_next_answer()
        if report == "release":
            assignment = agent.release(work, "giving it back")
            # Requeued, and not offered to the agent that released it.
            assert assignment.state == types_pb2.ASSIGNMENT_STATE_QUEUED, assignment
        else:
            assignment = agent.complete(work, quality_score=0.7)
            assert assignment.state == types_pb2.ASSIGNMENT_STATE_COMPLETED, assignment
        assert proxy.cuts == 1, "the first answer was lost"
        assert agent.held() == [] and not work.revoked
        assert server.client.get_assignment("job").state == assignment.state
    finally:
        agent.stop(deregister=True)
        proxy.close()
