//! `ws-send URL MESSAGE`: sends one text frame over a WebSocket, prints the reply (or the close
//! reason), as a validator talking to the node would. Used by the demo.

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(message)) = (args.next(), args.next()) else {
        bail!("usage: ws-send ws://HOST:PORT 'JSON message'");
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    ws.send(Message::text(message)).await?;
    let reply = tokio::time::timeout(std::time::Duration::from_secs(15), ws.next())
        .await
        .context("no reply within 15 s")?;
    match reply {
        Some(Ok(Message::Text(text))) => println!("{text}"),
        Some(Ok(Message::Close(Some(frame)))) => println!("{}", frame.reason),
        Some(Ok(other)) => println!("{other:?}"),
        Some(Err(e)) => bail!("{e}"),
        None => bail!("the server closed without a reply"),
    }
    Ok(())
}
