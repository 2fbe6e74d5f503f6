"""README.md's "A walk-through with grpcurl", run verbatim against a fresh server.

Every `grpcurl ...` and `curl ...` line of that section runs in order through bash, with only the
addresses changed (localhost:50051 and localhost:9464 become the test server's). WatchAssignments
streams forever, so it runs in the background and is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO

SECTION = "## A walk-through with grpcurl"
GRPCURL_DIR = REPO / ".tools" / "venv" / "bin"


def walkthrough_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)?\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith(("grpcurl ", "curl ")):
                commands.append(line)
    return commands


def json_objects(text: str) -> list[dict]:
    """grpcurl prints one pretty JSON object per message; split a stream of them."""
    decoder = json.JSONDecoder()
    objects, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return objects
        obj, index = decoder.raw_decode(text, index)
        objects.append(obj)


@pytest.fixture
def env():
    if not (GRPCURL_DIR / "grpcurl").exists():
        pytest.fail(f"{GRPCURL_DIR / 'grpcurl'} is missing: run scripts/install-tools.sh (make tools)")
    return {**os.environ, "PATH": f"{GRPCURL_DIR}:{os.environ['PATH']}"}


def test_walkthrough_has_the_commands_it_describes():
    commands = walkthrough_commands()
    assert len(commands) >= 12
    assert any("RegisterService/Register" in c for c in commands)
    assert any("AssignService/WatchAssignments" in c for c in commands)
    assert any(c.startswith("curl ") and "localhost:9464" in c for c in commands)
    assert all("localhost:50051" in c for c in commands if c.startswith("grpcurl "))


def make_run_flags() -> list[str]:
    """The serve flags of `make run` (its recipe is `$(CARGO) run -- serve <flags> $(ARGS)`)."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^run:\n\t(.*)$", makefile, re.M).group(1)
    flags = recipe.split(" serve ", 1)[1].split()
    return [flag for flag in flags if not flag.startswith("$(")]


def method_of(command: str) -> str:
    """The gRPC method a command calls (its last word before any pipe)."""
    return command.split(" | ")[0].split()[-1]


def test_walkthrough_runs_verbatim(make_server, env, tmp_path):
    assert shutil.which("bash")
    # The server `make run` starts: the development profile, whose hour-long lease lets a person
    # follow the walk-through at reading speed without heartbeating.
    flags = make_run_flags()
    assert "--dev" in flags, flags
    server = make_server(*flags)
    assert "development profile" in server.log(), server.log()
    results: list[tuple[str, dict | list | str]] = []
    watch: subprocess.Popen | None = None
    watch_out: list[str] = []
    try:
        for command in walkthrough_commands():
            actual = command.replace("localhost:50051", server.address).replace(
                "localhost:9464", server.metrics_address
            )
            if "WatchAssignments" in command:
                # Streams until stopped; `timeout` bounds it should the test fail before stopping it.
                watch = subprocess.Popen(
                    ["timeout", "60", "bash", "-c", actual],
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                )
                reader = threading.Thread(target=lambda: watch_out.extend(watch.stdout), daemon=True)
                reader.start()
                # The replay of login-form shows the stream is open before the next command runs.
                assert wait_until(lambda: "login-form" in "".join(watch_out), 20), "".join(watch_out)
                continue
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", actual],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            if command.startswith("grpcurl") and not command.rstrip().endswith(" list"):
                results.append((command, json_objects(done.stdout)[0]))
            else:
                results.append((command, done.stdout))

        by_method = {}
        for command, output in results:
            method = method_of(command)
            by_method.setdefault(method, []).append(output)

        listed = by_method["list"][0]
        for service in ("switchboard.v1.AssignService", "switchboard.v1.RegisterService", "grpc.health.v1.Health"):
            assert service in listed

        register = by_method["switchboard.v1.RegisterService/Register"][0]
        assert register["specialist"]["specialistId"] == "fe-1"
        assert int(register["leaseTtlMs"]) == 3_600_000
        assert int(register["heartbeatIntervalMs"]) == 1_200_000
        assert re.fullmatch(r"[0-9a-f]{24}", register["incarnation"]), register
        # The watch quoted the incarnation the Register saved (a wrong one would have failed it).
        assert (tmp_path / "fe-1.json").is_file()

        first, second = by_method["switchboard.v1.AssignService/Assign"]
        assert first["assignment"]["state"] == "ASSIGNMENT_STATE_ASSIGNED"
        assert first["assignment"]["specialistId"] == "fe-1"
        assert first["assignment"]["score"] == 97.5
        breakdown = first["assignment"]["breakdown"]
        assert [breakdown[k]["points"] for k in ("capability", "load", "availability", "performance")] == [
            40,
            30,
            20,
            7.5,
        ]
        assert first["assignment"]["epoch"] == "1"
        assert second["assignment"]["state"] == "ASSIGNMENT_STATE_QUEUED"
        assert second["assignment"]["queuePosition"] == "1"

        position = by_method["switchboard.v1.QueueService/GetQueuePosition"][0]
        assert position["queuePosition"] == "1"

        report = by_method["switchboard.v1.PerformanceService/ReportCompletion"][0]
        assert report["assignment"]["state"] == "ASSIGNMENT_STATE_COMPLETED"

        signup = by_method["switchboard.v1.AssignService/GetAssignment"][0]
        assert signup["assignment"]["subtaskId"] == "signup-form"
        assert signup["assignment"]["state"] == "ASSIGNMENT_STATE_ASSIGNED"
        assert signup["assignment"]["specialistId"] == "fe-1"

        stats = by_method["switchboard.v1.QueueService/GetQueueStats"][0]
        frontend = stats["types"][0]
        assert frontend["specialistType"] == "frontend"
        assert frontend.get("depth", "0") == "0"
        assert frontend["activeAssignments"] == "1"

        performance = by_method["switchboard.v1.PerformanceService/GetPerformance"][0]
        assert performance["specialistId"] == "fe-1" and performance["succeeded"] == "1"

        health = by_method["grpc.health.v1.Health/Check"][0]
        assert health["status"] == "SERVING"

        metrics = [output for command, output in results if command.startswith("curl ")][0]
        assert "switchboard_assignments_total" in metrics

        # The stream replayed login-form, then showed signup-form once capacity freed up.
        assert wait_until(lambda: "signup-form" in "".join(watch_out), 20), "".join(watch_out)
    finally:
        if watch is not None:
            watch.terminate()
            watch.wait(timeout=10)
    events = json_objects("".join(watch_out))
    assigned = [e["assignment"]["subtaskId"] for e in events if e["kind"] == "WATCH_EVENT_KIND_ASSIGNED"]
    assert assigned[:2] == ["login-form", "signup-form"], events


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_walkthrough_watch_command_is_the_readme_one():
    """Guards the replacement logic: the one streaming command is the README's, only the address changes."""
    watch = [c for c in walkthrough_commands() if "WatchAssignments" in c]
    assert len(watch) == 1
    assert watch[0].startswith("grpcurl -plaintext -d ")
    assert "fe-1.json" in watch[0]
    assert watch[0].endswith(" localhost:50051 switchboard.v1.AssignService/WatchAssignments")
    assert Path(REPO / "README.md").is_file()
