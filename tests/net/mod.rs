//! A TCP proxy a test can cut: it forwards 127.0.0.1:<port> to an upstream address until `cut`
//! (every connection closed, new ones refused) and does it again after `restore`. Used to take
//! Postgres or Redis away from a server without touching the shared instances.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct CuttableProxy {
    pub addr: SocketAddr,
    open: Arc<watch::Sender<bool>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(watch::channel(true).0);
        let accept_open = Arc::clone(&open);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*accept_open.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut closed = accept_open.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self { addr, open, accept }
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
