//! File descriptors: the broker raises its open-files limit as far as it
//! may, says how many listeners that limit allows, and keeps one spare
//! descriptor so that running out of them still lets it tell a connecting
//! listener why it is refused, instead of leaving it in the backlog.
//!
//! When `accept` fails with `EMFILE`/`ENFILE` the connection stays queued,
//! and with edge-triggered readiness nothing would ever report it again; a
//! level-triggered loop would spin on it instead. The broker closes the
//! spare (`/dev/null`), accepts the connection with the descriptor so
//! freed, writes it a close frame (*too many listeners*), closes it and
//! reopens the spare; if the spare cannot be reopened, it stops accepting
//! until a connection closes or a retry timer fires.

use std::fs::File;
use std::io;

/// Descriptors kept beyond the ones open when the broker starts: the
/// metrics endpoint's socket and its connections, stats clients, log files,
/// whatever else the host process opens later.
pub(crate) const MARGIN: usize = 32;

/// How long accepting stays paused, when no descriptor can be had, before
/// the broker tries again (a closing connection resumes it sooner).
pub(crate) const RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force (`None` where there is no such limit).
#[cfg(unix)]
pub(crate) fn raise_limit() -> Option<usize> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let as_usize = |v| usize::try_from(v).unwrap_or(usize::MAX);
    if soft >= hard {
        return Some(as_usize(soft));
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(as_usize(hard));
    }
    // macOS refuses more than OPEN_MAX (10,240) per process, even below an
    // unlimited hard limit.
    let open_max = 10_240;
    if soft < open_max && setrlimit(Resource::RLIMIT_NOFILE, open_max, hard).is_ok() {
        return Some(as_usize(open_max));
    }
    Some(as_usize(soft))
}

/// Raises the soft `RLIMIT_NOFILE` (no such limit here).
#[cfg(not(unix))]
pub(crate) fn raise_limit() -> Option<usize> {
    None
}

/// The descriptors this process has open, where the system lists them.
pub(crate) fn open_now() -> Option<usize> {
    if !cfg!(unix) {
        return None;
    }
    ["/proc/self/fd", "/dev/fd"].iter().find_map(|dir| {
        // The listing's own descriptor is in the listing.
        std::fs::read_dir(dir)
            .ok()
            .map(|entries| entries.count().saturating_sub(1))
    })
}

/// How many listener connections fit in `limit` descriptors when `open` are
/// already in use: one each, after [`MARGIN`].
pub(crate) fn listeners_fit(limit: usize, open: usize) -> usize {
    limit.saturating_sub(open).saturating_sub(MARGIN)
}

/// Opens the spare descriptor (Unix: `/dev/null`; elsewhere there is none).
pub(crate) fn open_reserve() -> Option<File> {
    if cfg!(unix) {
        File::open("/dev/null").ok()
    } else {
        None
    }
}

/// Whether an accept failed for want of a descriptor (`EMFILE`, `ENFILE`;
/// `WSAEMFILE` on Windows).
pub(crate) fn exhausted(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        matches!(e.raw_os_error(), Some(c) if c == Errno::EMFILE as i32 || c == Errno::ENFILE as i32)
    }
    #[cfg(windows)]
    {
        e.raw_os_error() == Some(10024)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = e;
        false
    }
}

/// Whether an accept failure belongs to the connection it dequeued (the
/// peer aborted, or a network error Linux passes on from the new socket):
/// the next connection may be accepted at once.
pub(crate) fn per_connection(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted
            | K::ConnectionReset
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::PermissionDenied
    ) {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        // accept(2): "treat them like EAGAIN by retrying"
        let transient = [
            Errno::EPROTO,
            Errno::ENOPROTOOPT,
            Errno::EHOSTDOWN,
            Errno::ENONET,
            Errno::EOPNOTSUPP,
        ];
        if let Some(code) = e.raw_os_error() {
            return transient.iter().any(|t| *t as i32 == code);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_leaves_the_margin_and_never_underflows() {
        assert_eq!(listeners_fit(1024, 10), 1024 - 10 - MARGIN);
        assert_eq!(listeners_fit(20, 10), 0);
        assert_eq!(listeners_fit(0, 10), 0);
    }

    #[cfg(unix)]
    #[test]
    fn exhaustion_is_told_from_other_failures() {
        use nix::errno::Errno;
        assert!(exhausted(&io::Error::from(Errno::EMFILE)));
        assert!(exhausted(&io::Error::from(Errno::ENFILE)));
        assert!(!exhausted(&io::Error::from(Errno::ENOBUFS)));
        assert!(per_connection(&io::Error::from(Errno::ECONNABORTED)));
        assert!(!per_connection(&io::Error::from(Errno::EMFILE)));
        assert!(!per_connection(&io::Error::from(Errno::ENOMEM)));
    }

    #[cfg(unix)]
    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{getrlimit, Resource};
        let limit = raise_limit().unwrap();
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(usize::try_from(soft).unwrap_or(usize::MAX), limit);
        assert!(open_now().unwrap() >= 3);
        assert!(open_reserve().is_some());
    }
}
