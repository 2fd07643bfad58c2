//! Logging: `tracing` to stderr (level from `-v` or `RUST_LOG`) and to a daily-rotated file in
//! the data directory (folder 0700, files 0600 whatever the umask). Messages are built without
//! secrets; as a backstop, every known secret (8 characters or more) is replaced by
//! `[REDACTED]` where it stands as a whole token, never inside a longer word, whether written as
//! is or URL-encoded (`%2B` or `%2b` for `+`, and `+` for a space as in form bodies).

use std::io::Write;
use std::path::Path;
use std::sync::RwLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Secrets shorter than this are not redacted: a short value (`admin`) is also an ordinary
/// word of messages (`cn=admin,dc=example,dc=com`), and replacing it would both mangle the
/// message and point at the password. Messages must not contain secrets in the first place.
pub const MIN_REDACTED_LEN: usize = 8;

/// Remembers a secret value so that logs never show it.
pub fn register_secret(secret: &str) {
    if secret.chars().count() < MIN_REDACTED_LEN {
        return; // too short to redact without mangling ordinary text
    }
    if let Ok(mut s) = SECRETS.write()
        && !s.iter().any(|x| x == secret)
    {
        s.push(secret.to_string());
    }
}

/// Replaces every registered secret in `text` where it stands as a whole token, as is or
/// URL-encoded (any of its characters percent-encoded, in either case of hex digits, and a
/// space also as `+`).
pub fn redact(text: &str) -> String {
    let Ok(secrets) = SECRETS.read() else {
        return text.to_string();
    };
    let mut out = text.to_string();
    let encoded = out.contains(['%', '+']);
    for s in secrets.iter() {
        if encoded || out.contains(s.as_str()) {
            out = replace_whole(&out, s);
        }
    }
    out
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Where `secret` ends if it is written at `at` in `text`: each character as is, or
/// percent-encoded (each of its UTF-8 bytes as `%XX`), or `+` for a space.
fn match_at(text: &[u8], mut at: usize, secret: &str) -> Option<usize> {
    for c in secret.chars() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        if text.get(at..)?.starts_with(bytes) {
            at += bytes.len();
            continue;
        }
        if c == ' ' && text.get(at) == Some(&b'+') {
            at += 1;
            continue;
        }
        for &b in bytes {
            match text.get(at..at + 3) {
                Some([b'%', hi, lo])
                    if hex_digit(*hi).zip(hex_digit(*lo)).map(|(h, l)| h << 4 | l) == Some(b) =>
                {
                    at += 3;
                }
                _ => return None,
            }
        }
    }
    Some(at)
}

/// Replaces each occurrence of `secret` (as is or URL-encoded) that is not part of a longer
/// word: the characters next to it are not letters, digits or `_` (unless the secret itself
/// ends in a non-word character on that side).
fn replace_whole(text: &str, secret: &str) -> String {
    let (Some(first), Some(last)) = (secret.chars().next(), secret.chars().next_back()) else {
        return text.to_string();
    };
    let bytes = text.as_bytes();
    let first_byte = secret.as_bytes()[0];
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (b == first_byte || b == b'%' || b == b'+')
            && text.is_char_boundary(i)
            && let Some(end) = match_at(bytes, i, secret)
            && text.is_char_boundary(end)
        {
            let before_ok =
                !is_word(first) || text[..i].chars().next_back().is_none_or(|c| !is_word(c));
            let after_ok = !is_word(last) || text[end..].chars().next().is_none_or(|c| !is_word(c));
            if before_ok && after_ok {
                out.push_str(&text[rest..i]);
                out.push_str("[REDACTED]");
                rest = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[rest..]);
    out
}

/// A writer that redacts secrets from what passes through it.
pub struct Redacting<W: Write>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Wraps a `MakeWriter` so every writer it makes redacts.
#[derive(Clone)]
pub struct RedactingMake<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMake<M> {
    type Writer = Redacting<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Redacting(self.0.make_writer())
    }
}

/// Target for events that go to the log file only (the CLI prints the error itself).
pub const FILE_ONLY: &str = "file_only";

/// Directory of the log files inside the data directory.
pub fn log_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("logs")
}

/// Keeps the file writer flushing until dropped.
pub type LogGuard = Option<tracing_appender::non_blocking::WorkerGuard>;

/// Sets up logging. `verbosity`: 0 warnings, 1 info, 2 debug, 3 trace (stderr); `RUST_LOG`
/// overrides. The file gets info and above (debug with `-vv`).
pub fn init(data_dir: Option<&Path>, verbosity: u8) -> LogGuard {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},hyper=warn,rustls=warn,h2=warn,{FILE_ONLY}=off"
        ))
    });
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(RedactingMake(std::io::stderr))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(stderr_filter);

    let mut guard = None;
    let file_layer = data_dir.and_then(|d| {
        let dir = log_dir(d);
        crate::datadir::create_private_dir(&dir).ok()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // our own folder: private even when an older version made it with the umask
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let _ = crate::platform::restrict_to_current_user(&dir);
        let (nb, g) = tracing_appender::non_blocking(DailyFile::new(dir));
        guard = Some(g);
        let file_level = if verbosity >= 2 { "debug" } else { "info" };
        Some(
            tracing_subscriber::fmt::layer()
                .with_writer(RedactingMake(nb))
                .with_ansi(false)
                .with_filter(EnvFilter::new(format!(
                    "{file_level},hyper=warn,rustls=warn,h2=warn"
                ))),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .try_init();
    guard
}

use tracing_subscriber::Layer;

/// Log files kept (one per day).
const KEEP_LOG_FILES: usize = 7;
const LOG_PREFIX: &str = "directory-connector.";
const LOG_SUFFIX: &str = ".log";

/// A log file per day (`directory-connector.YYYY-MM-DD.log`, UTC), created 0600 whatever the
/// umask; the oldest beyond seven are deleted.
pub struct DailyFile {
    dir: std::path::PathBuf,
    day: String,
    file: Option<std::fs::File>,
}

impl DailyFile {
    pub fn new(dir: std::path::PathBuf) -> DailyFile {
        DailyFile {
            dir,
            day: String::new(),
            file: None,
        }
    }

    fn open(&mut self, day: String) -> std::io::Result<()> {
        let path = self.dir.join(format!("{LOG_PREFIX}{day}{LOG_SUFFIX}"));
        let file = crate::datadir::open_private(
            &path,
            std::fs::OpenOptions::new().append(true).create(true),
        )?;
        self.file = Some(file);
        self.day = day;
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(LOG_PREFIX) && n.ends_with(LOG_SUFFIX))
            .collect();
        names.sort();
        let extra = names.len().saturating_sub(KEEP_LOG_FILES);
        for n in &names[..extra] {
            let _ = std::fs::remove_file(self.dir.join(n));
        }
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
        if self.file.is_none() || day != self.day {
            self.open(day)?;
        }
        match self.file.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_redacted() {
        register_secret("Sup3rSecret!");
        register_secret("abc"); // too short, ignored
        let mut out = Vec::new();
        {
            let mut w = Redacting(&mut out);
            write!(w, "bind with Sup3rSecret! failed; abc").unwrap();
        }
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "bind with [REDACTED] failed; abc");
    }

    #[test]
    fn a_short_password_does_not_mangle_the_bind_dn() {
        register_secret("admin");
        let msg = "LDAP bind as cn=admin,dc=example,dc=com failed: invalid credentials";
        assert_eq!(redact(msg), msg);
    }

    #[test]
    fn only_whole_tokens_are_redacted() {
        register_secret("orange-juice-42");
        register_secret("Kx8vQ2pLm");
        assert_eq!(
            redact("token orange-juice-42, and again:orange-juice-42."),
            "token [REDACTED], and again:[REDACTED]."
        );
        // inside a longer word it is not a match: the word is left alone
        assert_eq!(redact("idKx8vQ2pLmzz"), "idKx8vQ2pLmzz");
        assert_eq!(redact("secret=Kx8vQ2pLm&x=1"), "secret=[REDACTED]&x=1");
    }

    /// Issue 26 item 10: a secret written URL-encoded (a query string, a form body) was shown.
    #[test]
    fn url_and_form_encoded_secrets_are_redacted() {
        register_secret("Pa+ss/w=rd&Qz 9é");
        for encoded in [
            "Pa%2Bss%2Fw%3Drd%26Qz%209%C3%A9",
            "Pa%2bss%2fw%3drd%26Qz+9%c3%a9",
            "%50%61%2B%73%73%2F%77%3D%72%64%26%51%7A%20%39%C3%A9",
            "Pa+ss%2Fw%3Drd%26Qz+9é",
        ] {
            assert_eq!(
                redact(&format!("POST /token password={encoded}&scope=api")),
                "POST /token password=[REDACTED]&scope=api",
                "{encoded}"
            );
        }
        // as is, still
        assert_eq!(redact("got Pa+ss/w=rd&Qz 9é."), "got [REDACTED].");
        // an encoding of something else, or the secret inside a longer word, is left alone
        for other in [
            "Pa%2Bss%2Fw%3Drd%26Qz%209%C3%A8",
            "Pa%2Bss%2Fw%3Drd%26Qz%209%C3%A9x",
        ] {
            assert_eq!(redact(other), other);
        }
        register_secret("Kw7uTr2mXq");
        assert_eq!(redact("k=%4Bw7uTr2mXq;"), "k=[REDACTED];");
        assert_eq!(redact("k=%4Bw7uTr2mXq9"), "k=%4Bw7uTr2mXq9");
    }

    #[cfg(unix)]
    #[test]
    fn log_files_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut f = DailyFile::new(dir.path().to_path_buf());
        f.write_all(b"hello\n").unwrap();
        f.flush().unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
        let name = entries[0].file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with(LOG_PREFIX) && name.ends_with(LOG_SUFFIX),
            "{name}"
        );
        let mode = entries[0].metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for day in 1..=9 {
            std::fs::write(
                dir.path()
                    .join(format!("{LOG_PREFIX}2000-01-0{day}{LOG_SUFFIX}")),
                "",
            )
            .unwrap();
        }
        f.prune();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            KEEP_LOG_FILES
        );
        assert!(dir.path().join(&name).exists());
    }
}
