//! The gRPC listener's connections: at most `--max-connections` open at once (one more is closed
//! as soon as it is accepted, so a flood of idle connections cannot take every file descriptor),
//! TCP_NODELAY and keepalive on each (tonic's own listener sets them; without NODELAY a unary
//! reply waits for the client's delayed ACK), a pause after an accept error (out of file
//! descriptors) instead of a loop that spins a core, and the end of a connection idle for
//! `--idle-timeout-ms` (idle.rs: its reads end, so the server closes it).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

use super::idle::{Activity, Registered};
use super::tls::{ServerTls, HANDSHAKE_TIMEOUT};
use std::future::Future as _;

/// How long accepting pauses after an error such as EMFILE.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// TLS handshakes in progress at once.
const CONCURRENT_HANDSHAKES: usize = 256;

/// One accepted connection; its place under the cap frees when it closes.
pub struct Connection {
    stream: TcpStream,
    _place: Place,
    /// Closed after this long without an open call (None: never).
    idle: Option<Idle>,
}

struct Idle {
    timeout: Duration,
    registered: Registered,
    timer: Pin<Box<tokio::time::Sleep>>,
}

struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The listener's accepted connections, as a stream for tonic.
pub fn connections(
    listener: TcpListener,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    activity: Arc<Activity>,
) -> impl Stream<Item = io::Result<Connection>> + Send + 'static {
    let open = Arc::new(AtomicUsize::new(0));
    futures::stream::unfold((listener, open), move |(listener, open)| {
        let activity = activity.clone();
        async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        warn!(%error, "accepting a connection failed; pausing");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                };
                if open.fetch_add(1, Ordering::SeqCst) >= max_connections {
                    open.fetch_sub(1, Ordering::SeqCst);
                    metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
                    warn!(%peer, max_connections, "connection refused: --max-connections are open");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                let idle = idle_timeout.map(|timeout| Idle {
                    timeout,
                    registered: activity.register(peer),
                    timer: Box::pin(tokio::time::sleep(timeout)),
                });
                let connection = Connection {
                    stream,
                    _place: Place(open.clone()),
                    idle,
                };
                return Some((Ok(connection), (listener, open)));
            }
        }
    })
}

/// Connections that completed a TLS handshake (with the settings current when each began), many
/// at a time; one that fails or takes longer than the handshake timeout is dropped.
pub fn handshakes(
    connections: impl Stream<Item = io::Result<Connection>> + Send + 'static,
    tls: Arc<ServerTls>,
) -> impl Stream<Item = io::Result<tokio_rustls::server::TlsStream<Connection>>> + Send + 'static {
    use futures::StreamExt as _;
    connections
        .filter_map(|accepted| std::future::ready(accepted.ok()))
        .map(move |connection| {
            let acceptor = tls.acceptor();
            async move { tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(connection)).await }
        })
        .buffer_unordered(CONCURRENT_HANDSHAKES)
        .filter_map(|handshake| {
            std::future::ready(match handshake {
                Ok(Ok(secured)) => Some(Ok(secured)),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    None
                }
                Err(_elapsed) => {
                    tracing::debug!("TLS handshake timed out");
                    None
                }
            })
        })
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Poll::Ready(read) = Pin::new(&mut self.stream).poll_read(context, buf) {
            return Poll::Ready(read);
        }
        let Some(idle) = self.idle.as_mut() else {
            return Poll::Pending;
        };
        // Nothing to read: wake up when the connection would be idle long enough, and end it then.
        loop {
            let deadline = idle.registered.state.deadline(idle.timeout);
            if idle.timer.deadline() != deadline {
                idle.timer.as_mut().reset(deadline);
            }
            if idle.timer.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            if idle.registered.state.idle_for(idle.timeout) {
                metrics::counter!(crate::metrics::CONNECTIONS_IDLE_CLOSED).increment(1);
                // End of stream: the server closes the connection.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
