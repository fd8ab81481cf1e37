//! Metrics: the core's stats table rendered with `prometheus-client`,
//! beside `flagpost_build_info` and the process's `process_*` metrics
//! ([`process`]), served over HTTP (the server of [`crate::http`]) at
//! `/metrics` in OpenMetrics or the classic text format as the scrape's
//! `Accept` header asks ([`Format`]), with `/healthz` answering whether the
//! broker loop responds; a broker with a PostgreSQL source adds that
//! source's counters ([`SourceMetrics`]). [`MetricsServer`] is that
//! endpoint, which also serves the broker's events, stats and dashboard.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use flagpost_core::broker::{Metric, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::config::BrokerConfig;
use crate::http::{HttpKeys, Options};
use crate::keyfile::read_keyring;
use crate::postgres::SourceMetrics;
use crate::server::{BrokerHandle, ServeError};

mod format;
pub mod process;

pub use format::Format;

type Labels = Vec<(&'static str, &'static str)>;
/// One value of a metric, with its label if any.
type Entry = (Option<(&'static str, &'static str)>, u64);

/// Renders `stats` in the OpenMetrics text format, with
/// `flagpost_build_info` and the process metrics.
pub fn render(stats: &Stats) -> String {
    render_all(stats, None)
}

/// Renders `stats` and, if the broker has a PostgreSQL source, its
/// counters (`flagpost_postgres_*`), with `flagpost_build_info` and the
/// process metrics, in the OpenMetrics text format.
///
/// A table entry without a label that shares its name with labelled ones
/// (`flagpost_datagrams_total`) is their sum, kept for the wire's `stat`
/// frames; the page leaves it out, so that `sum()` over the family counts
/// each datagram once.
pub fn render_all(stats: &Stats, postgres: Option<&SourceMetrics>) -> String {
    let mut registry = Registry::default();
    // Group the table's entries by metric name, keeping their order.
    let mut groups: Vec<(Metric, Vec<Entry>)> = Vec::new();
    stats.visit(
        |_, metric, value| match groups.iter_mut().find(|(m, _)| m.name == metric.name) {
            Some((_, entries)) => entries.push((metric.label, value)),
            None => groups.push((metric, vec![(metric.label, value)])),
        },
    );
    for (metric, mut entries) in groups {
        let labelled = entries.iter().any(|(l, _)| l.is_some());
        if labelled {
            entries.retain(|(l, _)| l.is_some());
        }
        // prometheus-client appends `_total` to counters and the unit to
        // the name itself.
        let name = metric.name.strip_suffix("_total").unwrap_or(metric.name);
        let (name, unit) = match name.strip_suffix("_bytes") {
            Some(stem) => (stem, Some(Unit::Bytes)),
            None => (name, None),
        };
        match (metric.gauge, labelled) {
            (false, false) => {
                let c = Counter::<u64, AtomicU64>::default();
                c.inc_by(entries.first().map_or(0, |e| e.1));
                add(&mut registry, name, metric.help, unit.clone(), c);
            }
            (true, false) => {
                let g = Gauge::<u64, AtomicU64>::default();
                g.set(entries.first().map_or(0, |e| e.1));
                add(&mut registry, name, metric.help, unit.clone(), g);
            }
            (false, true) => {
                let family = Family::<Labels, Counter<u64, AtomicU64>>::default();
                for (label, value) in &entries {
                    family
                        .get_or_create(&label.iter().copied().collect())
                        .inc_by(*value);
                }
                add(&mut registry, name, metric.help, unit.clone(), family);
            }
            (true, true) => {
                let family = Family::<Labels, Gauge<u64, AtomicU64>>::default();
                for (label, value) in &entries {
                    family
                        .get_or_create(&label.iter().copied().collect())
                        .set(*value);
                }
                add(&mut registry, name, metric.help, unit.clone(), family);
            }
        }
    }
    if let Some(source) = postgres {
        source.register(&mut registry);
    }
    register_build_info(&mut registry);
    process::register(&mut registry);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// Registers `m` under `name`, with `unit` if any.
fn add(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    m: impl prometheus_client::registry::Metric,
) {
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, m),
        None => registry.register(name, help, m),
    }
}

/// `flagpost_build_info{version, target_os, target_arch} 1` (an OpenMetrics
/// info metric; a gauge in the classic format).
fn register_build_info(registry: &mut Registry) {
    let info = prometheus_client::metrics::info::Info::new(vec![
        ("version", env!("CARGO_PKG_VERSION")),
        ("target_os", std::env::consts::OS),
        ("target_arch", std::env::consts::ARCH),
    ]);
    registry.register(
        "flagpost_build",
        "Flagpost build: version and platform as labels",
        info,
    );
}

/// The HTTP endpoint (the server of [`crate::http`]); stops when dropped,
/// closing every connection.
pub struct MetricsServer {
    server: crate::http::Server,
    keys: HttpKeys,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.server.local_addr())
            .finish()
    }
}

/// What a metrics page answers: `Ok(text)` in the exposition format, or
/// `Err(why)` (served as 503, and `/healthz` says it too).
pub type Render = Box<dyn Fn() -> Result<String, String> + Send>;

impl MetricsServer {
    /// Serves `/metrics`, `/healthz`, `/events`, `/stats.json` and the
    /// dashboard for `broker` on `addr`, without a key (`/events` and
    /// `/stats.json` are open: see [`start_config`](Self::start_config)).
    pub fn start(addr: SocketAddr, broker: BrokerHandle) -> Result<MetricsServer, ServeError> {
        MetricsServer::start_with(addr, broker, HttpKeys::default(), &BrokerConfig::default())
    }

    /// [`start`](Self::start) as `config` asks: with its key files read
    /// (`/events` and `/stats.json` then need the token, see
    /// [`crate::http::token`]), its `stuck_timeout` for SSE clients that
    /// stop reading and its `listener_send_buffer` for their sockets.
    pub fn start_config(
        addr: SocketAddr,
        broker: BrokerHandle,
        config: &BrokerConfig,
    ) -> Result<MetricsServer, ServeError> {
        let keys = match &config.key_file {
            Some(path) => Some(read_keyring(path, config.previous_key_file.as_deref())?),
            None => None,
        };
        let keys = HttpKeys::new(keys);
        keys.set_allow_listeners(&config.allow_listeners);
        MetricsServer::start_with(addr, broker, keys, config)
    }

    fn start_with(
        addr: SocketAddr,
        broker: BrokerHandle,
        keys: HttpKeys,
        config: &BrokerConfig,
    ) -> Result<MetricsServer, ServeError> {
        let page = broker.clone();
        let render: Render = Box::new(move || {
            let stats = page
                .stats_within(crate::http::BROKER_ANSWER)
                .map_err(|e| e.to_string())?
                .ok_or_else(crate::http::no_answer)?;
            Ok(render_all(&stats, page.postgres_metrics()))
        });
        let options = Options {
            render,
            broker: Some(broker),
            keys: keys.clone(),
            stuck_timeout: config.stuck_timeout,
            send_buffer: config.listener_send_buffer,
            started: std::time::Instant::now(),
            keep_alive: crate::http::KEEP_ALIVE,
        };
        let server = crate::http::Server::start(addr, "flagpost-http", options)
            .map_err(|source| ServeError::Metrics { addr, source })?;
        Ok(MetricsServer { server, keys })
    }

    /// Serves whatever `render` gives (OpenMetrics text, as
    /// `prometheus-client` encodes it) at `/metrics`, in the format the
    /// request's `Accept` header negotiates ([`Format`]), and whether it
    /// succeeds at `/healthz`, on `addr` (port 0: any free port), from a
    /// thread named `thread`. Query strings are ignored. (`/events` and
    /// `/stats.json` answer 404: there is no broker.)
    pub fn serve(addr: SocketAddr, thread: &str, render: Render) -> std::io::Result<MetricsServer> {
        let keys = HttpKeys::default();
        let options = Options {
            render,
            broker: None,
            keys: keys.clone(),
            stuck_timeout: std::time::Duration::ZERO,
            send_buffer: 0,
            started: std::time::Instant::now(),
            keep_alive: crate::http::KEEP_ALIVE,
        };
        let server = crate::http::Server::start(addr, thread, options)?;
        Ok(MetricsServer { server, keys })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The keys whose tokens `/events` and `/stats.json` take: replace
    /// them (after a `SIGHUP` re-read the key files) with
    /// [`HttpKeys::set`]; requests that come next use the new ones.
    pub fn keys(&self) -> HttpKeys {
        self.keys.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut stats = Stats::default();
        stats.transport.accept_no_fds = 7;
        stats.transport.bytes_in = 70;
        stats.datagrams = 3;
        stats.datagrams_by_kind = [2, 1, 0, 0];
        let text = render(&stats);
        for line in [
            "# TYPE flagpost_connections_refused counter",
            "flagpost_connections_refused_total{reason=\"no_fds\"} 7",
            "# UNIT flagpost_received_bytes bytes",
            "flagpost_received_bytes_total 70",
            "flagpost_datagrams_total{kind=\"status\"} 2",
            "flagpost_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // the unlabelled sum stays on the wire, off the page
        assert!(!text.contains("flagpost_datagrams_total 3"), "{text}");
        #[cfg(target_os = "linux")]
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        let classic = Format::Text.convert(text);
        assert!(
            classic.contains("# TYPE flagpost_received_bytes_total counter\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }
}
