//! PROXY protocol headers (HAProxy's specification, v1 text and v2 binary). With
//! `node.proxyProtocol` on, every connection on both ports starts with one, sent by the load
//! balancer, naming the client it forwards; its source address becomes the connection's client
//! address, for the per-client limits and the logs. The header is read exactly, never a byte of
//! what follows it, and parsed by the `ppp` crate.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::connections::Lifecycle;

/// A v1 header is at most 107 bytes, its CRLF included.
const V1_MAX: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// Most bytes after a v2 header's fixed part: the addresses and a few TLVs (a balancer sending
/// more is refused rather than buffered).
const V2_MAX_REST: usize = 1024;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection had no usable header.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before a complete PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::Error),
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
}

/// Reads the header at the start of `stream`, within `within`: the client address it names, or
/// `peer` for a header that names none (v1 `UNKNOWN`, v2 `LOCAL`: the balancer's own checks).
pub async fn read_client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    within: Duration,
) -> Result<SocketAddr, HeaderError> {
    tokio::time::timeout(within, read(stream, peer))
        .await
        .map_err(|_| HeaderError::Timeout(within))?
}

async fn read_exact(stream: &mut TcpStream, into: &mut [u8]) -> Result<(), HeaderError> {
    match stream.read_exact(into).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(HeaderError::Closed),
        Err(e) => Err(HeaderError::Io(e)),
    }
}

async fn read(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, HeaderError> {
    let mut header = vec![0_u8; 1];
    read_exact(stream, &mut header).await?;
    match header[0] {
        b'P' => {
            // Byte by byte up to the CRLF, so nothing after the header is consumed.
            while !header.ends_with(b"\r\n") {
                if header.len() >= V1_MAX {
                    return Err(HeaderError::Invalid(format!(
                        "a v1 header without its CRLF in {V1_MAX} bytes"
                    )));
                }
                let mut byte = [0_u8];
                read_exact(stream, &mut byte).await?;
                header.push(byte[0]);
            }
            let text = std::str::from_utf8(&header)
                .map_err(|_| HeaderError::Invalid("a v1 header that is not text".into()))?;
            let parsed = ppp::v1::Header::try_from(text)
                .map_err(|e| HeaderError::Invalid(format!("v1 {text:?}: {e}")))?;
            Ok(match parsed.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
                }
                ppp::v1::Addresses::Unknown => peer,
            })
        }
        b'\r' => {
            header.resize(V2_FIXED, 0);
            read_exact(stream, &mut header[1..]).await?;
            if &header[..V2_SIGNATURE.len()] != V2_SIGNATURE {
                return Err(HeaderError::Invalid(
                    "starts like a v2 header without its signature".into(),
                ));
            }
            let rest = usize::from(u16::from_be_bytes([header[14], header[15]]));
            if rest > V2_MAX_REST {
                return Err(HeaderError::Invalid(format!(
                    "a v2 header of {rest} bytes after its fixed part (at most {V2_MAX_REST})"
                )));
            }
            header.resize(V2_FIXED + rest, 0);
            read_exact(stream, &mut header[V2_FIXED..]).await?;
            let parsed = ppp::v2::Header::try_from(&header[..])
                .map_err(|e| HeaderError::Invalid(format!("v2: {e}")))?;
            Ok(match (parsed.command, parsed.addresses) {
                (ppp::v2::Command::Local, _) => peer,
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)
                }
                (ppp::v2::Command::Proxy, _) => {
                    return Err(HeaderError::Invalid(
                        "a v2 PROXY header without an IP source address".into(),
                    ));
                }
            })
        }
        other => Err(HeaderError::Invalid(format!(
            "the connection starts with byte {other:#04x}, not a v1 or v2 header"
        ))),
    }
}

/// Headers read at once, per server: each holds a task until its header is in.
const HEADERS_AT_ONCE: usize = 256;

/// How a server learns each connection's client address: the socket's peer, or, with the PROXY
/// protocol on, the address the connection's header names.
#[derive(Clone)]
pub struct ClientAddresses {
    /// With the protocol on: the places for headers being read, and how long one may take.
    headers: Option<(Arc<Semaphore>, Duration)>,
    refused: Counter,
    server: &'static str,
}

impl ClientAddresses {
    pub fn new(
        server: &'static str,
        proxy_protocol: bool,
        within: Duration,
        refused: Counter,
    ) -> ClientAddresses {
        ClientAddresses {
            headers: proxy_protocol.then(|| (Arc::new(Semaphore::new(HEADERS_AT_ONCE)), within)),
            refused,
            server,
        }
    }

    /// Hands `stream` to `take` with its client's address: at once when headers are off;
    /// otherwise once its header is read, in a task of `lifecycle`. A connection without a valid
    /// header, or past [`HEADERS_AT_ONCE`] being read, is closed and counted.
    pub fn hand_over(
        &self,
        lifecycle: &Lifecycle,
        mut stream: TcpStream,
        peer: SocketAddr,
        take: impl FnOnce(TcpStream, SocketAddr) + Send + 'static,
    ) {
        let Some((places, within)) = &self.headers else {
            return take(stream, peer);
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            self.refused.inc();
            return;
        };
        let (within, refused, server, cut) = (
            *within,
            self.refused.clone(),
            self.server,
            lifecycle.cut.clone(),
        );
        lifecycle.spawn(async move {
            let read = tokio::select! {
                read = read_client(&mut stream, peer, within) => read,
                _ = cut.cancelled() => return,
            };
            drop(place);
            match read {
                Ok(client) => take(stream, client),
                Err(error) => {
                    refused.inc();
                    tracing::debug!(server, %peer, %error, "connection closed: no valid PROXY protocol header");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Sends `bytes` then `after` on a fresh connection; what the server read as the client, and
    /// the bytes left for whoever reads next.
    async fn exchange(bytes: &[u8], after: &[u8]) -> (Result<SocketAddr, HeaderError>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        let mut sent = bytes.to_vec();
        sent.extend_from_slice(after);
        client.write_all(&sent).await.unwrap();
        client.shutdown().await.unwrap();
        let found = read_client(&mut server, peer, Duration::from_secs(2)).await;
        let mut rest = Vec::new();
        if found.is_ok() {
            server.read_to_end(&mut rest).await.unwrap();
        }
        (found, rest)
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(command);
        header.push(family);
        header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        header.extend_from_slice(addresses);
        header
    }

    #[tokio::test]
    async fn v1_and_v2_name_the_client_and_leave_what_follows() {
        let (found, rest) = exchange(
            b"PROXY TCP4 203.0.113.7 10.0.0.5 40001 5501\r\n",
            b"GET / HTTP/1.1\r\n",
        )
        .await;
        assert_eq!(found.unwrap(), "203.0.113.7:40001".parse().unwrap());
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let (found, _) = exchange(b"PROXY TCP6 2001:db8::7 2001:db8::1 40002 5501\r\n", b"").await;
        assert_eq!(found.unwrap(), "[2001:db8::7]:40002".parse().unwrap());

        let ipv4 = [203, 0, 113, 9, 10, 0, 0, 5, 0x9c, 0x43, 0x15, 0x7d];
        let (found, rest) = exchange(&v2(0x21, 0x11, &ipv4), b"\x81\x05hello").await;
        assert_eq!(found.unwrap(), "203.0.113.9:40003".parse().unwrap());
        assert_eq!(
            rest, b"\x81\x05hello",
            "the bytes after the header are untouched"
        );
    }

    #[tokio::test]
    async fn a_header_that_names_no_client_leaves_the_peer() {
        let (found, _) = exchange(b"PROXY UNKNOWN\r\n", b"x").await;
        assert_eq!(found.unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
        // LOCAL: the balancer's own health check.
        let (found, _) = exchange(&v2(0x20, 0x00, &[]), b"x").await;
        assert_eq!(found.unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[tokio::test]
    async fn a_missing_or_malformed_header_is_refused_with_what_was_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), "starts with byte 0x47"),
            (b"PROXY TCP4 not-an-address 10.0.0.5 1 2\r\n".to_vec(), "v1"),
            (
                [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat(),
                "without its CRLF",
            ),
            (b"PROXY TCP4 1.2.3.4".to_vec(), "closed before"),
            (
                b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\0".to_vec(),
                "without its signature",
            ),
            (
                [V2_SIGNATURE.as_slice(), b"\x21\x11\xff\xff"].concat(),
                "65535 bytes",
            ),
            (v2(0x21, 0x11, &[1, 2, 3]), "v2"),
            (v2(0x21, 0x31, &[0; 216]), "without an IP source address"),
            (Vec::new(), "closed before"),
        ];
        for (bytes, expected) in cases {
            let (found, _) = exchange(&bytes, b"").await;
            let error = found.expect_err("refused").to_string();
            assert!(error.contains(expected), "{bytes:?}: {error}");
        }
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_refused_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, peer) = listener.accept().await.unwrap();
        let error = read_client(&mut server, peer, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(error, HeaderError::Timeout(_)), "{error}");
    }
}
