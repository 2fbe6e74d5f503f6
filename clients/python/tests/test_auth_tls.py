"""TLS and tokens: the clients against a server with TLS (a test CA's certificate for 127.0.0.1)
and auth on (`--auth-key-file`), with tokens issued by `switchboard token issue`."""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest

import switchboard
from switchboard.v1 import types_pb2

from conftest import Process, python_example
from credentials import issue, keygen, make_pki

COMPLETED = types_pb2.ASSIGNMENT_STATE_COMPLETED


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("auth") / "signing.key")


@pytest.fixture
def secure_server(make_server, pki, signing_key):
    """TLS and auth on; its own client holds an admin token."""
    return make_server(
        *pki.server_args(),
        *signing_key.server_args(),
        connect_options={"tls_ca": pki.ca, "token": issue(signing_key, "admin")},
    )


def agent_token(signing_key, specialist_id: str) -> str:
    return issue(signing_key, "agent", "--specialist", specialist_id)


def test_agent_and_orchestrator_work_over_tls_with_tokens(secure_server, pki, signing_key):
    orchestrator = secure_server.connect(token=issue(signing_key, "orchestrator"))
    agent = switchboard.Agent(
        secure_server.address,
        "frontend",
        ["react"],
        specialist_id="fe-1",
        connect_options={"tls_ca": pki.ca, "token": agent_token(signing_key, "fe-1")},
    )
    with agent:
        orchestrator.submit("page", "frontend", required_capabilities=["react"], payload=b'{"n": 1}')
        work = agent.next_work(timeout=10)
        assert work is not None and work.subtask_id == "page" and work.json() == {"n": 1}
        agent.complete(work, quality_score=0.9)
        final = orchestrator.wait(["page"], timeout=30)
    assert final["page"].state == COMPLETED and final["page"].specialist_id == "fe-1"
    orchestrator.close()


def test_without_a_token_calls_are_unauthenticated(secure_server, pki):
    anonymous = secure_server.connect(token="")
    with pytest.raises(grpc.RpcError) as refused:
        anonymous.submit("nope", "docs")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
    agent = switchboard.Agent(anonymous, "docs", ["markdown"], specialist_id="doc-1")
    with pytest.raises(grpc.RpcError) as refused:
        agent.start()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
    forged = secure_server.connect(token="not-a-token")
    with pytest.raises(grpc.RpcError) as refused:
        forged.get_assignment("nope")
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value
    anonymous.close()
    forged.close()


def test_an_agent_token_acts_only_for_its_specialist_ids(secure_server, signing_key):
    client = secure_server.connect(token=agent_token(signing_key, "fe-1"))
    agent = switchboard.Agent(client, "frontend", ["react"], specialist_id="fe-2")
    with pytest.raises(grpc.RpcError) as refused:
        agent.start()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
    with pytest.raises(grpc.RpcError) as refused:
        client.submit("not-an-orchestrator", "frontend")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
    client.close()


def test_mutual_tls_with_a_client_certificate(make_server, pki, signing_key):
    admin = issue(signing_key, "admin")
    srv = make_server(
        *pki.server_args(mutual=True),
        *signing_key.server_args(),
        connect_options={"tls_ca": pki.ca, "tls_cert": pki.client_cert, "tls_key": pki.client_key, "token": admin},
    )
    assert srv.client.submit("mtls", "docs").subtask_id == "mtls"
    # Without a client certificate the handshake fails: the server never sees the call.
    without = srv.connect(tls_cert=None, tls_key=None, retry=switchboard.NO_RETRY)
    with pytest.raises(grpc.RpcError) as refused:
        without.get_assignment("mtls", timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
    without.close()


def test_a_server_certificate_from_another_ca_is_refused(make_server, pki):
    srv = make_server(*pki.server_args(), connect_options={"tls_ca": pki.ca})
    stranger = srv.connect(tls_ca=pki.other_ca, retry=switchboard.NO_RETRY)
    with pytest.raises(grpc.RpcError) as refused:
        stranger.get_assignment("x", timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
    stranger.close()
    # The server name may be overridden: the certificate names localhost too.
    assert srv.connect(tls_server_name="localhost").submit("named", "docs").subtask_id == "named"


def test_a_token_over_plaintext_on_loopback(make_server, signing_key):
    srv = make_server(*signing_key.server_args(), connect_options={"token": issue(signing_key, "admin")})
    client = srv.connect(token=issue(signing_key, "orchestrator"))
    with switchboard.Agent(srv.client, "docs", ["markdown"], specialist_id="doc-1") as agent:
        client.submit("plain", "docs", required_capabilities=["markdown"])
        work = agent.next_work(timeout=10)
        assert work is not None
        agent.complete(work)
    assert client.wait(["plain"], timeout=30)["plain"].state == COMPLETED
    client.close()


def test_examples_with_tls_and_tokens(secure_server, pki, signing_key):
    """The examples take their credentials from flags or SWITCHBOARD_* variables."""
    agents = {}
    try:
        for specialist_id, kind, caps in [
            ("be-1", "backend", "sql,grpc"),
            ("fe-1", "frontend", "react"),
            ("qa-1", "testing", "playwright"),
            ("doc-1", "docs", "markdown"),
        ]:
            env = {"SWITCHBOARD_TOKEN": agent_token(signing_key, specialist_id), "SWITCHBOARD_TLS_CA": str(pki.ca)}
            agents[specialist_id] = Process(
                python_example(
                    "agent.py", "--address", secure_server.address, "--id", specialist_id, "--type", kind,
                    "--capabilities", caps, "--work-ms", "20",
                ),
                env=env,
            )
        for specialist_id, agent in agents.items():
            assert agent.wait_for(f"agent {specialist_id} ("), agent.output()
        orchestrator = subprocess.run(
            python_example(
                "orchestrator.py", "--address", secure_server.address, "--run-id", "tls", "--timeout", "60",
                "--token", issue(signing_key, "orchestrator"), "--tls-ca", str(pki.ca),
            ),
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert orchestrator.returncode == 0, orchestrator.stdout + orchestrator.stderr
        assert "plan tls: all 5 subtasks completed" in orchestrator.stdout

        # No token: a clear line and exit 1, not a traceback.
        anonymous = subprocess.run(
            python_example(
                "agent.py", "--address", secure_server.address, "--id", "x-1", "--type", "docs",
                "--tls-ca", str(pki.ca),
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert anonymous.returncode == 1, anonymous.stdout + anonymous.stderr
        assert "not authenticated" in anonymous.stderr and "Traceback" not in anonymous.stderr, anonymous.stderr
        # An agent's token cannot submit.
        wrong = subprocess.run(
            python_example(
                "orchestrator.py", "--address", secure_server.address, "--tls-ca", str(pki.ca), "--timeout", "5",
            ),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SWITCHBOARD_TOKEN": agent_token(signing_key, "be-1")},
        )
        assert wrong.returncode == 1, wrong.stdout + wrong.stderr
        assert "not allowed" in wrong.stderr, wrong.stderr
    finally:
        for agent in agents.values():
            agent.proc.terminate()
        codes = {specialist_id: agent.proc.wait(timeout=20) for specialist_id, agent in agents.items()}
    assert codes == {specialist_id: 0 for specialist_id in agents}, {k: a.output() for k, a in agents.items()}


def test_connect_checks_its_files(pki):
    with pytest.raises(ValueError):
        switchboard.connect("127.0.0.1:1", tls_cert=pki.client_cert)
    with pytest.raises(OSError, match="tls_ca"):
        switchboard.connect("127.0.0.1:1", tls_ca=f"{pki.ca}.missing")
