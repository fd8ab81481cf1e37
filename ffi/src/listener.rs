//! `FlagpostListener`: the C face of `flagpost_std::Listener` — its options
//! struct (with the optional raise callback), the four checks, take-all,
//! the reconnect mark, wait, state, stop and free.
//!
//! Thread-safety: checks, take, wait, wait_listening, state and stop may be
//! called from any thread, concurrently (two threads checking one flag may
//! both see one raise: a spare wake-up, never a lost one);
//! `flagpost_listener_free` must not race any other call on the same
//! handle, nor be called from its raise callback.

use std::ffi::{c_char, c_int, c_void};

use flagpost_std::core::FlagSet;
use flagpost_std::{Listener, ListenerState, RaiseHook};

use crate::FlagpostStatus::*;
use crate::{guard, handle, Error, Result, Versioned, OK};

/// A listener (opaque): listens to a broker's flags over TCP and
/// reconnects by itself.
pub struct FlagpostListener {
    inner: Listener,
}

/// A raise callback: called with the `user` pointer of the options.
pub type FlagpostRaiseCallback = Option<unsafe extern "C" fn(user: *mut c_void)>;

/// Settings for `flagpost_listener_new`. Fill it with
/// `flagpost_listener_options_init(&opts, sizeof opts)` first, then set
/// the fields wanted. ABI rule: later versions only append fields; the
/// library reads the fields within `size` (those of a newer header that it
/// does not know are ignored; those an older header lacks take their
/// defaults), and refuses a `size` that is no version's `sizeof`
/// (`FLAGPOST_E_INVALID`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FlagpostListenerOptions {
    /// `sizeof` the struct as the caller compiled it (set by `_init`).
    pub size: usize,
    /// The broker, `HOST:PORT` or `HOST` (port 16725); NULL:
    /// "127.0.0.1:16725". Copied; need not outlive the call.
    pub broker: *const c_char,
    /// A key file (the broker's `key_file`) to authenticate with; NULL:
    /// none (a broker with a key refuses the listener).
    pub key_file: *const c_char,
    /// Listen to this channel only; NULL (default): all channels.
    pub channel: *const c_char,
    /// The flags wanted: a non-zero mask of `FLAGPOST_STATUS`,
    /// `FLAGPOST_NON_STATUS`, `FLAGPOST_CHANNEL_UPDATE`,
    /// `FLAGPOST_CHANNEL_SHUTDOWN` (default `FLAGPOST_ALL`).
    pub interest: u32,
    /// The keep-alive timeout to ask for, in ms (whole seconds count);
    /// 0 (default): the broker's.
    pub keepalive_ms: u32,
    /// Reconnect backoff: first delay, in ms (default 100).
    pub backoff_initial_ms: u32,
    /// Reconnect backoff: cap, in ms (default 2000).
    pub backoff_max_ms: u32,
    /// Called after each raise of the listener's flags and when it closes,
    /// on the thread that raised: the listener's I/O thread, a thread in
    /// `flagpost_listener_wait` (which reads the socket itself), or the one
    /// freeing the listener. It may find nothing left to take (re-check).
    /// Keep it short and non-blocking (set an atomic, write to a
    /// non-blocking pipe or eventfd); it must not call
    /// `flagpost_listener_stop` or `flagpost_listener_free`. NULL
    /// (default): none. It is not called after `flagpost_listener_free`
    /// returns.
    pub on_raise: FlagpostRaiseCallback,
    /// Passed to `on_raise`, from whichever thread calls it.
    pub user: *mut c_void,
}

// SAFETY: repr(C), starts with `size: usize`; raw pointers, integers and a
// nullable function pointer (C writes NULL or a function) only.
unsafe impl Versioned for FlagpostListenerOptions {
    fn defaults() -> Self {
        FlagpostListenerOptions {
            size: std::mem::size_of::<Self>(),
            broker: std::ptr::null(),
            key_file: std::ptr::null(),
            channel: std::ptr::null(),
            interest: crate::FLAGPOST_ALL,
            keepalive_ms: 0,
            backoff_initial_ms: 100,
            backoff_max_ms: 2000,
            on_raise: None,
            user: std::ptr::null_mut(),
        }
    }
}

/// Where a listener is (`flagpost_listener_state`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagpostListenerState {
    /// Connecting (or authenticating).
    FLAGPOST_CONNECTING = 0,
    /// Listening: flags arrive.
    FLAGPOST_LISTENING = 1,
    /// Waiting to reconnect after a loss.
    FLAGPOST_BACKING_OFF = 2,
    /// Stopped.
    FLAGPOST_CLOSED = 3,
}

/// The C callback and its pointer, called from the listener's threads.
struct Callback {
    f: unsafe extern "C" fn(*mut c_void),
    user: *mut c_void,
}

// SAFETY: the caller of `flagpost_listener_new` accepts (documented on
// `on_raise`) that the callback runs, with `user`, on other threads.
unsafe impl Send for Callback {}
// SAFETY: as for Send: the callback is documented to be called from
// whichever thread raised, possibly several.
unsafe impl Sync for Callback {}

impl Callback {
    fn call(&self) {
        // SAFETY: a C function pointer set by the caller, with its pointer.
        unsafe { (self.f)(self.user) }
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
pub unsafe extern "C" fn flagpost_listener_options_init(
    opts: *mut FlagpostListenerOptions,
    size: usize,
) -> c_int {
    // SAFETY: as documented.
    guard(|| unsafe { crate::init_versioned(opts, size, "opts") })
}

/// `StartChangeListening`: creates a listener with `opts` (NULL: the
/// defaults) and stores it in `*out` (left untouched on failure). Returns
/// at once: the connection is made, and remade after any loss, in the
/// background; each (re)connect raises status, non-status and channel
/// update with the reconnect mark (`flagpost_listener_check_reconnect`).
/// Returns `FLAGPOST_OK`, or `FLAGPOST_E_NULL` (`out`),
/// `FLAGPOST_E_INVALID` (`opts->size`, interest), `FLAGPOST_E_UTF8`,
/// `FLAGPOST_E_CHANNEL`, `FLAGPOST_E_ADDRESS`, `FLAGPOST_E_KEY_FILE`,
/// `FLAGPOST_E_IO`. Free it with `flagpost_listener_free`.
///
/// Thread-safety: any thread.
///
/// # Safety
/// `opts` is NULL or filled by `flagpost_listener_options_init`, its
/// strings NULL or NUL-terminated, its callback NULL or a function safe to
/// call as documented on `on_raise`; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_new(
    opts: *const FlagpostListenerOptions,
    out: *mut *mut FlagpostListener,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(Error::new(FLAGPOST_E_NULL, "out is NULL"));
        }
        // SAFETY: as documented.
        let o = unsafe { crate::read_versioned(opts, "opts") }?;
        // SAFETY: as documented: NULL or NUL-terminated.
        let (broker, key_file, channel) = unsafe {
            (
                crate::opt_str(o.broker, "opts.broker")?,
                crate::opt_str(o.key_file, "opts.key_file")?,
                crate::opt_channel(o.channel)?,
            )
        };
        let broker = crate::address(broker.unwrap_or("127.0.0.1:16725"))?;
        let interest = interest(o.interest)?;
        if o.backoff_initial_ms == 0 || o.backoff_max_ms < o.backoff_initial_ms {
            return Err(Error::new(
                FLAGPOST_E_INVALID,
                format!(
                    "opts.backoff_initial_ms {} / backoff_max_ms {}: need 0 < initial <= max",
                    o.backoff_initial_ms, o.backoff_max_ms
                ),
            ));
        }
        let mut builder = Listener::builder()
            .interest(interest)
            .keepalive(crate::ms(o.keepalive_ms))
            .backoff(crate::ms(o.backoff_initial_ms), crate::ms(o.backoff_max_ms));
        if let Some(channel) = channel {
            builder = builder.channel(channel);
        }
        if let Some(key) = crate::key(key_file)? {
            builder = builder.key(key);
        }
        if let Some(f) = o.on_raise {
            let cb = Callback { f, user: o.user };
            builder = builder.on_raise(RaiseHook::new(move || cb.call()));
        }
        let inner = builder
            .connect(broker)
            .map_err(|e| Error::new(FLAGPOST_E_IO, e.to_string()))?;
        let raw = Box::into_raw(Box::new(FlagpostListener { inner }));
        // SAFETY: `out` is non-NULL and writable, as documented.
        unsafe { out.write(raw) };
        OK
    })
}

/// A C interest mask as a flag set: non-zero, known bits only.
pub(crate) fn interest(bits: u32) -> Result<FlagSet> {
    u8::try_from(bits)
        .ok()
        .and_then(FlagSet::from_bits)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            Error::new(
                FLAGPOST_E_INVALID,
                format!("interest {bits:#x}: need a non-zero mask of FLAGPOST_STATUS..FLAGPOST_CHANNEL_SHUTDOWN (0x1..0xf)"),
            )
        })
}

/// Frees a listener (`StopChangeListening` if not yet stopped): the broker
/// gets a close frame, waiting threads return, the I/O thread is joined.
/// NULL is ignored.
///
/// Thread-safety: must not race any other call on the same listener, nor
/// run in its raise callback; the handle is invalid afterwards.
///
/// # Safety
/// `listener` is NULL or from `flagpost_listener_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_free(listener: *mut FlagpostListener) {
    guard(|| {
        if !listener.is_null() {
            // SAFETY: from Box::into_raw in `flagpost_listener_new`, freed once.
            drop(unsafe { Box::from_raw(listener) });
        }
        OK
    });
}

/// Runs `f` on a live listener.
///
/// # Safety
/// `l` is NULL or a live listener.
unsafe fn with(l: *const FlagpostListener, f: impl FnOnce(&Listener) -> Result<c_int>) -> c_int {
    guard(|| {
        // SAFETY: forwarded from the caller.
        f(&unsafe { handle(l, "listener") }?.inner)
    })
}

/// `HasStatusUpdate`: test-and-clear the status flag.
///
/// Returns 1 (it was raised; now cleared), 0, or `FLAGPOST_E_NULL`.
/// Lock-free: a read of memory, no system call.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_check_status_update(
    listener: *const FlagpostListener,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with(listener, |l| Ok(c_int::from(l.check_status_update()))) }
}

/// `HasNonStatusUpdate`: test-and-clear the non-status flag.
///
/// Returns 1 (it was raised; now cleared), 0, or `FLAGPOST_E_NULL`.
/// Lock-free: a read of memory, no system call.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_check_non_status_update(
    listener: *const FlagpostListener,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with(listener, |l| Ok(c_int::from(l.check_non_status_update()))) }
}

/// The channel update check: test-and-clear the channel-update flag.
///
/// Returns 1 (it was raised; now cleared), 0, or `FLAGPOST_E_NULL`.
/// Lock-free: a read of memory, no system call.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_check_channel_update(
    listener: *const FlagpostListener,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with(listener, |l| Ok(c_int::from(l.check_channel_update()))) }
}

/// The channel shutdown check: test-and-clear the channel-shutdown flag.
///
/// Returns 1 (it was raised; now cleared), 0, or `FLAGPOST_E_NULL`.
/// Lock-free: a read of memory, no system call.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_check_channel_shutdown(
    listener: *const FlagpostListener,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with(listener, |l| Ok(c_int::from(l.check_channel_shutdown()))) }
}

/// Test-and-clear the reconnect mark: 1 when a reconnect raise (the
/// listener (re)connected and should re-check; nothing was notified)
/// came since the last call. Check it before the flags it marks.
///
/// Returns 1 (it was raised; now cleared), 0, or `FLAGPOST_E_NULL`.
/// Lock-free: a read of memory, no system call.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_check_reconnect(
    listener: *const FlagpostListener,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with(listener, |l| Ok(c_int::from(l.check_reconnect()))) }
}

/// Takes every raised flag at once: returns their mask (`FLAGPOST_STATUS`
/// | …; 0 for none), or `FLAGPOST_E_NULL`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_take(listener: *const FlagpostListener) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe { with(listener, |l| Ok(c_int::from(l.take().bits()))) }
}

/// Blocks until a flag is raised (1), `timeout_ms` passes (0), or the
/// listener stops (`FLAGPOST_E_STOPPED`). Clears nothing; no spinning.
///
/// Thread-safety: any thread, concurrently; `flagpost_listener_stop` from
/// another thread wakes it.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_wait(
    listener: *const FlagpostListener,
    timeout_ms: u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(listener, |l| {
            if l.wait(crate::ms(timeout_ms)) {
                Ok(1)
            } else if l.state() == ListenerState::Closed {
                Err(Error::new(FLAGPOST_E_STOPPED, "the listener has stopped"))
            } else {
                Ok(0)
            }
        })
    }
}

/// Blocks until the listener is listening (1), or `timeout_ms` passes or a
/// connection attempt is refused authentication (0; the listener keeps
/// retrying, and `flagpost_last_error` is not set).
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_wait_listening(
    listener: *const FlagpostListener,
    timeout_ms: u32,
) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(listener, |l| {
            Ok(c_int::from(l.wait_listening(crate::ms(timeout_ms))))
        })
    }
}

/// Where the listener is: a `FlagpostListenerState` (≥ 0), or
/// `FLAGPOST_E_NULL`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_state(listener: *const FlagpostListener) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(listener, |l| {
            let state = match l.state() {
                ListenerState::Connecting => FlagpostListenerState::FLAGPOST_CONNECTING,
                ListenerState::Listening => FlagpostListenerState::FLAGPOST_LISTENING,
                ListenerState::BackingOff => FlagpostListenerState::FLAGPOST_BACKING_OFF,
                ListenerState::Closed => FlagpostListenerState::FLAGPOST_CLOSED,
            };
            Ok(state as c_int)
        })
    }
}

/// `StopChangeListening`: the broker gets a close frame, waiting threads
/// return `FLAGPOST_E_STOPPED`, the I/O thread is joined. Idempotent; the
/// handle stays valid (checks return what was raised before) until
/// `flagpost_listener_free`.
///
/// Thread-safety: any thread, but not from the raise callback.
///
/// # Safety
/// `listener` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_listener_stop(listener: *const FlagpostListener) -> c_int {
    // SAFETY: forwarded from the caller.
    unsafe {
        with(listener, |l| {
            l.stop();
            OK
        })
    }
}
