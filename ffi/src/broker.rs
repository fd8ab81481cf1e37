//! `FlagpostBroker`: a broker run in the calling process on a thread of its
//! own (`flagpost_std::Broker::spawn`), so that a C program or test needs no
//! `flagpost serve` beside it: spawn on an address, read the bound address,
//! shut down, free.
//!
//! Thread-safety: `flagpost_broker_local_addr` and
//! `flagpost_broker_shutdown` may be called from any thread, concurrently;
//! `flagpost_broker_free` must not race any other call on the same handle.

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use flagpost_std::{Broker, BrokerConfig, BrokerHandle};

use crate::FlagpostStatus::*;
use crate::{guard, handle, Error, OK};

/// An in-process broker (opaque).
pub struct FlagpostBroker {
    inner: BrokerHandle,
}

/// Starts a broker serving UDP notifications and TCP listeners on `bind`
/// (`HOST:PORT`; port 0 picks a free one, see `flagpost_broker_local_addr`)
/// with the key in `key_file` (NULL: no key), otherwise the defaults of
/// `flagpost serve`; stores it in `*out` (untouched on failure). Returns
/// `FLAGPOST_OK`, `FLAGPOST_E_NULL` (`bind`, `out`), `FLAGPOST_E_UTF8`,
/// `FLAGPOST_E_ADDRESS`, `FLAGPOST_E_KEY_FILE`, or `FLAGPOST_E_IO` (the
/// address is taken, …). Free it with `flagpost_broker_free`. Like
/// `flagpost serve`, it raises the process's soft open-files limit to the
/// hard limit (each listener holds a descriptor).
///
/// Thread-safety: any thread.
///
/// # Safety
/// `bind` and `key_file` are NULL or NUL-terminated; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn flagpost_broker_spawn(
    bind: *const c_char,
    key_file: *const c_char,
    out: *mut *mut FlagpostBroker,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(Error::new(FLAGPOST_E_NULL, "out is NULL"));
        }
        // SAFETY: as documented.
        let (bind, key_file) = unsafe {
            (
                crate::req_str(bind, "bind")?,
                crate::opt_str(key_file, "key_file")?,
            )
        };
        let bind = crate::address(bind)?;
        // read here too, so that a bad key file is FLAGPOST_E_KEY_FILE
        crate::key(key_file)?;
        let config = BrokerConfig {
            bind: vec![bind],
            key_file: key_file.map(PathBuf::from),
            ..BrokerConfig::default()
        };
        let inner = Broker::spawn(config).map_err(|e| Error::new(FLAGPOST_E_IO, e.to_string()))?;
        let raw = Box::into_raw(Box::new(FlagpostBroker { inner }));
        // SAFETY: `out` is non-NULL and writable, as documented.
        unsafe { out.write(raw) };
        OK
    })
}

/// Writes the broker's bound address (`127.0.0.1:40123`), NUL-terminated,
/// into `buf` of `len` bytes (64 always suffice). Returns the address's
/// length (without the NUL), `FLAGPOST_E_NULL`, or `FLAGPOST_E_INVALID`
/// when `len` is too small (nothing written).
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `broker` is NULL or live; `buf` NULL or `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn flagpost_broker_local_addr(
    broker: *const FlagpostBroker,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: as documented.
        let b = unsafe { handle(broker, "broker") }?;
        if buf.is_null() {
            return Err(Error::new(FLAGPOST_E_NULL, "buf is NULL"));
        }
        let text = b.inner.local_addr().to_string();
        if text.len() >= len {
            return Err(Error::new(
                FLAGPOST_E_INVALID,
                format!("buffer of {len} bytes too small for {text:?} and its NUL"),
            ));
        }
        // SAFETY: `buf` has `len` > text.len() writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
            buf.add(text.len()).write(0);
        }
        Ok(c_int::try_from(text.len()).unwrap_or(c_int::MAX))
    })
}

/// Stops the broker (listeners get a close frame, reason *shutdown*) and
/// waits for its thread. Returns `FLAGPOST_OK`, `FLAGPOST_E_NULL`, or
/// `FLAGPOST_E_IO` if its loop had failed. Idempotent; the handle stays
/// valid until `flagpost_broker_free`.
///
/// Thread-safety: any thread, concurrently.
///
/// # Safety
/// `broker` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn flagpost_broker_shutdown(broker: *const FlagpostBroker) -> c_int {
    guard(|| {
        // SAFETY: as documented.
        let b = unsafe { handle(broker, "broker") }?;
        b.inner.shutdown();
        b.inner
            .join()
            .map_err(|e| Error::new(FLAGPOST_E_IO, e.to_string()))?;
        OK
    })
}

/// Shuts the broker down (as `flagpost_broker_shutdown`) and frees it.
/// NULL is ignored.
///
/// Thread-safety: must not race any other call on the same broker; the
/// handle is invalid afterwards.
///
/// # Safety
/// `broker` is NULL or from `flagpost_broker_spawn`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn flagpost_broker_free(broker: *mut FlagpostBroker) {
    guard(|| {
        if !broker.is_null() {
            // SAFETY: from Box::into_raw in `flagpost_broker_spawn`, freed once.
            let b = unsafe { Box::from_raw(broker) };
            b.inner.shutdown();
            let _ = b.inner.join();
        }
        OK
    });
}
