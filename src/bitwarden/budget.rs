//! The request budget: one pace for everything the connector sends to a Bitwarden server (the
//! token, the reads, the imports and the read-back), shared by every client of that server in
//! the process, so that the service's and the window's runs share it too.
//!
//! The Bitwarden cloud limits each client IP address in fixed windows (5 requests a second, 60
//! a minute, 10 token requests a minute) and blocks an address for 15 minutes after more than
//! 10 refusals within 5 minutes. The budget is a sliding log: at most `per_second` sends within
//! any second and `per_minute` within any minute, which keeps every fixed window of the server
//! within the same numbers, and the sends of a second spread over it (one every quarter of a
//! second at 4: a burst arriving late could meet the next one in a window of the server's). (A token bucket such as `governor`'s GCRA would not: its burst plus
//! what it refills within a minute can pass twice the quota in one fixed window.) A refusal's
//! `Retry-After` pauses the whole budget, not one request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::urls::Urls;
use crate::config::ServerConfig;

/// The cloud's own API hosts: the budget is on by default against them.
const CLOUD_APIS: [&str; 2] = ["https://api.bitwarden.com", "https://api.bitwarden.eu"];

/// Token requests a minute with a budget (the cloud allows 10).
pub const TOKENS_PER_MINUTE: usize = 7;

/// The defaults against the cloud: room is left for the browsers and apps behind the same IP.
pub const CLOUD_PER_SECOND: u32 = 4;
pub const CLOUD_PER_MINUTE: u32 = 50;

/// The budget's limits (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub per_second: u32,
    pub per_minute: u32,
}

impl Limits {
    /// The settings, or the server's defaults: 4 and 50 against the US or EU cloud, none
    /// against any other server (self-hosted Bitwarden and Vaultwarden do not limit the API).
    pub fn for_server(server: &ServerConfig, urls: &Urls) -> Limits {
        let cloud = CLOUD_APIS.contains(&urls.api.as_str());
        Limits {
            per_second: server.max_requests_per_second.unwrap_or(if cloud {
                CLOUD_PER_SECOND
            } else {
                0
            }),
            per_minute: server.max_requests_per_minute.unwrap_or(if cloud {
                CLOUD_PER_MINUTE
            } else {
                0
            }),
        }
    }

    /// How the limits read in messages.
    pub fn describe(&self) -> String {
        let part = |n: u32, what: &str| match n {
            0 => format!("no limit a {what}"),
            n => format!("{n} a {what}"),
        };
        format!(
            "{}, {}",
            part(self.per_second, "second"),
            part(self.per_minute, "minute")
        )
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
}

/// Requests a run sent, by kind, with the refusals it met and the time it waited for the
/// budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestStats {
    pub token: u64,
    pub members: u64,
    pub groups: u64,
    pub member_ids: u64,
    pub import: u64,
    /// 429 answers.
    pub refusals: u64,
    /// Time spent waiting for the budget (milliseconds).
    pub waited_ms: u64,
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.token + self.members + self.groups + self.member_ids + self.import
    }

    pub(crate) fn count(&mut self, kind: Kind) {
        *match kind {
            Kind::Token => &mut self.token,
            Kind::Members => &mut self.members,
            Kind::Groups => &mut self.groups,
            Kind::MemberIds => &mut self.member_ids,
            Kind::Import => &mut self.import,
        } += 1;
    }

    /// One line for logs and the summary.
    pub fn describe(&self) -> String {
        format!(
            "{} request(s) to Bitwarden: {} token, {} member list, {} group list, {} group \
             member list, {} import; {} refused (429); {:.1}s waited for the request budget",
            self.total(),
            self.token,
            self.members,
            self.groups,
            self.member_ids,
            self.import,
            self.refusals,
            self.waited_ms as f64 / 1000.0
        )
    }
}

#[derive(Default)]
struct State {
    limits: Limits,
    /// When the last sends went out (as many as the larger limit needs).
    sent: VecDeque<Instant>,
    tokens: VecDeque<Instant>,
    /// No request before this (a refusal's `Retry-After`, or a block).
    paused_until: Option<Instant>,
    /// A request waits for the budget until then.
    waiting_until: Option<Instant>,
    /// An earlier process's sends were taken in (once: later runs of this process have them).
    taken_in: bool,
}

/// The budget of one server.
pub struct Budget {
    scale: f64,
    state: Mutex<State>,
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

impl Budget {
    /// The budget of the server whose API is at `api`, shared in this process, with these
    /// limits from now on.
    pub fn shared(api: &str, limits: Limits) -> Arc<Budget> {
        static ALL: OnceLock<Mutex<HashMap<String, Arc<Budget>>>> = OnceLock::new();
        let all = ALL.get_or_init(Default::default);
        let mut all = all.lock().unwrap_or_else(|p| p.into_inner());
        let budget = all
            .entry(api.to_string())
            .or_insert_with(|| Arc::new(Budget::new(limits, time_scale())))
            .clone();
        budget.lock().limits = limits;
        budget
    }

    pub fn new(limits: Limits, scale: f64) -> Budget {
        Budget {
            scale,
            state: Mutex::new(State {
                limits,
                ..State::default()
            }),
        }
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

    /// How long a send now must wait (zero: it may go now, and it is recorded).
    fn try_send(&self, kind: Kind, now: Instant) -> Duration {
        let minute = self.scaled(Duration::from_secs(60));
        let second = self.scaled(Duration::from_secs(1));
        let mut st = self.lock();
        let keep = st.limits.per_minute.max(st.limits.per_second) as usize;
        while st.sent.len() > keep
            || st
                .sent
                .front()
                .is_some_and(|&t| now.duration_since(t) >= minute)
        {
            st.sent.pop_front();
        }
        while st
            .tokens
            .front()
            .is_some_and(|&t| now.duration_since(t) >= minute)
        {
            st.tokens.pop_front();
        }
        let mut until = st.paused_until.filter(|&t| t > now);
        let mut later = |t: Instant| {
            if t > now && until.is_none_or(|u| t > u) {
                until = Some(t);
            }
        };
        // the n-th latest send must be a window old before another goes
        let nth_latest = |q: &VecDeque<Instant>, n: usize| -> Option<Instant> {
            (n > 0 && q.len() >= n).then(|| q[q.len() - n])
        };
        if let Some(t) = nth_latest(&st.sent, st.limits.per_minute as usize) {
            later(t + minute);
        }
        if let Some(t) = nth_latest(&st.sent, st.limits.per_second as usize) {
            later(t + second);
        }
        // and the sends of a second are spread over it: a burst that arrives late would meet
        // the next burst in one of the server's seconds (which start at their first arrival)
        if st.limits.per_second > 0
            && let Some(&t) = st.sent.back()
        {
            later(t + second / st.limits.per_second);
        }
        // (with a budget: a server without limits has no token limit either; Vaultwarden's
        // login limit answers 429, which is waited for)
        if kind == Kind::Token
            && keep > 0
            && let Some(t) = nth_latest(&st.tokens, TOKENS_PER_MINUTE)
        {
            later(t + minute);
        }
        match until {
            Some(t) => {
                st.waiting_until = Some(t);
                t - now
            }
            None => {
                st.waiting_until = None;
                if keep > 0 {
                    st.sent.push_back(now);
                }
                if kind == Kind::Token {
                    st.tokens.push_back(now);
                }
                Duration::ZERO
            }
        }
    }

    /// Waits until a request of `kind` may go, and records it. Returns the time waited.
    pub async fn acquire(&self, kind: Kind) -> Duration {
        let started = Instant::now();
        loop {
            let wait = self.try_send(kind, Instant::now());
            if wait.is_zero() {
                return started.elapsed();
            }
            if wait >= Duration::from_secs(1) {
                tracing::info!(
                    "waiting {} s for the request budget ({})",
                    wait.as_secs_f64().ceil(),
                    self.limits().describe()
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The sends of the last minute as Unix times (ms): requests, then token requests. A run
    /// saves them and the next process takes them in ([`Budget::take_in`]), so that runs one
    /// after the other share the server's minute too.
    pub fn recent(&self) -> (Vec<i64>, Vec<i64>) {
        let now = Instant::now();
        let wall = chrono::Utc::now().timestamp_millis();
        let st = self.lock();
        let unix = |q: &VecDeque<Instant>| -> Vec<i64> {
            q.iter()
                .map(|&t| wall - now.duration_since(t).as_millis() as i64)
                .collect()
        };
        (unix(&st.sent), unix(&st.tokens))
    }

    /// Takes in sends an earlier process made (see [`Budget::recent`]), once per process;
    /// those older than a minute, or in the future, are left out.
    pub fn take_in(&self, sent: &[i64], tokens: &[i64]) {
        let now = Instant::now();
        let wall = chrono::Utc::now().timestamp_millis();
        let minute = self.scaled(Duration::from_secs(60));
        let to_instant = |ms: i64| -> Option<Instant> {
            let age = Duration::from_millis(u64::try_from(wall - ms).ok()?);
            (age < minute).then(|| now.checked_sub(age)).flatten()
        };
        let mut st = self.lock();
        if std::mem::replace(&mut st.taken_in, true) {
            return;
        }
        let merge = |q: &mut VecDeque<Instant>, add: &[i64]| {
            let mut all: Vec<Instant> = q
                .drain(..)
                .chain(add.iter().filter_map(|&ms| to_instant(ms)))
                .collect();
            all.sort();
            q.extend(all);
        };
        merge(&mut st.sent, sent);
        merge(&mut st.tokens, tokens);
    }

    /// No request goes before `d` (on this clock) has passed.
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut st = self.lock();
        if st.paused_until.is_none_or(|t| t < until) {
            st.paused_until = Some(until);
        }
    }

    /// How much longer a request waits for the budget, if one does.
    pub fn waiting(&self) -> Option<Duration> {
        let until = self.lock().waiting_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn sends_of_an_earlier_process_count_in_the_minute() {
        let limits = Limits {
            per_second: 0,
            per_minute: 3,
        };
        let first = Budget::new(limits, 1.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(first.try_send(Kind::Import, t0), Duration::ZERO);
        }
        let (sent, tokens) = first.recent();
        assert_eq!((sent.len(), tokens.len()), (3, 0));
        let next = Budget::new(limits, 1.0);
        // a send of two minutes ago is left out
        next.take_in(&[sent[0] - 120_000], &[]);
        assert_eq!(next.try_send(Kind::Import, Instant::now()), Duration::ZERO);
        let next = Budget::new(limits, 1.0);
        next.take_in(&sent, &tokens);
        assert!(next.try_send(Kind::Import, Instant::now()) > Duration::from_secs(58));
        // once per process: a later run's own log already holds them
        next.take_in(&sent, &tokens);
        assert_eq!(next.lock().sent.len(), 3);
    }

    #[test]
    fn cloud_servers_get_the_budget_by_default_others_none() {
        let limits = |url: Option<&str>, s: Option<u32>| {
            let server = ServerConfig {
                url: url.map(str::to_string),
                max_requests_per_second: s,
                ..Default::default()
            };
            Limits::for_server(&server, &Urls::from_config(&server))
        };
        let cloud = Limits {
            per_second: 4,
            per_minute: 50,
        };
        assert_eq!(limits(None, None), cloud);
        assert_eq!(limits(Some("https://vault.bitwarden.eu"), None), cloud);
        assert_eq!(
            limits(Some("https://vault.example.com"), None),
            Limits::default()
        );
        assert_eq!(limits(None, Some(0)).per_second, 0);
        assert_eq!(limits(None, Some(0)).per_minute, 50);
    }

    #[test]
    fn no_second_and_no_minute_holds_more_than_the_limits() {
        let b = Budget::new(
            Limits {
                per_second: 4,
                per_minute: 10,
            },
            1.0,
        );
        let t0 = Instant::now();
        // one every quarter of a second
        assert_eq!(b.try_send(Kind::MemberIds, t0), Duration::ZERO);
        assert_eq!(b.try_send(Kind::MemberIds, t0), Duration::from_millis(250));
        for ms in [250, 500, 750] {
            assert_eq!(b.try_send(Kind::MemberIds, at(t0, ms)), Duration::ZERO);
        }
        // the fifth waits for the first to be a second old
        assert_eq!(
            b.try_send(Kind::MemberIds, at(t0, 800)),
            Duration::from_millis(200)
        );
        assert_eq!(b.waiting_until_for_tests(), Some(at(t0, 1000)));
        for ms in [1000, 1250, 1500, 1750, 2000, 2250] {
            assert_eq!(b.try_send(Kind::Import, at(t0, ms)), Duration::ZERO);
        }
        // ten within the minute: the eleventh waits for the first to be a minute old
        assert_eq!(
            b.try_send(Kind::Import, at(t0, 3000)),
            Duration::from_secs(57)
        );
        assert_eq!(b.try_send(Kind::Import, at(t0, 60_000)), Duration::ZERO);
    }

    #[test]
    fn token_requests_stay_under_eight_a_minute_with_a_budget() {
        let b = Budget::new(
            Limits {
                per_second: 0,
                per_minute: 50,
            },
            1.0,
        );
        let t0 = Instant::now();
        for i in 0..TOKENS_PER_MINUTE as u64 {
            assert_eq!(b.try_send(Kind::Token, at(t0, i)), Duration::ZERO);
        }
        assert!(b.try_send(Kind::Token, at(t0, 100)) > Duration::from_secs(59));
        // other requests are not held by the token limit
        assert_eq!(b.try_send(Kind::Members, at(t0, 100)), Duration::ZERO);
        // a server without limits has none on tokens either
        let free = Budget::new(Limits::default(), 1.0);
        for i in 0..20 {
            assert_eq!(free.try_send(Kind::Token, at(t0, i)), Duration::ZERO);
        }
    }

    #[test]
    fn a_pause_holds_every_request_and_the_scale_shortens_windows() {
        let b = Budget::new(
            Limits {
                per_second: 1,
                per_minute: 0,
            },
            60.0,
        );
        let t0 = Instant::now();
        assert_eq!(b.try_send(Kind::Groups, t0), Duration::ZERO);
        // a second of the server's is a sixtieth of one here
        let w = b.try_send(Kind::Groups, t0);
        assert!(w > Duration::from_millis(16) && w < Duration::from_millis(17));
        b.pause(Duration::from_secs(5));
        assert!(b.try_send(Kind::Members, Instant::now()) > Duration::from_secs(4));
        assert!(b.waiting().is_some());
    }

    impl Budget {
        fn waiting_until_for_tests(&self) -> Option<Instant> {
            self.lock().waiting_until
        }
    }
}
