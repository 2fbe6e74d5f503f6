"""README.md's "Clients" section: the Python agent shown there runs as written (address aside)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

from switchboard.v1 import register_service_pb2, types_pb2

from conftest import REPO


def clients_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Clients\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def python_agent_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", clients_section(), re.S)
    assert len(blocks) == 1, "one Python agent in the Clients section"
    return blocks[0]


def test_readme_python_agent_is_short():
    code = [line for line in python_agent_snippet().splitlines() if line.strip()]
    assert len(code) <= 15, f"{len(code)} lines"


def test_readme_python_agent_runs(server, tmp_path):
    source = python_agent_snippet()
    assert "localhost:50051" in source
    script = tmp_path / "agent.py"
    script.write_text(source.replace("localhost:50051", server.address))
    agent = subprocess.Popen(
        [sys.executable, "-u", str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        client = server.client
        assignment = client.submit("readme-task", "frontend", required_capabilities=["react"], payload=b'{"n": 1}')
        # Queued until the agent registers (or assigned at once if it already has).
        final = client.wait(["readme-task"], timeout=30)
        assert final["readme-task"].state == types_pb2.ASSIGNMENT_STATE_COMPLETED, assignment
        assert final["readme-task"].specialist_id == "fe-2"
    finally:
        agent.send_signal(signal.SIGINT)  # Ctrl-C: leaves the `with` block, which deregisters
        out, _ = agent.communicate(timeout=20)
    assert "working on readme-task attempt 1 {'n': 1}" in out, out
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listed = client.register.ListSpecialists(register_service_pb2.ListSpecialistsRequest())
        if not listed.specialists:
            break
        time.sleep(0.05)
    assert not listed.specialists, "Ctrl-C deregisters the agent"
