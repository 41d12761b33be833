//! The WebSocket connections (SPEC §4.1): accepting under the limits, the handshake, waiting
//! for the one frame, sending the one reply, and the close reasons; what a frame means is
//! [`super::protocol`]'s.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use minerpool_core::message::{INVALID_FORMAT, MAX_CONNECTIONS, MESSAGE_TOO_LARGE};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::protocol::answer;
use crate::connections::{CLOSE_FRAME_TIMEOUT, Lifecycle, accept_until_stopped};
use crate::gate::{Admission, Gate};
use crate::proxy_header::ClientAddresses;
use crate::state::NodeState;

/// Closing reasons of connections still open at the shutdown timeout.
pub const SHUTTING_DOWN: &str = "server shutting down";
pub const SHUTTING_DOWN_UNANSWERED: &str = "server shutting down before the reply: the message may have been recorded; resending it is safe";

/// Accepts connections until the lifecycle's stop, then takes the queued ones (see
/// [`crate::connections`]). Returns how many were taken after the stop.
pub async fn serve(listener: TcpListener, state: Arc<NodeState>, lifecycle: Lifecycle) -> usize {
    let gate = Gate::new(
        state.limits.max_connections,
        state.limits.max_connections_per_client,
    );
    let stop = lifecycle.stop.clone();
    let clients = ClientAddresses::new(
        "websocket",
        state.limits.proxy_protocol,
        state.limits.idle_timeout,
        state.metrics.refused_proxy_headers.clone(),
    );
    let take = {
        let (state, lifecycle) = (state.clone(), lifecycle.clone());
        move |stream: TcpStream, address: SocketAddr| {
            admit(&gate, &state, &lifecycle, stream, address)
        }
    };
    let take = Arc::new(take);
    accept_until_stopped(listener, "websocket", stop, |stream, peer| {
        let take = take.clone();
        clients.hand_over(&lifecycle, stream, peer, move |stream, client| {
            take(stream, client)
        });
    })
    .await
}

/// Admits a connection under the limits, or refuses it.
fn admit(
    gate: &Arc<Gate>,
    state: &Arc<NodeState>,
    lifecycle: &Lifecycle,
    stream: TcpStream,
    address: SocketAddr,
) {
    let state = state.clone();
    match gate.admit(address.ip()) {
        Admission::Admitted(pass) => {
            let connection_lifecycle = lifecycle.clone();
            lifecycle.spawn(async move {
                state.metrics.open_connections.inc();
                connection(stream, address, &state, &connection_lifecycle).await;
                state.metrics.open_connections.dec();
                drop(pass);
            });
        }
        Admission::Refused(slot) => {
            state.metrics.refused_connections.inc();
            // Explained while few are being refused; past that, closed at once.
            if let Some(slot) = slot {
                let cut = lifecycle.cut.clone();
                lifecycle.spawn(async move {
                    tokio::select! {
                        _ = refuse(stream, &state) => {}
                        _ = cut.cancelled() => {}
                    }
                    drop(slot);
                });
            }
        }
    }
}

fn websocket_config(state: &NodeState) -> WebSocketConfig {
    // Small buffers: one frame of at most 4 KiB comes in, one short reply goes out.
    WebSocketConfig::default()
        .max_message_size(Some(state.limits.max_frame_bytes))
        .max_frame_size(Some(state.limits.max_frame_bytes))
        .read_buffer_size(2 * state.limits.max_frame_bytes)
        .write_buffer_size(0)
}

/// Over the limit: complete the handshake only to say why, then close.
async fn refuse(stream: TcpStream, state: &NodeState) {
    let handshake = tokio::time::timeout(
        state.limits.idle_timeout,
        tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config(state))),
    )
    .await;
    if let Ok(Ok(mut ws)) = handshake {
        close_with(&mut ws, CloseCode::Again, MAX_CONNECTIONS).await;
    }
}

async fn connection(
    stream: TcpStream,
    client: SocketAddr,
    state: &NodeState,
    lifecycle: &Lifecycle,
) {
    let idle = state.limits.idle_timeout;
    let cut = &lifecycle.cut;
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(
            idle,
            tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config(state))),
        ) => handshake,
        _ = cut.cancelled() => {
            lifecycle.count_cut("websocket", "handshake", client);
            return;
        }
    };
    let Ok(Ok(mut ws)) = handshake else {
        return;
    };
    let frame = tokio::select! {
        frame = tokio::time::timeout(idle, ws.next()) => frame,
        _ = cut.cancelled() => {
            lifecycle.count_cut("websocket", "waiting for the message", client);
            close_with(&mut ws, CloseCode::Away, SHUTTING_DOWN).await;
            return;
        }
    };
    let reply = match frame {
        // Silent for too long, or gone.
        Err(_) | Ok(None) => {
            let _ = ws.close(None).await;
            return;
        }
        Ok(Some(Ok(Message::Text(text)))) => {
            tokio::select! {
                reply = answer(text.as_str(), state) => reply,
                _ = cut.cancelled() => {
                    lifecycle.count_cut("websocket", "answering", client);
                    close_with(&mut ws, CloseCode::Away, SHUTTING_DOWN_UNANSWERED).await;
                    return;
                }
            }
        }
        Ok(Some(Ok(Message::Binary(_)))) => {
            state.metrics.message("invalid", "none", "invalid-format");
            INVALID_FORMAT.to_owned()
        }
        Ok(Some(Ok(Message::Close(_)))) => return,
        Ok(Some(Ok(_))) => {
            state.metrics.message("invalid", "none", "invalid-format");
            INVALID_FORMAT.to_owned()
        }
        Ok(Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_)))) => {
            state.metrics.message("invalid", "none", "too-large");
            close_with(&mut ws, CloseCode::Size, MESSAGE_TOO_LARGE).await;
            return;
        }
        Ok(Some(Err(_))) => return,
    };
    let sent = tokio::time::timeout(idle, async {
        if ws.send(Message::text(reply)).await.is_ok() {
            let _ = ws.close(None).await;
        }
    });
    tokio::select! {
        _ = sent => {}
        _ = cut.cancelled() => lifecycle.count_cut("websocket", "sending the reply", client),
    }
}

/// Closes with a code and a reason, waiting at most [`CLOSE_FRAME_TIMEOUT`] for the frame to go.
async fn close_with<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_FRAME_TIMEOUT, ws.close(Some(frame))).await;
}
