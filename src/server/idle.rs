//! Idle connections: one with no call open for `--idle-timeout-ms` is closed (its reads end), so
//! connections nobody uses do not hold file descriptors forever. A call counts as open until its
//! reply ends, so a quiet WatchAssignments stream keeps its connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The open connections by peer address, each with its count of open calls.
#[derive(Debug, Default)]
pub struct Activity {
    by_peer: Mutex<HashMap<SocketAddr, Weak<ConnectionState>>>,
}

#[derive(Debug)]
pub struct ConnectionState {
    calls: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl ConnectionState {
    /// When the connection may be closed if nothing changes: `timeout` after its last call ended,
    /// or, while calls are open, `timeout` from now (looked at again then).
    pub fn deadline(&self, timeout: Duration) -> Instant {
        if self.calls.load(Ordering::SeqCst) > 0 {
            Instant::now() + timeout
        } else {
            *self.idle_since.lock() + timeout
        }
    }

    /// No call open, and none for `timeout`.
    pub fn idle_for(&self, timeout: Duration) -> bool {
        self.calls.load(Ordering::SeqCst) == 0 && self.idle_since.lock().elapsed() >= timeout
    }
}

/// A call open on a connection; its end makes the connection idle from then on.
#[derive(Debug)]
pub struct ConnectionCall(Arc<ConnectionState>);

impl Drop for ConnectionCall {
    fn drop(&mut self) {
        *self.0.idle_since.lock() = Instant::now();
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection's entry; removed when the connection closes.
#[derive(Debug)]
pub struct Registered {
    activity: Arc<Activity>,
    peer: SocketAddr,
    pub state: Arc<ConnectionState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut by_peer = self.activity.by_peer.lock();
        if by_peer
            .get(&self.peer)
            .is_some_and(|state| state.as_ptr() == Arc::as_ptr(&self.state))
        {
            by_peer.remove(&self.peer);
        }
    }
}

impl Activity {
    pub fn register(self: &Arc<Self>, peer: SocketAddr) -> Registered {
        let state = Arc::new(ConnectionState {
            calls: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        });
        self.by_peer.lock().insert(peer, Arc::downgrade(&state));
        Registered {
            activity: Arc::clone(self),
            peer,
            state,
        }
    }

    /// Counts a call on the connection from `peer` (None when it is not one of ours).
    pub fn call_from(&self, peer: SocketAddr) -> Option<ConnectionCall> {
        let state = self.by_peer.lock().get(&peer)?.upgrade()?;
        state.calls.fetch_add(1, Ordering::SeqCst);
        Some(ConnectionCall(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_calls_for_the_timeout() {
        let activity = Arc::new(Activity::default());
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let registered = activity.register(peer);
        let timeout = Duration::from_secs(10);
        assert!(!registered.state.idle_for(timeout));
        let call = activity.call_from(peer).expect("a call on it");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(!registered.state.idle_for(timeout), "a call is open");
        drop(call);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!registered.state.idle_for(timeout));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(registered.state.idle_for(timeout));
        drop(registered);
        assert!(
            activity.call_from(peer).is_none(),
            "closed connections are forgotten"
        );
    }
}
