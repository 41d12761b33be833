//! Connection limits shared by both servers: a cap on open connections, a cap per client
//! address (so one client cannot take the whole cap), a bounded number of connections being
//! refused at once (a refusal that completes a WebSocket handshake costs a task; past the bound
//! the socket is just closed), and a back-off when accepting fails (out of file descriptors,
//! the accept loop would otherwise spin).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections being refused at once, per server.
const REFUSALS_AT_ONCE: usize = 64;
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub struct Gate {
    open: Arc<Semaphore>,
    per_client: u32,
    clients: Mutex<HashMap<IpAddr, u32>>,
    refusals: Arc<Semaphore>,
}

/// An admitted connection's place; dropping it frees the place.
pub struct Pass {
    _open: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    client: IpAddr,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut clients = self.gate.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = clients.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

pub enum Admission {
    Admitted(Pass),
    /// Over a limit; with a refusal slot the refusal may be explained, without one the socket
    /// is closed at once.
    Refused(Option<OwnedSemaphorePermit>),
}

impl Gate {
    pub fn new(max_open: usize, per_client: u32) -> Arc<Gate> {
        Arc::new(Gate {
            open: Arc::new(Semaphore::new(max_open)),
            per_client,
            clients: Mutex::new(HashMap::new()),
            refusals: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
        })
    }

    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Admission {
        let refused = || Admission::Refused(self.refusals.clone().try_acquire_owned().ok());
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.get(&client).copied().unwrap_or(0) >= self.per_client {
            return refused();
        }
        let Ok(open) = self.open.clone().try_acquire_owned() else {
            return refused();
        };
        *clients.entry(client).or_default() += 1;
        Admission::Admitted(Pass {
            _open: open,
            gate: self.clone(),
            client,
        })
    }
}

/// Accepts the next connection. A failed accept (no file descriptors left, say) is logged and
/// retried after a pause that doubles up to a second, instead of at once.
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, server = what, retry_in = ?backoff, "accepting a connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A connection that is closed when the client sends nothing for `idle`, or once it is
/// `lifetime` old: a client trickling bytes (slowloris) holds a place for at most `lifetime`.
pub struct Guarded {
    stream: TcpStream,
    _pass: Pass,
    idle: Duration,
    idle_deadline: Pin<Box<Sleep>>,
    lifetime_deadline: Pin<Box<Sleep>>,
}

impl Guarded {
    pub fn new(stream: TcpStream, pass: Pass, idle: Duration, lifetime: Duration) -> Guarded {
        Guarded {
            stream,
            _pass: pass,
            idle,
            idle_deadline: Box::pin(tokio::time::sleep(idle)),
            lifetime_deadline: Box::pin(tokio::time::sleep(lifetime)),
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.lifetime_deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection lifetime reached",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + this.idle;
                    this.idle_deadline.as_mut().reset(next);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if this.idle_deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client idle",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The client's address, for handlers (`ConnectInfo<ClientAddr>`).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);
