//! An SSE client: an in-process listener of the broker whose raise hook
//! queues the client for the server's loop, and the events made from its
//! flags.
//!
//! The loop takes the flags (test-and-clear) only when the client's socket
//! has taken the previous event, so while a client is slow its raises
//! coalesce in the listener's flags, exactly as in a TCP listener's
//! outbox: what is held for a client is its flags and at most one event.
//! The first event of every connection is a reconnect raise
//! (`"reconnect":true`, with the re-check flags), as a TCP listener's
//! welcome is: a browser that reconnects (with or without `Last-Event-ID`)
//! re-checks and loses nothing raised while it was away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use flagpost_core::{ChannelId, FlagSet};

use super::Ready;
use crate::listener::{ListenError, Listener, ListenerBuilder, RaiseHook};
use crate::server::BrokerHandle;
use crate::shared::ListenerState;

/// The listener closed (the broker stops).
#[derive(Debug)]
pub(crate) struct Closed;

pub(crate) struct Client {
    listener: Listener,
    /// Set by the hook when it queues the client, cleared by the loop.
    queued: Arc<AtomicBool>,
    /// The next event's id.
    next_id: u64,
    welcomed: bool,
}

impl Client {
    /// Opens the listener of connection `index`; `Err` says why the broker
    /// refused (served as 503).
    pub(crate) fn open(
        broker: &BrokerHandle,
        channel: Option<ChannelId>,
        interest: FlagSet,
        last_id: Option<u64>,
        ready: &Arc<Ready>,
        index: usize,
    ) -> Result<Client, String> {
        let queued = Arc::new(AtomicBool::new(false));
        let hook = {
            let (queued, ready) = (queued.clone(), ready.clone());
            RaiseHook::new(move || {
                if !queued.swap(true, Ordering::AcqRel) {
                    ready.push(index);
                }
            })
        };
        let mut builder = ListenerBuilder::default().interest(interest).on_raise(hook);
        if let Some(channel) = channel {
            builder = builder.channel(channel);
        }
        let listener = builder.local(broker).map_err(|e| match e {
            ListenError::Refused(why) => format!("the broker refused the listener: {why}"),
            other => other.to_string(),
        })?;
        Ok(Client {
            listener,
            queued,
            // ids go on from the browser's last one
            next_id: last_id.map_or(1, |id| id.saturating_add(1)),
            welcomed: false,
        })
    }

    /// The loop took the client from the queue: later raises queue it again.
    pub(crate) fn unqueue(&self) {
        self.queued.store(false, Ordering::Release);
    }

    /// The next event, if a flag was raised since the last one (the first
    /// is always sent, as a reconnect raise).
    pub(crate) fn next_event(&mut self) -> Result<Option<String>, Closed> {
        if self.listener.state() == ListenerState::Closed {
            return Err(Closed);
        }
        let mut raise = self.listener.take_raise();
        if !self.welcomed {
            self.welcomed = true;
            raise.reconnect = true;
        } else if raise.flags.is_empty() && !raise.reconnect {
            return Ok(None);
        }
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        Ok(Some(event(id, raise.flags, raise.reconnect)))
    }
}

/// One `raise` event.
pub(crate) fn event(id: u64, flags: FlagSet, reconnect: bool) -> String {
    let has = |f| flags.contains(f);
    format!(
        "id: {id}\nevent: raise\ndata: {{\"status\":{},\"non_status\":{},\
         \"channel_update\":{},\"channel_shutdown\":{},\"reconnect\":{reconnect}}}\n\n",
        has(FlagSet::STATUS),
        has(FlagSet::NON_STATUS),
        has(FlagSet::CHANNEL_UPDATE),
        has(FlagSet::CHANNEL_SHUTDOWN),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_event_is_the_contract() {
        assert_eq!(
            super::event(3, flagpost_core::FlagSet::STATUS, false),
            "id: 3\nevent: raise\ndata: {\"status\":true,\"non_status\":false,\
             \"channel_update\":false,\"channel_shutdown\":false,\"reconnect\":false}\n\n"
        );
    }
}
