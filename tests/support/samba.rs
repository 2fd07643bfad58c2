//! Starts a real Samba Active Directory domain controller for the AD tests: provisioned once
//! per test process (about 15 s), with the test CA's certificate for LDAPS and StartTLS, a
//! reader service account, a disabled and a lockable account, and an account-lockout policy.
//! Samba's ports are fixed (389/636), so one DC serves every test of a process; each test
//! works in its own OU. The DC stops when the test process exits (parent-death signal), with
//! `--maximum-runtime` as a backstop.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::slapd::{certs, read_pid, run, run_with_input, terminate};

pub const BASE: &str = "DC=example,DC=test";
pub const ADMIN: &str = "Administrator@EXAMPLE.TEST";
pub const ADMIN_PW: &str = "Passw0rd!Admin";
/// The service account the connector binds as.
pub const READER: &str = "svc-reader@EXAMPLE.TEST";
pub const READER_PW: &str = "Reader!Passw0rd1";
/// A disabled account (bind error `data 533`).
pub const DISABLED: &str = "svc-disabled@EXAMPLE.TEST";
/// An account tests lock out with wrong passwords (bind error `data 775`).
pub const LOCKABLE: &str = "svc-lockable@EXAMPLE.TEST";
pub const OTHER_PW: &str = "Other!Passw0rd1";
/// An account with the right to replicate directory changes (DirSync), made on first use.
pub const REPLICATOR: &str = "svc-repl@EXAMPLE.TEST";
pub const REPLICATOR_PW: &str = "Repl!Passw0rd1";

pub struct SambaDc {
    pub dir: PathBuf,
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Stops DCs left behind by earlier, killed test runs (they hold the fixed ports).
fn stop_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("dc-test-samba-") {
            continue;
        }
        if let Some(pid) = read_pid(&e.path().join("run/samba.pid")) {
            terminate(pid);
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
    let t = Instant::now();
    while port_open(389) && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn samba_tool(dir: &Path, args: &[&str]) -> String {
    run(Command::new("samba-tool")
        .args(args)
        .arg("-s")
        .arg(dir.join("etc/smb.conf"))
        .arg("-H")
        .arg(format!("{}/private/sam.ldb", dir.display())))
}

#[allow(
    clippy::too_many_lines,
    reason = "provisioning a Samba AD DC step by step (domain, configuration, start, wait, OUs): each step needs the one before"
)]
fn provision() -> SambaDc {
    stop_stale();
    let dir = std::env::temp_dir().join(format!("dc-test-samba-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("run")).expect("samba dir");
    let t = Instant::now();
    run(Command::new("samba-tool")
        .args([
            "domain",
            "provision",
            "--use-rfc2307",
            "--realm=EXAMPLE.TEST",
            "--domain=EXAMPLE",
            "--server-role=dc",
            "--dns-backend=NONE",
            &format!("--adminpass={ADMIN_PW}"),
            "--host-name=DC1",
            "--backend-store=mdb",
            "--option=interfaces = lo",
            "--option=bind interfaces only = yes",
        ])
        .arg(format!("--targetdir={}", dir.display())));
    let c = certs();
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    for (from, to) in [
        (&c.ca, "ca.pem"),
        (&c.cert, "server.pem"),
        (&c.key, "server.key"),
    ] {
        std::fs::copy(from, tls.join(to)).expect("copy cert");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tls.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("key mode");
    let conf_path = dir.join("etc/smb.conf");
    let conf = std::fs::read_to_string(&conf_path).expect("smb.conf");
    let d = dir.display();
    let extra = format!(
        "\tlog file = {d}/log.%m\n\
         \tpid directory = {d}/run\n\
         \tncalrpc dir = {d}/run/ncalrpc\n\
         \twinbindd socket directory = {d}/run/winbindd\n\
         \tntp signd socket directory = {d}/run/ntp_signd\n\
         \tserver services = ldap, kdc\n\
         \tdisable netbios = yes\n\
         \tldap server require strong auth = no\n\
         \tldb:nosync = true\n\
         \ttls enabled = yes\n\
         \ttls keyfile = {d}/tls/server.key\n\
         \ttls certfile = {d}/tls/server.pem\n\
         \ttls cafile = {d}/tls/ca.pem\n"
    );
    let conf: String = conf
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with("log file") && !l.starts_with("server services")
        })
        .map(|l| {
            if l.trim() == "[global]" {
                format!("{l}\n{extra}")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&conf_path, conf).expect("write smb.conf");

    // accounts and policy, written before the DC starts
    samba_tool(
        &dir,
        &[
            "user",
            "create",
            "svc-reader",
            READER_PW,
            "--mail-address=svc-reader@example.test",
        ],
    );
    samba_tool(&dir, &["user", "create", "svc-disabled", OTHER_PW]);
    samba_tool(&dir, &["user", "disable", "svc-disabled"]);
    samba_tool(&dir, &["user", "create", "svc-lockable", OTHER_PW]);
    samba_tool(
        &dir,
        &[
            "domain",
            "passwordsettings",
            "set",
            "--account-lockout-threshold=3",
        ],
    );

    // started from a thread that lives as long as the process, so the parent-death signal
    // fires when the test process exits, not when a test thread ends
    let (tx, rx) = std::sync::mpsc::channel();
    let conf_path2 = conf_path.clone();
    std::thread::spawn(move || {
        let mut cmd = Command::new("samba");
        cmd.args(["-F", "--maximum-runtime=1800", "-s"])
            .arg(&conf_path2)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        let _ = tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    let started = rx.recv().expect("samba thread");
    if let Err(e) = started {
        panic!("starting samba: {e}");
    }
    let ready = Instant::now();
    loop {
        let out = Command::new("ldapsearch")
            .args(["-x", "-H", "ldap://127.0.0.1", "-s", "base", "-b", ""])
            .output();
        if out.is_ok_and(|o| o.status.success()) {
            break;
        }
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "samba did not answer on 127.0.0.1:389; see {}/log.samba",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("samba AD DC ready in {:.1}s", t.elapsed().as_secs_f64());
    SambaDc { dir }
}

/// The DC shared by this test process.
pub fn dc() -> &'static SambaDc {
    static DC: OnceLock<SambaDc> = OnceLock::new();
    DC.get_or_init(provision)
}

/// A unique OU name per call, so tests do not see each other's objects.
pub fn unique_ou(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::SeqCst))
}

impl SambaDc {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    fn ldap_cmd(&self, tool: &str) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(["-x", "-H", "ldap://127.0.0.1", "-D", ADMIN, "-w", ADMIN_PW]);
        cmd
    }

    /// Applies LDIF with `ldapmodify -a` as the administrator.
    pub fn modify(&self, ldif: &str) {
        run_with_input(self.ldap_cmd("ldapmodify").arg("-a"), ldif);
    }

    pub fn delete(&self, dn: &str) {
        run(self.ldap_cmd("ldapdelete").arg(dn));
    }

    /// The objectGUID of an entry, in Microsoft's text form, read with `ldapsearch`.
    pub fn guid(&self, dn: &str) -> String {
        let out = run(self.ldap_cmd("ldapsearch").args([
            "-LLL",
            "-s",
            "base",
            "-b",
            dn,
            "(objectClass=*)",
            "objectGUID",
        ]));
        let b64 = out
            .lines()
            .find_map(|l| l.strip_prefix("objectGUID:: "))
            .expect("objectGUID")
            .trim()
            .to_string();
        let bytes = base64_decode(&b64);
        directory_connector::sources::ldap::guid_to_string(&bytes).expect("16 bytes")
    }

    /// Makes [`REPLICATOR`] once: an ordinary account given "Replicating Directory Changes"
    /// (`DS-Replication-Get-Changes`, 1131f6aa-…) on the domain, as an admin does for DirSync.
    pub fn replicator(&self) -> &'static str {
        static MADE: OnceLock<()> = OnceLock::new();
        MADE.get_or_init(|| {
            samba_tool(&self.dir, &["user", "create", "svc-repl", REPLICATOR_PW]);
            let shown = samba_tool(&self.dir, &["user", "show", "svc-repl"]);
            let sid = shown
                .lines()
                .find_map(|l| l.strip_prefix("objectSid: "))
                .expect("objectSid")
                .trim()
                .to_string();
            let sddl = format!("(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;{sid})");
            samba_tool(
                &self.dir,
                &[
                    "dsacl",
                    "set",
                    &format!("--objectdn={BASE}"),
                    "--action=allow",
                    &format!("--sddl={sddl}"),
                ],
            );
        });
        REPLICATOR
    }

    /// Tries a bind with `ldapwhoami` (to lock an account out).
    pub fn try_bind(&self, who: &str, pw: &str) -> bool {
        Command::new("ldapwhoami")
            .args(["-x", "-H", "ldap://127.0.0.1", "-D", who, "-w", pw])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// An OU with `users` (cn, mail, disabled) and `groups` (cn, member cns — users or groups).
pub fn ou_ldif(
    ou: &str,
    users: &[(&str, Option<&str>, bool)],
    groups: &[(&str, &[&str])],
) -> String {
    let mut s = format!("dn: OU={ou},{BASE}\nobjectClass: organizationalUnit\nou: {ou}\n\n");
    for (cn, mail, disabled) in users {
        s.push_str(&user_ldif(ou, cn, *mail, *disabled));
    }
    for (cn, members) in groups {
        s.push_str(&format!(
            "dn: CN={cn},OU={ou},{BASE}\nobjectClass: group\nsAMAccountName: {ou}-{cn}\n"
        ));
        for m in *members {
            s.push_str(&format!("member: CN={m},OU={ou},{BASE}\n"));
        }
        s.push('\n');
    }
    s
}

pub fn user_ldif(ou: &str, cn: &str, mail: Option<&str>, disabled: bool) -> String {
    let mut s = format!(
        "dn: CN={cn},OU={ou},{BASE}\nobjectClass: user\nsAMAccountName: {}\nuserAccountControl: {}\n",
        format!("{ou}-{cn}").chars().take(20).collect::<String>(),
        if disabled { 514 } else { 512 }
    );
    if let Some(m) = mail {
        s.push_str(&format!("mail: {m}\n"));
    }
    s.push('\n');
    s
}

pub fn dn(ou: &str, cn: &str) -> String {
    format!("CN={cn},OU={ou},{BASE}")
}

fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = T.iter().position(|t| *t == c).expect("base64") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}
