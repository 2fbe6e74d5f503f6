"""An agent (a "specialist"): register, heartbeat, receive assignments, report how they went.

    agent = Agent(connect("localhost:50051"), "frontend", ["react", "css"], specialist_id="fe-1")
    with agent:                          # registers; heartbeats and watches in the background
        for work in agent:               # each assignment once: in-flight work replayed, then new work
            ...                          # do it (check work.revoked now and then)
            agent.complete(work, quality_score=0.9)

or simply `agent.run(handler)`. The stream is reopened whenever it drops (server restart, network,
`reconnect()`); the server replays in-flight work then, and the agent hands out only what it has not
handed out before, so nothing is lost or done twice. Work taken away (cancelled, lease lapsed,
reassigned while disconnected) is marked revoked and its report raises AssignmentLost.

Register starts an incarnation (this process's session with the id) that every later call carries.
A second process with the same id is refused (AlreadyRegistered) unless it passes `take_over=True`;
then this one is superseded: it stops, its held work is revoked (the server retries it), and
`next_work()` / `run()` raise Superseded. It never registers again by itself then, so two processes
do not keep taking the id from each other.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from switchboard.client import Client, connect
from switchboard.retry import retry_delay
from switchboard.v1 import (
    assign_service_pb2,
    performance_service_pb2,
    register_service_pb2,
    types_pb2,
)

log = logging.getLogger("switchboard.agent")

ASSIGNED = assign_service_pb2.WATCH_EVENT_KIND_ASSIGNED
REVOKED = assign_service_pb2.WATCH_EVENT_KIND_REVOKED

# Codes on which a report is retried: the server did not act (or the answer was lost; a repeated
# report with the same epoch returns the recorded result, so retrying is safe).
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class Superseded(Exception):
    """Another process registered this specialist id, ending this agent's incarnation.

    The agent has stopped (no heartbeats, no stream), its held work was revoked (the server retries
    it as a new attempt with the new process) and it does not register again.
    """

    def __init__(self, specialist_id: str, incarnation: str, detail: str):
        super().__init__(
            f"specialist {specialist_id} was superseded by another process "
            f"({detail or f'incarnation {incarnation} has ended'}); stopped without registering again"
        )
        self.specialist_id = specialist_id
        self.incarnation = incarnation
        self.detail = detail


class AlreadyRegistered(grpc.RpcError):
    """Register was refused with ALREADY_EXISTS: another live process holds the specialist id.

    A `grpc.RpcError` (code() is ALREADY_EXISTS) whose text says how to proceed: pass
    `take_over=True` when this process replaces that one (a restart under a supervisor, say).
    """

    def __init__(self, specialist_id: str, detail: str):
        super().__init__(
            f"specialist {specialist_id} is registered by another live process ({detail}); "
            "pass take_over=True if this process replaces it, or use another specialist_id"
        )
        self.specialist_id = specialist_id
        self.detail = detail

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.ALREADY_EXISTS

    def details(self) -> str:
        return self.detail


class AssignmentLost(Exception):
    """The subtask is no longer this agent's at this epoch (cancelled, lease lapsed, reassigned).

    Stop working on it; the server refused the report and changed nothing (epoch fencing).
    """

    def __init__(self, work: Work, detail: str):
        super().__init__(f"{work.subtask_id} (epoch {work.epoch}): {detail}")
        self.work = work
        self.detail = detail


@dataclass(eq=False)
class Work:
    """One assignment handed to this agent: the subtask, its epoch (fencing token) and attempt."""

    assignment: types_pb2.Assignment
    subtask: types_pb2.Subtask
    received_at: float = field(default_factory=time.monotonic)
    _revoked: threading.Event = field(default_factory=threading.Event, repr=False)
    _revoked_reason: str = field(default="", repr=False)
    _finishing: bool = field(default=False, repr=False)

    @property
    def subtask_id(self) -> str:
        return self.assignment.subtask_id

    @property
    def epoch(self) -> int:
        return self.assignment.epoch

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def payload(self) -> bytes:
        return self.subtask.payload

    def json(self) -> Any:
        """The payload parsed as JSON (None when empty)."""
        return json.loads(self.subtask.payload) if self.subtask.payload else None

    @property
    def revoked(self) -> bool:
        """True once the server took the subtask away: stop working on it, do not report."""
        return self._revoked.is_set()

    @property
    def revoked_reason(self) -> str:
        return self._revoked_reason

    def wait_revoked(self, timeout: float | None = None) -> bool:
        return self._revoked.wait(timeout)

    def _revoke(self, reason: str) -> None:
        if not self._revoked.is_set():
            self._revoked_reason = reason
            self._revoked.set()


@dataclass
class Outcome:
    """What a handler passed to `Agent.run` may return (None means success with quality 1.0)."""

    success: bool = True
    quality_score: float = 1.0
    detail: str = ""


_STOP = object()


class Agent:
    """A specialist of one type: registers, heartbeats, streams its assignments, reports them.

    `client` is a `Client` (from `connect`) or an address, opened with `connect(address,
    **connect_options)`, e.g. `connect_options={"token": token, "tls_ca": "ca.pem"}` (an agent token
    acts only for its specialist ids). `specialist_id` "" lets the server mint one (read it from
    `agent.specialist_id` after `start()`). `max_concurrency` 0 is the server's default (5).
    `on_revoked(work)` is called (from the stream thread) when work is taken away.
    `take_over` lets the first Register replace another live process with the same id (whose work
    is then retried); without it that Register raises AlreadyRegistered.
    """

    def __init__(
        self,
        client: Client | str,
        specialist_type: str,
        capabilities: Iterable[str] = (),
        *,
        specialist_id: str = "",
        max_concurrency: int = 0,
        labels: Mapping[str, str] | None = None,
        availability: int = types_pb2.AVAILABILITY_ONLINE,
        on_revoked: Callable[[Work], None] | None = None,
        reconnect_delay: tuple[float, float] = (0.1, 5.0),
        rpc_timeout: float = 10.0,
        take_over: bool = False,
        connect_options: Mapping[str, Any] | None = None,
    ):
        self._owns_client = isinstance(client, str)
        if isinstance(client, str):
            self.client = connect(client, **(connect_options or {}))
        elif connect_options:
            raise ValueError("connect_options apply to an address; this Client is already connected")
        else:
            self.client = client
        self.specialist_type = specialist_type
        self.capabilities = list(capabilities)
        self.max_concurrency = max_concurrency
        self.labels = dict(labels or {})
        self.availability = availability
        self.on_revoked = on_revoked
        self.reconnect_delay = reconnect_delay
        self.rpc_timeout = rpc_timeout
        self.take_over = take_over

        self._specialist_id = specialist_id
        self._incarnation = ""  # from Register; "" until registered
        self.specialist: types_pb2.Specialist | None = None
        self.heartbeat_interval = 5.0
        self.lease_ttl = 15.0

        self._lock = threading.RLock()
        self._held: dict[str, Work] = {}  # subtask_id -> work handed out (or queued) and not reported
        self._queue: queue.Queue[Any] = queue.Queue()
        self._stopping = threading.Event()
        self._stopped = False
        self._superseded: Superseded | None = None
        self._connected = threading.Event()
        self._call: grpc.Future | None = None
        self._reconnect_requested = False
        self._threads: list[threading.Thread] = []
        self.reconnects = 0  # how many times the stream was reopened
        self._generation = 0  # bumped by each successful register()
        # Held while registering, so an "incarnation ended" answer is judged against the incarnation
        # the agent has once that Register returned (a call may race our own re-registration).
        self._register_lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def specialist_id(self) -> str:
        return self._specialist_id

    @property
    def incarnation(self) -> str:
        """This process's session with the id (from Register); "" before registering."""
        return self._incarnation

    @property
    def superseded(self) -> Superseded | None:
        """Set once another process took the id over; the agent has stopped then."""
        return self._superseded

    def start(self) -> Agent:
        """Registers, then heartbeats and watches in background threads. Returns self."""
        self.register()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "watch")):
            thread = threading.Thread(target=target, name=f"switchboard-{name}-{self.specialist_id}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def register(self) -> types_pb2.Specialist:
        """Registers, or updates the registration (in-flight work is kept); adopts the server's intervals.

        The first call starts an incarnation (with `take_over` if set) and raises AlreadyRegistered
        while another process holds the id; later calls quote it, and raise Superseded once it ended.
        """
        with self._register_lock:
            if self._superseded is not None:
                raise self._superseded
            return self._register(self._incarnation, take_over=self.take_over and not self._incarnation)

    def _register(self, incarnation: str, *, take_over: bool) -> types_pb2.Specialist:
        """Register quoting `incarnation` ("" starts a new one). Caller holds _register_lock."""
        try:
            reply = self.client.register.Register(
                register_service_pb2.RegisterRequest(
                    specialist_id=self._specialist_id,
                    specialist_type=self.specialist_type,
                    capabilities=self.capabilities,
                    max_concurrency=self.max_concurrency,
                    labels=self.labels,
                    availability=self.availability,
                    incarnation=incarnation,
                    take_over=take_over,
                ),
                timeout=self.rpc_timeout,
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.ALREADY_EXISTS:
                raise AlreadyRegistered(self._specialist_id, error.details() or "") from error
            if incarnation and error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                self._supersede(incarnation, error.details() or "")
                if self._superseded is not None:
                    raise self._superseded from error
            raise
        with self._lock:
            self.specialist = reply.specialist
            self._specialist_id = reply.specialist.specialist_id
            self._incarnation = reply.incarnation
            self._generation += 1
        if reply.heartbeat_interval_ms > 0:
            self.heartbeat_interval = reply.heartbeat_interval_ms / 1000
        if reply.lease_ttl_ms > 0:
            self.lease_ttl = reply.lease_ttl_ms / 1000
        log.info(
            "registered %s (%s), incarnation %s, heartbeat every %.3gs",
            self._specialist_id,
            self.specialist_type,
            self._incarnation,
            self.heartbeat_interval,
        )
        return reply.specialist

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Waits until the assignment stream is open (True) or `timeout` passes (False)."""
        return self._connected.wait(timeout)

    def reconnect(self) -> None:
        """Drops the assignment stream and opens a new one; nothing is lost (the server replays)."""
        with self._lock:
            self._reconnect_requested = True
            call = self._call
        if call is not None:
            call.cancel()

    def stop(self, deregister: bool = False) -> None:
        """Stops heartbeating and watching. With `deregister`, the server requeues the work still held.

        A superseded agent does not deregister: the id belongs to the process that took it over.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            call = self._call
        self._stopping.set()
        if call is not None:
            call.cancel()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=self.rpc_timeout)
        if deregister and self._superseded is not None:
            log.info("not deregistering %s: another process holds the id now", self._specialist_id)
        elif deregister and self._specialist_id:
            try:
                self.client.register.Deregister(
                    register_service_pb2.DeregisterRequest(specialist_id=self._specialist_id),
                    timeout=self.rpc_timeout,
                )
                log.info("deregistered %s", self._specialist_id)
            except grpc.RpcError as error:
                log.warning("deregister %s: %s", self._specialist_id, error.code())
        self._queue.put(_STOP)
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(deregister=True)

    # -- receiving work --------------------------------------------------------------------------

    def next_work(self, timeout: float | None = None) -> Work | None:
        """The next assignment not handed out before; None on timeout or once the agent stops.

        Raises Superseded once another process took the id over.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._superseded is not None:
                raise self._superseded
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                return None
            if item is _STOP:
                self._queue.put(_STOP)  # for any other consumer
                if self._superseded is not None:
                    raise self._superseded
                return None
            if not item.revoked:
                return item

    def __iter__(self) -> Iterator[Work]:
        while (work := self.next_work()) is not None:
            yield work

    def held(self) -> list[Work]:
        """Work handed out (or waiting to be) and not yet reported."""
        with self._lock:
            return list(self._held.values())

    # -- reporting -------------------------------------------------------------------------------

    def complete(
        self,
        work: Work,
        *,
        success: bool = True,
        quality_score: float | None = None,
        completion_time_ms: int | None = None,
        detail: str = "",
    ) -> types_pb2.Assignment:
        """ReportCompletion quoting the work's epoch. Raises AssignmentLost if it is no longer ours.

        `quality_score` defaults to 1.0 on success and 0.0 on failure; `completion_time_ms` to the
        time since the work arrived. A failure makes the subtask FAILED and fails its dependents.
        """
        if quality_score is None:
            quality_score = 1.0 if success else 0.0
        if completion_time_ms is None:
            completion_time_ms = int((time.monotonic() - work.received_at) * 1000)
        request = performance_service_pb2.ReportCompletionRequest(
            subtask_id=work.subtask_id,
            specialist_id=self._specialist_id,
            epoch=work.epoch,
            success=success,
            completion_time_ms=completion_time_ms,
            quality_score=quality_score,
            detail=detail,
            incarnation=self._incarnation,
        )
        reply = self._finish(work, lambda: self.client.performance.ReportCompletion(request, timeout=self.rpc_timeout))
        return reply.assignment

    def fail(self, work: Work, detail: str = "") -> types_pb2.Assignment:
        """Reports the work failed (the subtask ends FAILED and its dependents fail)."""
        return self.complete(work, success=False, detail=detail)

    def release(self, work: Work, reason: str = "") -> types_pb2.Assignment:
        """Hands the work back: it is requeued (and not offered to this agent again)."""
        request = assign_service_pb2.ReleaseRequest(
            subtask_id=work.subtask_id,
            specialist_id=self._specialist_id,
            epoch=work.epoch,
            reason=reason,
            incarnation=self._incarnation,
        )
        reply = self._finish(
            work, lambda: self.client.assign.Release(request, timeout=self.rpc_timeout), released=True
        )
        return reply.assignment

    def _finish(self, work: Work, call: Callable[[], Any], *, released: bool = False) -> Any:
        """Runs a report, repeating it on UNAVAILABLE / DEADLINE_EXCEEDED for up to a lease length.

        A repeated ReportCompletion returns the recorded result. A repeated Release is refused with
        FAILED_PRECONDITION once an earlier attempt applied; the subtask is not ours any more
        either way, so that counts as released (the reply then carries the current assignment).
        """
        work._finishing = True
        deadline = time.monotonic() + self.lease_ttl
        delay = 0.1
        repeated = False
        while True:
            try:
                reply = call()
                break
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.FAILED_PRECONDITION and released and repeated:
                    self._forget(work)
                    log.info("release of %s: an earlier attempt applied (%s)", work.subtask_id, error.details())
                    return assign_service_pb2.ReleaseResponse(assignment=self._current(work))
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    self._forget(work)
                    work._revoke(error.details() or "stale epoch")
                    raise AssignmentLost(work, error.details() or "stale epoch") from error
                if code in _RETRYABLE and time.monotonic() + delay < deadline and not self._stopping.is_set():
                    log.warning("report of %s: %s; retrying in %.2fs", work.subtask_id, code, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    repeated = True
                    continue
                work._finishing = False
                raise
        self._forget(work)
        return reply

    def _current(self, work: Work) -> types_pb2.Assignment:
        """The subtask's assignment now, or just its id when the server cannot say."""
        try:
            return self.client.get_assignment(work.subtask_id, timeout=self.rpc_timeout)
        except grpc.RpcError:
            return types_pb2.Assignment(subtask_id=work.subtask_id)

    def _forget(self, work: Work) -> None:
        with self._lock:
            if self._held.get(work.subtask_id) is work:
                del self._held[work.subtask_id]

    def set_availability(self, availability: int) -> None:
        """Heartbeats now with a new availability (ONLINE, IDLE, BUSY, AWAY).

        Raises Superseded once another process took the id over.
        """
        if self._superseded is not None:
            raise self._superseded
        self.availability = availability
        incarnation = self._incarnation
        try:
            self.client.register.Heartbeat(
                register_service_pb2.HeartbeatRequest(
                    specialist_id=self._specialist_id, availability=availability, incarnation=incarnation
                ),
                timeout=self.rpc_timeout,
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                self._supersede(incarnation, error.details() or "")
                if self._superseded is not None:
                    raise self._superseded from error
            raise

    # -- the work loop ---------------------------------------------------------------------------

    def run(
        self,
        handler: Callable[[Work], Outcome | bool | None],
        *,
        workers: int = 1,
        max_tasks: int | None = None,
    ) -> int:
        """Calls `handler(work)` for each assignment and reports the outcome; returns how many it handled.

        The handler returns None or True (success), False (failure) or an Outcome; an exception is
        reported as a failure with its text as detail. Work revoked meanwhile is not reported.
        Runs until `stop()` (from a handler, a signal handler or another thread) or `max_tasks`.
        Raises Superseded (once the handlers running have returned) when another process took the
        id over.
        """
        if not self._threads:
            self.start()
        handled = 0
        slots = threading.Semaphore(max(1, workers))
        pool: list[threading.Thread] = []
        count_lock = threading.Lock()

        def one(work: Work) -> None:
            nonlocal handled
            try:
                self._handle(handler, work)
            finally:
                with count_lock:
                    handled += 1
                slots.release()

        taken = 0
        try:
            while max_tasks is None or taken < max_tasks:
                slots.acquire()
                try:
                    work = self.next_work()
                except Superseded:
                    slots.release()
                    raise
                if work is None:
                    slots.release()
                    break
                taken += 1
                if workers <= 1:
                    one(work)
                else:
                    thread = threading.Thread(target=one, args=(work,), daemon=True)
                    thread.start()
                    pool.append(thread)
        finally:
            for thread in pool:
                thread.join()
        return handled

    def _handle(self, handler: Callable[[Work], Outcome | bool | None], work: Work) -> None:
        try:
            result = handler(work)
        except Exception as error:  # the handler's failure is the subtask's failure
            log.exception("handler failed on %s", work.subtask_id)
            outcome = Outcome(success=False, quality_score=0.0, detail=f"{type(error).__name__}: {error}")
        else:
            if result is None or result is True:
                outcome = Outcome()
            elif result is False:
                outcome = Outcome(success=False, quality_score=0.0)
            else:
                outcome = result
        if work.revoked:
            log.info("%s was revoked (%s); not reporting", work.subtask_id, work.revoked_reason)
            return
        try:
            self.complete(work, success=outcome.success, quality_score=outcome.quality_score, detail=outcome.detail)
        except AssignmentLost as lost:
            log.warning("report refused, no longer ours: %s", lost)
        except grpc.RpcError as error:
            log.error("report of %s failed: %s %s", work.subtask_id, error.code(), error.details())
        except Exception:  # e.g. the channel was closed by stop() meanwhile
            if not self._stopping.is_set():
                raise
            log.info("not reporting %s: the agent stopped", work.subtask_id)

    # -- background threads ----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_interval
        while not self._stopping.wait(interval):
            interval = self.heartbeat_interval
            with self._lock:
                generation, incarnation = self._generation, self._incarnation
            try:
                reply = self.client.register.Heartbeat(
                    register_service_pb2.HeartbeatRequest(specialist_id=self._specialist_id, incarnation=incarnation),
                    timeout=min(self.rpc_timeout, self.heartbeat_interval * 2),
                )
                self.specialist = reply.specialist
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    return
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    self._lost_registration("heartbeat: unknown specialist", generation)
                elif error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self._supersede(incarnation, error.details() or "")
                    if self._superseded is not None:
                        return
                    interval = 0  # our own re-registration raced this heartbeat: renew at once
                else:
                    log.warning("heartbeat: %s %s", error.code(), error.details())
                    interval = min(self.heartbeat_interval, 1.0)  # try again sooner

    def _lost_registration(self, why: str, generation: int) -> None:
        """The server no longer knows us (deregistered, or it restarted): all held work is gone.

        `generation` is the registration the failed call was made under: if the other thread has
        registered again since, this news is stale and nothing is done. The new Register starts a
        new incarnation without take_over: if another process holds the id by then, it is theirs.
        """
        with self._register_lock:
            with self._lock:
                if generation != self._generation or self._superseded is not None:
                    return
                lost = list(self._held.values())
                self._held.clear()
                old_incarnation = self._incarnation
            log.warning("%s: %s; registering again", self._specialist_id, why)
            for work in lost:
                self._revoked(work, "specialist was deregistered")
            try:
                self._register("", take_over=False)
            except AlreadyRegistered as error:
                self._supersede(old_incarnation, error.detail)
                return
            except grpc.RpcError as error:
                log.warning("register: %s %s", error.code(), error.details())
        self.reconnect()

    def _supersede(self, incarnation: str, detail: str) -> None:
        """A call quoting `incarnation` was refused because it ended: another process has the id.

        Stops the agent for good (no re-registering: the two processes would keep taking the id from
        each other) and revokes the held work, which the server retries with the new process. News
        about an incarnation the agent no longer has (its own re-registration raced the call) is
        ignored.
        """
        with self._register_lock:
            with self._lock:
                if self._superseded is not None or incarnation != self._incarnation:
                    return
                self._superseded = Superseded(self._specialist_id, incarnation, detail)
                lost = list(self._held.values())
                self._held.clear()
                call = self._call
        log.error("%s; %d held subtask(s) are no longer ours", self._superseded, len(lost))
        self._stopping.set()
        if call is not None:
            call.cancel()
        for work in lost:
            self._revoked(work, "superseded: another process registered the id")
        self._queue.put(_STOP)

    def _watch_loop(self) -> None:
        low, high = self.reconnect_delay
        delay = low
        first = True
        while not self._stopping.is_set():
            with self._lock:
                generation, incarnation = self._generation, self._incarnation
            call = self.client.assign.WatchAssignments(
                assign_service_pb2.WatchAssignmentsRequest(specialist_id=self._specialist_id, incarnation=incarnation)
            )
            with self._lock:
                self._call = call
                self._reconnect_requested = False
            if self._stopping.is_set():
                call.cancel()
            try:
                call.initial_metadata()  # returns once the server answered (or the call ended)
                if call.is_active():
                    if not first:
                        self.reconnects += 1
                        self._reconcile()
                    first = False
                    delay = low
                    self._connected.set()
                for event in call:
                    self._on_event(event)
                log.info("assignment stream ended; reopening")
                continue
            except grpc.RpcError as error:
                code = error.code()
                if self._stopping.is_set():
                    return
                with self._lock:
                    requested = self._reconnect_requested
                if code == grpc.StatusCode.CANCELLED and requested:
                    continue
                if code == grpc.StatusCode.NOT_FOUND:
                    self._lost_registration(f"watch: {error.details()}", generation)
                    if self._superseded is not None:
                        return
                    if self._generation != generation:
                        continue  # registered again: reopen at once
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    self._supersede(incarnation, error.details() or "")
                    if self._superseded is not None:
                        return
                    continue  # our own re-registration raced this call: reopen with the new one
                wait = max(delay, retry_delay(error) or 0.0)  # e.g. the watch stream bound's RetryInfo
                log.warning("assignment stream: %s %s; reconnecting in %.2fs", code, error.details(), wait)
            finally:
                self._connected.clear()
            if self._stopping.wait(wait):
                return
            delay = min(delay * 2, high)

    def _reconcile(self) -> None:
        """After a reconnect: work whose REVOKED event we missed is no longer ours at its epoch."""
        for work in self.held():
            if work._finishing:
                continue
            try:
                assignment = self.client.get_assignment(work.subtask_id, timeout=self.rpc_timeout)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:  # the server forgot it (e.g. it restarted)
                    self._forget(work)
                    self._revoked(work, "unknown to the server")
                else:
                    log.warning("checking %s after reconnect: %s", work.subtask_id, error.code())
                continue
            if (
                assignment.state != types_pb2.ASSIGNMENT_STATE_ASSIGNED
                or assignment.specialist_id != self._specialist_id
                or assignment.epoch != work.epoch
            ):
                self._forget(work)
                self._revoked(work, "taken away while disconnected")

    def _on_event(self, event: assign_service_pb2.WatchAssignmentsResponse) -> None:
        assignment = event.assignment
        subtask_id = assignment.subtask_id
        if event.kind == ASSIGNED:
            with self._lock:
                current = self._held.get(subtask_id)
                if current is not None and current.epoch == assignment.epoch:
                    return  # replayed after a reconnect: already handed out
                work = Work(assignment=assignment, subtask=event.subtask)
                self._held[subtask_id] = work
            if current is not None:
                self._revoked(current, f"reassigned with epoch {assignment.epoch}")
            log.info("assigned %s (epoch %d, attempt %d)", subtask_id, assignment.epoch, assignment.attempt)
            self._queue.put(work)
        elif event.kind == REVOKED:
            with self._lock:
                current = self._held.get(subtask_id)
                if current is None or (assignment.epoch and current.epoch != assignment.epoch):
                    return
                del self._held[subtask_id]
            self._revoked(current, assignment.detail or "revoked")

    def _revoked(self, work: Work, reason: str) -> None:
        log.info("revoked %s (epoch %d): %s", work.subtask_id, work.epoch, reason)
        work._revoke(reason)
        if self.on_revoked is not None:
            try:
                self.on_revoked(work)
            except Exception:
                log.exception("on_revoked callback failed")
