//! The request budget: paces everything the connector sends to a Bitwarden server (the token,
//! the reads, the imports and the read-back) so that the server never refuses it, shared by
//! every client of that server in the process and, through a locked file in the data
//! directory, by every process of that data directory (the service, the window, `test`).
//!
//! How the Bitwarden cloud counts (bitwarden/server): AspNetCoreRateLimit with
//! `EnableEndpointRateLimiting: true` (`src/Api/appsettings.json`,
//! `src/Identity/appsettings.json`) and the library's default `PathCounterKeyBuilder`
//! (`AddIpRateLimiting` in `src/SharedWeb/Utilities/ServiceCollectionExtensions.cs`): one
//! counter per client IP, rule period, HTTP method and whole path. Every path may take 5
//! requests a second and 60 a minute (newer settings give GET 200 a minute), and
//! `POST /connect/token` 10 a minute. `GET /public/groups/{id}/member-ids` has a counter of its
//! own for every group, so reading every group costs the budget nothing; the counters one run
//! can fill are the token, the member and group lists and the import. More than 10 refusals
//! within 5 minutes block the address for 15 minutes (`CustomIpRateLimitMiddleware.cs`).
//!
//! [`Mode`] says how the budget counts:
//! * `cloud`: as the cloud does, a counter per method and path, each at most `per_second` a
//!   second and `per_minute` a minute (4 and 50: room is left for the browsers and apps behind
//!   the same address, and the numbers hold under both the older and the newer GET rule), and
//!   the token at most 7 a minute;
//! * `shared`: one counter for everything, as an edge in front of a server may count;
//! * `none`: no pacing (self-hosted Bitwarden and Vaultwarden have no API limits; a 429 is
//!   still waited for).
//!
//! Each counter is a sliding log: at most `per_second` sends within any second and
//! `per_minute` within any minute, which keeps every fixed window of the server's within the
//! same numbers, and the sends of a second spread over it (one every quarter of a second at 4:
//! a burst arriving late could meet the next one in a window of the server's). (A token bucket
//! such as `governor`'s GCRA would not: its burst plus what it refills within a minute can pass
//! twice the quota in one fixed window.) A refusal's `Retry-After`, and a block, pause every
//! request of every process of the data directory, not one request.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::urls::Urls;
use crate::config::ServerConfig;
pub use crate::engine::run::RequestStats;

/// The cloud's own API hosts: the budget counts as the cloud does by default against them.
const CLOUD_APIS: [&str; 2] = ["https://api.bitwarden.com", "https://api.bitwarden.eu"];

/// Token requests a minute with a budget (the cloud allows 10).
pub const TOKENS_PER_MINUTE: u32 = 7;

/// The defaults of a counter: room is left for the browsers and apps behind the same IP.
pub const CLOUD_PER_SECOND: u32 = 4;
pub const CLOUD_PER_MINUTE: u32 = 50;

/// How the budget counts (`server.rate_limits`).
pub use crate::config::RateLimitMode as Mode;

/// The budget's limits (for a counter; 0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub mode: Mode,
    pub per_second: u32,
    pub per_minute: u32,
}

impl Default for Limits {
    /// No limits.
    fn default() -> Limits {
        Limits {
            mode: Mode::None,
            per_second: 0,
            per_minute: 0,
        }
    }
}

impl Limits {
    /// The settings, or the server's defaults: `server.rate_limits`, else `shared` when
    /// `server.max_requests_per_second` or `…_per_minute` is set, else `cloud` against the US
    /// or EU cloud and `none` against any other server. A counter takes 4 a second and 50 a
    /// minute unless those settings say otherwise.
    pub fn for_server(server: &ServerConfig, urls: &Urls) -> Limits {
        let cloud = CLOUD_APIS.contains(&urls.api.as_str());
        let mode = server.rate_limits.unwrap_or(
            if server.max_requests_per_second.is_some() || server.max_requests_per_minute.is_some()
            {
                Mode::Shared
            } else if cloud {
                Mode::Cloud
            } else {
                Mode::None
            },
        );
        match mode {
            Mode::None => Limits::default(),
            mode => Limits {
                mode,
                per_second: server.max_requests_per_second.unwrap_or(CLOUD_PER_SECOND),
                per_minute: server.max_requests_per_minute.unwrap_or(CLOUD_PER_MINUTE),
            },
        }
    }

    /// How the limits read in messages.
    pub fn describe(&self) -> String {
        let part = |n: u32, what: &str| match n {
            0 => format!("no limit a {what}"),
            n => format!("{n} a {what}"),
        };
        let numbers = format!(
            "{}, {}",
            part(self.per_second, "second"),
            part(self.per_minute, "minute")
        );
        match self.mode {
            Mode::None => "no limits (server.rate_limits none)".into(),
            Mode::Cloud => format!("{numbers} for each request path (server.rate_limits cloud)"),
            Mode::Shared => {
                format!("{numbers} for all requests together (server.rate_limits shared)")
            }
        }
    }

    fn any(&self) -> bool {
        self.mode != Mode::None && (self.per_second > 0 || self.per_minute > 0)
    }
}

/// What one request is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    Members,
    Groups,
    MemberIds,
    Import,
    /// `GET /public/members/{id}`.
    Member,
    /// `PUT /public/members/{id}`.
    MemberUpdate,
    /// `POST /public/members/{id}/revoke` or `/restore`.
    MemberLifecycle,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Kind::Token | Kind::Import | Kind::MemberLifecycle => "POST",
            Kind::Members | Kind::Groups | Kind::MemberIds | Kind::Member => "GET",
            Kind::MemberUpdate => "PUT",
        }
    }

    /// Whether the request's path is one of a few that every run uses (their counters can fill,
    /// so other processes of the data directory count them too); a path with an id in it (a
    /// group's member ids) is asked for once or twice a run.
    fn fixed_path(self) -> bool {
        !matches!(
            self,
            Kind::MemberIds | Kind::Member | Kind::MemberUpdate | Kind::MemberLifecycle
        )
    }
}

/// Counts one request of this kind in a run's [`RequestStats`].
impl Kind {
    pub(crate) fn count_in(self, stats: &mut RequestStats) {
        *match self {
            Kind::Token => &mut stats.token,
            Kind::Members => &mut stats.members,
            Kind::Groups => &mut stats.groups,
            Kind::MemberIds => &mut stats.member_ids,
            Kind::Import => &mut stats.import,
            Kind::Member | Kind::MemberUpdate | Kind::MemberLifecycle => &mut stats.member_api,
        } += 1;
    }
}

/// One rule of a counter: at most `limit` sends within `period` (server time).
#[derive(Debug, Clone, Copy)]
struct Rule {
    period: Duration,
    limit: u32,
}

/// A counter a request counts in, with its rules.
struct Counter {
    key: String,
    rules: Vec<Rule>,
    /// The sends of a second are spread over it (a counter with a per-second rule).
    spread: Option<u32>,
    /// Other processes of the data directory count it too.
    shared: bool,
}

#[derive(Default)]
struct State {
    limits: Limits,
    /// The sends of this process by counter key, within the last minute (those of counters
    /// shared through the file are kept there).
    sent: HashMap<String, VecDeque<Instant>>,
    /// No request before this (a refusal's `Retry-After`, or a block).
    paused_until: Option<Instant>,
    /// A request waits for the budget until then.
    waiting_until: Option<Instant>,
}

/// The budget of one server.
pub struct Budget {
    /// The server's API URL (the shared file's keys name it).
    api: String,
    scale: f64,
    state: Mutex<State>,
    /// The file the processes of a data directory share their sends and pauses through.
    file: Mutex<Option<PathBuf>>,
}

/// The time scale of tests (`DIRECTORY_CONNECTOR_TIME_SCALE`: one real second is that many
/// server seconds); 1 otherwise.
fn time_scale() -> f64 {
    std::env::var("DIRECTORY_CONNECTOR_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
}

/// Milliseconds since the Unix epoch.
fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The name of the file a data directory's processes share the budget through.
pub const SHARED_FILE: &str = "request-budget.log";

/// What the shared file holds for one server: sends by counter key and the pause.
#[derive(Default)]
struct Shared {
    sent: HashMap<String, Vec<Instant>>,
    paused_until: Option<Instant>,
}

impl Budget {
    /// The budget of the server whose API is at `api`, shared in this process, with these
    /// limits from now on.
    pub fn shared(api: &str, limits: Limits) -> Arc<Budget> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<Budget>>>> = OnceLock::new();
        let all = ALL.get_or_init(Default::default);
        let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
        let budget = all
            .entry(api.to_string())
            .or_insert_with(|| Arc::new(Budget::of(api, limits, time_scale())))
            .clone();
        budget.lock().limits = limits;
        budget
    }

    /// A budget of its own (tests).
    pub fn new(limits: Limits, scale: f64) -> Budget {
        Budget::of("", limits, scale)
    }

    fn of(api: &str, limits: Limits, scale: f64) -> Budget {
        Budget {
            api: api.to_string(),
            scale,
            state: Mutex::new(State {
                limits,
                ..State::default()
            }),
            file: Mutex::new(None),
        }
    }

    /// Shares the sends and pauses with the other processes of a data directory, through
    /// `dir`/[`SHARED_FILE`] (locked while read and written).
    pub fn share_through(&self, dir: &Path) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir.join(SHARED_FILE));
    }

    fn shared_file(&self) -> Option<PathBuf> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// A duration of the server's clock on this one (tests run the windows faster).
    pub fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.scale)
    }

    /// The counters a request of `kind` to `url` counts in.
    fn counters(&self, limits: Limits, kind: Kind, url: &str) -> Vec<Counter> {
        if !limits.any() {
            return Vec::new();
        }
        let mut rules = Vec::new();
        if limits.per_second > 0 {
            rules.push(Rule {
                period: Duration::from_secs(1),
                limit: limits.per_second,
            });
        }
        if limits.per_minute > 0 {
            rules.push(Rule {
                period: Duration::from_secs(60),
                limit: limits.per_minute,
            });
        }
        let spread = (limits.per_second > 0).then_some(limits.per_second);
        let token_rule = Rule {
            period: Duration::from_secs(60),
            limit: TOKENS_PER_MINUTE,
        };
        let mut counters = Vec::new();
        match limits.mode {
            Mode::None => {}
            Mode::Cloud => {
                // (the path without the query: the server's key leaves it out)
                let path = url.split('?').next().unwrap_or(url);
                if kind == Kind::Token {
                    rules.push(token_rule);
                }
                counters.push(Counter {
                    key: format!("{} {path}", kind.method()),
                    rules,
                    spread,
                    shared: kind.fixed_path(),
                });
            }
            Mode::Shared => {
                counters.push(Counter {
                    key: format!("* {}", self.api),
                    rules,
                    spread,
                    shared: true,
                });
                if kind == Kind::Token {
                    counters.push(Counter {
                        key: format!("token {}", self.api),
                        rules: vec![token_rule],
                        spread: None,
                        shared: true,
                    });
                }
            }
        }
        counters
    }

    /// How long a send of `kind` to `url` now must wait (zero: it may go now, and it is
    /// recorded).
    pub(crate) fn try_send(&self, kind: Kind, url: &str, now: Instant) -> Duration {
        match self.shared_file() {
            None => self.decide(kind, url, now, None).0,
            Some(path) => match self.try_send_shared(&path, kind, url, now) {
                Ok(wait) => wait,
                Err(e) => {
                    // said once a process: the budget still holds, for this process alone
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        tracing::warn!(
                            "request budget: {} cannot be read or written ({e}); this process \
                             counts its requests alone, so other processes of the data \
                             directory may exceed the server's limits beside it",
                            path.display()
                        );
                    });
                    self.decide(kind, url, now, None).0
                }
            },
        }
    }

    /// Opens the shared file, locked.
    fn open_shared(path: &Path) -> std::io::Result<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        f.lock()?;
        Ok(f)
    }

    /// Writes the shared file anew: the lines still fresh and the new ones.
    fn rewrite(f: &mut std::fs::File, fresh: &[&str], new: &[String]) -> std::io::Result<()> {
        let mut out = String::new();
        for line in fresh.iter().copied().chain(new.iter().map(String::as_str)) {
            out.push_str(line);
            out.push('\n');
        }
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(out.as_bytes())
    }

    /// [`Budget::try_send`] with the sends of the other processes: the file is locked, read,
    /// and the send written to it when it goes.
    fn try_send_shared(
        &self,
        path: &Path,
        kind: Kind,
        url: &str,
        now: Instant,
    ) -> std::io::Result<Duration> {
        let mut f = Self::open_shared(path)?;
        let mut text = String::new();
        f.read_to_string(&mut text)?;
        let (shared, fresh) = self.parse_shared(&text, now);
        let (wait, sent_keys) = self.decide(kind, url, now, Some(&shared));
        if !sent_keys.is_empty() || fresh.len() < text.lines().count() {
            let wall = wall_ms();
            let new: Vec<String> = sent_keys.iter().map(|k| format!("{wall}\t{k}")).collect();
            Self::rewrite(&mut f, &fresh, &new)?;
        }
        Ok(wait)
    }

    /// What the shared file holds for this server, and the lines still fresh (sends within a
    /// minute of the server's, pauses not over). A send dated in the future (the clock
    /// stepped back) counts as sent now.
    fn parse_shared<'t>(&self, text: &'t str, now: Instant) -> (Shared, Vec<&'t str>) {
        let wall = wall_ms();
        let minute = self.scaled(Duration::from_secs(60));
        let pause_key = format!("!pause {}", self.api);
        let mut shared = Shared::default();
        let mut fresh = Vec::new();
        for line in text.lines() {
            let Some((ms, key)) = line.split_once('\t') else {
                continue;
            };
            let Ok(ms) = ms.parse::<i64>() else {
                continue;
            };
            if key.starts_with("!pause ") {
                let left = Duration::from_millis(u64::try_from(ms - wall).unwrap_or(0));
                if left.is_zero() {
                    continue;
                }
                fresh.push(line);
                if key == pause_key {
                    let until = now + left;
                    shared.paused_until = Some(shared.paused_until.map_or(until, |t| t.max(until)));
                }
                continue;
            }
            let age = Duration::from_millis(u64::try_from(wall - ms).unwrap_or(0));
            if age >= minute {
                continue;
            }
            fresh.push(line);
            if let Some(at) = now.checked_sub(age) {
                shared.sent.entry(key.to_string()).or_default().push(at);
            }
        }
        (shared, fresh)
    }

    /// Decides a send: how long it must wait, and (when it goes) the keys of the counters
    /// shared through the file that it is to be written under (the others are recorded here).
    fn decide(
        &self,
        kind: Kind,
        url: &str,
        now: Instant,
        shared: Option<&Shared>,
    ) -> (Duration, Vec<String>) {
        let minute = self.scaled(Duration::from_secs(60));
        let second = self.scaled(Duration::from_secs(1));
        let mut st = self.lock();
        let counters = self.counters(st.limits, kind, url);
        let mut until = st.paused_until.filter(|&t| t > now);
        let mut later = |t: Instant| {
            if t > now && until.is_none_or(|u| t > u) {
                until = Some(t);
            }
        };
        if let Some(t) = shared.and_then(|s| s.paused_until) {
            later(t);
        }
        if st.sent.len() > 4096 {
            st.sent
                .retain(|_, q| q.back().is_some_and(|&t| now.duration_since(t) < minute));
        }
        for c in &counters {
            let from_file = c.shared && shared.is_some();
            let mut sends: Vec<Instant> = match (from_file, shared) {
                (true, Some(s)) => s.sent.get(&c.key).cloned().unwrap_or_default(),
                _ => {
                    let keep = c.rules.iter().map(|r| r.limit).max().unwrap_or(0) as usize;
                    let q = st.sent.entry(c.key.clone()).or_default();
                    while q.len() > keep
                        || q.front().is_some_and(|&t| now.duration_since(t) >= minute)
                    {
                        q.pop_front();
                    }
                    q.iter().copied().collect()
                }
            };
            sends.sort();
            // the n-th latest send must be a window old before another goes
            for r in &c.rules {
                let n = r.limit as usize;
                if n > 0 && sends.len() >= n {
                    later(sends[sends.len() - n] + self.scaled(r.period));
                }
            }
            // and the sends of a second are spread over it: a burst that arrives late would
            // meet the next burst in one of the server's seconds (which start at their first
            // arrival)
            if let (Some(per), Some(&last)) = (c.spread, sends.last()) {
                later(last + second / per);
            }
        }
        match until {
            Some(t) => {
                st.waiting_until = Some(t);
                (t - now, Vec::new())
            }
            None => {
                st.waiting_until = None;
                let mut to_file = Vec::new();
                for c in counters {
                    if c.shared && shared.is_some() {
                        to_file.push(c.key);
                    } else {
                        st.sent.entry(c.key).or_default().push_back(now);
                    }
                }
                (Duration::ZERO, to_file)
            }
        }
    }

    /// No request goes before `d` (on this clock) has passed, in any process of the data
    /// directory.
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        {
            let mut st = self.lock();
            if st.paused_until.is_none_or(|t| t < until) {
                st.paused_until = Some(until);
            }
        }
        if let Some(path) = self.shared_file() {
            let written = (|| -> std::io::Result<()> {
                let mut f = Self::open_shared(&path)?;
                let mut text = String::new();
                f.read_to_string(&mut text)?;
                let (_, fresh) = self.parse_shared(&text, Instant::now());
                let until_ms = wall_ms() + d.as_millis() as i64;
                Self::rewrite(
                    &mut f,
                    &fresh,
                    &[format!("{until_ms}\t!pause {}", self.api)],
                )
            })();
            if let Err(e) = written {
                tracing::warn!(
                    "request budget: the pause could not be shared through {} ({e}); other \
                     processes of the data directory do not wait for it",
                    path.display()
                );
            }
        }
    }

    /// How much longer a request waits for the budget, if one does.
    pub fn waiting(&self) -> Option<Duration> {
        let until = self.lock().waiting_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Says no request waits any more (a wait given up).
    pub(crate) fn stop_waiting(&self) {
        self.lock().waiting_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    const API: &str = "https://api.example.com";

    fn url(path: &str) -> String {
        format!("{API}{path}")
    }

    fn cloud(per_second: u32, per_minute: u32) -> Limits {
        Limits {
            mode: Mode::Cloud,
            per_second,
            per_minute,
        }
    }

    fn shared(per_second: u32, per_minute: u32) -> Limits {
        Limits {
            mode: Mode::Shared,
            per_second,
            per_minute,
        }
    }

    #[test]
    fn cloud_counts_each_method_and_path_on_its_own() {
        let b = Budget::new(cloud(4, 50), 1.0);
        let t0 = Instant::now();
        // a thousand groups' member ids: each path has its own counter, none waits
        for i in 0..1000 {
            let path = url(&format!("/public/groups/g{i}/member-ids"));
            assert_eq!(
                b.try_send(Kind::MemberIds, &path, t0),
                Duration::ZERO,
                "{i}"
            );
        }
        // the member list's counter is its own too (a query is not part of the path)
        assert_eq!(
            b.try_send(Kind::Members, &url("/public/members"), t0),
            Duration::ZERO
        );
        assert_eq!(
            b.try_send(
                Kind::Members,
                &url("/public/members?continuationToken=x"),
                t0
            ),
            Duration::from_millis(250)
        );
        // the same path twice within its second waits (the sends of a second are spread)
        let g0 = url("/public/groups/g0/member-ids");
        assert_eq!(
            b.try_send(Kind::MemberIds, &g0, at(t0, 100)),
            Duration::from_millis(150)
        );
        // the import's counter fills at 50 a minute
        let import = url("/public/organization/import");
        for i in 0..50u64 {
            assert_eq!(
                b.try_send(Kind::Import, &import, at(t0, i * 250)),
                Duration::ZERO
            );
        }
        let w = b.try_send(Kind::Import, &import, at(t0, 50 * 250));
        assert_eq!(w, Duration::from_millis(60_000 - 50 * 250));
        // while another path goes at once
        assert_eq!(
            b.try_send(Kind::Groups, &url("/public/groups"), at(t0, 50 * 250)),
            Duration::ZERO
        );
    }

    #[test]
    fn shared_mode_holds_no_second_and_no_minute_over_the_limits() {
        let b = Budget::new(shared(4, 10), 1.0);
        let t0 = Instant::now();
        let g = |i: u32| url(&format!("/public/groups/g{i}/member-ids"));
        // one every quarter of a second, whatever the path
        assert_eq!(b.try_send(Kind::MemberIds, &g(0), t0), Duration::ZERO);
        assert_eq!(
            b.try_send(Kind::MemberIds, &g(1), t0),
            Duration::from_millis(250)
        );
        for (i, ms) in [250, 500, 750].into_iter().enumerate() {
            assert_eq!(
                b.try_send(Kind::MemberIds, &g(2 + i as u32), at(t0, ms)),
                Duration::ZERO
            );
        }
        // the fifth waits for the first to be a second old
        assert_eq!(
            b.try_send(Kind::MemberIds, &g(9), at(t0, 800)),
            Duration::from_millis(200)
        );
        assert_eq!(b.lock().waiting_until, Some(at(t0, 1000)));
        let import = url("/public/organization/import");
        for ms in [1000, 1250, 1500, 1750, 2000, 2250] {
            assert_eq!(
                b.try_send(Kind::Import, &import, at(t0, ms)),
                Duration::ZERO
            );
        }
        // ten within the minute: the eleventh waits for the first to be a minute old
        assert_eq!(
            b.try_send(Kind::Import, &import, at(t0, 3000)),
            Duration::from_secs(57)
        );
        assert_eq!(
            b.try_send(Kind::Import, &import, at(t0, 60_000)),
            Duration::ZERO
        );
    }

    #[test]
    fn token_requests_stay_under_eight_a_minute_with_a_budget() {
        let token = "https://identity.example.com/connect/token";
        for limits in [cloud(0, 50), shared(0, 50)] {
            let b = Budget::new(limits, 1.0);
            let t0 = Instant::now();
            for i in 0..TOKENS_PER_MINUTE as u64 {
                assert_eq!(b.try_send(Kind::Token, token, at(t0, i)), Duration::ZERO);
            }
            assert!(b.try_send(Kind::Token, token, at(t0, 100)) > Duration::from_secs(59));
            // other requests are not held by the token limit
            assert_eq!(
                b.try_send(Kind::Members, &url("/public/members"), at(t0, 100)),
                Duration::ZERO
            );
        }
        // a server without limits has none on tokens either
        let free = Budget::new(Limits::default(), 1.0);
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(free.try_send(Kind::Token, token, at(t0, i)), Duration::ZERO);
        }
    }

    #[test]
    fn a_pause_holds_every_request_and_the_scale_shortens_windows() {
        let b = Budget::new(shared(1, 0), 60.0);
        let groups = url("/public/groups");
        let t0 = Instant::now();
        assert_eq!(b.try_send(Kind::Groups, &groups, t0), Duration::ZERO);
        // a second of the server's is a sixtieth of one here
        let w = b.try_send(Kind::Groups, &groups, t0);
        assert!(w > Duration::from_millis(16) && w < Duration::from_millis(17));
        b.pause(Duration::from_secs(5));
        assert!(
            b.try_send(Kind::Members, &url("/public/members"), Instant::now())
                > Duration::from_secs(4)
        );
        assert!(b.waiting().is_some());
    }

    #[test]
    fn the_processes_of_a_data_directory_share_the_budget_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // two processes: two budgets of the same server on the same file
        let one = Budget::of(API, cloud(4, 50), 1.0);
        let two = Budget::of(API, cloud(4, 50), 1.0);
        one.share_through(dir.path());
        two.share_through(dir.path());
        let members = url("/public/members");
        let t0 = Instant::now();
        assert_eq!(one.try_send(Kind::Members, &members, t0), Duration::ZERO);
        // the other process's send of the same path counts: the second waits its turn
        assert!(two.try_send(Kind::Members, &members, Instant::now()) > Duration::from_millis(200));
        // a group's member ids (a path asked for once a run) are counted by each process
        let g = url("/public/groups/g1/member-ids");
        assert_eq!(
            one.try_send(Kind::MemberIds, &g, Instant::now()),
            Duration::ZERO
        );
        assert_eq!(
            two.try_send(Kind::MemberIds, &g, Instant::now()),
            Duration::ZERO
        );
        // a pause (a 429's Retry-After, a block) holds the other process too
        one.pause(Duration::from_secs(30));
        let w = two.try_send(Kind::Groups, &url("/public/groups"), Instant::now());
        assert!(w > Duration::from_secs(29), "{w:?}");
        // another server in the same directory is not held
        let other = Budget::of("https://api.other.example", cloud(4, 50), 1.0);
        other.share_through(dir.path());
        assert_eq!(
            other.try_send(
                Kind::Groups,
                "https://api.other.example/public/groups",
                Instant::now()
            ),
            Duration::ZERO
        );
    }

    #[test]
    fn shared_mode_counts_every_send_of_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let one = Budget::of(API, shared(0, 3), 1.0);
        let two = Budget::of(API, shared(0, 3), 1.0);
        one.share_through(dir.path());
        two.share_through(dir.path());
        for i in 0..2 {
            let g = url(&format!("/public/groups/g{i}/member-ids"));
            assert_eq!(
                one.try_send(Kind::MemberIds, &g, Instant::now()),
                Duration::ZERO
            );
        }
        let import = url("/public/organization/import");
        assert_eq!(
            two.try_send(Kind::Import, &import, Instant::now()),
            Duration::ZERO
        );
        assert!(two.try_send(Kind::Import, &import, Instant::now()) > Duration::from_secs(59));
        assert!(
            one.try_send(Kind::Groups, &url("/public/groups"), Instant::now())
                > Duration::from_secs(59)
        );
    }

    #[test]
    fn a_send_dated_in_the_future_counts_as_sent_now_and_stale_lines_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let b = Budget::of(API, shared(0, 2), 1.0);
        b.share_through(dir.path());
        let file = dir.path().join(SHARED_FILE);
        let now = wall_ms();
        // one send an hour ahead (the clock stepped back since), one two minutes old
        std::fs::write(
            &file,
            format!("{}\t* {API}\n{}\t* {API}\n", now + 3_600_000, now - 120_000),
        )
        .unwrap();
        let import = url("/public/organization/import");
        assert_eq!(
            b.try_send(Kind::Import, &import, Instant::now()),
            Duration::ZERO
        );
        // the future send and this one fill the minute
        assert!(b.try_send(Kind::Import, &import, Instant::now()) > Duration::from_secs(59));
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn the_mode_follows_the_settings_and_the_server() {
        let limits = |url: Option<&str>, mode: Option<Mode>, s: Option<u32>| {
            let server = ServerConfig {
                url: url.map(str::to_string),
                rate_limits: mode,
                max_requests_per_second: s,
                ..Default::default()
            };
            Limits::for_server(&server, &Urls::from_config(&server))
        };
        assert_eq!(limits(None, None, None), cloud(4, 50));
        assert_eq!(
            limits(Some("https://vault.bitwarden.eu"), None, None),
            cloud(4, 50)
        );
        assert_eq!(
            limits(Some("https://vault.example.com"), None, None),
            Limits::default()
        );
        // a number set without a mode: one counter for everything, as before the modes
        assert_eq!(limits(None, None, Some(2)), shared(2, 50));
        assert_eq!(
            limits(Some("https://vault.example.com"), Some(Mode::Cloud), None),
            cloud(4, 50)
        );
        assert_eq!(limits(None, Some(Mode::None), Some(3)), Limits::default());
        assert_eq!(limits(None, Some(Mode::Cloud), Some(0)).per_second, 0);
    }
}
