//! Unit tests of the argument checking and the panic guard (the C tests in
//! `ffi/tests/` cover the ABI end to end).

use std::ffi::{c_int, CStr};
use std::ptr;

use flagpost_std::core::FlagSet;

use super::*;
use crate::listener::*;
use crate::notifier::*;

fn last_error() -> String {
    // SAFETY: flagpost_last_error never returns NULL.
    unsafe { CStr::from_ptr(flagpost_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn interest_bits_are_the_cores() {
    assert_eq!(FLAGPOST_STATUS, u32::from(FlagSet::STATUS.bits()));
    assert_eq!(FLAGPOST_NON_STATUS, u32::from(FlagSet::NON_STATUS.bits()));
    assert_eq!(
        FLAGPOST_CHANNEL_UPDATE,
        u32::from(FlagSet::CHANNEL_UPDATE.bits())
    );
    assert_eq!(
        FLAGPOST_CHANNEL_SHUTDOWN,
        u32::from(FlagSet::CHANNEL_SHUTDOWN.bits())
    );
    assert_eq!(FLAGPOST_ALL, u32::from(FlagSet::ALL.bits()));
    assert_eq!(FLAGPOST_DEFAULT_PORT, flagpost_std::core::wire::PORT);
}

#[test]
fn every_status_has_its_own_text() {
    let texts: Vec<&CStr> = FlagpostStatus::ALL
        .iter()
        // SAFETY: static strings.
        .map(|s| unsafe { CStr::from_ptr(flagpost_status_str(*s as c_int)) })
        .collect();
    for (i, t) in texts.iter().enumerate() {
        assert!(!t.is_empty());
        assert!(!texts[..i].contains(t), "{t:?} twice");
    }
    // SAFETY: static string.
    let unknown = unsafe { CStr::from_ptr(flagpost_status_str(-1000)) };
    assert_eq!(unknown, c"unknown status");
}

#[test]
fn a_panic_becomes_a_code_and_its_message() {
    let code = guard(|| panic!("boom {}", 42));
    assert_eq!(code, FlagpostStatus::FLAGPOST_E_PANIC as c_int);
    assert_eq!(last_error(), "panic: boom 42");
    // a later success leaves the detail as it was
    assert_eq!(guard(|| OK), 0);
    assert_eq!(last_error(), "panic: boom 42");
}

#[test]
fn errors_set_the_last_error_of_this_thread_only() {
    let code = guard(|| Err(Error::new(FlagpostStatus::FLAGPOST_E_INVALID, "mine")));
    assert_eq!(code, FlagpostStatus::FLAGPOST_E_INVALID as c_int);
    assert_eq!(last_error(), "mine");
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "");
}

#[test]
fn channel_names_are_checked() {
    assert!(channel("orders").is_ok());
    for bad in ["", "a\u{1}b", &"x".repeat(33)] {
        let e = channel(bad).unwrap_err();
        assert_eq!(e.status, FlagpostStatus::FLAGPOST_E_CHANNEL, "{bad:?}");
        assert!(e.message.contains("channel"), "{}", e.message);
    }
}

#[test]
fn bad_utf8_is_a_code() {
    let bytes = c"\xff\xfe";
    // SAFETY: a NUL-terminated literal.
    let e = unsafe { opt_str(bytes.as_ptr(), "channel") }.unwrap_err();
    assert_eq!(e.status, FlagpostStatus::FLAGPOST_E_UTF8);
    // SAFETY: NULL is allowed.
    assert!(unsafe { opt_str(ptr::null(), "x") }.unwrap().is_none());
    // SAFETY: NULL is allowed and refused.
    let e = unsafe { req_str(ptr::null(), "bind") }.unwrap_err();
    assert_eq!(e.status, FlagpostStatus::FLAGPOST_E_NULL);
}

#[test]
fn addresses_default_their_port() {
    assert_eq!(address("127.0.0.1").unwrap().port(), 16725);
    assert_eq!(address("127.0.0.1:9").unwrap().port(), 9);
    assert_eq!(address("::1").unwrap().port(), 16725);
    assert_eq!(address("[::1]:9").unwrap().port(), 9);
    for bad in ["127.0.0.1:port", "[::1", "127.0.0.1:99999"] {
        assert_eq!(
            address(bad).unwrap_err().status,
            FlagpostStatus::FLAGPOST_E_ADDRESS,
            "{bad:?}"
        );
    }
}

#[test]
fn interest_must_be_known_and_non_empty() {
    assert_eq!(interest(3).unwrap(), FlagSet::STATUS | FlagSet::NON_STATUS);
    for bad in [0, 16, 0x101] {
        assert_eq!(
            interest(bad).unwrap_err().status,
            FlagpostStatus::FLAGPOST_E_INVALID
        );
    }
}

#[test]
fn options_are_read_within_their_size() {
    let mut o = FlagpostNotifierOptions {
        size: 0,
        broker: ptr::null(),
        key_file: ptr::null(),
        sender_id: 0,
        probe_delay_ms: 0,
        spin_in_bursts: 0,
    };
    // SAFETY: a live struct of that size.
    let rc = unsafe { flagpost_notifier_options_init(&mut o, std::mem::size_of_val(&o)) };
    assert_eq!(rc, 0);
    assert_eq!(o.size, std::mem::size_of_val(&o));
    assert_eq!((o.probe_delay_ms, o.spin_in_bursts), (5, 1));

    // a newer caller's longer struct: the fields this library knows
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Newer {
        known: FlagpostNotifierOptions,
        added: u64,
    }
    let mut newer = Newer { known: o, added: 1 };
    newer.known.size = std::mem::size_of::<Newer>();
    newer.known.sender_id = 7;
    // SAFETY: a live struct of its size.
    let read = unsafe { read_versioned(&newer.known, "opts") }.unwrap();
    assert_eq!((read.sender_id, read.probe_delay_ms), (7, 5));

    // a size that ends inside a field is refused, not read in part
    o.size = std::mem::offset_of!(FlagpostNotifierOptions, broker) + 4;
    // SAFETY: a live struct, larger than its size says.
    let e = unsafe { read_versioned(&o, "opts") }.unwrap_err();
    assert_eq!(e.status, FlagpostStatus::FLAGPOST_E_INVALID);

    // a struct never initialised
    o.size = 0;
    let mut out = ptr::null_mut();
    // SAFETY: live pointers.
    let rc = unsafe { flagpost_notifier_new(&o, &mut out) };
    assert_eq!(rc, FlagpostStatus::FLAGPOST_E_INVALID as c_int);
    assert!(out.is_null());
    assert!(last_error().contains("_init"), "{}", last_error());
}

#[test]
fn null_handles_are_codes() {
    let null = FlagpostStatus::FLAGPOST_E_NULL as c_int;
    // SAFETY: NULL handles are allowed and refused.
    unsafe {
        assert_eq!(
            flagpost_notify_status_update(ptr::null(), ptr::null()),
            null
        );
        assert_eq!(flagpost_listener_check_status_update(ptr::null()), null);
        assert_eq!(flagpost_listener_wait(ptr::null(), 0), null);
        assert_eq!(flagpost_notifier_new(ptr::null(), ptr::null_mut()), null);
        flagpost_notifier_free(ptr::null_mut());
        flagpost_listener_free(ptr::null_mut());
        crate::broker::flagpost_broker_free(ptr::null_mut());
    }
}

#[test]
fn listener_options_are_checked_before_connecting() {
    let mut o = FlagpostListenerOptions {
        size: 0,
        broker: ptr::null(),
        key_file: ptr::null(),
        channel: ptr::null(),
        interest: 0,
        keepalive_ms: 0,
        backoff_initial_ms: 0,
        backoff_max_ms: 0,
        on_raise: None,
        user: ptr::null_mut(),
    };
    let size = std::mem::size_of_val(&o);
    // SAFETY: a live struct of that size.
    let rc = unsafe { flagpost_listener_options_init(&mut o, size) };
    assert_eq!(rc, 0);
    assert_eq!(o.interest, FLAGPOST_ALL);
    let mut out = ptr::null_mut();
    o.interest = 0;
    // SAFETY: live pointers.
    let rc = unsafe { flagpost_listener_new(&o, &mut out) };
    assert_eq!(rc, FlagpostStatus::FLAGPOST_E_INVALID as c_int);
    o.interest = FLAGPOST_STATUS;
    o.channel = c"bad\tname".as_ptr();
    // SAFETY: live pointers.
    let rc = unsafe { flagpost_listener_new(&o, &mut out) };
    assert_eq!(rc, FlagpostStatus::FLAGPOST_E_CHANNEL as c_int);
    assert!(out.is_null());
}
