//! How both servers take in and let go of connections.
//!
//! Every connection runs in a task its server's [`Lifecycle`] tracks, so that shutdown waits for
//! it instead of leaving it to be dropped with the runtime (its client would see a reset, maybe
//! after its TASK was committed). Stopping goes in this order:
//!
//! 1. **stop**: each server stops taking new handshakes (on Linux a socket filter drops new SYNs,
//!    so those clients are refused once the socket closes, before they have sent anything), takes
//!    every connection the kernel already completed and queued, then closes its listening socket.
//!    No connection the kernel accepted is reset unread.
//! 2. **finish**: open connections finish (a WebSocket its message and reply, HTTP its request in
//!    flight, after which keep-alive connections close), for at most the shutdown timeout.
//! 3. **cut**: what is still open then is closed with a reason (a WebSocket close frame; a log
//!    line), and counted in `minerpool_node_connections_cut_total`.

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::CutLabels;

/// After a new-handshake filter is in place, the accept queue is read until it has been empty
/// this long (handshakes already under way complete within a round trip)...
const SETTLE_QUIET: Duration = Duration::from_millis(50);
/// ...or for at most this long.
const SETTLE_MAX: Duration = Duration::from_secs(1);
/// Connections still open when cut get this long to send their close frame.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// The shared signals and the tracked tasks of the node's servers.
#[derive(Clone)]
pub struct Lifecycle {
    /// Raised when the servers must stop accepting.
    pub stop: CancellationToken,
    /// Raised at the shutdown timeout: what is still open closes.
    pub cut: CancellationToken,
    tracker: TaskTracker,
    cuts: Family<CutLabels, Counter>,
}

/// What a shutdown did, for the log and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Connections taken from the kernel's accept queue after the stop.
    pub from_backlog: usize,
    /// Connections still open at the timeout, closed with a reason.
    pub cut: usize,
    /// Whether every connection ended (by itself or cut) before the process moved on.
    pub all_ended: bool,
    /// Whether the group writer wrote and answered everything it held.
    pub writer_flushed: bool,
}

impl Lifecycle {
    pub fn new(cuts: Family<CutLabels, Counter>) -> Lifecycle {
        Lifecycle {
            stop: CancellationToken::new(),
            cut: CancellationToken::new(),
            tracker: TaskTracker::new(),
            cuts,
        }
    }

    /// Runs a connection's work as a tracked task.
    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(work);
    }

    /// Counts a connection closed at the timeout and says why in the log.
    pub fn count_cut(&self, server: &'static str, during: &'static str, client: SocketAddr) {
        self.cuts
            .get_or_create(&CutLabels {
                server: server.to_owned(),
                during: during.to_owned(),
            })
            .inc();
        tracing::warn!(server, during, %client, "shutdown timeout reached: connection closed");
    }

    /// Steps 2 and 3 above, once the accept loops have ended: waits for the tracked connections
    /// for at most `timeout`, then cuts the rest. Returns how many were cut and whether all
    /// ended.
    pub async fn finish(&self, timeout: Duration) -> (usize, bool) {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            return (0, true);
        }
        let open = self.tracker.len();
        tracing::warn!(
            open,
            timeout_seconds = timeout.as_secs_f64(),
            "shutdown timeout reached with connections open: closing them"
        );
        self.cut.cancel();
        let ended = tokio::time::timeout(CUT_GRACE, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::error!(
                still_open = self.tracker.len(),
                "connections did not close within the cut grace; they end with the process"
            );
        }
        (open, ended)
    }
}

/// Accepts connections and hands each to `take` until `stop` is raised; then stops new
/// handshakes, hands over every connection the kernel already queued, and closes the socket.
/// Returns how many were taken after the stop.
pub async fn accept_until_stopped(
    listener: TcpListener,
    server: &'static str,
    stop: CancellationToken,
    mut take: impl FnMut(TcpStream, SocketAddr),
) -> usize {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            (stream, address) = crate::gate::accept(&listener, server) => take(stream, address),
        }
    }
    let mut from_backlog = 0;
    if let Err(e) = refuse_new_handshakes(&listener) {
        tracing::warn!(server, error = %e, "could not stop new handshakes before closing; late ones may be reset");
    }
    // Handshakes under way when the filter went on complete within a round trip: take them as
    // they come, until the queue stays empty.
    let settle_until = tokio::time::Instant::now() + SETTLE_MAX;
    while tokio::time::Instant::now() < settle_until {
        match tokio::time::timeout(SETTLE_QUIET, listener.accept()).await {
            Ok(Ok((stream, address))) => {
                from_backlog += 1;
                take(stream, address);
            }
            Ok(Err(e)) => {
                tracing::warn!(server, error = %e, "accepting from the queue failed");
                break;
            }
            Err(_) => break,
        }
    }
    // Then whatever the kernel holds now, read straight from the socket until it says none.
    match listener.into_std() {
        Ok(listener) => loop {
            match listener.accept() {
                Ok((stream, address)) => {
                    let taken = stream
                        .set_nonblocking(true)
                        .and_then(|()| TcpStream::from_std(stream));
                    match taken {
                        Ok(stream) => {
                            from_backlog += 1;
                            take(stream, address);
                        }
                        Err(e) => {
                            tracing::warn!(server, error = %e, "a queued connection could not be taken")
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(server, error = %e, "draining the accept queue failed");
                    break;
                }
            }
        },
        Err(e) => tracing::warn!(server, error = %e, "could not read the accept queue"),
    }
    if from_backlog > 0 {
        tracing::info!(
            server,
            connections = from_backlog,
            "served the connections queued when the server stopped"
        );
    }
    from_backlog
}

/// Makes the kernel drop new SYNs to this listening socket, while handshakes under way still
/// complete: a classic BPF filter on the socket, which Linux applies to every segment the
/// listener receives (offset 13 of the TCP header holds its flags; 0x02 is SYN). Dropped SYNs
/// are retried by their clients and refused once the socket is closed.
#[cfg(target_os = "linux")]
fn refuse_new_handshakes(listener: &TcpListener) -> std::io::Result<()> {
    use socket2::{SockFilter, SockRef};
    // The classic BPF opcodes (linux/filter.h): load byte absolute (BPF_LD 0x00 | BPF_B 0x10 |
    // BPF_ABS 0x20), jump if bits set, return.
    const LD_B_ABS: u16 = 0x10 | 0x20;
    const JMP_JSET_K: u16 = 0x05 | 0x40;
    const RET_K: u16 = 0x06;
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    SockRef::from(listener).attach_filter(&[
        SockFilter::new(LD_B_ABS, 0, 0, TCP_FLAGS),
        SockFilter::new(JMP_JSET_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ])
}

#[cfg(not(target_os = "linux"))]
fn refuse_new_handshakes(_listener: &TcpListener) -> std::io::Result<()> {
    Ok(())
}

/// How long a connection closed at the timeout may take to send its close frame.
pub const CLOSE_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Connections the kernel completed before the server took them are handed over when it
    /// stops, each a live connection to its client; then the socket is closed.
    #[tokio::test]
    async fn a_stopped_server_takes_every_queued_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(TcpStream::connect(address).await.unwrap());
        }
        let stop = CancellationToken::new();
        stop.cancel();
        let mut taken = Vec::new();
        let from_backlog =
            accept_until_stopped(listener, "test", stop, |stream, _| taken.push(stream)).await;
        assert_eq!((from_backlog, taken.len()), (5, 5));
        for client in &mut clients {
            let local = client.local_addr().unwrap();
            let server = taken
                .iter_mut()
                .find(|s| s.peer_addr().unwrap() == local)
                .expect("every client's connection was taken");
            client.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            server.read_exact(&mut byte).await.unwrap();
            assert_eq!(&byte, b"x");
        }
        assert!(
            TcpStream::connect(address).await.is_err(),
            "the socket is closed once the queue is taken"
        );
    }

    /// With the filter on, the kernel completes no new handshake (the SYN is dropped, so the
    /// client is still waiting), while a connection already queued is still there to take.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_filter_stops_new_handshakes_but_keeps_queued_ones() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let queued = TcpStream::connect(address).await.unwrap();
        refuse_new_handshakes(&listener).unwrap();
        let late = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(address));
        assert!(
            late.await.is_err(),
            "a handshake completed after the filter"
        );
        let (taken, _) = listener.accept().await.unwrap();
        assert_eq!(taken.peer_addr().unwrap(), queued.local_addr().unwrap());
    }
}
