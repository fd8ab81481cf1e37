//! The reference model of the `flagpost-core` broker, shared by the
//! proptests (`tests/`) and the cargo-fuzz `broker` target.
//!
//! An [`Input`] is a broker [`Setup`] and a list of [`Op`]s (the operation
//! language, decoded with `arbitrary` or built by proptest strategies).
//! [`run`] applies each operation to a real
//! [`BrokerState`](flagpost_core::broker::BrokerState) and to an exact shadow model,
//! drains the broker's outputs as a transport would, and panics at the first
//! disagreement.
//!
//! | module | owns |
//! |---|---|
//! | [`input`] | the operation language and its choice tables |
//! | [`routing`] | which flags a kind or a possible loss raises, and where ([`routing::LOSS_FLAGS`]) |
//! | [`table`] | the listener table's model: states, outboxes, deadlines |
//! | [`loss`] | the loss detector's model and verdict table |
//! | [`stats`] | the counters the broker must report |
//! | [`driver`] | the harness: runs broker and models side by side, checks |
//!
//! # Invariants
//!
//! Checked after every operation:
//!
//! * no panic in the broker (overflow checks are on in test and fuzz
//!   builds);
//! * `stats()` equals the model's, every counter and gauge: the listener
//!   gauges counted from the table model, the sender gauge and evictions
//!   from the gap model, `awaiting_hello + listening == connections() <=
//!   capacity()`;
//! * every handle ever issued: [`BrokerState::state`] and [`BrokerState::channel`] are
//!   the model's (a dead handle stays dead; `open` never issues a handle
//!   twice nor one whose slot is taken; when every slot is taken it evicts
//!   the earliest opened connection still awaiting its hello if that one
//!   has waited `evict_after` and its slot's own evicted predecessor has
//!   been reported — the newcomer gets its slot, the evicted handle is dead
//!   at once and its close (too many listeners) is reported in order,
//!   before any event of the slot's new tenant — and otherwise refuses with
//!   `Full`; after `shutdown` it refuses with `ShuttingDown`);
//! * every frame outcome: `handle_frame`'s result, the state change, the
//!   close reason and `send_close` (malformed: `ProtocolError` or
//!   `UnsupportedVersion`; unexpected in the state, or in another version
//!   than the session's: `ProtocolError`; a version-2 hello or stats
//!   request to this keyless broker: `Unauthorized`, counted in
//!   `listeners_unauthorized`; a peer's close, in either version: its
//!   reason, no close sent back), the keep-alive clamped to
//!   `[min_keepalive, max_keepalive]` (0: the default);
//! * every datagram: rejected ones counted by reason; each verdict equals
//!   the gap model's (serial arithmetic through wrap-around, the 64-number
//!   window, far jumps and rewinds, clock eviction, zero slots) and
//!   `Verdict::deliver`/`possible_loss` follow the verdict table; a
//!   possible loss (gap, first seen late, restart, rewind, kernel drops) raises
//!   [`routing::LOSS_FLAGS`] on every listening listener it intersects; a
//!   delivered notification raises [`routing::kind_flags`] on every
//!   listening listener [`routing::reaches`] finds, within its interest;
//!   `reached` is the model's, so every listener whose interest and
//!   channel match a notification has those flags pending or delivered,
//!   whatever the order of opens, closes, drains and notifications; the
//!   routing index visits the members of each reached group (same channel,
//!   same interest) that have no flags pending, and the others only for
//!   flags beyond the group's covered set — `Stats::route_visits`, so a
//!   re-raise of what everyone has pending
//!   visits nobody ([`routing::RouteOutcome::visits`]); the ack is asked
//!   for ⇔ given, answers the
//!   notification with the verdict's result, is no longer than it and
//!   parses back;
//! * draining a listener (`poll_frame` until `None`) yields exactly the
//!   model's frames — welcome, then one flags frame with the union of what
//!   was raised since the last drain and the number of raises, then the
//!   pong — so at most three frames and one flags frame however many
//!   notifications came; a flags frame is non-empty, within the listener's
//!   interest, for at least one raise; single `poll_frame`s on any handle
//!   match too;
//! * every frame `poll_frame` returns, and every close frame an event asks
//!   for, emits into a `MAX_FRAME_LEN` buffer and parses back to itself;
//! * `poll_ready` yields only listening listeners with output, each at most
//!   once until its outbox has been drained (edge-triggered), and every
//!   listener with output has been yielded (no lost wake-up);
//! * `poll_event` reports exactly the connections the model is closing, in
//!   the order they started closing (a shutdown and a housekeeping pass
//!   close in slot order), with the predicted reason, `send_close` and
//!   session version, or
//!   their stats request, and frees their slots; a stats request's answer (every `stat` frame, then
//!   a close) emits, and a client rebuilding `Stats` from it with
//!   `Stats::set` gets them all back;
//! * `handle_timeout(now)` never closes a connection before its deadline
//!   (hello; keep-alive; stuck, when output waits and that comes first;
//!   none for an in-process listener), closes it with that deadline's
//!   reason, leaves none open more than `housekeeping` past its deadline,
//!   and none past it at all when called at or after `poll_timeout`;
//! * `poll_timeout` is `None` only when no connection has a deadline, `Some`
//!   only while a connection is open, and never later than
//!   `max(deadline, now + housekeeping)` for any connection; a driver that
//!   sleeps until each `poll_timeout` ([`Op::Sleep`]) closes every
//!   connection within one housekeeping period after its deadline, waking
//!   at most once more than the table has slots.
//!
//! And at the end of every run ([`driver::Harness::finish`]): when nobody
//! reads, writes or sends any more, sleeping until each `poll_timeout`
//! closes every connection that has a deadline (only in-process listeners
//! stay); after writing everything out no output is left; after
//! `shutdown` no connection, ready listener, timeout or live handle is
//! left and `open` is refused.
//!
//! [`BrokerState::state`]: flagpost_core::broker::BrokerState::state
//! [`BrokerState::channel`]: flagpost_core::broker::BrokerState::channel

pub mod driver;
pub mod input;
pub mod loss;
pub mod routing;
pub mod stats;
pub mod table;

pub use driver::{run, Harness, Report};
pub use input::{Corrupt, FrameSpec, Input, NotifySpec, Op, SeqSpec, Setup};
