"""Test fixtures: a real Switchboard server (target/debug/switchboard) on free ports, one per test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import switchboard

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("SWITCHBOARD_BIN", REPO / "target" / "debug" / "switchboard"))
EXAMPLES = REPO / "clients" / "python" / "examples"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Server:
    """`switchboard serve` on 127.0.0.1 port 0; the addresses come from its `serving` log line.

    The Assign rate limit is off unless `extra_args` set one. `connect_options` are what the
    server's own `client` connects with (switchboard.connect's: token, tls_ca, ...).
    """

    def __init__(self, *extra_args: str, listen: str = "127.0.0.1:0", connect_options: dict | None = None):
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: run `cargo build` first (make test does)")
        rate_limit = [] if "--assign-rate-limit" in extra_args else ["--assign-rate-limit", "0"]
        self.args = [
            str(BINARY),
            "serve",
            "--listen",
            listen,
            "--metrics-listen",
            "127.0.0.1:0",
            *rate_limit,
            *extra_args,
        ]
        self.connect_options = dict(connect_options or {})
        self.lines: list[str] = []
        self.address = ""
        self.metrics_address = ""
        self._listening = threading.Event()
        env = {**os.environ, "SWITCHBOARD_LOG_FORMAT": "text", "SWITCHBOARD_LOG": "info"}
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Wait for the line (a blocking read in the reader thread), not for time to pass.
        if not self._listening.wait(timeout=30) or not self.address:
            self.stop()
            pytest.fail(f"server did not report grpc_addr; its output:\n{self.log()}")
        self.client = self.connect()
        self.client.wait_ready(timeout=15)

    def connect(self, **options: object) -> switchboard.Client:
        """A new client of this server: its connect_options, updated with `options`."""
        return switchboard.connect(self.address, **{**self.connect_options, **options})

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = ANSI.sub("", raw.rstrip("\n"))
            self.lines.append(line)
            if not self.address:
                grpc = re.search(r"grpc_addr=(\S+)", line)
                if grpc:
                    self.address = grpc.group(1)
                    metrics = re.search(r"metrics_addr=(\S+)", line)
                    self.metrics_address = metrics.group(1) if metrics else ""
                    self._listening.set()
        self._listening.set()  # exited before listening: wake the waiter

    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self, "client"):
            self.client.close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.stop()


@pytest.fixture
def make_server() -> Iterator:
    """Starts servers with extra flags: `make_server("--lease-ttl-ms", "1000")` (and optionally
    `connect_options` for the server's own client)."""
    started: list[Server] = []

    def make(*extra_args: str, listen: str = "127.0.0.1:0", connect_options: dict | None = None) -> Server:
        srv = Server(*extra_args, listen=listen, connect_options=connect_options)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


class Process:
    """A child process whose output lines are collected; `wait_for` blocks until one matches."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: any(text in line for line in self.lines) or self.proc.poll() is not None, timeout
            ) and any(text in line for line in self.lines)

    def output(self) -> str:
        return "\n".join(self.lines)


def python_example(name: str, *args: str) -> list[str]:
    return [sys.executable, "-u", str(EXAMPLES / name), *args]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the server's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name in ("server",):
            srv = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(srv, Server):
                report.sections.append(("switchboard server log", srv.log()[-20000:]))
