//! Starts a real OpenLDAP `slapd` on free loopback ports (plain and LDAPS, StartTLS on the
//! plain port) with a test CA, loads an LDIF offline with `slapadd`, and stops it on drop.
//! A reader account has a size limit of 10 for non-paged searches, so paging is exercised.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PW: &str = "AdminPw-123";
pub const READER_DN: &str = "cn=reader,dc=example,dc=com";
pub const READER_PW: &str = "ReaderPw-456";

/// A custom schema that gives plain LDAP entries an AD-style `userAccountControl`.
const EXTRA_SCHEMA: &str = "attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' \
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )\n\
objectclass ( 1.3.6.1.4.1.55555.1.1 NAME 'dcTestAccount' AUXILIARY MAY userAccountControl )\n";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Runs a tool, asserts success (printing its output otherwise) and returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    run_with_input(cmd, "")
}

/// The same with `input` on stdin (LDIF for ldapmodify).
/// The pid in a daemon's pid file.
pub fn read_pid(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
}

/// Asks a daemon we started to stop (SIGTERM); one that is gone already is fine.
pub fn terminate(pid: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

pub fn run_with_input(cmd: &mut Command, input: &str) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    // Written from another thread while the output is read: a tool that answers every entry
    // (ldapmodify's "adding new entry …") fills its output pipe long before a large input is
    // written, and would wait for us as we wait for it.
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.to_string();
        std::thread::spawn(move || stdin.write_all(input.as_bytes()))
    });
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(w) = writer {
        w.join().expect("stdin writer").expect("write stdin");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test CA and certificates it signed, made once per test process: the server's (SAN
/// localhost, 127.0.0.1), one for another name, an expired one, and a client certificate.
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub wrong_name_cert: PathBuf,
    pub expired_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Signs a new key's certificate with the test CA through `openssl ca`, which can back-date.
fn sign(dir: &Path, name: &str, subject: &str, ext: &str, dates: Option<(&str, &str)>) {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl")
        .args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject])
        .arg("-keyout")
        .arg(p(&format!("{name}.key")))
        .arg("-out")
        .arg(p(&format!("{name}.csr"))));
    std::fs::write(p(&format!("{name}.ext")), ext).expect("ext");
    let mut cmd = Command::new("openssl");
    cmd.args(["ca", "-batch", "-notext", "-config"])
        .arg(p("ca.cnf"))
        .arg("-extfile")
        .arg(p(&format!("{name}.ext")))
        .arg("-in")
        .arg(p(&format!("{name}.csr")))
        .arg("-out")
        .arg(p(&format!("{name}.pem")));
    match dates {
        Some((start, end)) => cmd.args(["-startdate", start, "-enddate", end]),
        None => cmd.args(["-days", "3650"]),
    };
    run(&mut cmd);
}

pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dc-test-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let p = |n: &str| dir.join(n);
        run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=Directory Connector Test CA"])
            .arg("-keyout").arg(p("ca.key")).arg("-out").arg(p("ca.pem")));
        std::fs::write(p("index.txt"), "").expect("index");
        std::fs::write(p("serial"), "1000\n").expect("serial");
        std::fs::write(
            p("ca.cnf"),
            format!(
                "[ca]\ndefault_ca = test\n[test]\ndir = {d}\ndatabase = {d}/index.txt\n\
                 serial = {d}/serial\nnew_certs_dir = {d}\ncertificate = {d}/ca.pem\n\
                 private_key = {d}/ca.key\ndefault_md = sha256\npolicy = any\n\
                 unique_subject = no\ncopy_extensions = none\n[any]\ncommonName = supplied\n",
                d = dir.display()
            ),
        )
        .expect("ca.cnf");
        let server_ext = |san: &str| {
            format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        };
        sign(&dir, "server", "/CN=localhost", &server_ext("DNS:localhost,IP:127.0.0.1"), None);
        sign(&dir, "wrongname", "/CN=other.example", &server_ext("DNS:other.example"), None);
        sign(
            &dir,
            "expired",
            "/CN=localhost",
            &server_ext("DNS:localhost,IP:127.0.0.1"),
            Some(("20200101000000Z", "20210101000000Z")),
        );
        sign(
            &dir,
            "client",
            "/CN=directory-connector",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
            None,
        );
        Certs {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            wrong_name_cert: p("wrongname.pem"),
            expired_cert: p("expired.pem"),
            client_cert: p("client.pem"),
            client_key: p("client.key"),
            dir,
        }
    })
}

/// How slapd presents TLS: which server certificate, and whether it demands a client one.
#[derive(Clone, Copy, Default)]
pub enum ServerCert {
    #[default]
    Good,
    WrongName,
    Expired,
}

#[derive(Clone, Copy, Default)]
pub struct TlsOptions {
    pub cert: ServerCert,
    pub require_client_cert: bool,
}

pub struct Slapd {
    pub port: u16,
    pub ldaps_port: u16,
    pub dir: tempfile::TempDir,
    pid: Option<i32>,
}

fn slapd_bin() -> &'static str {
    if Path::new("/usr/sbin/slapd").exists() {
        "/usr/sbin/slapd"
    } else {
        "slapd"
    }
}

/// The base entries every directory has: the suffix, the reader, People and Groups.
pub fn base_ldif() -> String {
    format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: {READER_PW}\n\n\
dn: ou=People,{BASE}\nobjectClass: organizationalUnit\nou: People\n\n\
dn: ou=Groups,{BASE}\nobjectClass: organizationalUnit\nou: Groups\n\n"
    )
}

/// An inetOrgPerson under ou=People.
pub fn person(uid: &str, mail: Option<&str>, disabled: bool) -> String {
    let mut s = format!(
        "dn: uid={uid},ou=People,{BASE}\nobjectClass: inetOrgPerson\nobjectClass: dcTestAccount\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
    );
    if let Some(m) = mail {
        s.push_str(&format!("mail: {m}\n"));
    }
    s.push_str(&format!(
        "userAccountControl: {}\n\n",
        if disabled { 514 } else { 512 }
    ));
    s
}

/// A groupOfNames under ou=Groups; members are full DNs.
pub fn group(cn: &str, member_dns: &[String]) -> String {
    let mut s = format!("dn: cn={cn},ou=Groups,{BASE}\nobjectClass: groupOfNames\ncn: {cn}\n");
    if member_dns.is_empty() {
        s.push_str(&format!("member: {BASE}\n")); // groupOfNames needs one member
    }
    for m in member_dns {
        s.push_str(&format!("member: {m}\n"));
    }
    s.push('\n');
    s
}

pub fn user_dn(uid: &str) -> String {
    format!("uid={uid},ou=People,{BASE}")
}

pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},ou=Groups,{BASE}")
}

/// Waits until slapd answers on `port` (at most 20 s).
fn wait_ready(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let ok = Command::new("ldapsearch")
            .args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{port}"),
                "-b",
                "",
                "-s",
                "base",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Slapd {
    /// Starts slapd with `base_ldif()` plus `ldif`.
    pub fn start(ldif: &str) -> Slapd {
        Self::start_with(ldif, TlsOptions::default())
    }

    /// Starts slapd with the given TLS setup.
    pub fn start_with(ldif: &str, tls: TlsOptions) -> Slapd {
        Self::start_inner(ldif, tls, false)
    }

    /// Starts slapd with the `syncprov` overlay (RFC 4533 content synchronisation, a session
    /// log of 1,000 changes): the fast lane's change feed.
    pub fn start_with_feed(ldif: &str) -> Slapd {
        Self::start_inner(ldif, TlsOptions::default(), true)
    }

    fn start_inner(ldif: &str, tls: TlsOptions, syncprov: bool) -> Slapd {
        let c = certs();
        let (cert_file, key_file) = match tls.cert {
            ServerCert::Good => (c.cert.clone(), c.key.clone()),
            ServerCert::WrongName => (c.wrong_name_cert.clone(), c.dir.join("wrongname.key")),
            ServerCert::Expired => (c.expired_cert.clone(), c.dir.join("expired.key")),
        };
        let verify = if tls.require_client_cert {
            "demand"
        } else {
            "never"
        };
        let dir = tempfile::tempdir().expect("slapd dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).expect("db dir");
        std::fs::write(d.join("extra.schema"), EXTRA_SCHEMA).expect("schema");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
include /etc/ldap/schema/cosine.schema\n\
include /etc/ldap/schema/inetorgperson.schema\n\
include /etc/ldap/schema/nis.schema\n\
include {d}/extra.schema\n\
modulepath /usr/lib/ldap\n\
moduleload back_mdb\n\
{syncprov_module}\
pidfile {d}/slapd.pid\n\
argsfile {d}/slapd.args\n\
TLSCACertificateFile {ca}\n\
TLSCertificateFile {cert}\n\
TLSCertificateKeyFile {key}\n\
TLSVerifyClient {verify}\n\
database mdb\n\
maxsize 17179869184\n\
dbnosync\n\
suffix \"{BASE}\"\n\
rootdn \"{ADMIN_DN}\"\n\
rootpw {ADMIN_PW}\n\
directory {d}/db\n\
index objectClass eq\n\
limits dn.exact=\"{READER_DN}\" size.soft=10 size.hard=10 size.pr=unlimited size.prtotal=unlimited\n\
access to attrs=userPassword by anonymous auth by * none\n\
access to * by * read\n\
{syncprov_overlay}",
            syncprov_module = if syncprov {
                "moduleload syncprov\n"
            } else {
                ""
            },
            syncprov_overlay = if syncprov {
                "index entryCSN,entryUUID eq\noverlay syncprov\nsyncprov-checkpoint 1 1\nsyncprov-sessionlog 1000\n"
            } else {
                ""
            },
            d = d.display(),
            ca = c.ca.display(),
            cert = cert_file.display(),
            key = key_file.display(),
        );
        std::fs::write(d.join("slapd.conf"), conf).expect("conf");
        std::fs::write(d.join("data.ldif"), format!("{}{ldif}", base_ldif())).expect("ldif");
        run(Command::new("slapadd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("data.ldif"))
            .arg("-q"));
        // Another process may grab a free port before slapd binds it: try a few times.
        let mut attempt = 0;
        let (port, ldaps_port) = loop {
            attempt += 1;
            let port = free_port();
            let ldaps_port = free_port();
            let started = Command::new(slapd_bin())
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!(
                    "ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/"
                ))
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if started && wait_ready(port) {
                break (port, ldaps_port);
            }
            if let Some(pid) = read_pid(&d.join("slapd.pid")) {
                terminate(pid);
            }
            assert!(
                attempt < 4,
                "slapd did not start (ports {port}, {ldaps_port})"
            );
        };
        let mut s = Slapd {
            port,
            ldaps_port,
            dir,
            pid: None,
        };
        s.pid = read_pid(&s.dir.path().join("slapd.pid"));
        s
    }

    /// Applies an LDIF change as the admin (ldapmodify).
    pub fn modify(&self, ldif: &str) {
        run_with_input(
            Command::new("ldapmodify").args([
                "-x",
                "-H",
                &format!("ldap://127.0.0.1:{}", self.port),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PW,
            ]),
            ldif,
        );
    }

    /// Adds entries (LDIF without changetype).
    pub fn add(&self, ldif: &str) {
        let with_type: String = ldif
            .split("\n\n")
            .filter(|e| !e.trim().is_empty())
            .map(|e| {
                let mut lines = e.lines();
                let dn = lines.next().unwrap_or_default();
                let rest: Vec<&str> = lines.collect();
                format!("{dn}\nchangetype: add\n{}\n\n", rest.join("\n"))
            })
            .collect();
        self.modify(&with_type);
    }

    pub fn delete(&self, dn: &str) {
        self.modify(&format!("dn: {dn}\nchangetype: delete\n\n"));
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            terminate(pid);
            // give it a moment to release the database
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
