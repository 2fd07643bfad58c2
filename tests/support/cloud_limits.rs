//! The Bitwarden cloud's per-IP rate limits, as the fake applies them (an axum middleware on
//! every route of [`super::fake_bitwarden::FakeBitwarden`] once `Org::limits` is set).
//!
//! What the cloud does (bitwarden/server):
//! * `src/Api/appsettings.json` and `src/Identity/appsettings.json`, `IpRateLimitOptions`
//!   (AspNetCoreRateLimit, `EnableEndpointRateLimiting: true`, `StackBlockedRequests: false`):
//!   `GeneralRules` per client IP, counted by each service (API and identity) on its own. The
//!   stored files have `"*"` 5 a second and 60 a minute, and identity `post:/connect/token` 10 a
//!   minute besides; the cloud's rules as issue 22 states them are POST/PUT/DELETE 5 a second
//!   and 60 a minute, GET 200 a minute with no per-second rule, identity 5 a second and 60 a
//!   minute plus 10 a minute on `POST /connect/token`.
//! * `src/SharedWeb/Utilities/ServiceCollectionExtensions.cs`, `AddIpRateLimiting`: registers
//!   AspNetCoreRateLimit's `RateLimitConfiguration`, whose endpoint counter key is the default
//!   `PathCounterKeyBuilder` (`_{HttpVerb}_{Path}`). With `EnableEndpointRateLimiting` every
//!   counter is kept **per client IP, rule period, HTTP method and whole (lower-cased) path**
//!   (the query is not part of it): `GET /public/groups/{id}/member-ids` has a counter of its
//!   own per group id, `POST /public/members/{id}/revoke` one per member, while the pages of
//!   `GET /public/members?continuationToken=…` share one. Which rules apply to a request is
//!   `RateLimitProcessor.GetMatchingRules`: the rules whose `Endpoint` (`*`, `verb:path`, with
//!   `*` wildcards) matches `*:{path}` or `{verb}:{path}`, the most restrictive (lowest limit) of
//!   each period, checked shortest period first.
//! * The windows are fixed: a window opens with the first request counted in it and lasts its
//!   period; a refused request is not counted. A refusal is `429` with `Retry-After` (whole
//!   seconds until the refusing window ends, at least 1) and a JSON body `{"message": "Slow
//!   down! Too many requests. Try again in 1s."}` (the middleware writes the refusing rule's
//!   period there: `1s` or `1m`).
//! * `src/Core/Utilities/CustomIpRateLimitMiddleware.cs`: each refusal is counted per IP in a
//!   memory cache entry with a sliding expiration of 5 minutes (the count starts again after 5
//!   minutes without a refusal); the refusal that takes the count over 10 blocks the IP
//!   (`BlockIpAsync(ip, permanent: false)`), and `AzureQueueBlockIpService` lifts the block after
//!   15 minutes. A blocked IP gets the edge's `403` with an HTML page for every request.
//! * `src/Api/Startup.cs` turns the limits on only when the server is not self-hosted (so a
//!   fake acting like Vaultwarden or a self-hosted server has none).
//!
//! The limiter has three setups ([`CloudLimits`]):
//! * [`CloudLimits::cloud`]: the rules, counted per (IP, method, path) as the server
//!   does ([`Counting::PerPath`]); the GET rule can be changed ([`CloudLimits::with_get_limits`]).
//! * [`CloudLimits::stored_appsettings`]: the stored `appsettings.json` rules (`"*"` 5 a second
//!   and 60 a minute for every method), per (IP, method, path).
//! * [`CloudLimits::shared_edge`]: a stricter stress mode ([`Counting::SharedEdge`]): the
//!   stored rules with one counter per IP and service for every request, as an edge in front of
//!   the server might count (the fake's model before it counted per path).
//!
//! Suite-wide, `FAKE_BITWARDEN_CLOUD_LIMITS=<time scale>` gives every fake acting like Bitwarden
//! the limits ([`from_env`]), per path as the cloud counts; `FAKE_BITWARDEN_LIMITS_MODE` picks
//! the setup: `cloud` (the default), `appsettings` or `shared` (the stress mode).
//!
//! The fake serves both services under one address (`/api/…` and `/identity/…`): the prefix
//! picks the service and is not part of the path the rules see (`/identity/connect/token` is
//! identity's `/connect/token`). The request log ([`Seen`]) keeps the method and the path as
//! the fake received them.
//!
//! Time runs `time_scale` times faster than real time (one real second is `time_scale` server
//! seconds), so a test sees a minute window end in `60 / time_scale` real seconds; `Retry-After`
//! stays in server seconds, the number the real server would send. The limiter itself takes the
//! server time as an argument ([`CloudLimits::admit_at`], [`CloudLimits::admit_request_at`]), so
//! its rules are tested without waiting.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// What a request asks for (for the record, and to count requests by kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `POST /identity/connect/token`.
    Token,
    /// `GET /api/public/members`.
    Members,
    /// `GET /api/public/groups`.
    Groups,
    /// `GET /api/public/groups/{id}/member-ids`.
    MemberIds,
    /// `POST /api/public/organization/import`.
    Import,
    /// Anything else (counted like any API request).
    Other,
}

/// The group id of the request [`Kind::MemberIds`] stands for where a test names a kind and not
/// a request ([`CloudLimits::admit_at`], [`CloudLimits::spend_other`]).
pub const SOME_GROUP: &str = "00000000-0000-0000-0000-000000000000";

impl Kind {
    /// The kind of a request to the fake, by method (upper case) and path.
    pub fn of(method: &str, path: &str) -> Kind {
        match (method, path) {
            ("POST", "/identity/connect/token") => Kind::Token,
            ("GET", "/api/public/members") => Kind::Members,
            ("GET", "/api/public/groups") => Kind::Groups,
            ("GET", p) if p.starts_with("/api/public/groups/") && p.ends_with("/member-ids") => {
                Kind::MemberIds
            }
            ("POST", "/api/public/organization/import") => Kind::Import,
            _ => Kind::Other,
        }
    }

    /// The request (method, path on the fake) a kind stands for where a test names a kind:
    /// [`Kind::MemberIds`] is the member ids of [`SOME_GROUP`], [`Kind::Other`] `GET /api/other`.
    pub fn request(self) -> (&'static str, &'static str) {
        match self {
            Kind::Token => ("POST", "/identity/connect/token"),
            Kind::Members => ("GET", "/api/public/members"),
            Kind::Groups => ("GET", "/api/public/groups"),
            Kind::MemberIds => (
                "GET",
                "/api/public/groups/00000000-0000-0000-0000-000000000000/member-ids",
            ),
            Kind::Import => ("POST", "/api/public/organization/import"),
            Kind::Other => ("GET", "/api/other"),
        }
    }
}

/// A service of the cloud: each counts (and remembers refusals) on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `api.bitwarden.com` (the fake's `/api/…`).
    Api,
    /// `identity.bitwarden.com` (the fake's `/identity/…`).
    Identity,
}

impl Service {
    /// The service a path on the fake goes to, and the path as that service sees it (without
    /// the fake's `/api` or `/identity` prefix). Paths with neither go to the API as they are.
    pub fn of(path: &str) -> (Service, &str) {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if let Some(rest) = under("/identity") {
            (Service::Identity, rest)
        } else if let Some(rest) = under("/api") {
            (Service::Api, rest)
        } else {
            (Service::Api, path)
        }
    }
}

/// How the limiter keys its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// As the server: a counter per IP, service, rule period, HTTP method and whole path
    /// (AspNetCoreRateLimit's `PathCounterKeyBuilder` with `EnableEndpointRateLimiting`).
    PerPath,
    /// A stricter stress mode: one counter per IP, service and rule period for every request
    /// (an edge in front of the server counting per IP).
    SharedEdge,
}

/// One `GeneralRules` entry of a service: at most `limit` requests per `period` server seconds
/// to each endpoint `endpoint` matches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub service: Service,
    /// As in `appsettings.json`: `*` (every request) or `verb:path` (lower case; `*` matches any
    /// run of characters, `?` one), the path as the service sees it (`post:/connect/token`).
    pub endpoint: &'static str,
    pub period: f64,
    pub limit: u32,
    /// As the message names it (`1s`, `1m`).
    pub label: &'static str,
}

impl Rule {
    /// A rule of `period` `1s` or `1m`.
    pub fn new(service: Service, endpoint: &'static str, label: &'static str, limit: u32) -> Rule {
        let period = match label {
            "1s" => 1.0,
            "1m" => 60.0,
            other => panic!("period {other}: 1s or 1m"),
        };
        Rule {
            service,
            endpoint,
            period,
            limit,
            label,
        }
    }

    /// Whether the rule applies to a request (`path` as the service sees it):
    /// `RateLimitProcessor.GetMatchingRules` matches the endpoint against `*:{path}` and
    /// `{verb}:{path}`.
    fn matches(&self, service: Service, method: &str, path: &str) -> bool {
        if self.service != service {
            return false;
        }
        let pattern = self.endpoint.to_ascii_lowercase();
        let path = path.to_ascii_lowercase();
        wildcard(pattern.as_bytes(), format!("*:{path}").as_bytes())
            || wildcard(
                pattern.as_bytes(),
                format!("{}:{path}", method.to_ascii_lowercase()).as_bytes(),
            )
    }
}

/// `pattern` (`*` any run, `?` one character) matches the whole of `text`.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// How the limiter answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Let through to the endpoint (and counted).
    Passed,
    /// `429` with this `Retry-After` (server seconds) and rule period label.
    Refused {
        retry_after: u64,
        period: &'static str,
    },
    /// `403` from the edge: the IP is blocked.
    Blocked,
}

/// One request as the limiter saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// Server seconds since the limits were made.
    pub at: f64,
    pub ip: IpAddr,
    pub kind: Kind,
    /// The method (upper case) and the path as the fake received them (no query).
    pub method: String,
    pub path: String,
    pub answer: Answer,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: f64,
    count: u32,
}

/// What a window counts: a service's requests of one period, per method and path
/// ([`Counting::PerPath`], lower case) or all of them ([`Counting::SharedEdge`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Counter {
    service: Service,
    request: Option<(String, String)>,
    period: u64,
}

#[derive(Debug, Default)]
struct PerIp {
    /// The window open now (or last) of each counter.
    windows: HashMap<Counter, Window>,
    /// Refusals per service (each service's memory cache): (count, time of the last one).
    refusals: HashMap<Service, (u32, f64)>,
    /// Server time the block ends.
    blocked_until: Option<f64>,
}

/// The cloud's GET rule as issue 22 states it: 200 a minute (no per-second rule).
pub const CLOUD_GET_PER_MINUTE: u32 = 200;

/// The cloud's rate limits and their record (see the module doc).
#[derive(Debug)]
pub struct CloudLimits {
    /// How requests are counted.
    pub mode: Counting,
    pub rules: Vec<Rule>,
    /// A refusal count over this blocks the IP.
    pub block_after_refusals: u32,
    /// Sliding expiration of the refusal count (server seconds).
    pub refusal_memory: f64,
    /// How long a block lasts (server seconds).
    pub block_for: f64,
    /// One real second is this many server seconds.
    pub time_scale: f64,
    origin: Instant,
    ips: HashMap<IpAddr, PerIp>,
    /// Every request, in order.
    pub log: Vec<Seen>,
}

pub const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Identity's rules (the same in every setup): `*` 5 a second and 60 a minute,
/// `post:/connect/token` 10 a minute.
fn identity_rules() -> Vec<Rule> {
    vec![
        Rule::new(Service::Identity, "*", "1s", 5),
        Rule::new(Service::Identity, "*", "1m", 60),
        Rule::new(Service::Identity, "post:/connect/token", "1m", 10),
    ]
}

impl CloudLimits {
    fn with(mode: Counting, rules: Vec<Rule>) -> CloudLimits {
        CloudLimits {
            mode,
            rules,
            block_after_refusals: 10,
            refusal_memory: 300.0,
            block_for: 900.0,
            time_scale: 1.0,
            origin: Instant::now(),
            ips: HashMap::new(),
            log: Vec::new(),
        }
    }

    /// The cloud's limits as issue 22 states them, counted per (IP, method, path) as the
    /// server does, in real time (scale 1): POST, PUT and DELETE 5 a second and 60 a minute,
    /// GET [`CLOUD_GET_PER_MINUTE`] a minute (no per-second rule; see
    /// [`CloudLimits::with_get_limits`]), identity 5 a second, 60 a minute and 10 a minute on
    /// `POST /connect/token`.
    pub fn cloud() -> CloudLimits {
        let mut rules = Vec::new();
        for verb in ["post:*", "put:*", "delete:*"] {
            rules.push(Rule::new(Service::Api, verb, "1s", 5));
            rules.push(Rule::new(Service::Api, verb, "1m", 60));
        }
        rules.extend(identity_rules());
        CloudLimits::with(Counting::PerPath, rules)
            .with_get_limits(Some(CLOUD_GET_PER_MINUTE), None)
    }

    /// The rules of the stored `appsettings.json` files (`"*"` 5 a second and 60 a minute for
    /// every method; identity's token rule), counted per (IP, method, path).
    pub fn stored_appsettings() -> CloudLimits {
        let mut rules = vec![
            Rule::new(Service::Api, "*", "1s", 5),
            Rule::new(Service::Api, "*", "1m", 60),
        ];
        rules.extend(identity_rules());
        CloudLimits::with(Counting::PerPath, rules)
    }

    /// The stress mode: the stored rules ([`CloudLimits::stored_appsettings`]) with one counter
    /// per IP and service for every request ([`Counting::SharedEdge`]): 5 API requests a second
    /// and 60 a minute in all, 10 token requests a minute.
    pub fn shared_edge() -> CloudLimits {
        CloudLimits {
            mode: Counting::SharedEdge,
            ..CloudLimits::stored_appsettings()
        }
    }

    /// The API's GET rules replaced by these (`None`: no rule of that period). Only an
    /// endpoint's most restrictive rule of a period applies: under a `"*"` rule of the same
    /// period (the stored appsettings) a looser GET rule changes nothing.
    pub fn with_get_limits(
        mut self,
        per_minute: Option<u32>,
        per_second: Option<u32>,
    ) -> CloudLimits {
        self.rules
            .retain(|r| !(r.service == Service::Api && r.endpoint == "get:*"));
        if let Some(n) = per_second {
            self.rules.push(Rule::new(Service::Api, "get:*", "1s", n));
        }
        if let Some(n) = per_minute {
            self.rules.push(Rule::new(Service::Api, "get:*", "1m", n));
        }
        self
    }

    /// The same with time running `scale` times faster (one real second is `scale` server
    /// seconds).
    pub fn scaled(mut self, scale: f64) -> CloudLimits {
        assert!(scale > 0.0, "time scale {scale}");
        self.time_scale = scale;
        self
    }

    /// Server seconds since the limits were made.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64() * self.time_scale
    }

    /// The rules that apply to a request (`path` as its service sees it): the most restrictive
    /// of each period, shortest period first (`GetMatchingRules`).
    fn rules_for(&self, service: Service, method: &str, path: &str) -> Vec<Rule> {
        let mut chosen: Vec<Rule> = Vec::new();
        for r in self
            .rules
            .iter()
            .filter(|r| r.matches(service, method, path))
        {
            match chosen.iter_mut().find(|c| c.period == r.period) {
                Some(c) if (r.limit, r.endpoint) < (c.limit, c.endpoint) => *c = *r,
                Some(_) => {}
                None => chosen.push(*r),
            }
        }
        chosen.sort_by(|a, b| a.period.total_cmp(&b.period));
        chosen
    }

    /// The counter of a request's rule of `period`.
    fn counter(&self, service: Service, method: &str, path: &str, period: f64) -> Counter {
        Counter {
            service,
            request: match self.mode {
                Counting::PerPath => Some((method.to_ascii_lowercase(), path.to_ascii_lowercase())),
                Counting::SharedEdge => None,
            },
            period: period.to_bits(),
        }
    }

    /// Answers a request of this kind ([`Kind::request`]) now.
    pub fn admit(&mut self, ip: IpAddr, kind: Kind) -> Answer {
        let now = self.now();
        self.admit_at(ip, kind, now)
    }

    /// Answers a request of this kind ([`Kind::request`]) at server time `now`.
    pub fn admit_at(&mut self, ip: IpAddr, kind: Kind, now: f64) -> Answer {
        let (method, path) = kind.request();
        self.admit_request_at(ip, method, path, now)
    }

    /// Answers a request (method, path on the fake without the query) now.
    pub fn admit_request(&mut self, ip: IpAddr, method: &str, path: &str) -> Answer {
        let now = self.now();
        self.admit_request_at(ip, method, path, now)
    }

    /// Answers a request at server time `now` (seconds; never earlier than the last call's).
    pub fn admit_request_at(&mut self, ip: IpAddr, method: &str, path: &str, now: f64) -> Answer {
        let method = method.to_ascii_uppercase();
        let (service, service_path) = Service::of(path);
        let rules: Vec<(Counter, Rule)> = self
            .rules_for(service, &method, service_path)
            .into_iter()
            .map(|r| (self.counter(service, &method, service_path, r.period), r))
            .collect();
        let per = self.ips.entry(ip).or_default();
        if let Some(until) = per.blocked_until {
            if now < until {
                return self.record(ip, &method, path, now, Answer::Blocked);
            }
            per.blocked_until = None;
        }
        // windows that ended are gone
        for (c, r) in &rules {
            if per
                .windows
                .get(c)
                .is_some_and(|w| now >= w.start + r.period)
            {
                per.windows.remove(c);
            }
        }
        // the shortest window that is full refuses (the rules are checked by period); nothing
        // is counted then
        let full = rules
            .iter()
            .find(|(c, r)| per.windows.get(c).is_some_and(|w| w.count >= r.limit));
        if let Some((c, r)) = full {
            let start = per.windows[c].start;
            let retry_after = (start + r.period - now).round().max(1.0) as u64;
            let answer = Answer::Refused {
                retry_after,
                period: r.label,
            };
            // CustomIpRateLimitMiddleware.LogBlockedRequest
            let (count, last) = per.refusals.get(&service).copied().unwrap_or((0, now));
            let count = if now - last > self.refusal_memory {
                1
            } else {
                count + 1
            };
            if count > self.block_after_refusals {
                per.blocked_until = Some(now + self.block_for);
                per.refusals.remove(&service);
            } else {
                per.refusals.insert(service, (count, now));
            }
            return self.record(ip, &method, path, now, answer);
        }
        for (c, _) in rules {
            per.windows
                .entry(c)
                .or_insert(Window {
                    start: now,
                    count: 0,
                })
                .count += 1;
        }
        self.record(ip, &method, path, now, Answer::Passed)
    }

    fn record(&mut self, ip: IpAddr, method: &str, path: &str, at: f64, answer: Answer) -> Answer {
        self.log.push(Seen {
            at,
            ip,
            kind: Kind::of(method, path),
            method: method.to_string(),
            path: path.to_string(),
            answer,
        });
        answer
    }

    /// Other clients behind the same IP send `n` requests of this kind ([`Kind::request`]) now:
    /// they count in the windows open now (opening them), never refused, not recorded in
    /// [`CloudLimits::log`]. Per path ([`Counting::PerPath`]) they spend only that request's
    /// counters.
    pub fn spend_other(&mut self, kind: Kind, n: u32) {
        let now = self.now();
        self.spend_other_at(LOCALHOST, kind, n, now);
    }

    pub fn spend_other_at(&mut self, ip: IpAddr, kind: Kind, n: u32, now: f64) {
        let (method, path) = kind.request();
        self.spend_other_path_at(ip, method, path, n, now);
    }

    /// As [`CloudLimits::spend_other`], for a request named by method and path on the fake.
    pub fn spend_other_path(&mut self, method: &str, path: &str, n: u32) {
        let now = self.now();
        self.spend_other_path_at(LOCALHOST, method, path, n, now);
    }

    pub fn spend_other_path_at(&mut self, ip: IpAddr, method: &str, path: &str, n: u32, now: f64) {
        let method = method.to_ascii_uppercase();
        let (service, service_path) = Service::of(path);
        let rules: Vec<(Counter, Rule)> = self
            .rules_for(service, &method, service_path)
            .into_iter()
            .map(|r| (self.counter(service, &method, service_path, r.period), r))
            .collect();
        let per = self.ips.entry(ip).or_default();
        for (c, r) in rules {
            let w = per.windows.entry(c).or_insert(Window {
                start: now,
                count: 0,
            });
            if now >= w.start + r.period {
                *w = Window {
                    start: now,
                    count: 0,
                };
            }
            w.count += n;
        }
    }

    /// Whether the IP is blocked now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.is_blocked_at(ip, self.now())
    }

    pub fn is_blocked_at(&self, ip: IpAddr, now: f64) -> bool {
        self.ips
            .get(&ip)
            .and_then(|p| p.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// The requests of this kind (every answer).
    pub fn requests(&self, kind: Kind) -> usize {
        self.log.iter().filter(|s| s.kind == kind).count()
    }

    /// The requests to this method and path on the fake (every answer; the method in any case,
    /// the path exactly as sent).
    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        self.log
            .iter()
            .filter(|s| s.method.eq_ignore_ascii_case(method) && s.path == path)
            .count()
    }

    /// The `429` answers.
    pub fn refusals(&self) -> Vec<&Seen> {
        self.log
            .iter()
            .filter(|s| matches!(s.answer, Answer::Refused { .. }))
            .collect()
    }

    /// The `403` answers of a block.
    pub fn blocked_answers(&self) -> Vec<&Seen> {
        self.log
            .iter()
            .filter(|s| s.answer == Answer::Blocked)
            .collect()
    }

    /// The answer the fake sends for a refusal or a block (`None`: let it through).
    pub fn response(answer: Answer) -> Option<axum::response::Response> {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        match answer {
            Answer::Passed => None,
            Answer::Refused {
                retry_after,
                period,
            } => Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("retry-after", retry_after.to_string()),
                        ("content-type", "application/json".to_string()),
                    ],
                    serde_json::json!({
                        "message": format!("Slow down! Too many requests. Try again in {period}.")
                    })
                    .to_string(),
                )
                    .into_response(),
            ),
            Answer::Blocked => Some(
                (
                    StatusCode::FORBIDDEN,
                    [("content-type", "text/html; charset=UTF-8")],
                    "<!DOCTYPE html>\n<html><head><title>Access denied</title></head><body>\
                     <h1>Sorry, you have been blocked</h1><p>You are unable to access this \
                     site.</p></body></html>\n",
                )
                    .into_response(),
            ),
        }
    }
}

/// The time scale of `FAKE_BITWARDEN_CLOUD_LIMITS` (`None` when unset): every fake acting like
/// Bitwarden starts with the cloud's limits at this scale ([`from_env`]), and [`super::Env`]
/// sets the client's budget and `DIRECTORY_CONNECTOR_TIME_SCALE` to match.
pub fn scale_from_env() -> Option<f64> {
    let v = std::env::var("FAKE_BITWARDEN_CLOUD_LIMITS").ok()?;
    let s: f64 = v.trim().parse().unwrap_or_else(|_| {
        panic!("FAKE_BITWARDEN_CLOUD_LIMITS={v}: a time scale (a positive number) expected")
    });
    assert!(s > 0.0 && s.is_finite(), "FAKE_BITWARDEN_CLOUD_LIMITS={v}");
    Some(s)
}

/// The limits every fake acting like Bitwarden starts with ([`super::fake_bitwarden::FakeBitwarden::start`]):
/// `None` without `FAKE_BITWARDEN_CLOUD_LIMITS`, else the setup `FAKE_BITWARDEN_LIMITS_MODE`
/// names at that time scale: `cloud` (or unset: [`CloudLimits::cloud`], per path),
/// `appsettings` ([`CloudLimits::stored_appsettings`]) or `shared` ([`CloudLimits::shared_edge`],
/// the stress mode). A mode without a time scale is refused (it would silently do nothing).
pub fn from_env() -> Option<CloudLimits> {
    let mode = std::env::var("FAKE_BITWARDEN_LIMITS_MODE").ok();
    let Some(scale) = scale_from_env() else {
        assert!(
            mode.is_none(),
            "FAKE_BITWARDEN_LIMITS_MODE={} needs FAKE_BITWARDEN_CLOUD_LIMITS=<time scale>",
            mode.unwrap_or_default()
        );
        return None;
    };
    let limits = match mode.as_deref().map(str::trim) {
        None | Some("" | "cloud") => CloudLimits::cloud(),
        Some("appsettings") => CloudLimits::stored_appsettings(),
        Some("shared") => CloudLimits::shared_edge(),
        Some(other) => panic!(
            "FAKE_BITWARDEN_LIMITS_MODE={other}: `cloud` (per path, the default), `appsettings` or `shared` expected"
        ),
    };
    Some(limits.scaled(scale))
}
