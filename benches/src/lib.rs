//! Flagpost's benchmarks and load generators.
//!
//! * `benches/micro.rs` — criterion micro-benchmarks of the hot paths, each
//!   beside its floor (a bare atomic load or swap) in the same run.
//! * `flagpost-bench` — the loopback load generator: wake latency across
//!   processes (Flagpost and its physical floor, a bare UDP→TCP relay) and
//!   the other end-to-end figures, printed as a table and, with `--write`,
//!   recorded in a [`report::Report`] that becomes the generated section of
//!   `BENCHMARKS.md` and its PNG charts.
//!
//! [`clock`] is the cross-process clock the latency figures use: every
//! process reads the same `CLOCK_MONOTONIC`, so a child can stamp the moment
//! it woke and the parent subtracts the moment it sent.
#![deny(missing_docs)]

pub use flagpost_core as core;

#[cfg(target_os = "linux")]
pub mod farm;
#[cfg(target_os = "linux")]
pub mod peers;
pub mod report;

/// The shared monotonic clock, in nanoseconds.
#[cfg(target_os = "linux")]
pub mod clock {
    /// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes.
    pub fn now_ns() -> u64 {
        // CLOCK_MONOTONIC cannot fail on Linux; 0 would only skew one sample.
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
            u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(t.tv_nsec()).unwrap_or(0)
        })
    }
}

/// A loopback socket for children's reports (wake stamps, delivery
/// counts), with its address. A hot-loop round reports hundreds of wakes
/// while the bench thread is busy calling; the default receive buffer
/// (about 270 small datagrams) then dropped the last reports, which are
/// the ones measured. So the buffer is forced to 16 MiB (root), else asked
/// for (capped by `net.core.rmem_max`), with a note once if it stays small.
#[cfg(target_os = "linux")]
pub fn report_socket() -> std::io::Result<(std::net::UdpSocket, std::net::SocketAddr)> {
    const WANT: usize = 16 << 20;
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let forced = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &WANT);
    if forced.is_err() {
        let _ = socket2::SockRef::from(&s).set_recv_buffer_size(WANT);
    }
    let granted = socket2::SockRef::from(&s).recv_buffer_size().unwrap_or(0);
    if granted < 1 << 20 {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!("note: the report socket got a {granted}-byte receive buffer; hot-loop rounds may drop their last reports (run as root, or raise net.core.rmem_max)");
        });
    }
    let addr = s.local_addr()?;
    Ok((s, addr))
}

/// Latency statistics of one measurement.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Samples taken.
    pub samples: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Largest sample, µs.
    pub max_us: f64,
}

/// An empty histogram for latencies in nanoseconds (1 ns to 10 s, three
/// significant digits); every wake-latency sample goes into one of these, so
/// blocks of the same measurement can be merged.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds")
}

impl Latency {
    /// Summarises samples in nanoseconds.
    pub fn from_ns(samples: impl IntoIterator<Item = u64>) -> Latency {
        let mut h = latency_histogram();
        for ns in samples {
            let _ = h.record(ns.max(1));
        }
        Latency::from_histogram(&h)
    }

    /// Summarises a histogram of nanoseconds.
    pub fn from_histogram(h: &hdrhistogram::Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            samples: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// One wake-latency measurement: its statistics, the reports that never
/// arrived, and the samples themselves (nanoseconds), which the report's
/// latency CDF chart draws.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The statistics of `histogram`.
    pub latency: Latency,
    /// Triggers whose wake report never arrived (not in `histogram`).
    pub lost: u32,
    /// Every sample, in nanoseconds.
    pub histogram: hdrhistogram::Histogram<u64>,
}

impl Measured {
    /// Summarises `histogram` (nanoseconds) with `lost` reports missing.
    pub fn new(histogram: hdrhistogram::Histogram<u64>, lost: u32) -> Measured {
        Measured {
            latency: Latency::from_histogram(&histogram),
            lost,
            histogram,
        }
    }

    /// Adds the samples of another block of the same measurement.
    pub fn merge(&mut self, other: Measured) {
        // Same bounds on both sides: `add` cannot fail for lack of range.
        let _ = self.histogram.add(&other.histogram);
        self.lost += other.lost;
        self.latency = Latency::from_histogram(&self.histogram);
    }
}
