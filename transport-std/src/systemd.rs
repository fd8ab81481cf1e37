//! Running under a service manager (systemd; `contrib/` has the units):
//! readiness and reload notifications (`sd_notify`, through the
//! `sd-notify` crate), socket activation (`LISTEN_FDS`/`LISTEN_PID`), and
//! the signals of a service: `SIGHUP` reloads the configuration,
//! `SIGINT`/`SIGTERM` stop the broker.
//!
//! Outside a service manager (`NOTIFY_SOCKET` and `LISTEN_FDS` unset) every
//! function here is a no-op or returns nothing. On other systems than Unix
//! only the no-op notifications exist.

#[cfg(unix)]
use std::fmt::Display;

#[cfg(unix)]
use sd_notify::NotifyState;
#[cfg(unix)]
use tracing::{error, info, warn};

#[cfg(unix)]
use crate::{BrokerConfig, BrokerHandle};

/// Sends `states` to the service manager, if there is one; a failure is
/// logged, never fatal (the broker serves either way).
#[cfg(unix)]
fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Tells the service manager the broker is serving (`READY=1`), with a
/// status line.
pub fn ready(status: &str) {
    #[cfg(unix)]
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    #[cfg(not(unix))]
    let _ = status;
}

/// Tells the service manager a reload started (`RELOADING=1` with the
/// monotonic time, as `Type=notify-reload` asks); [`ready`] ends it.
pub fn reloading() {
    #[cfg(unix)]
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// Tells the service manager the broker is stopping (`STOPPING=1`).
pub fn stopping() {
    #[cfg(unix)]
    notify(&[NotifyState::Stopping]);
}

/// The sockets passed by socket activation, taken from the environment
/// (`LISTEN_PID` must be this process; `LISTEN_FDS`, `LISTEN_PID` and
/// `LISTEN_FDNAMES` are removed so that children do not inherit them):
/// `None` when there are none. Call it once, before starting threads (it
/// changes the environment); give the sockets to
/// [`Broker::bind_activated`](crate::Broker::bind_activated), which checks
/// what they are.
#[cfg(unix)]
pub fn listen_fds() -> std::io::Result<Option<Vec<std::os::fd::OwnedFd>>> {
    use std::os::fd::FromRawFd;
    let fds: Vec<_> = sd_notify::listen_fds()?.collect();
    // the names are not needed: the broker tells its sockets by their type
    std::env::remove_var("LISTEN_FDNAMES");
    if fds.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        fds.into_iter()
            .map(|fd| {
                // SAFETY: sd_listen_fds(3): descriptors 3 .. 3 + LISTEN_FDS
                // are passed to this process (LISTEN_PID checked) for it to
                // own, and are open (sd-notify set FD_CLOEXEC on each, which
                // fails on a closed one); the variables are now unset, so
                // nothing takes them a second time.
                #[allow(unsafe_code)]
                unsafe {
                    std::os::fd::OwnedFd::from_raw_fd(fd)
                }
            })
            .collect(),
    ))
}

/// Handles the signals of a service on a thread of its own, for a broker
/// whose loop runs elsewhere: once the loop answers, `READY=1`; `SIGHUP`
/// calls `load` for the new configuration and [reloads](BrokerHandle::reload)
/// it between `RELOADING=1` and `READY=1` (an error is logged and the old
/// configuration stays); `SIGINT` or `SIGTERM` sends `STOPPING=1` and shuts
/// the broker down. The thread ends with the broker.
#[cfg(unix)]
pub fn handle_signals<E, F>(
    handle: BrokerHandle,
    load: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    E: Display,
    F: Fn() -> Result<BrokerConfig, E> + Send + 'static,
{
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("flagpost-signals".into())
        .spawn(move || {
            // a reply proves the loop runs: the sockets are served
            if handle.stats().is_err() {
                return;
            }
            ready("serving");
            for signal in signals.forever() {
                if signal != SIGHUP {
                    info!(signal, "stopping");
                    stopping();
                    handle.shutdown();
                    return;
                }
                reloading();
                info!("SIGHUP: reloading the configuration");
                let outcome = load()
                    .map_err(|e| e.to_string())
                    .and_then(|config| handle.reload(config).map_err(|e| e.to_string()));
                match outcome {
                    Ok(done) if done.needs_restart.is_empty() => ready("serving; reloaded"),
                    Ok(done) => ready(&format!(
                        "serving; reloaded; restart needed for {}",
                        done.needs_restart.join(", ")
                    )),
                    Err(e) => {
                        error!(error = %e, "reload failed: the previous configuration stays in force");
                        ready(&format!("serving; reload failed: {e}"));
                    }
                }
            }
        })
}
