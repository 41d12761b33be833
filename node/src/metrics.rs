//! Prometheus metrics of the node (`/metrics`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// TASK, PING, other or invalid.
    pub kind: String,
    /// signed, unsigned, or none (not read far enough to tell).
    pub protocol: String,
    /// success or the error reply's kind.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// The node's metrics; cheap to clone (every metric is shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub open_connections: Gauge,
    pub refused_connections: Counter,
    pub messages: Family<MessageLabels, Counter>,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_latency: Family<RouteLabels, Histogram>,
    pub payouts_in_flight: Gauge,
    pub payouts_oldest_unconfirmed_seconds: Gauge,
    pub payouts_held_balances: Gauge,
    /// Unresolved foreign spends of the wallet, and the units they paid away.
    pub wallet_foreign_spends: Gauge,
    pub wallet_foreign_spend_units: Gauge,
    /// HTTP connections closed at once: over the connection cap or the per-client cap.
    pub refused_http_connections: Counter,
    /// Connections closed for want of a valid PROXY protocol header (`node.proxyProtocol`).
    pub refused_proxy_headers: Counter,
    /// The limits in force, as set at start (file descriptors after raising the soft limit).
    pub limits: Family<LimitLabels, Gauge>,
    /// Connections still open at the shutdown timeout, closed with a reason.
    pub connections_cut: Family<CutLabels, Counter>,
    /// Group writes committed, the messages they carried, and group writes failed.
    pub task_groups: Counter,
    pub task_group_messages: Counter,
    pub task_groups_failed: Counter,
    /// Full reads of the cached registry (the first at start).
    pub registry_loads: Counter,
    /// Money totals in smallest units, as of the stats the jobs last refreshed.
    pub money_units: Family<MoneyLabels, Gauge>,
    pub last_scanned_height: Gauge,
    pub chain_height_seen: Gauge,
    pub stats_as_of_seconds: Gauge,
    /// Each job's newest runs, read at each scrape.
    pub job_last_run_start_seconds: Family<JobLabels, Gauge>,
    pub job_last_run_duration_seconds: Family<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub job_last_run_failed: Family<JobLabels, Gauge>,
    /// 1 when the newest finished run was blocked (it could not do its work; `jobRuns.reason`).
    pub job_last_run_blocked: Family<JobLabels, Gauge>,
    /// Seconds the newest finished run waited out the chain's rate limits.
    pub job_last_run_rate_limited_seconds:
        Family<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub job_consecutive_failures: Family<JobLabels, Gauge>,
    pub job_last_success_seconds: Family<JobLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MoneyLabels {
    /// received, credited, pending or paid.
    pub kind: String,
}

/// `minerpool_job`, not `job`: Prometheus keeps `job` for the scrape job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub minerpool_job: String,
}

/// A connection closed at the shutdown timeout: its server and what it was doing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutLabels {
    /// websocket or http.
    pub server: String,
    /// handshake, waiting for the message, answering, sending the reply (WebSocket); request
    /// (HTTP).
    pub during: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("minerpool_node");
        let open_connections = Gauge::default();
        let refused_connections = Counter::default();
        let messages = Family::<MessageLabels, Counter>::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "websocket_connections_open",
            "Open WebSocket connections",
            open_connections.clone(),
        );
        registry.register(
            "websocket_connections_refused",
            "WebSocket connections refused at the connection cap or the per-client cap",
            refused_connections.clone(),
        );
        registry.register(
            "websocket_messages",
            "WebSocket messages by type, protocol (signed or unsigned) and outcome (success or the refusal's reason)",
            messages.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            http_latency.clone(),
        );
        let payouts_in_flight = Gauge::default();
        let payouts_oldest_unconfirmed_seconds = Gauge::default();
        let payouts_held_balances = Gauge::default();
        registry.register(
            "payouts_batches_in_flight",
            "Payout batches created, signed, submitted or abandoning",
            payouts_in_flight.clone(),
        );
        registry.register(
            "payouts_oldest_unconfirmed_seconds",
            "Seconds since the oldest payout batch still waiting for a block was signed (0: none)",
            payouts_oldest_unconfirmed_seconds.clone(),
        );
        registry.register(
            "payouts_held_balances",
            "Balances the last payouts run held aside because their address cannot be paid",
            payouts_held_balances.clone(),
        );
        let wallet_foreign_spends = Gauge::default();
        let wallet_foreign_spend_units = Gauge::default();
        registry.register(
            "wallet_foreign_spends",
            "Unresolved foreign spends of the iNode wallet: transactions minerpool did not make (a store restored from a backup, a second installation with the same key, or a stolen key). While there is one, payouts are held until an admin adopts or acknowledges it (GET /api/v1/wallet-spends?filter=unresolved)",
            wallet_foreign_spends.clone(),
        );
        registry.register(
            "wallet_foreign_spend_units",
            "What the unresolved foreign spends of the iNode wallet paid away, in smallest units (1e-8 coin): payouts are held while there is one, and it may be a stolen key",
            wallet_foreign_spend_units.clone(),
        );
        let refused_http_connections = Counter::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once: over the connection cap or the per-client cap",
            refused_http_connections.clone(),
        );
        let refused_proxy_headers = Counter::default();
        registry.register(
            "proxy_headers_refused",
            "Connections closed with `node.proxyProtocol` on: no valid PROXY protocol header within the idle timeout, or too many headers being read at once",
            refused_proxy_headers.clone(),
        );
        let connections_cut = Family::<CutLabels, Counter>::default();
        registry.register(
            "connections_cut",
            "Connections still open when the shutdown timeout ran out, closed with a reason, by server and what they were doing",
            connections_cut.clone(),
        );
        let limits = Family::<LimitLabels, Gauge>::default();
        registry.register(
            "limit",
            "Limits in force: open_files, websocket_connections, http_connections, connections_per_client",
            limits.clone(),
        );
        let [
            task_groups,
            task_group_messages,
            task_groups_failed,
            registry_loads,
        ] = std::array::from_fn(|_| Counter::default());
        for (name, help, counter) in [
            (
                "task_groups",
                "Group writes of TASKs and PINGs committed",
                &task_groups,
            ),
            (
                "task_group_messages",
                "TASKs and PINGs carried by committed group writes",
                &task_group_messages,
            ),
            (
                "task_groups_failed",
                "Group writes failed (every message in one is answered with an error)",
                &task_groups_failed,
            ),
            (
                "registry_loads",
                "Full reads of the cached pool and validator registry",
                &registry_loads,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        let money_units = Family::<MoneyLabels, Gauge>::default();
        registry.register(
            "money_units",
            "Money over the whole database in smallest units (1e-8 coin): received, credited (= pending + in_flight + paid + fees_spent), pending, in_flight (in payout batches not yet in a block), paid, fees_spent; as of stats_as_of_seconds",
            money_units.clone(),
        );
        let last_scanned_height = Gauge::default();
        registry.register(
            "last_scanned_height",
            "The last block the rewards job scanned",
            last_scanned_height.clone(),
        );
        let chain_height_seen = Gauge::default();
        registry.register(
            "chain_height_seen",
            "The highest block the chain answered the rewards job's last request with (the chain reached at least this far)",
            chain_height_seen.clone(),
        );
        let stats_as_of_seconds = Gauge::default();
        registry.register(
            "stats_as_of_seconds",
            "When the rewards or payouts job last refreshed the money totals (Unix time)",
            stats_as_of_seconds.clone(),
        );
        let job_last_run_start_seconds = Family::<JobLabels, Gauge>::default();
        registry.register(
            "job_last_run_start_seconds",
            "Start of each job's newest run (Unix time)",
            job_last_run_start_seconds.clone(),
        );
        let job_last_run_duration_seconds =
            Family::<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "job_last_run_duration_seconds",
            "How long each job's newest finished run took",
            job_last_run_duration_seconds.clone(),
        );
        let job_last_run_failed = Family::<JobLabels, Gauge>::default();
        registry.register(
            "job_last_run_failed",
            "1 when each job's newest finished run failed",
            job_last_run_failed.clone(),
        );
        let job_last_run_blocked = Family::<JobLabels, Gauge>::default();
        registry.register(
            "job_last_run_blocked",
            "1 when each job's newest finished run was blocked: it could not do its work (fee not covered, wallet short, start height above the chain's tip); its jobRuns record says why",
            job_last_run_blocked.clone(),
        );
        let job_last_run_rate_limited_seconds =
            Family::<JobLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "job_last_run_rate_limited_seconds",
            "Seconds each job's newest finished run spent waiting out the chain's rate limits (HTTP 429; rewards and payouts on one address share them)",
            job_last_run_rate_limited_seconds.clone(),
        );
        let job_consecutive_failures = Family::<JobLabels, Gauge>::default();
        registry.register(
            "job_consecutive_failures",
            "Failed runs of each job since its newest success (of its newest 20 runs)",
            job_consecutive_failures.clone(),
        );
        let job_last_success_seconds = Family::<JobLabels, Gauge>::default();
        registry.register(
            "job_last_success_seconds",
            "End of each job's newest successful run (Unix time)",
            job_last_success_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            money_units,
            last_scanned_height,
            chain_height_seen,
            stats_as_of_seconds,
            job_last_run_start_seconds,
            job_last_run_duration_seconds,
            job_last_run_failed,
            job_last_run_blocked,
            job_last_run_rate_limited_seconds,
            job_consecutive_failures,
            job_last_success_seconds,
            task_groups,
            task_group_messages,
            task_groups_failed,
            registry_loads,
            refused_http_connections,
            refused_proxy_headers,
            connections_cut,
            limits,
            payouts_in_flight,
            payouts_oldest_unconfirmed_seconds,
            payouts_held_balances,
            wallet_foreign_spends,
            wallet_foreign_spend_units,
            open_connections,
            refused_connections,
            messages,
            http_requests,
            http_latency,
        }
    }
}

impl Metrics {
    /// Records a limit in force.
    pub fn set_limit(&self, limit: &str, value: u64) {
        self.limits
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Sets the payouts gauges from what the database shows.
    pub fn set_payouts(&self, health: &minerpool_core::store::payouts::PayoutsHealth) {
        self.payouts_in_flight.set(health.in_flight as i64);
        let age = health.oldest_signed_at.map_or(0, |signed| {
            (bson::DateTime::now().timestamp_millis() - signed.timestamp_millis()).max(0) / 1000
        });
        self.payouts_oldest_unconfirmed_seconds.set(age);
        self.payouts_held_balances.set(health.held as i64);
    }

    /// Sets the foreign spends gauges from what the database shows.
    pub fn set_foreign_spends(&self, health: &minerpool_core::store::spends::ForeignSpendsHealth) {
        self.wallet_foreign_spends
            .set(i64::try_from(health.unresolved).unwrap_or(i64::MAX));
        self.wallet_foreign_spend_units.set(health.units);
    }

    /// Sets the money gauges from the stats the jobs refresh.
    pub fn set_totals(&self, totals: &minerpool_core::store::ledger::totals::Totals) {
        for (kind, units) in [
            ("received", totals.received),
            ("credited", totals.credited),
            ("pending", totals.pending),
            ("in_flight", totals.in_flight),
            ("paid", totals.paid),
            ("fees_spent", totals.fees_spent),
        ] {
            self.money_units
                .get_or_create(&MoneyLabels {
                    kind: kind.to_owned(),
                })
                .set(units);
        }
        if let Some(height) = totals.last_scanned_height {
            self.last_scanned_height.set(height);
        }
        if let Some(height) = totals.chain_height {
            self.chain_height_seen.set(height);
        }
        if let Some(as_of) = totals.as_of {
            self.stats_as_of_seconds
                .set(as_of.timestamp_millis() / 1000);
        }
    }

    /// Sets one job's gauges from its newest runs; a gauge with nothing to show is left out.
    pub fn set_job_health(&self, job: &str, health: &minerpool_core::store::runs::JobHealth) {
        let labels = JobLabels {
            minerpool_job: job.to_owned(),
        };
        let seconds = |time: bson::DateTime| time.timestamp_millis() / 1000;
        if let Some(start) = health.last_start {
            self.job_last_run_start_seconds
                .get_or_create(&labels)
                .set(seconds(start));
        }
        if let Some(duration) = health.last_duration {
            self.job_last_run_duration_seconds
                .get_or_create(&labels)
                .set(duration.as_secs_f64());
        }
        if health.last_start.is_some() {
            self.job_last_run_failed
                .get_or_create(&labels)
                .set(i64::from(health.last_failed));
            self.job_last_run_blocked
                .get_or_create(&labels)
                .set(i64::from(health.last_blocked));
            self.job_consecutive_failures
                .get_or_create(&labels)
                .set(health.consecutive_failures as i64);
        }
        if let Some(waited) = health.last_rate_limited_seconds {
            self.job_last_run_rate_limited_seconds
                .get_or_create(&labels)
                .set(waited);
        }
        if let Some(success) = health.last_success {
            self.job_last_success_seconds
                .get_or_create(&labels)
                .set(seconds(success));
        }
    }

    /// Brings the intake's counters up to its totals (they only grow).
    pub fn set_intake(&self, intake: &minerpool_core::store::intake::front::Intake) {
        let catch_up = |counter: &Counter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        let totals = intake.group_totals();
        catch_up(&self.task_groups, totals.committed);
        catch_up(&self.task_group_messages, totals.messages);
        catch_up(&self.task_groups_failed, totals.failed);
        if let Some(registry) = intake.registry() {
            catch_up(&self.registry_loads, registry.loads());
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn message(&self, kind: &str, protocol: &str, outcome: &str) {
        self.messages
            .get_or_create(&MessageLabels {
                kind: kind.to_owned(),
                protocol: protocol.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}
