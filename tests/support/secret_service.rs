//! A private Secret Service: its own D-Bus session bus (no service activation, so nothing else
//! is started on it) and an unlocked gnome-keyring-daemon, both in a scratch directory and
//! stopped when dropped. Entries are stored with `secret-tool` (libsecret), attributes as
//! given: [`SecretService::store_keytar`] stores them exactly as keytar and Bitwarden's
//! `desktop_core` do. Needs `dbus-daemon`, `gnome-keyring-daemon` and `secret-tool`
//! (scripts/test.sh installs them).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SecretService {
    dir: tempfile::TempDir,
    bus: Child,
    keyring: Child,
    /// For `DBUS_SESSION_BUS_ADDRESS`.
    pub address: String,
}

fn spawn(cmd: &mut Command, what: &str) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {what} ({e}): install dbus-daemon, gnome-keyring and libsecret-tools \
             (scripts/test.sh does)"
        )
    })
}

impl SecretService {
    pub fn start() -> SecretService {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        for d in ["run", "data", "home"] {
            std::fs::create_dir_all(p(d)).expect("dir");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p("run"), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
        }
        let socket = p("bus");
        let address = format!("unix:path={}", socket.display());
        std::fs::write(
            p("bus.conf"),
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
            ),
        )
        .expect("bus.conf");
        let bus = spawn(
            Command::new("dbus-daemon")
                .arg("--nofork")
                .arg(format!("--config-file={}", p("bus.conf").display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "dbus-daemon",
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "the D-Bus socket did not appear");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut keyring = spawn(
            Command::new("gnome-keyring-daemon")
                .args(["--foreground", "--unlock", "--components=secrets"])
                .env("DBUS_SESSION_BUS_ADDRESS", &address)
                .env("HOME", p("home"))
                .env("XDG_DATA_HOME", p("data"))
                .env("XDG_RUNTIME_DIR", p("run"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "gnome-keyring-daemon",
        );
        // the login keyring's password, then end of input
        keyring
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"test-keyring-pw")
            .expect("keyring password");
        let ss = SecretService {
            dir,
            bus,
            keyring,
            address,
        };
        // ready once an item can be stored
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ss.try_store(&[("probe", "ready")], "x") {
            assert!(
                Instant::now() < deadline,
                "gnome-keyring-daemon did not start its Secret Service"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ss
    }

    fn secret_tool(&self) -> Command {
        let mut c = Command::new("secret-tool");
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"));
        c
    }

    fn try_store(&self, attributes: &[(&str, &str)], secret: &str) -> bool {
        let mut cmd = self.secret_tool();
        cmd.args(["store", "--label", "test item"]);
        for (k, v) in attributes {
            cmd.args([k, v]);
        }
        let Ok(mut child) = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            panic!("cannot run secret-tool: install libsecret-tools (scripts/test.sh does)");
        };
        let written = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(secret.as_bytes())
            .is_ok();
        child.wait().map(|s| s.success()).unwrap_or(false) && written
    }

    /// Stores an item with exactly these attributes (the secret on secret-tool's stdin).
    pub fn store(&self, attributes: &[(&str, &str)], secret: &str) {
        assert!(
            self.try_store(attributes, secret),
            "secret-tool store {attributes:?} failed"
        );
    }

    /// Stores `secret` the way keytar's `setPassword(service, account, secret)` does with
    /// libsecret: schema `org.freedesktop.Secret.Generic`, attributes `service` and `account`.
    pub fn store_keytar(&self, service: &str, account: &str, secret: &str) {
        self.store(
            &[
                ("xdg:schema", "org.freedesktop.Secret.Generic"),
                ("service", service),
                ("account", account),
            ],
            secret,
        );
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
