//! The Windows service: `directory-connector service install | uninstall | start | stop`
//! registers the `service` mode (see [`crate::service`]) with the Service Control Manager as
//! the service `DirectoryConnector`, running as LocalSystem with its data directory under
//! `%ProgramData%\directory-connector\data`. The SCM starts the binary as
//! `directory-connector.exe --data-dir <that dir> service scm`; a stop or shutdown request asks
//! the service to stop after the request in flight (the run is recorded as interrupted) and
//! the service then reports itself stopped.
//!
//! The control handling ([`on_control`]) is plain Rust, tested on every platform against the
//! real service loop; the SCM calls themselves exist on Windows only.

use std::path::PathBuf;

use crate::errors::Failure;
use crate::service::StopHandle;

/// The service's key name in the SCM (`sc query DirectoryConnector`).
pub const SERVICE_NAME: &str = "DirectoryConnector";
/// The name the Services console shows.
pub const DISPLAY_NAME: &str = "Bitwarden Directory Connector";

/// What the SCM asks of a running service (the subset the connector distinguishes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Stop,
    Shutdown,
    Interrogate,
    /// Pause, parameter changes, power events, …: not supported.
    Other,
}

/// The handler's answer to the SCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    NoError,
    NotImplemented,
}

/// Handles one control: stop and shutdown ask the service to stop after the request in flight;
/// interrogate is answered; anything else is not implemented.
pub fn on_control(control: Control, stop: &StopHandle) -> Reply {
    match control {
        Control::Stop | Control::Shutdown => {
            stop.stop();
            Reply::NoError
        }
        Control::Interrogate => Reply::NoError,
        Control::Other => Reply::NotImplemented,
    }
}

/// The service's data directory: `%ProgramData%\directory-connector\data`.
pub fn service_data_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("ProgramData")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Failure::Config("the environment variable ProgramData is not set".into()))?;
    Ok(PathBuf::from(base).join("directory-connector").join("data"))
}

/// The `service` subcommands that talk to the SCM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Uninstall,
    Start,
    Stop,
    /// Started by the SCM: run the service under its control.
    Scm,
}

/// Runs a `service` action; returns the message for the admin. `data_dir` is the one the
/// command line named: under the SCM, the service's (`--data-dir` in its registration).
#[cfg(windows)]
pub fn run_action(action: Action, data_dir: &std::path::Path) -> anyhow::Result<String> {
    scm::run_action(action, data_dir)
}

/// Outside Windows there is no Service Control Manager: the error says what to use instead.
#[cfg(not(windows))]
pub fn run_action(action: Action, data_dir: &std::path::Path) -> anyhow::Result<String> {
    let _ = (action, data_dir);
    Err(Failure::Config(
        "`service install|uninstall|start|stop` manage a Windows service; on Linux run \
         `directory-connector service` under systemd (see the README), elsewhere under the \
         system's service manager"
            .into(),
    )
    .into())
}

#[cfg(windows)]
mod scm {
    use std::ffi::OsString;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{
        self, ServiceControlHandlerResult, ServiceStatusHandle,
    };
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{Action, Control, DISPLAY_NAME, Reply, SERVICE_NAME};
    use crate::service::{ServiceOptions, StopHandle};

    const DESCRIPTION: &str =
        "Keeps a Bitwarden organization's members and groups in step with the company directory.";

    /// How long the SCM is told a stop may take (a push finishes its batch first).
    const STOP_WAIT: Duration = Duration::from_secs(120);

    /// The data directory the SCM's command line named, for [`service_main`].
    static DATA_DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

    pub(super) fn run_action(action: Action, data_dir: &std::path::Path) -> anyhow::Result<String> {
        match action {
            Action::Install => install(),
            Action::Uninstall => uninstall(),
            Action::Start => start(),
            Action::Stop => stop(),
            Action::Scm => {
                let _ = DATA_DIR.set(data_dir.to_path_buf());
                service_dispatcher::start(SERVICE_NAME, ffi_service_main).context(
                    "connecting to the Service Control Manager (`service scm` is started by \
                     the SCM; use `service start`, or `service` to run in the foreground)",
                )?;
                Ok(String::new())
            }
        }
    }

    fn manager(access: ServiceManagerAccess) -> anyhow::Result<ServiceManager> {
        ServiceManager::local_computer(None::<&str>, access).context(
            "opening the Service Control Manager (run from an elevated prompt: Run as \
             administrator)",
        )
    }

    fn install() -> anyhow::Result<String> {
        let dir = super::service_data_dir()?;
        crate::datadir::ensure(&dir)?;
        let exe = std::env::current_exe().context("finding this program's path")?;
        let info = ServiceInfo {
            name: OsString::from(SERVICE_NAME),
            display_name: OsString::from(DISPLAY_NAME),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe.clone(),
            launch_arguments: vec![
                OsString::from("--data-dir"),
                dir.clone().into_os_string(),
                OsString::from("service"),
                OsString::from("scm"),
            ],
            dependencies: vec![],
            account_name: None, // LocalSystem
            account_password: None,
        };
        let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let svc = m
            .create_service(&info, ServiceAccess::CHANGE_CONFIG)
            .with_context(|| format!("registering the service {SERVICE_NAME}"))?;
        svc.set_description(DESCRIPTION)
            .with_context(|| format!("describing the service {SERVICE_NAME}"))?;
        Ok(format!(
            "Installed the service {SERVICE_NAME} ({}), starting automatically, data directory {}. \
             Configure it with `--data-dir \"{}\"`, then `service start`.",
            exe.display(),
            dir.display(),
            dir.display()
        ))
    }

    fn wait_for(
        svc: &windows_service::service::Service,
        state: ServiceState,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let now = svc.query_status().context("querying the service's state")?;
            if now.current_state == state {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the service {SERVICE_NAME} is {:?} after {} s (wanted {state:?})",
                    now.current_state,
                    limit.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn uninstall() -> anyhow::Result<String> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let svc = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .with_context(|| format!("opening the service {SERVICE_NAME} (is it installed?)"))?;
        if svc.query_status()?.current_state != ServiceState::Stopped {
            svc.stop().context("stopping the service")?;
            wait_for(&svc, ServiceState::Stopped, STOP_WAIT)?;
        }
        svc.delete()
            .with_context(|| format!("removing the service {SERVICE_NAME}"))?;
        Ok(format!(
            "Removed the service {SERVICE_NAME}; its data directory is kept."
        ))
    }

    fn start() -> anyhow::Result<String> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let svc = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::START,
            )
            .with_context(|| format!("opening the service {SERVICE_NAME} (is it installed?)"))?;
        match svc.start::<&str>(&[]) {
            Ok(()) => {}
            // ERROR_SERVICE_ALREADY_RUNNING
            Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(1056) => {
                return Ok(format!("The service {SERVICE_NAME} is already running."));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("starting the service {SERVICE_NAME}"));
            }
        }
        wait_for(&svc, ServiceState::Running, Duration::from_secs(60))?;
        Ok(format!("The service {SERVICE_NAME} is running."))
    }

    fn stop() -> anyhow::Result<String> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let svc = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP,
            )
            .with_context(|| format!("opening the service {SERVICE_NAME} (is it installed?)"))?;
        if svc.query_status()?.current_state == ServiceState::Stopped {
            return Ok(format!("The service {SERVICE_NAME} is not running."));
        }
        svc.stop()
            .with_context(|| format!("stopping the service {SERVICE_NAME}"))?;
        wait_for(&svc, ServiceState::Stopped, STOP_WAIT)?;
        Ok(format!("The service {SERVICE_NAME} has stopped."))
    }

    define_windows_service!(ffi_service_main, service_main);

    fn status(state: ServiceState, exit: ServiceExitCode, wait: Duration) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code: exit,
            checkpoint: 0,
            wait_hint: wait,
            process_id: None,
        }
    }

    fn service_main(_args: Vec<OsString>) {
        if let Err(e) = run_service() {
            tracing::error!("the Windows service failed: {e:#}");
        }
    }

    fn run_service() -> anyhow::Result<()> {
        let stop = StopHandle::new();
        let handle: Arc<OnceLock<ServiceStatusHandle>> = Arc::new(OnceLock::new());
        let (for_handler, handle_in) = (stop.clone(), handle.clone());
        let status_handle = service_control_handler::register(SERVICE_NAME, move |c| {
            let control = match c {
                ServiceControl::Stop => Control::Stop,
                ServiceControl::Shutdown => Control::Shutdown,
                ServiceControl::Interrogate => Control::Interrogate,
                _ => Control::Other,
            };
            let reply = super::on_control(control, &for_handler);
            if matches!(control, Control::Stop | Control::Shutdown)
                && let Some(h) = handle_in.get()
            {
                let _ = h.set_service_status(status(
                    ServiceState::StopPending,
                    ServiceExitCode::Win32(0),
                    STOP_WAIT,
                ));
            }
            match reply {
                Reply::NoError => ServiceControlHandlerResult::NoError,
                Reply::NotImplemented => ServiceControlHandlerResult::NotImplemented,
            }
        })
        .context("registering the service control handler")?;
        let _ = handle.set(status_handle);
        status_handle.set_service_status(status(
            ServiceState::Running,
            ServiceExitCode::Win32(0),
            Duration::ZERO,
        ))?;
        let data_dir = match DATA_DIR.get() {
            Some(d) => d.clone(),
            None => super::service_data_dir()?,
        };
        let result = crate::service::run(ServiceOptions::new(&data_dir), stop);
        if let Err(e) = &result {
            tracing::error!("the service stopped with an error: {e:#}");
        }
        let exit = match result {
            Ok(()) => ServiceExitCode::Win32(0),
            Err(_) => ServiceExitCode::ServiceSpecific(1),
        };
        status_handle.set_service_status(status(ServiceState::Stopped, exit, Duration::ZERO))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_shutdown_stop_the_service_and_others_do_not() {
        let stop = StopHandle::new();
        assert_eq!(on_control(Control::Interrogate, &stop), Reply::NoError);
        assert_eq!(on_control(Control::Other, &stop), Reply::NotImplemented);
        assert!(!stop.is_stopped());
        assert_eq!(on_control(Control::Stop, &stop), Reply::NoError);
        assert!(stop.is_stopped());
        let stop = StopHandle::new();
        assert_eq!(on_control(Control::Shutdown, &stop), Reply::NoError);
        assert!(stop.is_stopped());
    }

    /// The real service loop (on a data directory without configuration: each run fails and is
    /// recorded) ends cleanly once the SCM's stop control arrives.
    #[test]
    fn the_service_loop_ends_on_the_stop_control() {
        let dir = tempfile::tempdir().unwrap();
        let stop = StopHandle::new();
        let mut opts = crate::service::ServiceOptions::new(dir.path());
        opts.secrets = Some(std::sync::Arc::new(crate::secrets::MemoryStore::default()));
        let runner = stop.clone();
        let t = std::thread::spawn(move || crate::service::run(opts, runner));
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(!t.is_finished(), "the service runs until asked to stop");
        on_control(Control::Interrogate, &stop);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!t.is_finished(), "interrogate does not stop it");
        on_control(Control::Stop, &stop);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(t.is_finished(), "the service did not stop within 20 s");
        t.join().unwrap().unwrap();
    }

    #[test]
    fn the_service_data_dir_is_under_program_data() {
        // SAFETY (test): no other test reads ProgramData
        unsafe { std::env::set_var("ProgramData", "C:\\ProgramData") };
        let d = service_data_dir().unwrap();
        assert!(d.starts_with("C:\\ProgramData"), "{}", d.display());
        assert!(d.ends_with("data"));
    }

    #[cfg(not(windows))]
    #[test]
    fn outside_windows_the_scm_actions_explain_what_to_use() {
        let e = run_action(Action::Install, std::path::Path::new("/tmp")).unwrap_err();
        assert!(e.to_string().contains("systemd"), "{e}");
    }
}
