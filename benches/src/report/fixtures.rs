//! Test data shared by the report's tests: a machine, latency samples and a
//! peers' run with Flagpost and one peer.

use hdrhistogram::Histogram;

use super::{Machine, PeerRun, SystemFigures, Throughput};
use crate::Measured;

pub(super) fn machine() -> Machine {
    Machine {
        rows: vec![
            ("CPU".into(), "Test CPU, 2 logical CPUs".into()),
            ("command".into(), "`flagpost-bench all --quick`".into()),
        ],
    }
}

pub(super) fn measured(values_us: &[u64]) -> Measured {
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    for v in values_us {
        h.record(v * 1000).expect("in range");
    }
    Measured::new(h, 0)
}

pub(super) fn throughput(subscribers: usize, rate: f64) -> Result<Throughput, String> {
    Ok(Throughput {
        subscribers,
        publishes_per_s: rate,
        deliveries_per_s: rate * subscribers as f64,
        cpu_s_per_million: 1.0,
        sub_cpu_s_per_million: 2.0,
        lost: 0,
        stalled: false,
    })
}

pub(super) fn peer_run() -> PeerRun {
    PeerRun {
        samples: 200,
        secs: 0.5,
        idle: 50,
        systems: vec![
            SystemFigures {
                system: "Flagpost".into(),
                flagpost: true,
                version: "this workspace".into(),
                wake: Ok(measured(&[30, 35, 40])),
                throughput: vec![throughput(1, 300_000.0), throughput(100, 100_000.0)],
                idle_bytes: Ok(320.0),
            },
            SystemFigures {
                system: "Redis pub/sub".into(),
                flagpost: false,
                version: "Redis server v=7.0.15".into(),
                wake: Ok(measured(&[60, 70, 80])),
                throughput: vec![throughput(1, 1_000_000.0), Err("a | b".into())],
                idle_bytes: Ok(10_240.0),
            },
        ],
        missing: vec!["nats".into()],
    }
}
