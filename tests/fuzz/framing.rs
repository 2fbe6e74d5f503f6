//! The gRPC framing under the message, sent over raw HTTP/2: the five-byte prefix (compressed
//! flag, length) true or garbled, several messages in one call, bodies cut short or missing, all
//! of it split into DATA frames of any size.

use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use tokio::net::TcpStream;
use tonic::Code;

use crate::strategies::{raw_body, structured};
use crate::{Pool, Rpc, CALL_TIMEOUT, MAX_MESSAGE_BYTES, STREAM_LOOK};

/// What the length prefix of one message says.
#[derive(Debug, Clone)]
pub enum Declared {
    /// The body's length.
    Actual,
    /// Anything: shorter than the body, longer (the body is cut short), over the size limit.
    Value(u32),
}

/// One length-prefixed message.
#[derive(Debug, Clone)]
pub struct Frame {
    /// 0: not compressed; 1: compressed (with no grpc-encoding to say how); others are invalid.
    pub flag: u8,
    pub declared: Declared,
    pub body: Bytes,
}

/// A request body as gRPC frames it, and how it is sent.
#[derive(Debug, Clone)]
pub struct Framing {
    pub frames: Vec<Frame>,
    /// Where the bytes stop (None: they all go).
    pub cut: Option<Index>,
    /// The size of the HTTP/2 DATA frames the bytes are split into.
    pub chunk: usize,
    /// The grpc-encoding header, if any.
    pub encoding: Option<&'static str>,
}

impl Framing {
    pub fn bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        for frame in &self.frames {
            out.put_u8(frame.flag);
            out.put_u32(match frame.declared {
                Declared::Actual => frame.body.len() as u32,
                Declared::Value(length) => length,
            });
            out.put_slice(&frame.body);
        }
        let bytes = out.freeze();
        match &self.cut {
            None => bytes,
            Some(at) => bytes.slice(..at.index(bytes.len() + 1)),
        }
    }

    /// Whether the server must refuse a well-framed request as INVALID_ARGUMENT: one of its
    /// messages is not the request type or is over the size limit (else it is a call like any
    /// other).
    pub fn refused(&self, rpc: &Rpc) -> bool {
        self.frames.iter().any(|frame| {
            let over = match frame.declared {
                Declared::Actual => frame.body.len() > MAX_MESSAGE_BYTES,
                Declared::Value(length) => length as usize > MAX_MESSAGE_BYTES,
            };
            over || !(rpc.request_decodes)(&frame.body)
        })
    }
}

fn chunk() -> BoxedStrategy<usize> {
    prop_oneof![2 => 1usize..=16, 1 => Just(5usize), 1 => Just(16_384usize)].boxed()
}

/// Request bodies as a client would frame them (one to three messages, true lengths, or a length
/// over the size limit), in DATA frames of any size, with or without `grpc-encoding: identity`.
pub fn well_framed(rpc: &Rpc, pool: &Pool) -> BoxedStrategy<Framing> {
    let body = prop_oneof![2 => structured(rpc, pool), 1 => raw_body(rpc, pool)];
    let declared = prop_oneof![
        8 => Just(Declared::Actual),
        1 => select(&[MAX_MESSAGE_BYTES as u32 + 1, u32::MAX][..]).prop_map(Declared::Value),
    ];
    let frame = (body, declared).prop_map(|(body, declared)| Frame {
        flag: 0,
        declared,
        body,
    });
    (
        vec(frame, 1..=3),
        chunk(),
        prop_oneof![Just(None), Just(Some("identity"))],
    )
        .prop_map(|(frames, chunk, encoding)| Framing {
            frames,
            cut: None,
            chunk,
            encoding,
        })
        .boxed()
}

/// Framing no client sends: no message at all, a compressed flag with no encoding or an invalid
/// flag, a length prefix longer than what follows, the bytes cut anywhere (in the prefix too).
pub fn broken_framing(rpc: &Rpc, pool: &Pool) -> BoxedStrategy<Framing> {
    let flag = prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => any::<u8>()];
    let declared = prop_oneof![
        3 => Just(Declared::Actual),
        2 => (0u32..64).prop_map(Declared::Value),
        1 => any::<u32>().prop_map(Declared::Value),
    ];
    let frame = (flag, declared, structured(rpc, pool)).prop_map(|(flag, declared, body)| Frame {
        flag,
        declared,
        body,
    });
    (
        vec(frame, 0..=3),
        proptest::option::of(any::<Index>()),
        chunk(),
    )
        .prop_map(|(frames, cut, chunk)| Framing {
            frames,
            cut,
            chunk,
            encoding: None,
        })
        .boxed()
}

/// One HTTP/2 connection, reopened when the server closed it.
#[derive(Default)]
pub struct Connection(Mutex<Option<h2::client::SendRequest<Bytes>>>);

impl Connection {
    async fn sender(&self, addr: SocketAddr) -> Result<h2::client::SendRequest<Bytes>, String> {
        let existing = self.0.lock().unwrap().clone();
        if let Some(sender) = existing {
            if let Ok(ready) = sender.ready().await {
                return Ok(ready);
            }
        }
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        // Small frames go out at once (no Nagle delay waiting for the server's ACK).
        tcp.set_nodelay(true)
            .map_err(|error| format!("TCP_NODELAY: {error}"))?;
        let (sender, connection) = h2::client::Builder::new()
            .max_header_list_size(u32::MAX)
            .handshake(tcp)
            .await
            .map_err(|error| format!("http/2 handshake: {error}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *self.0.lock().unwrap() = Some(sender.clone());
        sender
            .ready()
            .await
            .map_err(|error| format!("http/2 ready: {error}"))
    }

    /// Sends `framing` to `rpc`; the answer's status code and message, or why there was none
    /// (within `CALL_TIMEOUT`: else a hang).
    pub async fn call(
        &self,
        addr: SocketAddr,
        rpc: &Rpc,
        framing: &Framing,
    ) -> Result<(Code, String), String> {
        tokio::time::timeout(CALL_TIMEOUT, self.exchange(addr, rpc, framing))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {CALL_TIMEOUT:?} (a hang)")))
    }

    async fn exchange(
        &self,
        addr: SocketAddr,
        rpc: &Rpc,
        framing: &Framing,
    ) -> Result<(Code, String), String> {
        let mut sender = self.sender(addr).await?;
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{}", rpc.path()))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(encoding) = framing.encoding {
            request = request.header("grpc-encoding", encoding);
        }
        let request = request.body(()).expect("a request");
        let (response, body) = sender
            .send_request(request, false)
            .map_err(|error| format!("send headers: {error}"))?;
        // Sent alongside waiting for the answer, as the server gives flow-control credit: the
        // server may answer (and reset the stream) before it has read everything.
        tokio::spawn(send_body(body, framing.bytes(), framing.chunk));
        let response = response
            .await
            .map_err(|error| format!("no response: {error}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        let (parts, mut reply) = response.into_parts();
        if let Some(status) = grpc_status(&parts.headers) {
            return Ok(status);
        }
        // A stream that stays open after its replay is an open WatchAssignments: OK so far.
        let wait = if rpc.server_streaming {
            STREAM_LOOK
        } else {
            CALL_TIMEOUT
        };
        let trailers = tokio::time::timeout(wait, async {
            while let Some(data) = reply.data().await {
                let data = data.map_err(|error| format!("reading the reply: {error}"))?;
                let _ = reply.flow_control().release_capacity(data.len());
            }
            reply
                .trailers()
                .await
                .map_err(|error| format!("reading the trailers: {error}"))
        })
        .await;
        match trailers {
            Err(_) if rpc.server_streaming => Ok((Code::Ok, "stream open".into())),
            Err(_) => Err(format!("no trailers within {wait:?} (a hang)")),
            Ok(Err(error)) => Err(error),
            Ok(Ok(None)) => Err("a reply without trailers".into()),
            Ok(Ok(Some(trailers))) => {
                grpc_status(&trailers).ok_or_else(|| "trailers without grpc-status".into())
            }
        }
    }
}

/// Sends `bytes` in DATA frames of `chunk` bytes (larger for a large body, so that no body takes
/// more than a few hundred frames), each when flow control lets it; stops when the stream ends.
async fn send_body(mut body: h2::SendStream<Bytes>, mut bytes: Bytes, chunk: usize) {
    let chunk = chunk.max(bytes.len() / 256).max(1);
    while !bytes.is_empty() {
        body.reserve_capacity(chunk.min(bytes.len()));
        let capacity = match futures::future::poll_fn(|context| body.poll_capacity(context)).await {
            Some(Ok(capacity)) => capacity,
            None | Some(Err(_)) => return,
        };
        if capacity == 0 {
            continue;
        }
        let piece = bytes.split_to(capacity.min(chunk).min(bytes.len()));
        if body.send_data(piece, false).is_err() {
            return;
        }
    }
    let _ = body.send_data(Bytes::new(), true);
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|value| value.to_str().ok())
        .map(percent_decoded)
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// grpc-message as sent: percent-encoded UTF-8.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
