//! What can be notified: the four kinds of the vendor's API and which flags
//! each one raises.
//!
//! | kind | vendor call | flags raised | channel |
//! |---|---|---|---|
//! | [`Kind::Status`] | `NotifyStatusUpdate` | status + non-status | optional |
//! | [`Kind::NonStatus`] | `NotifyNonStatusUpdate` | non-status | optional |
//! | [`Kind::ChannelUpdate`] | channel `NotifyUpdate` | channel update | required |
//! | [`Kind::ChannelShutdown`] | channel `NotifyShutdown` | channel shutdown | required |
//!
//! A status update also raises non-status because a status change is a
//! change. Routing: an untargeted notification reaches every listener; a
//! targeted one reaches the listeners of that channel and the listeners of all
//! channels. Each listener then keeps only the flags in its interest set.

use core::fmt;

use crate::channel::ChannelId;
use crate::flags::FlagSet;

/// The kind of a notification. The discriminant is its wire code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Kind {
    /// A new message, or a change of StatusID, TriggerStatusID or AckStatusID:
    /// there is work to do.
    Status = 1,
    /// Any other change to a message: views refresh, nothing is processed.
    NonStatus = 2,
    /// A channel's configuration changed: reload it.
    ChannelUpdate = 3,
    /// A channel must stop.
    ChannelShutdown = 4,
}

impl Kind {
    /// Every kind, in wire-code order.
    pub const ALL: [Kind; 4] = [
        Kind::Status,
        Kind::NonStatus,
        Kind::ChannelUpdate,
        Kind::ChannelShutdown,
    ];

    /// The kind with wire code `code`, if any.
    pub const fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Status),
            2 => Some(Kind::NonStatus),
            3 => Some(Kind::ChannelUpdate),
            4 => Some(Kind::ChannelShutdown),
            _ => None,
        }
    }

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The flags a notification of this kind raises.
    pub const fn flags(self) -> FlagSet {
        match self {
            Kind::Status => FlagSet::STATUS.union(FlagSet::NON_STATUS),
            Kind::NonStatus => FlagSet::NON_STATUS,
            Kind::ChannelUpdate => FlagSet::CHANNEL_UPDATE,
            Kind::ChannelShutdown => FlagSet::CHANNEL_SHUTDOWN,
        }
    }

    /// Whether this kind must name a channel.
    pub const fn requires_channel(self) -> bool {
        matches!(self, Kind::ChannelUpdate | Kind::ChannelShutdown)
    }

    /// The lower-case name used by the CLI and logs (`status`, `non-status`,
    /// `channel-update`, `channel-shutdown`).
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::NonStatus => "non-status",
            Kind::ChannelUpdate => "channel-update",
            Kind::ChannelShutdown => "channel-shutdown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A notification: a kind and, for targeted ones, a channel.
///
/// Constructed only through the kind-specific constructors, so a channel
/// update or shutdown always names its channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Notification {
    kind: Kind,
    channel: Option<ChannelId>,
}

/// A channel update or shutdown without a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MissingChannel;

impl fmt::Display for MissingChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("channel update and channel shutdown must name a channel")
    }
}

impl core::error::Error for MissingChannel {}

impl Notification {
    /// A status update, for every channel (`None`) or for one.
    pub const fn status(channel: Option<ChannelId>) -> Self {
        Notification {
            kind: Kind::Status,
            channel,
        }
    }

    /// A non-status update, for every channel (`None`) or for one.
    pub const fn non_status(channel: Option<ChannelId>) -> Self {
        Notification {
            kind: Kind::NonStatus,
            channel,
        }
    }

    /// A channel update: `channel` must reload its configuration.
    pub const fn channel_update(channel: ChannelId) -> Self {
        Notification {
            kind: Kind::ChannelUpdate,
            channel: Some(channel),
        }
    }

    /// A channel shutdown: `channel` must stop.
    pub const fn channel_shutdown(channel: ChannelId) -> Self {
        Notification {
            kind: Kind::ChannelShutdown,
            channel: Some(channel),
        }
    }

    /// A notification of `kind`, checking that channel kinds name a channel.
    pub const fn new(kind: Kind, channel: Option<ChannelId>) -> Result<Self, MissingChannel> {
        if kind.requires_channel() && channel.is_none() {
            Err(MissingChannel)
        } else {
            Ok(Notification { kind, channel })
        }
    }

    /// The kind.
    pub const fn kind(&self) -> Kind {
        self.kind
    }

    /// The target channel, or `None` for all channels.
    pub const fn channel(&self) -> Option<&ChannelId> {
        self.channel.as_ref()
    }

    /// Whether a listener for `listening` (`None`: all channels) is reached.
    pub fn reaches(&self, listening: Option<&ChannelId>) -> bool {
        match (self.channel.as_ref(), listening) {
            (None, _) | (Some(_), None) => true,
            (Some(target), Some(mine)) => target == mine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(5), None);
    }

    #[test]
    fn status_raises_non_status_too() {
        assert_eq!(Kind::Status.flags(), FlagSet::STATUS | FlagSet::NON_STATUS);
        assert_eq!(Kind::NonStatus.flags(), FlagSet::NON_STATUS);
    }

    #[test]
    fn routing() {
        let a = ChannelId::new("a").unwrap();
        let b = ChannelId::new("b").unwrap();
        let all = Notification::status(None);
        let to_a = Notification::status(Some(a));
        assert!(all.reaches(None) && all.reaches(Some(&a)));
        assert!(to_a.reaches(None) && to_a.reaches(Some(&a)));
        assert!(!to_a.reaches(Some(&b)));
    }

    #[test]
    fn channel_kinds_need_a_channel() {
        assert_eq!(
            Notification::new(Kind::ChannelUpdate, None),
            Err(MissingChannel)
        );
        assert!(Notification::new(Kind::Status, None).is_ok());
    }
}
