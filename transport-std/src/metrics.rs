//! Metrics: the core's stats table rendered with `prometheus-client`,
//! beside `flagpost_build_info` and the process's `process_*` metrics
//! ([`process`]), served over HTTP (`tiny_http`) at `/metrics` in
//! OpenMetrics or the classic text format as the scrape's `Accept` header
//! asks ([`Format`]), with `/healthz` answering whether the broker loop
//! responds; a broker with a PostgreSQL source adds that source's counters
//! ([`SourceMetrics`]).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use flagpost_core::broker::{Metric, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

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

/// The HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// What a metrics page answers: `Ok(text)` in the exposition format, or
/// `Err(why)` (served as 503, and `/healthz` says it too).
pub type Render = Box<dyn Fn() -> Result<String, String> + Send>;

impl MetricsServer {
    /// Serves `/metrics` and `/healthz` for `broker` on `addr`.
    pub fn start(addr: SocketAddr, broker: BrokerHandle) -> Result<MetricsServer, ServeError> {
        let render: Render = Box::new(move || {
            let stats = broker.stats().map_err(|e| e.to_string())?;
            Ok(render_all(&stats, broker.postgres_metrics()))
        });
        MetricsServer::serve(addr, "flagpost-metrics", render)
            .map_err(|source| ServeError::Metrics { addr, source })
    }

    /// Serves whatever `render` gives (OpenMetrics text, as
    /// `prometheus-client` encodes it) at `/metrics`, in the format the
    /// request's `Accept` header negotiates ([`Format`]), and whether it
    /// succeeds at `/healthz`, on `addr` (port 0: any free port), from a
    /// thread named `thread`. Query strings are ignored.
    pub fn serve(addr: SocketAddr, thread: &str, render: Render) -> std::io::Result<MetricsServer> {
        // bound here, so that a port in use keeps its error kind
        let listener = std::net::TcpListener::bind(addr)?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| std::io::Error::other(format!("metrics on {addr}: {e}")))?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let worker = server.clone();
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                for request in worker.incoming_requests() {
                    // the query string is ignored: `/metrics?x=1` is `/metrics`
                    let path = request.url().split('?').next().unwrap_or("");
                    let accept = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Accept"))
                        .map(|h| h.value.as_str());
                    let format = Format::negotiate(accept);
                    let (status, content_type, body) = match (path, render()) {
                        ("/metrics", Ok(text)) => {
                            (200, format.content_type(), format.convert(text))
                        }
                        ("/healthz", Ok(_)) => (200, "text/plain", "ok\n".to_owned()),
                        ("/metrics" | "/healthz", Err(e)) => (503, "text/plain", format!("{e}\n")),
                        _ => (
                            404,
                            "text/plain",
                            "not found: try /metrics or /healthz\n".to_owned(),
                        ),
                    };
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        content_type.as_bytes(),
                    );
                    let mut response =
                        tiny_http::Response::from_string(body).with_status_code(status);
                    if let Ok(h) = header {
                        response = response.with_header(h);
                    }
                    let _ = request.respond(response);
                }
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
