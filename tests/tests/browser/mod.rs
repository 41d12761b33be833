//! Debian's Chromium, headless, driven through chromedriver (WebDriver) on loopback. Chromium's
//! own background services are switched off and every host name but the loopback address fails
//! to resolve, so a page can reach nothing but the node under test.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    /// A phone-sized window (390 × 844).
    pub async fn start() -> Browser {
        // Several TLS providers are linked in; chromedriver is plain HTTP on loopback anyway.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = minerpool_tests::free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver on PATH (`scripts/debian-tool.sh chromedriver chromium chromium-driver` installs it; `make test` does)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=390,844",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--no-first-run",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            ] }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..50 {
            match ClientBuilder::rustls()
                .expect("TLS roots")
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        _driver: driver,
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromedriver did not start a session: {last:?}");
    }

    /// Resizes the window (`390, 844` is the phone it starts as; `1280, 900` a desktop).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
    }

    /// How far the page reaches past the window's width (at most 0: it fits).
    pub async fn overflow(&self) -> i64 {
        self.eval("return document.documentElement.scrollWidth - window.innerWidth;")
            .await
            .as_i64()
            .expect("a whole number of pixels")
    }

    /// Saves a screenshot of the current page to `target/screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The value of a script's `return`.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    pub async fn close(self) {
        self.client.close().await.ok();
    }
}

/// Polls `script` (which returns a boolean) until it is true or `limit` passes.
pub async fn wait_for(browser: &Browser, script: &str, limit: Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if browser.eval(script).await == serde_json::Value::Bool(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}
