//! A TCP proxy a test can break: it forwards 127.0.0.1:<port> to an upstream address, and on the
//! test's word cuts every connection (and refuses new ones), delays every chunk, or goes silent
//! (connections stay open but nothing passes either way: a half-open peer), then forwards again.
//! Used to take Postgres or Redis away from a server without touching the shared instances.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    /// Connections closed, new ones refused.
    Cut,
    /// Each chunk waits this long before it is passed on.
    Delay(Duration),
    /// Nothing passes; connections stay open.
    Silent,
}

pub struct CuttableProxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(watch::channel(Mode::Forward).0);
        let accept_mode = Arc::clone(&mode);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *accept_mode.borrow() == Mode::Cut {
                    drop(inbound);
                    continue;
                }
                let mode = accept_mode.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_read, out_write, mode.clone()) => {}
                        _ = pump(out_read, in_write, mode) => {}
                    }
                });
            }
        });
        Self { addr, mode, accept }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Every chunk in either direction waits `by` before it is passed on.
    pub fn delay(&self, by: Duration) {
        self.mode.send_replace(Mode::Delay(by));
    }

    /// Nothing passes either way, but connections stay open (no FIN, no RST): a half-open peer.
    pub fn silence(&self) {
        self.mode.send_replace(Mode::Silent);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

/// Copies `from` to `to` under the proxy's mode until either side closes or the proxy cuts.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = mode.wait_for(|mode| *mode == Mode::Cut) => return,
        };
        let Ok(count) = read else { return };
        if count == 0 {
            return;
        }
        // Held while silent; dropped when cut.
        let current = match mode.wait_for(|mode| *mode != Mode::Silent).await {
            Ok(current) => *current,
            Err(_) => return,
        };
        match current {
            Mode::Cut => return,
            Mode::Delay(by) => tokio::time::sleep(by).await,
            Mode::Forward | Mode::Silent => {}
        }
        if to.write_all(&buffer[..count]).await.is_err() {
            return;
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
