//! Outermost layer of every call: the deadline (server default or the client's shorter grpc-timeout,
//! DEADLINE_EXCEEDED on expiry), overload shedding as UNAVAILABLE, per-method counts by status code,
//! and the count of calls open (a streamed reply counts until its body ends), which shutdown
//! waits on instead of on connections.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame};
use prost::Message as _;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{BoxError, Layer, Service};

use super::idle::{Activity, ConnectionCall};
use crate::metrics as names;

/// Deadlines shorter than the timer's resolution have passed by the time the call is dispatched.
const MIN_DEADLINE: Duration = Duration::from_millis(1);

/// How many calls are open: from their arrival until their reply (streamed or not) has ended.
#[derive(Debug, Clone, Default)]
pub struct OpenCalls(Arc<AtomicUsize>);

impl OpenCalls {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn open(&self, connection: Option<ConnectionCall>) -> OpenCall {
        self.0.fetch_add(1, Ordering::SeqCst);
        OpenCall(self.0.clone(), connection)
    }
}

/// One open call; closed when dropped (and with it the call on its connection, which the
/// second field counts while it lives).
#[derive(Debug)]
struct OpenCall(Arc<AtomicUsize>, #[allow(dead_code)] Option<ConnectionCall>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
pub struct CallLayer {
    default_timeout: Duration,
    open: OpenCalls,
    /// Open calls per connection (the idle-connection timeout).
    activity: Arc<Activity>,
}

impl CallLayer {
    pub fn new(default_timeout: Duration, open: OpenCalls, activity: Arc<Activity>) -> Self {
        Self {
            default_timeout,
            open,
            activity,
        }
    }
}

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService {
            inner,
            default_timeout: self.default_timeout,
            open: self.open.clone(),
            activity: self.activity.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallService<S> {
    inner: S,
    default_timeout: Duration,
    open: OpenCalls,
    activity: Arc<Activity>,
}

/// Parses the gRPC `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    let duration = match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Some(duration)
}

/// The client's address, from the connection info tonic puts in the request (TLS or not).
fn peer_of<B>(request: &http::Request<B>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

fn status_response(status: Status) -> http::Response<Body> {
    status.into_http()
}

/// A request tonic could not decode is the caller's error: INVALID_ARGUMENT, where tonic answers
/// INTERNAL (not protobuf, invalid UTF-8 in a string field, no message, a message cut short, a
/// compression flag it does not take) or OUT_OF_RANGE (over the message size limit).
fn undecodable_request(status: &Status) -> Option<Status> {
    let message = status.message();
    let reason = match status.code() {
        Code::Internal if message.starts_with("failed to decode Protobuf message") => {
            "the request is not a valid protobuf message of its type (a string field must be UTF-8)"
        }
        Code::Internal
            if message.starts_with("Missing request message")
                || message.starts_with("Unexpected EOF decoding stream")
                || message.starts_with("protocol error: received message with") =>
        {
            "the request is not one gRPC message as a client frames it (one length-prefixed, \
             uncompressed message)"
        }
        Code::OutOfRange if message.contains("message length too large") => {
            "the request is larger than the server accepts (a payload of at most 1 MiB, 2 MiB in all)"
        }
        _ => return None,
    };
    Some(Status::invalid_argument(format!("{reason}: {message}")))
}

/// Services whose methods are counted by name; reflection's two are the only others served.
const REFLECTION_METHODS: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Every method the server serves, "package.Service/Method", from the compiled descriptors.
fn served_methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods: HashSet<String> =
            REFLECTION_METHODS.iter().map(|m| m.to_string()).collect();
        for encoded in [
            crate::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = service.name.unwrap_or_default();
                    for method in service.method {
                        methods.insert(format!(
                            "{package}.{service_name}/{}",
                            method.name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        methods
    })
}

/// The method label of a call: its name when the server serves it, else "unknown" (a label per
/// path a caller makes up would be a new metric series each time).
fn method_label(path: &str) -> String {
    let method = path.trim_start_matches('/');
    if served_methods().contains(method) {
        method.to_string()
    } else {
        "unknown".to_string()
    }
}

fn record(method: &str, code: Code) {
    metrics::counter!(names::GRPC_REQUESTS, "method" => method.to_string(), "code" => format!("{code:?}")).increment(1);
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CallService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let client_timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout);
        let deadline = client_timeout.map_or(self.default_timeout, |client| {
            client.min(self.default_timeout)
        });
        // Take the service that was driven to readiness and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let connection = peer_of(&request).and_then(|peer| self.activity.call_from(peer));
        let open = self.open.open(connection);
        Box::pin(async move {
            if deadline < MIN_DEADLINE {
                record(&method, Code::DeadlineExceeded);
                return Ok(status_response(Status::deadline_exceeded(
                    "deadline expired before the call started",
                )));
            }
            let outcome = tokio::time::timeout(deadline, inner.call(request)).await;
            let response = match outcome {
                Err(_elapsed) => {
                    let status = Status::deadline_exceeded(format!(
                        "deadline of {} ms exceeded",
                        deadline.as_millis()
                    ));
                    record(&method, Code::DeadlineExceeded);
                    return Ok(status_response(status));
                }
                Ok(Err(error)) => {
                    let error: BoxError = error.into();
                    let status = if error.is::<tower::load_shed::error::Overloaded>() {
                        Status::unavailable("server overloaded; retry with backoff")
                    } else {
                        Status::from_error(error)
                    };
                    record(&method, status.code());
                    return Ok(status_response(status));
                }
                Ok(Ok(response)) => response,
            };
            if let Some(status) = Status::from_header_map(response.headers()) {
                // Trailers-only response: the code is already known.
                if let Some(bad_request) = undecodable_request(&status) {
                    record(&method, bad_request.code());
                    return Ok(status_response(bad_request));
                }
                record(&method, status.code());
                return Ok(response.map(Body::new));
            }
            Ok(response.map(|body| {
                Body::new(CountingBody {
                    inner: body,
                    method: Some(method),
                    open: Some(open),
                })
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// Records the call's status code when the trailers go by.
    struct CountingBody<B> {
        #[pin]
        inner: B,
        method: Option<String>,
        // The call stays open until the reply has ended.
        open: Option<OpenCall>,
    }
}

impl<B> HttpBody for CountingBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(method) = this.method.take() {
                        let code = Status::from_header_map(trailers)
                            .map_or(Code::Ok, |status| status.code());
                        record(&method, code);
                    }
                    this.open.take();
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(method) = this.method.take() {
                    // The stream ended without trailers (client went away or transport error).
                    record(&method, Code::Cancelled);
                }
                this.open.take();
            }
            Poll::Pending => {}
        }
        polled.map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_labelled_by_name() {
        assert_eq!(
            method_label("/switchboard.v1.AssignService/Assign"),
            "switchboard.v1.AssignService/Assign"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(
            method_label("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        );
        assert_eq!(
            method_label("/switchboard.v1.AssignService/Nope"),
            "unknown"
        );
        assert_eq!(method_label(&format!("/{}", "x".repeat(2048))), "unknown");
    }

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("1n"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
    }
}
