//! The tower layers in front of every service, forced deterministically: a raw HTTP/2 call whose
//! body never arrives stays in progress, holding a concurrency slot and running down its deadline.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::net::TcpStream;
use tonic::Code;

/// A gRPC call that sent its headers but will never send its body (until dropped).
struct StalledCall {
    response: h2::client::ResponseFuture,
    _body: h2::SendStream<bytes::Bytes>,
}

async fn stalled_call(addr: SocketAddr) -> StalledCall {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("http/2 handshake");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{addr}/switchboard.v1.AssignService/GetAssignment"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, body) = client
        .ready()
        .await
        .expect("h2 ready")
        .send_request(request, false)
        .expect("send headers");
    StalledCall {
        response,
        _body: body,
    }
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_with_unavailable() {
    let server = TestServer::start_with(&[
        "--max-concurrent-requests",
        "1",
        "--request-timeout-ms",
        "60000",
    ])
    .await;
    let stalled = stalled_call(server.addr).await;
    // Once the stalled call holds the only slot, every other call is shed at once.
    let status = poll_until("a call to be shed", EVENTUALLY, || {
        let mut clients = server.clients.clone();
        async move {
            let result = clients
                .assign
                .get_assignment(pb::GetAssignmentRequest {
                    subtask_id: "nothing".into(),
                })
                .await;
            match result {
                Err(status) if status.code() == Code::Unavailable => Some(status),
                _ => None,
            }
        }
    })
    .await;
    assert!(status.message().contains("overloaded"), "{status:?}");
    // Freeing the slot lets calls through again.
    drop(stalled);
    poll_until("calls to be served again", EVENTUALLY, || {
        let mut clients = server.clients.clone();
        async move {
            let result = clients
                .assign
                .get_assignment(pb::GetAssignmentRequest {
                    subtask_id: "nothing".into(),
                })
                .await;
            matches!(result, Err(status) if status.code() == Code::NotFound).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn the_server_deadline_ends_a_call_with_deadline_exceeded() {
    let server = TestServer::start_with(&["--request-timeout-ms", "200"]).await;
    let stalled = stalled_call(server.addr).await;
    let response = tokio::time::timeout(Duration::from_secs(10), stalled.response)
        .await
        .expect("the server answers within its deadline")
        .expect("a response");
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_eq!(
        grpc_status.as_deref(),
        Some("4"),
        "DEADLINE_EXCEEDED expected: {response:?}"
    );
}
