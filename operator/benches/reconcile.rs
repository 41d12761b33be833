//! 200 MinerPools against the real kube-apiserver: time until every one is reconciled, API
//! requests per MinerPool for the first reconciles and for a steady-state pass, writes while
//! idle, and the process's memory.
//!
//!   MINERPOOL_TEST_KUBE=1 scripts/with-test-servers.sh cargo bench -p minerpool-operator --bench reconcile
//!
//! MINERPOOL_BENCH_POOLS changes the count (default 200). The jobs are suspended so that the
//! cluster can become idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use minerpool_operator::crd::{JobSpec, Jobs, MinerPool};
use minerpool_operator::fixtures;
use minerpool_operator::metrics::Metrics;
use minerpool_operator::reconcile::{self, Context, Scope};
use minerpool_operator::served_api::ServedApis;
use minerpool_operator::testing;
use minerpool_tests::wait;

/// Resident and peak memory of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn converged(pools: &[MinerPool]) -> usize {
    pools
        .iter()
        .filter(|mp| {
            mp.status.as_ref().is_some_and(|s| {
                s.observed_generation == mp.metadata.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "JobsScheduled" && c.status == "True")
            })
        })
        .count()
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("MINERPOOL_BENCH_POOLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let admin = testing::admin_client().await;
    testing::ensure_crd(&admin).await;
    let ns = testing::namespace_with_mongodb_secret(&admin, "bench").await;
    let pools: Api<MinerPool> = Api::namespaced(admin.clone(), &ns);
    for i in 0..count {
        let mut mp = fixtures::minerpool(&format!("pool-{i:03}"), &ns);
        // Suspended: a running CronJob changes its last schedule time every minute, and that is
        // reported in the status, so the cluster would never be idle.
        let suspended = Some(JobSpec {
            suspend: Some(true),
            ..JobSpec::default()
        });
        mp.spec.jobs = Jobs {
            rewards: suspended.clone(),
            validators: suspended.clone(),
            payouts: suspended.clone(),
            decay: suspended,
            pod_overrides: None,
        };
        testing::create_pool(&admin, &ns, &mp).await;
    }
    println!(
        "operator benchmark: {count} MinerPools in namespace {ns} (kube-apiserver 1.20.2, loopback)"
    );
    let (rss_before, _) = memory();

    let (client, counts) = testing::counting_admin_client().await;
    let version = ServedApis::discover(&client).await.unwrap();
    let ctx = Arc::new(Context::new(client, version, Metrics::default(), None));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let counts_at_start = counts.snapshot();
    let controller = tokio::spawn(reconcile::run(
        ctx.clone(),
        Scope::Namespaces(vec![ns.clone()]),
        async move {
            let _ = stopped.await;
        },
    ));
    wait::until_ok(
        "every MinerPool to be reconciled",
        Duration::from_secs(900),
        || async {
            match pools.list(&ListParams::default()).await {
                Ok(list) if converged(&list.items) == count => Ok(()),
                Ok(list) => Err(format!("{} of {count} reconciled", converged(&list.items))),
                Err(e) => Err(format!("listing the MinerPools: {e}")),
            }
        },
    )
    .await;
    let took = started.elapsed();
    let (reads, writes) = counts.snapshot();
    let (reads, writes) = (reads - counts_at_start.0, writes - counts_at_start.1);
    let reconciles = ctx.metrics.reconciles.get();
    println!(
        "first reconcile of all: {:.1} s ({:.1} MinerPools/s), {reconciles} reconciles",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
    println!(
        "  API requests per MinerPool until converged: {:.2} reads, {:.2} writes ({:.2} in all)",
        reads as f64 / count as f64,
        writes as f64 / count as f64,
        (reads + writes) as f64 / count as f64
    );

    // The controller manager is still creating ReplicaSets and Pending pods, and each Deployment
    // status change is reported in the MinerPool's status. Wait until no reconcile has run for
    // 10 s; then an idle window must bring no writes.
    let settle_started = Instant::now();
    let mut last = (ctx.metrics.reconciles.get(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(10)
        && settle_started.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = ctx.metrics.reconciles.get();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let (settle_reads, settle_writes) = counts.snapshot();
    println!(
        "settled after {:.1} s more: {} reconciles in all; per MinerPool {:.2} reads, {:.2} writes since converged \
         (status updates as the node's pods appear)",
        settle_started.elapsed().as_secs_f64(),
        ctx.metrics.reconciles.get(),
        (settle_reads - counts_at_start.0 - reads) as f64 / count as f64,
        (settle_writes - counts_at_start.1 - writes) as f64 / count as f64,
    );
    let (idle_reads_0, idle_writes_0) = counts.snapshot();
    let idle = Duration::from_secs(30);
    tokio::time::sleep(idle).await;
    let (idle_reads_1, idle_writes_1) = counts.snapshot();
    println!(
        "  idle {} s: {} reads, {} writes (target 0 writes)",
        idle.as_secs(),
        idle_reads_1 - idle_reads_0,
        idle_writes_1 - idle_writes_0
    );

    // A steady-state pass, as the periodic resync runs it: every MinerPool reconciled once more.
    let list = pools.list(&ListParams::default()).await.unwrap();
    let (pass_reads_0, pass_writes_0) = counts.snapshot();
    let pass_started = Instant::now();
    for mp in list.items {
        reconcile::reconcile(Arc::new(mp), ctx.clone())
            .await
            .unwrap();
    }
    let pass_took = pass_started.elapsed();
    let (pass_reads_1, pass_writes_1) = counts.snapshot();
    println!(
        "steady-state pass: {:.1} s, per MinerPool {:.2} reads, {:.2} writes (target 0 writes)",
        pass_took.as_secs_f64(),
        (pass_reads_1 - pass_reads_0) as f64 / count as f64,
        (pass_writes_1 - pass_writes_0) as f64 / count as f64
    );
    let (rss_after, peak) = memory();
    println!(
        "memory: RSS {rss_before:.1} MiB before the operator started, {rss_after:.1} MiB after (peak {peak:.1} MiB; \
         the benchmark's own admin client included)"
    );
    let _ = stop.send(());
    controller.await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin);
    let _ = namespaces.delete(&ns, &Default::default()).await;
}
