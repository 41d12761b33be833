//! `node.proxyProtocol`: behind a load balancer every connection comes from the balancer's
//! address, so the per-client limits would throttle every validator together. With the protocol
//! on, both ports read a PROXY header first and the limits act on the address it names; a
//! connection without a valid header is closed before anything else.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Options, TestNode, node_with, reply, task};
use futures::SinkExt;
use minerpool_node::Limits;
use minerpool_node::websocket::MAX_CONNECTIONS;
use minerpool_tests::fixtures::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn proxied(label: &str, per_client: u32) -> TestNode {
    node_with(
        label,
        Options {
            limits: Limits {
                proxy_protocol: true,
                max_connections_per_client: per_client,
                idle_timeout: Duration::from_secs(2),
                http_idle_timeout: Duration::from_secs(2),
                ..Options::default().limits
            },
            ..Options::default()
        },
    )
    .await
}

fn v1(source: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {source} 10.0.0.5 {port} 5501\r\n").into_bytes()
}

/// A v2 header (PROXY, TCP over IPv4) naming `source`:`port`.
fn v2(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&source);
    header.extend_from_slice(&[10, 0, 0, 5]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&5501_u16.to_be_bytes());
    header
}

fn address(url: &str) -> SocketAddr {
    url.split("://").nth(1).unwrap().parse().unwrap()
}

async fn websocket_through(
    n: &TestNode,
    header: &[u8],
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let mut stream = TcpStream::connect(address(&n.ws)).await.unwrap();
    stream.write_all(header).await.unwrap();
    tokio_tungstenite::client_async(n.ws.clone(), stream)
        .await
        .expect("a handshake after a valid header")
        .0
}

/// Everything the HTTP port answers to `request` sent after `header`.
async fn http_through(n: &TestNode, header: &[u8], request: &str) -> String {
    let mut stream = TcpStream::connect(address(&n.http)).await.unwrap();
    stream.write_all(header).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The refused-headers line of a `/metrics` text.
fn refused_line(metrics: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with("minerpool_node_proxy_headers_refused_total "))
        .unwrap_or_default()
        .to_owned()
}

async fn refused_headers(n: &TestNode) -> String {
    refused_line(&common::text_of(format!("{}/metrics", n.http)).await)
}

#[tokio::test]
async fn the_limits_act_on_the_address_each_header_names() {
    let n = proxied("proxy_ws_limits", 2).await;
    n.register_pool(POOL_A).await;
    n.add_validator(VALIDATOR_1, 12.5).await;

    // Two validators behind one balancer (every connection comes from 127.0.0.1): each has its
    // own two places, whichever header version the balancer sends.
    let mut open = Vec::new();
    for port in [40001, 40002] {
        open.push(websocket_through(&n, &v1("203.0.113.1", port)).await);
        open.push(websocket_through(&n, &v2([203, 0, 113, 2], port)).await);
    }
    // A third connection of the first validator is over its limit, not the balancer's.
    let mut third = websocket_through(&n, &v1("203.0.113.1", 40003)).await;
    assert_eq!(reply(&mut third).await, format!("CLOSE: {MAX_CONNECTIONS}"));
    // A TASK through the balancer is scored (a connection carries one message, then closes, and
    // frees its validator's place).
    open[0]
        .send(Message::text(task(
            POOL_A,
            VALIDATOR_1,
            "through-the-balancer",
        )))
        .await
        .unwrap();
    assert_eq!(reply(&mut open[0]).await, "SUCCESS: through-the-balancer");

    // Without a header, the connection is closed before its handshake.
    let stream = TcpStream::connect(address(&n.ws)).await.unwrap();
    let handshake = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(n.ws.clone(), stream),
    )
    .await
    .expect("closed, not left hanging");
    assert!(handshake.is_err(), "no handshake without a header");
    assert_eq!(
        refused_headers_via_header(&n).await,
        "minerpool_node_proxy_headers_refused_total 1"
    );
}

/// `/metrics` through a header of its own (the HTTP port wants one too).
async fn refused_headers_via_header(n: &TestNode) -> String {
    let answer = http_through(
        n,
        &v1("198.51.100.9", 50000),
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    refused_line(&answer)
}

#[tokio::test]
async fn the_http_port_reads_the_header_and_closes_without_one() {
    let n = proxied("proxy_http", 64).await;
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for header in [v1("203.0.113.4", 40004), v2([203, 0, 113, 5], 40005)] {
        let answer = http_through(&n, &header, request).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
    // A balancer health check (v1 UNKNOWN) is answered as the balancer.
    let answer = http_through(&n, b"PROXY UNKNOWN\r\n", request).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    // No header, a malformed one, or one that never comes: closed, nothing answered.
    assert_eq!(http_through(&n, b"", request).await, "");
    assert_eq!(
        http_through(&n, b"PROXY TCP4 999.1.1.1 10.0.0.5 1 2\r\n", request).await,
        ""
    );
    let mut silent = TcpStream::connect(address(&n.http)).await.unwrap();
    let mut nothing = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut nothing))
        .await
        .expect("closed at the idle timeout");
    assert!(closed.is_ok() && nothing.is_empty());
    assert_eq!(
        refused_headers_via_header(&n).await,
        "minerpool_node_proxy_headers_refused_total 3"
    );
    // Without the protocol the metric stays at zero.
    let plain = common::node("proxy_off").await;
    assert_eq!(
        refused_headers(&plain).await,
        "minerpool_node_proxy_headers_refused_total 0"
    );
}
