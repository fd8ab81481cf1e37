//! The broker as a Windows service (Windows only): `flagpost service
//! install|uninstall` register and remove the service `flagpost` with the
//! service control manager (SCM), and `flagpost service run`, the command
//! line the SCM starts, runs `serve` under the SCM's control — *running*
//! once the broker's sockets are bound, *stopped* (with the error, if any)
//! when it ends, and a stop or system shutdown request shuts the broker
//! down cleanly. Built on the `windows-service` crate.
//!
//! The `flagpost` command owns the `serve` flags: [`command`] gets them
//! already checked, stores them in the service's command line at install,
//! and gets back the `serve` function to run under the SCM. The SCM
//! gives a service no console, so its log (stderr) goes nowhere: run
//! `flagpost serve` by hand to see why a configuration fails.

use std::ffi::OsString;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::BrokerHandle;

/// The service's name in the SCM (`sc query flagpost`).
pub const SERVICE_NAME: &str = "flagpost";
const DISPLAY_NAME: &str = "Flagpost broker";
const DESCRIPTION: &str = "Flagpost: a wake-up broker for message-processing services (port 16725)";

/// The `serve` run under the SCM: returns when the broker stops.
type Serve = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// What the SCM's threads share with `serve`: the `serve` to run, the
/// status handle once registered, the broker's handle once bound.
static SERVE: Mutex<Option<Serve>> = Mutex::new(None);
static STATUS: OnceLock<ServiceStatusHandle> = OnceLock::new();
static BROKER: Mutex<Option<BrokerHandle>> = Mutex::new(None);

/// Runs `flagpost service ACTION`: `install` (with `serve_flags`, already
/// checked by the caller, stored in the service's command line), `uninstall`,
/// or `run` (the SCM's entry: `serve` under its control).
pub fn command(
    action: &str,
    serve_flags: &[OsString],
    serve: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    match action {
        "install" => install(serve_flags).map_err(|e| describe("install", e)),
        "uninstall" => uninstall().map_err(|e| describe("uninstall", e)),
        "run" => run(Box::new(serve)),
        other => Err(format!(
            "unknown service action {other:?} (install, uninstall or run)"
        )),
    }
}

/// The crate's message with the operating system's reason, which its
/// `Display` leaves out (e.g. access denied: run as an administrator).
fn describe(action: &str, e: windows_service::Error) -> String {
    match e {
        windows_service::Error::Winapi(os) => format!("service {action}: {os}"),
        other => format!("service {action}: {other}"),
    }
}

/// Registers the service `flagpost`, started automatically at boot, whose
/// command line is this executable with `service run` and `serve_flags`.
fn install(serve_flags: &[OsString]) -> windows_service::Result<()> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )?;
    let executable_path = std::env::current_exe().map_err(windows_service::Error::Winapi)?;
    let mut launch_arguments: Vec<OsString> = vec!["service".into(), "run".into()];
    launch_arguments.extend(serve_flags.iter().cloned());
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path,
        launch_arguments,
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = manager.create_service(&info, ServiceAccess::CHANGE_CONFIG)?;
    service.set_description(DESCRIPTION)?;
    Ok(())
}

/// Stops the service if it runs and removes it.
fn uninstall() -> windows_service::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    )?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        // a stop that fails (already stopping) still leaves the deletion to
        // take effect when the process ends
        let _ = service.stop();
    }
    service.delete()
}

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the SCM's dispatcher, which calls `service_main`
/// on a thread of its own and returns when the service has stopped.
fn run(serve: Serve) -> Result<(), String> {
    *SERVE.lock().unwrap_or_else(|p| p.into_inner()) = Some(serve);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
        let e = describe("run", e);
        format!("{e} (the service control manager's entry; from a console use `flagpost serve`)")
    })
}

fn service_main(_arguments: Vec<OsString>) {
    let handler = |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(broker) = BROKER.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                broker.shutdown();
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(SERVICE_NAME, handler) else {
        return; // not started by the SCM: nothing to report to
    };
    let _ = STATUS.set(status);
    set_state(ServiceState::StartPending, 0);
    let serve = SERVE.lock().unwrap_or_else(|p| p.into_inner()).take();
    let result = serve.map_or(Ok(()), |serve| serve());
    if let Err(message) = &result {
        tracing::error!("{message}");
    }
    // ERROR_SERVICE_SPECIFIC_ERROR semantics: a non-zero code says it failed
    set_state(ServiceState::Stopped, u32::from(result.is_err()));
}

/// Called by `serve` once the broker's sockets are bound: under the SCM the
/// service becomes *running* and a stop request reaches this broker;
/// otherwise (a console `flagpost serve`) it does nothing.
pub fn serving(broker: &BrokerHandle) {
    if STATUS.get().is_some() {
        *BROKER.lock().unwrap_or_else(|p| p.into_inner()) = Some(broker.clone());
        set_state(ServiceState::Running, 0);
    }
}

fn set_state(state: ServiceState, service_error: u32) {
    let Some(status) = STATUS.get() else { return };
    let controls_accepted = match state {
        ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        _ => ServiceControlAccept::empty(),
    };
    let exit_code = match service_error {
        0 => ServiceExitCode::Win32(0),
        code => ServiceExitCode::ServiceSpecific(code),
    };
    let _ = status.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted,
        exit_code,
        checkpoint: 0,
        wait_hint: Duration::from_secs(10),
        process_id: None,
    });
}
