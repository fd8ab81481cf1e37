//! *Check outgoing*: a [`Channel`] sends queued messages. Each send is
//! followed by its own commit that marks the message sent, so a crash
//! between a send and its commit sends that one message again after the
//! restart: delivery through a channel is **at-least-once** (a real modem
//! channel has the same window between the modem's `OK` and the commit).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::Message;

/// Why a send failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later: the message stays queued and this check stops
    /// (the next notification, interval or retry sends it).
    #[error("transient: {0}")]
    Transient(String),
    /// Never: the message is marked failed (`status_id = 4`) with the
    /// action `send-failed: REASON`.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Sends one queued message (a modem, an SMS gateway, an e-mail relay).
pub trait Channel: Send {
    /// Sends `message`; return only once it is handed over for good.
    fn send(&mut self, message: &Message) -> Result<(), SendError>;
}

/// The default channel, a stand-in for a real modem or SMS channel: appends
/// one line per message to a file, `ID<TAB>CHANNEL<TAB>BODY` (`-` for no
/// channel; tabs, newlines and backslashes in the body escaped as `\t`,
/// `\n`, `\\`). Each line is written with one `write` and flushed to the
/// kernel before the message is marked sent (it survives the process being
/// killed, not a power loss: no fsync).
#[derive(Debug)]
pub struct Outbox {
    file: File,
    path: PathBuf,
}

impl Outbox {
    /// Opens `path` for appending (created when missing).
    pub fn open(path: &Path) -> std::io::Result<Outbox> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Outbox {
            file,
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `body` with tabs, newlines and backslashes escaped.
pub fn escape(body: &str) -> String {
    let mut s = String::with_capacity(body.len());
    for c in body.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    s
}

impl Channel for Outbox {
    fn send(&mut self, m: &Message) -> Result<(), SendError> {
        let line = format!(
            "{}\t{}\t{}\n",
            m.id,
            m.channel.as_deref().unwrap_or("-"),
            escape(&m.body)
        );
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| SendError::Transient(format!("{}: {e}", self.path.display())))
    }
}

/// A channel that only logs each message (`tracing`, info): for trying the
/// service out.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogChannel;

impl Channel for LogChannel {
    fn send(&mut self, m: &Message) -> Result<(), SendError> {
        tracing::info!(
            id = m.id,
            channel = m.channel.as_deref().unwrap_or("-"),
            body = %escape(&m.body),
            "send"
        );
        Ok(())
    }
}

impl<F> Channel for F
where
    F: FnMut(&Message) -> Result<(), SendError> + Send,
{
    fn send(&mut self, message: &Message) -> Result<(), SendError> {
        self(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_stay_on_one_line() {
        assert_eq!(escape("a\tb\nc\\d\r"), "a\\tb\\nc\\\\d\\r");
    }
}
