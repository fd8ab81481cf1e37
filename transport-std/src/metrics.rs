//! Metrics: the core's stats table rendered in the Prometheus text format
//! (with `prometheus-client`), served over HTTP (`tiny_http`) at `/metrics`,
//! with `/healthz` answering whether the broker loop responds; a broker
//! with a PostgreSQL source adds that source's counters
//! ([`SourceMetrics`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use flagpost_core::broker::{Metric, Stats};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::postgres::SourceMetrics;
use crate::server::{BrokerHandle, ServeError};

type Labels = Vec<(&'static str, &'static str)>;
/// One value of a metric, with its label if any.
type Entry = (Option<(&'static str, &'static str)>, u64);

/// Renders `stats` in the Prometheus text exposition format.
pub fn render(stats: &Stats) -> String {
    render_all(stats, None)
}

/// Renders `stats` and, if the broker has a PostgreSQL source, its
/// counters (`flagpost_postgres_*`).
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
    for (metric, entries) in groups {
        // prometheus-client appends `_total` to counters itself.
        let name = metric.name.strip_suffix("_total").unwrap_or(metric.name);
        let labelled = entries.iter().any(|(l, _)| l.is_some());
        match (metric.gauge, labelled) {
            (false, false) => {
                let c = Counter::<u64, AtomicU64>::default();
                c.inc_by(entries.first().map_or(0, |e| e.1));
                registry.register(name, metric.help, c);
            }
            (true, false) => {
                let g = Gauge::<u64, AtomicU64>::default();
                g.set(entries.first().map_or(0, |e| e.1));
                registry.register(name, metric.help, g);
            }
            (false, true) => {
                let family = Family::<Labels, Counter<u64, AtomicU64>>::default();
                for (label, value) in &entries {
                    family
                        .get_or_create(&label.iter().copied().collect())
                        .inc_by(*value);
                }
                registry.register(name, metric.help, family);
            }
            (true, true) => {
                let family = Family::<Labels, Gauge<u64, AtomicU64>>::default();
                for (label, value) in &entries {
                    family
                        .get_or_create(&label.iter().copied().collect())
                        .set(*value);
                }
                registry.register(name, metric.help, family);
            }
        }
    }
    if let Some(source) = postgres {
        source.register(&mut registry);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
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
        MetricsServer::serve(addr, "flagpost-metrics", render).map_err(|e| ServeError::Metrics {
            addr,
            message: e.to_string(),
        })
    }

    /// Serves whatever `render` gives at `/metrics` (OpenMetrics text), and
    /// whether it succeeds at `/healthz`, on `addr` (port 0: any free
    /// port), from a thread named `thread`.
    pub fn serve(addr: SocketAddr, thread: &str, render: Render) -> std::io::Result<MetricsServer> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| std::io::Error::other(format!("metrics on {addr}: {e}")))?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let worker = server.clone();
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                for request in worker.incoming_requests() {
                    let (status, content_type, body) = match (request.url(), render()) {
                        ("/metrics", Ok(text)) => (
                            200,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            text,
                        ),
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
    fn accept_failures_are_rendered() {
        let mut stats = Stats::default();
        stats.transport.accept_no_fds = 7;
        stats.transport.accept_errors = 2;
        let text = render(&stats);
        assert!(
            text.contains("# TYPE flagpost_accept_no_fds counter"),
            "{text}"
        );
        assert!(text.contains("flagpost_accept_no_fds_total 7"), "{text}");
        assert!(text.contains("flagpost_accept_errors_total 2"), "{text}");
    }
}
