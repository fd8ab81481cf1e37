//! `FlagpostNotifier`: the C face of `flagpost_std::Notifier` — its options
//! struct, the four notify calls and their confirmed forms, flush, stats
//! and free.
//!
//! Thread-safety: every call on a live notifier may be made from any thread,
//! concurrently with any other call on it (the Rust notifier is
//! `Send + Sync`), except `flagpost_notifier_free`, which must not race
//! any other call on the same handle.

use std::ffi::{c_char, c_int};

use flagpost_std::core::wire::AckResult;
use flagpost_std::core::ChannelId;
use flagpost_std::{Notifier, NotifyError};

use crate::FlagpostStatus::*;
use crate::{guard, handle, Error, Result, Versioned, OK};

/// A notifier (opaque): sends notifications to one broker over UDP.
pub struct FlagpostNotifier {
    inner: Notifier,
}

/// Settings for `flagpost_notifier_new`. Fill it with
/// `flagpost_notifier_options_init(&opts, sizeof opts)` first, then set
/// the fields wanted. ABI rule: later versions only append fields; the
/// library reads the fields within `size` (those of a newer header that it
/// does not know are ignored; those an older header lacks take their
/// defaults), and refuses a `size` that is no version's `sizeof`
/// (`FLAGPOST_E_INVALID`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlagpostNotifierOptions {
    /// `sizeof` the struct as the caller compiled it (set by `_init`).
    pub size: usize,
    /// The broker, `HOST:PORT` or `HOST` (port 16725); NULL:
    /// "127.0.0.1:16725". Copied; need not outlive the call.
    pub broker: *const c_char,
    /// A key file (the broker's `key_file`: hexadecimal, owner-only) to
    /// sign datagrams with; NULL: no key.
    pub key_file: *const c_char,
    /// A fixed sender id; 0 (default): a random one, as the protocol
    /// expects (fix it only for tests).
    pub sender_id: u64,
    /// Quiet time after a burst before its last datagram is sent again
    /// (the tail-loss probe), in ms; default 5, 0 disables the probe.
    pub probe_delay_ms: u32,
    /// Non-zero (default): the sender thread watches a burst's end on a
    /// CPU; 0: it sleeps out the paces (no CPU while a burst lasts, later
    /// last datagrams).
    pub spin_in_bursts: c_int,
}

// SAFETY: repr(C), starts with `size: usize`; raw pointers and integers
// are valid for any bytes.
unsafe impl Versioned for FlagpostNotifierOptions {
    fn defaults() -> Self {
        FlagpostNotifierOptions {
            size: std::mem::size_of::<Self>(),
            broker: std::ptr::null(),
            key_file: std::ptr::null(),
            sender_id: 0,
            probe_delay_ms: 5,
            spin_in_bursts: 1,
        }
    }
}

/// A notifier's counters (`flagpost_notifier_stats`). Set `size` to
/// `sizeof` the struct before the call; the library writes the fields
/// within it (the same ABI rule as the options structs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FlagpostNotifierStats {
    /// `sizeof` the struct as the caller compiled it (set by the caller).
    pub size: usize,
    /// Notify calls (confirmed ones included).
    pub calls: u64,
    /// Datagrams sent (excluding probes and retransmissions).
    pub datagrams: u64,
    /// Of those, sent by the calling thread itself.
    pub inline_sends: u64,
    /// Bursts handed to the sender thread.
    pub bursts: u64,
    /// Times the sender thread moved off a CPU shared with a busy caller.
    pub cpu_moves: u64,
    /// Tail-loss probes sent.
    pub probes: u64,
    /// Confirmed-mode retransmissions.
    pub retransmissions: u64,
    /// Sends that failed.
    pub send_errors: u64,
}

// SAFETY: repr(C), starts with `size: usize`; integers only.
unsafe impl Versioned for FlagpostNotifierStats {
    fn defaults() -> Self {
        FlagpostNotifierStats {
            size: std::mem::size_of::<Self>(),
            ..Default::default()
        }
    }
}

/// Fills `*opts` (`size` bytes: pass `sizeof *opts`) with the defaults.
/// Returns `FLAGPOST_OK`, `FLAGPOST_E_NULL`, or `FLAGPOST_E_INVALID` for a
/// `size` too small.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notifier_options_init(
    opts: *mut FlagpostNotifierOptions,
    size: usize,
) -> c_int {
    // SAFETY: as documented.
    guard(|| unsafe { crate::init_versioned(opts, size, "opts") })
}

/// Creates a notifier with `opts` (NULL: the defaults) and stores it in
/// `*out` (left untouched on failure). Returns `FLAGPOST_OK`, or
/// `FLAGPOST_E_NULL` (`out`), `FLAGPOST_E_INVALID` (`opts->size`),
/// `FLAGPOST_E_UTF8`, `FLAGPOST_E_ADDRESS`, `FLAGPOST_E_KEY_FILE`,
/// `FLAGPOST_E_IO`. Free it with `flagpost_notifier_free`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or filled by `flagpost_notifier_options_init`, its
/// strings NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notifier_new(
    opts: *const FlagpostNotifierOptions,
    out: *mut *mut FlagpostNotifier,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(Error::new(FLAGPOST_E_NULL, "out is NULL"));
        }
        // SAFETY: as documented.
        let o = unsafe { crate::read_versioned(opts, "opts") }?;
        // SAFETY: as documented: NULL or NUL-terminated.
        let broker = unsafe { crate::opt_str(o.broker, "opts.broker") }?;
        let broker = crate::address(broker.unwrap_or("127.0.0.1:16725"))?;
        // SAFETY: as documented.
        let key_file = unsafe { crate::opt_str(o.key_file, "opts.key_file") }?;
        let mut builder = Notifier::builder()
            .probe_delay(crate::ms(o.probe_delay_ms))
            .spin_in_bursts(o.spin_in_bursts != 0);
        if let Some(key) = crate::key(key_file)? {
            builder = builder.key(key);
        }
        if o.sender_id != 0 {
            builder = builder.sender_id(o.sender_id);
        }
        let inner = builder.build(broker).map_err(notify_error)?;
        let raw = Box::into_raw(Box::new(FlagpostNotifier { inner }));
        // SAFETY: `out` is non-NULL and writable, as documented.
        unsafe { out.write(raw) };
        OK
    })
}

/// Frees a notifier: what is pending is sent (with its tail-loss probe,
/// if due), then its thread is joined. NULL is ignored.
///
/// Thread-safety: must not race any other call on the same notifier; the
/// handle is invalid afterwards.
///
/// # Safety
/// `notifier` is NULL or from `flagpost_notifier_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notifier_free(notifier: *mut FlagpostNotifier) {
    guard(|| {
        if !notifier.is_null() {
            // SAFETY: from Box::into_raw in `flagpost_notifier_new`, freed once.
            drop(unsafe { Box::from_raw(notifier) });
        }
        OK
    });
}

fn notify_error(e: NotifyError) -> Error {
    let status = match e {
        NotifyError::Timeout { .. } => FLAGPOST_E_TIMEOUT,
        NotifyError::Unreachable { .. } => FLAGPOST_E_REFUSED,
        NotifyError::Resolve(_) => FLAGPOST_E_ADDRESS,
        NotifyError::Io(_) => FLAGPOST_E_IO,
    };
    Error::new(status, e.to_string())
}

fn acked(result: std::result::Result<AckResult, NotifyError>) -> Result<c_int> {
    match result.map_err(notify_error)? {
        AckResult::Delivered | AckResult::Duplicate => OK,
        AckResult::Stale => Err(Error::new(
            FLAGPOST_E_STALE,
            "the broker acked the notification as stale (older than its reorder window): not delivered",
        )),
    }
}

/// # Safety
/// `n` is NULL or a live notifier.
unsafe fn notifier<'a>(n: *const FlagpostNotifier) -> Result<&'a Notifier> {
    // SAFETY: forwarded from the caller.
    Ok(&unsafe { handle(n, "notifier") }?.inner)
}

/// Runs `f` on a live notifier and an optional channel (NULL: all).
///
/// # Safety
/// As the entry points: `n` NULL or live, `channel` NULL or NUL-terminated.
unsafe fn with_opt_channel(
    n: *const FlagpostNotifier,
    channel: *const c_char,
    f: impl FnOnce(&Notifier, Option<ChannelId>) -> Result<c_int>,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let (n, channel) = unsafe { (notifier(n)?, crate::opt_channel(channel)?) };
        f(n, channel)
    })
}

/// Runs `f` on a live notifier and a required channel.
///
/// # Safety
/// As [`with_opt_channel`].
unsafe fn with_channel(
    n: *const FlagpostNotifier,
    channel: *const c_char,
    f: impl FnOnce(&Notifier, ChannelId) -> Result<c_int>,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let (n, channel) = unsafe { (notifier(n)?, crate::req_channel(channel)?) };
        f(n, channel)
    })
}

/// `NotifyStatusUpdate`: new work or a status change on `channel` (NULL:
/// all channels). Fire-and-forget: returns at once (`FLAGPOST_OK`, or
/// `FLAGPOST_E_NULL`, `FLAGPOST_E_UTF8`, `FLAGPOST_E_CHANNEL`); calls that
/// come close together coalesce into few datagrams.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `channel` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_status_update(
    notifier: *const FlagpostNotifier,
    channel: *const c_char,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_opt_channel(notifier, channel, |n, c| {
            n.notify_status_update(c);
            OK
        })
    }
}

/// `NotifyNonStatusUpdate`: any other change, views refresh (all
/// channels). Fire-and-forget, as `flagpost_notify_status_update`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_non_status_update(
    notifier: *const FlagpostNotifier,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        unsafe { self::notifier(notifier) }?.notify_non_status_update();
        OK
    })
}

/// Channel `NotifyUpdate`: `channel` (required) reloads its configuration.
/// Fire-and-forget, as `flagpost_notify_status_update`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `channel` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_channel_update(
    notifier: *const FlagpostNotifier,
    channel: *const c_char,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(notifier, channel, |n, c| {
            n.notify_channel_update(c);
            OK
        })
    }
}

/// Channel `NotifyShutdown`: `channel` (required) stops.
/// Fire-and-forget, as `flagpost_notify_status_update`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `channel` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_channel_shutdown(
    notifier: *const FlagpostNotifier,
    channel: *const c_char,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(notifier, channel, |n, c| {
            n.notify_channel_shutdown(c);
            OK
        })
    }
}

/// A status update (`channel` NULL: all) that the broker must ack:
/// retransmits with backoff until the ack or `timeout_ms`. Blocks; confirmed
/// sends of one notifier go one at a time. Returns `FLAGPOST_OK` (delivered,
/// or an earlier transmission was), `FLAGPOST_E_TIMEOUT` (no ack in time),
/// `FLAGPOST_E_REFUSED` (nothing listens on the port: at once),
/// `FLAGPOST_E_STALE`, `FLAGPOST_E_IO`, or an argument error.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `channel` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_status_update_confirmed(
    notifier: *const FlagpostNotifier,
    channel: *const c_char,
    timeout_ms: u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_opt_channel(notifier, channel, |n, c| {
            acked(n.notify_status_update_confirmed(c, crate::ms(timeout_ms)))
        })
    }
}

/// A non-status update the broker must ack; as
/// `flagpost_notify_status_update_confirmed`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_non_status_update_confirmed(
    notifier: *const FlagpostNotifier,
    timeout_ms: u32,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let n = unsafe { self::notifier(notifier) }?;
        acked(n.notify_non_status_update_confirmed(crate::ms(timeout_ms)))
    })
}

/// A channel update the broker must ack; as
/// `flagpost_notify_status_update_confirmed` (`channel` required).
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `channel` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_channel_update_confirmed(
    notifier: *const FlagpostNotifier,
    channel: *const c_char,
    timeout_ms: u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(notifier, channel, |n, c| {
            acked(n.notify_channel_update_confirmed(c, crate::ms(timeout_ms)))
        })
    }
}

/// A channel shutdown the broker must ack; as
/// `flagpost_notify_status_update_confirmed` (`channel` required).
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `channel` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notify_channel_shutdown_confirmed(
    notifier: *const FlagpostNotifier,
    channel: *const c_char,
    timeout_ms: u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with_channel(notifier, channel, |n, c| {
            acked(n.notify_channel_shutdown_confirmed(c, crate::ms(timeout_ms)))
        })
    }
}

/// Waits until everything notified so far has been handed to the socket:
/// `FLAGPOST_OK`, or `FLAGPOST_E_TIMEOUT` after `timeout_ms`. (Handed to
/// the socket is not delivered: use a confirmed call for that.)
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notifier_flush(
    notifier: *const FlagpostNotifier,
    timeout_ms: u32,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let n = unsafe { self::notifier(notifier) }?;
        if n.flush(crate::ms(timeout_ms)) {
            OK
        } else {
            Err(Error::new(
                FLAGPOST_E_TIMEOUT,
                format!("notifications still pending after {timeout_ms} ms"),
            ))
        }
    })
}

/// Copies the notifier's counters into `*out`, whose `size` the caller
/// sets to `sizeof *out` (only that many bytes are written). Returns
/// `FLAGPOST_OK`, `FLAGPOST_E_NULL` or `FLAGPOST_E_INVALID` (`size` unset).
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `notifier` is NULL or live; `out` NULL or `out->size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn flagpost_notifier_stats(
    notifier: *const FlagpostNotifier,
    out: *mut FlagpostNotifierStats,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let s = unsafe { self::notifier(notifier) }?.stats();
        let stats = FlagpostNotifierStats {
            size: std::mem::size_of::<FlagpostNotifierStats>(),
            calls: s.calls,
            datagrams: s.datagrams,
            inline_sends: s.inline,
            bursts: s.bursts,
            cpu_moves: s.cpu_moves,
            probes: s.probes,
            retransmissions: s.retransmissions,
            send_errors: s.send_errors,
        };
        // SAFETY: as documented.
        unsafe { crate::write_versioned(out, &stats, "out") }
    })
}
