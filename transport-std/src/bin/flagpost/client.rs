//! The one-shot client subcommands: `notify` (fire and forget, or
//! confirmed), `stats` (the broker's counters) and `ping` (one round trip,
//! like `pg_isready`). Each says on stderr what it knows and what it
//! cannot, and fails with a distinct exit code for each cause.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use flagpost_std::core::broker::Stats;
use flagpost_std::core::listener::{ListenerConfig, ListenerSession, SessionError, StatsClient};
use flagpost_std::core::wire::{CloseReason, FrameReader, MAX_FRAME_LEN};
use flagpost_std::core::{Kind, Notification};
use flagpost_std::{Notifier, NotifyError};

use crate::broker::{self, auth_failure, not_a_broker, read_failure, refusal};
use crate::{
    key_arg, Failure, NotifyArgs, NotifyKind, PingArgs, StatsArgs, EXIT_CONFIG, EXIT_NO_ANSWER,
    EXIT_OTHER, EXIT_UNREACHABLE,
};

/// How long `notify` without `--confirm` waits for a port unreachable
/// (it returns as soon as one comes; a live broker sends nothing back, so
/// then the whole wait is spent). On loopback Linux queues the answer
/// before the send returns: the wait there is only a margin.
fn refusal_wait(addr: std::net::SocketAddr) -> Duration {
    if addr.ip().is_loopback() {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(50)
    }
}

pub(crate) fn notify(args: NotifyArgs) -> Result<(), Failure> {
    let kind = match args.kind {
        NotifyKind::Status => Kind::Status,
        NotifyKind::NonStatus => Kind::NonStatus,
        NotifyKind::ChannelUpdate => Kind::ChannelUpdate,
        NotifyKind::ChannelShutdown => Kind::ChannelShutdown,
    };
    let notification = Notification::new(kind, args.channel)
        .map_err(|e| Failure::new(EXIT_CONFIG, format!("{e}: add --channel ID")))?;
    let addr = broker::resolve(&args.broker)?;
    let mut builder = Notifier::builder();
    if let Some(key) = key_arg(args.key_file.as_deref())? {
        builder = builder.key(key);
    }
    let notifier = builder.build(addr).map_err(notify_failure)?;
    if args.confirm {
        let result = notifier
            .notify_confirmed(notification, args.count, args.timeout)
            .map_err(notify_failure)?;
        let attempts = 1 + notifier.stats().retransmissions;
        eprintln!("acknowledged: {result:?} after {attempts} datagram(s)");
        return Ok(());
    }
    notifier.notify(notification, args.count);
    let handed = notifier.flush(Duration::from_secs(1));
    // A refused port answers at once (ICMP): wait briefly for it.
    notifier
        .check_refused(refusal_wait(addr))
        .map_err(notify_failure)?;
    let stats = notifier.stats();
    // the probe (a second copy a few ms later) goes out at the drop
    drop(notifier);
    if stats.send_errors > 0 {
        return Err(notify_failure(NotifyError::Unreachable { broker: addr }));
    }
    if !handed {
        return Err(Failure::new(
            EXIT_OTHER,
            format!("could not send to {addr}"),
        ));
    }
    // Fire and forget: nothing comes back, so say what is not known.
    eprintln!(
        "sent to {addr}: delivery not confirmed (a lost datagram, or a broker that is down or has another key, looks the same; --confirm waits for the broker's ack)"
    );
    Ok(())
}

fn notify_failure(e: NotifyError) -> Failure {
    let code = match e {
        NotifyError::Unreachable { .. } => EXIT_UNREACHABLE,
        NotifyError::Timeout { .. } => EXIT_NO_ANSWER,
        NotifyError::Resolve(_) => EXIT_CONFIG,
        NotifyError::Io(_) => EXIT_OTHER,
    };
    Failure::new(code, e)
}

/// A core instant from a process-local base.
fn core_now(base: Instant) -> flagpost_std::core::Instant {
    flagpost_std::core::Instant::from_micros(
        u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX),
    )
}

pub(crate) fn ping(args: PingArgs) -> Result<(), Failure> {
    let addr = broker::resolve(&args.broker)?;
    let mut session = ListenerSession::new(ListenerConfig::new(None));
    if let Some(key) = key_arg(args.key_file.as_deref())? {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed)
            .map_err(|e| Failure::new(EXIT_OTHER, format!("no random seed: {e}")))?;
        session = session.with_key(key, seed);
    }
    let started = Instant::now();
    let mut stream = broker::connect(addr)?;
    session.connected(core_now(started));
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    let rtt = 'welcome: loop {
        while let Some(n) = session.poll_transmit(core_now(started), &mut buf) {
            stream
                .write_all(&buf[..n])
                .map_err(|e| broker::io_failure(addr, &e))?;
        }
        let n = match stream.read(reader.unfilled()) {
            Ok(0) => {
                return Err(not_a_broker(
                    addr,
                    "it closed the connection without a welcome",
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(addr, &e)),
        };
        reader.filled(n);
        while let Some(frame) = reader.next_frame() {
            let outcome = frame
                .map_err(SessionError::Malformed)
                .and_then(|f| session.handle_frame(core_now(started), f));
            match outcome {
                Ok(_) if session.welcomes() > 0 => break 'welcome started.elapsed(),
                Ok(_) => {}
                Err(SessionError::Auth(e)) => return Err(auth_failure(e)),
                Err(SessionError::Closed(reason)) => return Err(refusal(addr, reason)),
                Err(e) => return Err(not_a_broker(addr, &e.to_string())),
            }
        }
    };
    // Say goodbye, so the broker counts a normal close.
    session.close();
    while let Some(n) = session.poll_transmit(core_now(started), &mut buf) {
        let _ = stream.write_all(&buf[..n]);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    println!(
        "{addr}: accepting listeners (round trip {:.3} ms)",
        rtt.as_secs_f64() * 1e3
    );
    Ok(())
}

pub(crate) fn stats(args: StatsArgs) -> Result<(), Failure> {
    let addr = broker::resolve(&args.broker)?;
    let mut client = StatsClient::new();
    if let Some(key) = key_arg(args.key_file.as_deref())? {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed)
            .map_err(|e| Failure::new(EXIT_OTHER, format!("no random seed: {e}")))?;
        client = client.with_key(key, seed);
    }
    let mut stream = broker::connect(addr)?;
    let mut stats = Stats::default();
    let mut received = 0usize;
    let mut reader = FrameReader::<MAX_FRAME_LEN>::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    'read: loop {
        // the request, then (with a key) the proof
        while let Some(n) = client.poll_transmit(&mut buf) {
            stream
                .write_all(&buf[..n])
                .map_err(|e| broker::io_failure(addr, &e))?;
        }
        let n = match stream.read(reader.unfilled()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(addr, &e)),
        };
        reader.filled(n);
        while let Some(frame) = reader.next_frame() {
            match frame
                .map_err(SessionError::Malformed)
                .and_then(|f| client.handle_frame(f))
            {
                Ok(Some(s)) => {
                    received += 1;
                    stats.set(s.index, s.value);
                }
                Ok(None) if client.is_done() => break 'read,
                Ok(None) => {}
                Err(SessionError::Auth(e)) => return Err(auth_failure(e)),
                Err(SessionError::Closed(reason)) if received == 0 => {
                    return Err(refusal(addr, reason))
                }
                Err(SessionError::Closed(reason)) => {
                    return Err(Failure::new(
                        EXIT_OTHER,
                        format!("the broker closed the connection mid-table: {reason}"),
                    ))
                }
                Err(e) if received == 0 => return Err(not_a_broker(addr, &e.to_string())),
                Err(e) => {
                    return Err(Failure::new(
                        EXIT_OTHER,
                        format!("the broker's stats reply is malformed: {e}"),
                    ))
                }
            }
        }
    }
    if received == 0 {
        // never a screen of zeros: no counter came, so none is known
        return Err(if client.is_done() {
            refusal(addr, CloseReason::Normal)
        } else {
            not_a_broker(addr, "it closed the connection without an answer")
        });
    }
    if !client.is_done() {
        return Err(Failure::new(
            EXIT_OTHER,
            "the broker's stats reply was cut short",
        ));
    }
    let mut out = io::stdout().lock();
    if args.json {
        let _ = writeln!(out, "{}", flagpost_std::stats_json::entries(&stats));
    } else {
        stats.visit(|_, m, v| {
            let _ = match m.label {
                Some((k, l)) => writeln!(out, "{}{{{k}=\"{l}\"}} {v}", m.name),
                None => writeln!(out, "{} {v}", m.name),
            };
        });
    }
    Ok(())
}
