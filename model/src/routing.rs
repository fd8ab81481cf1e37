//! Routing rules, stated independently of the core: which flags a kind
//! raises ([`kind_flags`], the table in the `notify` docs), which listeners
//! a notification reaches ([`reaches`]), and what a possible loss raises
//! ([`LOSS_FLAGS`]). The listener table ([`crate::table`]) applies them.

use flagpost_core::channel::ChannelId;
use flagpost_core::flags::FlagSet;
use flagpost_core::notify::Kind;

/// What a possible loss (a sequence gap, an unknown sender first seen late,
/// a sender restart, kernel drops reported through `handle_lost`) raises on
/// every listening listener, whatever its channel, whose interest
/// intersects it: status, non-status and channel update (a lost datagram may
/// have been any of them), never channel shutdown (a command is not raised
/// on a guess).
pub const LOSS_FLAGS: FlagSet = FlagSet::from_bits_truncate(0b0111);

/// The flags a notification of `kind` raises: status raises non-status too
/// (a status change is a change); channel kinds raise their own flag.
pub fn kind_flags(kind: Kind) -> FlagSet {
    match kind {
        Kind::Status => FlagSet::from_bits_truncate(0b0011),
        Kind::NonStatus => FlagSet::from_bits_truncate(0b0010),
        Kind::ChannelUpdate => FlagSet::from_bits_truncate(0b0100),
        Kind::ChannelShutdown => FlagSet::from_bits_truncate(0b1000),
    }
}

/// Whether a notification for `target` (`None`: every channel) reaches a
/// listener of `listening` (`None`: every channel): unless both name a
/// channel and the names differ (byte for byte).
pub fn reaches(target: Option<&ChannelId>, listening: Option<&ChannelId>) -> bool {
    match (target, listening) {
        (Some(target), Some(mine)) => target.as_bytes() == mine.as_bytes(),
        _ => true,
    }
}

/// What one routing pass did, for the counters: how many listeners it
/// raised flags on, how many of those already had all those flags pending,
/// and how many listener slots the broker's index had to visit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteOutcome {
    /// Listeners that had flags raised.
    pub reached: u32,
    /// Of those, listeners whose pending flags already held the raised ones
    /// (their outbox's flags did not change, only its raise count).
    pub coalesced: u32,
    /// Listeners the pass visits. Per reached *group* (listeners with the
    /// same channel and interest): every member with no flags pending, and
    /// the others too unless the raised flags are within the group's
    /// *covered* set — the flags of its last raise that found a member with
    /// none pending, plus those of every raise since (empty for a new
    /// group). So a raise of what everyone has pending visits nobody.
    pub visits: u32,
}
