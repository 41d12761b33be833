//! Support for tests and benchmarks against the real kube-apiserver started by
//! `scripts/with-test-servers.sh` (MINERPOOL_TEST_KUBE=1).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, CustomResourceExt};

use crate::crd::MinerPool;
use crate::fixtures::MONGODB_SECRET;

pub const KUBECONFIG_VAR: &str = "MINERPOOL_TEST_KUBECONFIG";

/// The test cluster's admin kubeconfig.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os(KUBECONFIG_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "{KUBECONFIG_VAR} is not set: run the tests with `make test` (or \
                 MINERPOOL_TEST_KUBE=1 scripts/with-test-servers.sh cargo nextest run), which \
                 starts a kube-apiserver"
            )
        })
}

async fn config_from(path: &std::path::Path) -> kube::Config {
    crate::tls::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(path).expect("readable kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig")
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &std::path::Path) -> Client {
    Client::try_from(config_from(path).await).expect("client")
}

pub async fn admin_client() -> Client {
    client_from(&kubeconfig_path()).await
}

/// Requests a client sent, by kind; writes are every method but GET.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl RequestCounts {
    /// `(reads, writes)` so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

/// The admin client, counting every request it sends (watches count once, when opened).
pub async fn counting_admin_client() -> (Client, Arc<RequestCounts>) {
    let config = config_from(&kubeconfig_path()).await;
    let counts = Arc::new(RequestCounts::default());
    let counter = counts.clone();
    let layer =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            let counter = if request.method() == http::Method::GET {
                &counter.reads
            } else {
                &counter.writes
            };
            counter.fetch_add(1, Ordering::Relaxed);
            request
        });
    let client = kube::client::ClientBuilder::try_from(config)
        .expect("client")
        .with_layer(&layer)
        .build();
    (client, counts)
}

/// Installs the generated CRD unless it is there, and waits until it is served. (A server-side
/// apply would fail on Kubernetes 1.20, whose CRD type has no `x-kubernetes-validations`; a create
/// drops the CEL rule there.)
pub async fn ensure_crd(client: &Client) {
    ensure_custom_resource(client, MinerPool::crd()).await;
}

/// Installs `operator/testdata/servicemonitor-crd.yaml` (the ServiceMonitor kind as far as the
/// operator relies on it), if it is not there yet.
pub async fn ensure_service_monitor_crd(client: &Client) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(include_str!("../testdata/servicemonitor-crd.yaml"))
            .expect("a CustomResourceDefinition");
    ensure_custom_resource(client, crd).await;
}

async fn ensure_custom_resource(client: &Client, crd: CustomResourceDefinition) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap();
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("the CRD is not accepted: {e}"),
    }
    let established = kube::runtime::wait::await_condition(
        crds,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    match tokio::time::timeout(Duration::from_secs(30), established).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("watching the CRD {name}: {e}"),
        Err(_) => panic!("the CRD {name} was not established within 30 s"),
    }
}

/// A fresh namespace whose name starts with `prefix`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    name
}

/// A fresh namespace holding the MongoDB URI Secret that [`crate::fixtures::spec`] names.
pub async fn namespace_with_mongodb_secret(client: &Client, prefix: &str) -> String {
    let ns = namespace(client, prefix).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut secret = Secret::default();
    secret.metadata.name = Some(MONGODB_SECRET.into());
    secret.string_data = Some(
        [(
            "uri".to_string(),
            "mongodb://db:27017/?replicaSet=rs0".to_string(),
        )]
        .into(),
    );
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("Secret created");
    ns
}

/// Creates `mp` in `ns`, dropping what only the API server may set (uid, version, generation).
pub async fn create_pool(client: &Client, ns: &str, mp: &MinerPool) -> MinerPool {
    let api: Api<MinerPool> = Api::namespaced(client.clone(), ns);
    let mut mp = mp.clone();
    mp.metadata.namespace = Some(ns.into());
    mp.metadata.uid = None;
    mp.metadata.resource_version = None;
    mp.metadata.generation = None;
    api.create(&PostParams::default(), &mp)
        .await
        .expect("MinerPool created")
}

/// RFC 7386 JSON merge patch, as the API server applies it: null removes a key.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::json!({});
    }
    let object = target.as_object_mut().expect("an object");
    for (key, value) in fields {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(
                object.entry(key.clone()).or_insert(serde_json::Value::Null),
                value,
            );
        }
    }
}

/// A TCP proxy in front of the test API server that can be made to stop answering: while
/// stalled, it forwards nothing either way, as an API server that hangs (or a partitioned
/// network) would.
pub struct StallableProxy {
    pub stalled: Arc<std::sync::atomic::AtomicBool>,
    pub address: std::net::SocketAddr,
}

impl StallableProxy {
    pub async fn start() -> StallableProxy {
        let config = config_from(&kubeconfig_path()).await;
        let upstream = format!(
            "{}:{}",
            config.cluster_url.host().unwrap_or("127.0.0.1"),
            config.cluster_url.port_u16().unwrap_or(443)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, flag.clone()),
                        pump(server_read, client_write, flag)
                    );
                });
            }
        });
        StallableProxy { stalled, address }
    }

    /// A client of the test API server that goes through this proxy.
    pub async fn client(&self) -> Client {
        let mut config = config_from(&kubeconfig_path()).await;
        config.cluster_url = format!("https://{}", self.address).parse().unwrap();
        // The server certificate names 127.0.0.1, which the proxy's address also is.
        Client::try_from(config).expect("client")
    }

    pub fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies bytes one way, holding them while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        while stalled.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        while stalled.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
