//! Rate-limited logging: at most one line per second per kind of event.

/// At most one log line per second per kind of event, with a count of what
/// was suppressed.
#[derive(Debug, Default)]
pub(super) struct RateLimit {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl RateLimit {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub(super) fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < std::time::Duration::from_secs(1) => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
