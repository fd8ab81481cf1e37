//! `flagpost-bench idle`: the broker's wake-ups and CPU while idle
//! listeners stay connected.

use std::time::Duration;

use flagpost_benches::report::{self, Figure, Report, Rule, Section, Unit};

use crate::Participant;

pub(crate) fn idle(secs: f64, n: usize, report: &mut Report) {
    let broker = Participant::spawn("_broker", &[]);
    let _farm = Participant::spawn(
        "_farm",
        &["flagpost".into(), broker.addr.to_string(), n.to_string()],
    );
    let before = broker.sample();
    std::thread::sleep(Duration::from_secs_f64(secs)); // the measured interval itself
    let after = broker.sample();
    let cpu_s = after.cpu_s - before.cpu_s;
    let wakeups = (after.switches - before.switches) as f64 / secs;
    println!(
        "\nidle: {n} listeners connected for {secs} s: broker CPU {cpu_s:.3} s, {wakeups:.2} wake-ups per second (target ≤ 1, ~0 CPU)"
    );
    report.add(
        Figure::new(
            Section::Idle,
            "broker wake-ups per second",
            wakeups,
            Unit::Plain,
        )
        .target(Rule::AtMost(1.0), "≤ 1 per second"),
    );
    report.add(
        Figure::new(
            Section::Idle,
            "broker CPU",
            cpu_s / secs * 100.0,
            Unit::PercentOfCore,
        )
        .target(Rule::AtMost(0.1), "≈ 0 (≤ 0.1 % of a core)"),
    );
    report.note(
        Section::Idle,
        format!(
            "{} idle listeners connected for {secs} s: {cpu_s:.3} CPU s, {} context switches. CPU comes from `/proc` in 10 ms ticks: one tick is {} % of a core over this run.",
            report::fmt_int(n as u64),
            after.switches - before.switches,
            report::fmt_num(1.0 / secs)
        ),
    );
}
