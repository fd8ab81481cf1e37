//! *Check triggers*: what a received message causes. A [`Trigger`] decides,
//! the cycle writes: whatever the trigger puts in its [`TriggerOutput`] is
//! written in the same transaction that marks the message processed, so it
//! happens exactly once in the database however often the service is
//! killed. Effects a trigger has outside the database are at-least-once.

use crate::store::{Message, NewMessage};

/// The action recorded for every message a trigger ran on.
pub const ACTION_PROCESSED: &str = "processed";

/// What one message's trigger wants written (in the batch's transaction).
#[derive(Debug, Default)]
pub struct TriggerOutput {
    pub(crate) actions: Vec<String>,
    pub(crate) queued: Vec<NewMessage>,
}

impl TriggerOutput {
    /// Records `action` in `message_actions` for this message.
    pub fn action(&mut self, action: impl Into<String>) {
        self.actions.push(action.into());
    }

    /// Queues a message to send (`status_id = 2`): *check outgoing* runs
    /// right after this batch commits, without waiting for a notification.
    pub fn queue(&mut self, channel: Option<String>, body: impl Into<String>) {
        self.queued.push(NewMessage {
            channel,
            body: body.into(),
        });
    }
}

/// A trigger failed on one message: it is still marked processed (a message
/// that always fails must not block the queue), with the action
/// `trigger-error: REASON`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TriggerError(pub String);

/// Runs on each received message once (`trigger_status_id` 0 → 1).
pub trait Trigger: Send {
    /// Decides what `message` causes. Called inside the batch's
    /// transaction, so keep it quick and do not touch the database here.
    fn run(&mut self, message: &Message, out: &mut TriggerOutput) -> Result<(), TriggerError>;
}

/// The default trigger: records `processed`, nothing else.
#[derive(Clone, Copy, Debug, Default)]
pub struct MarkProcessed;

impl Trigger for MarkProcessed {
    fn run(&mut self, _: &Message, out: &mut TriggerOutput) -> Result<(), TriggerError> {
        out.action(ACTION_PROCESSED);
        Ok(())
    }
}

/// A demonstration trigger: records `processed` and queues a reply
/// (`re: BODY`) on the message's channel, so that *check outgoing* has work
/// made by the service itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Trigger for Echo {
    fn run(&mut self, message: &Message, out: &mut TriggerOutput) -> Result<(), TriggerError> {
        out.action(ACTION_PROCESSED);
        out.queue(message.channel.clone(), format!("re: {}", message.body));
        Ok(())
    }
}

impl<F> Trigger for F
where
    F: FnMut(&Message, &mut TriggerOutput) -> Result<(), TriggerError> + Send,
{
    fn run(&mut self, message: &Message, out: &mut TriggerOutput) -> Result<(), TriggerError> {
        self(message, out)
    }
}
