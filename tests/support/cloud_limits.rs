//! The Bitwarden cloud's per-IP rate limits, as the fake applies them (an axum middleware on
//! every route of [`super::fake_bitwarden::FakeBitwarden`] once `Org::limits` is set).
//!
//! What the cloud does (bitwarden/server):
//! * `src/Api/appsettings.json` and `src/Identity/appsettings.json`, `IpRateLimitOptions`
//!   (AspNetCoreRateLimit, `StackBlockedRequests: false`): every endpoint at most 5 requests a
//!   second and 60 a minute per client IP, counted by each service (API and identity) on its
//!   own; `POST /connect/token` at most 10 a minute besides. The windows are fixed: a window
//!   opens with the first request counted in it and lasts its period; a refused request is not
//!   counted. A refusal is `429` with `Retry-After` (whole seconds until the refusing window
//!   ends, at least 1) and a JSON body `{"message": "Slow down! Too many requests. Try again in
//!   1s."}` (the middleware writes the refusing rule's period there: `1s` or `1m`).
//! * `src/Core/Utilities/CustomIpRateLimitMiddleware.cs`: each refusal is counted per IP in a
//!   memory cache entry with a sliding expiration of 5 minutes (the count starts again after 5
//!   minutes without a refusal); the refusal that takes the count over 10 blocks the IP
//!   (`BlockIpAsync(ip, permanent: false)`), and `AzureQueueBlockIpService` lifts the block after
//!   15 minutes. A blocked IP gets the edge's `403` with an HTML page for every request.
//! * `src/Api/Startup.cs` turns the limits on only when the server is not self-hosted (so a
//!   fake acting like Vaultwarden or a self-hosted server has none).
//!
//! Time runs `time_scale` times faster than real time (one real second is `time_scale` server
//! seconds), so a test sees a minute window end in `60 / time_scale` real seconds; `Retry-After`
//! stays in server seconds, the number the real server would send. The limiter itself takes the
//! server time as an argument ([`CloudLimits::admit_at`]), so its rules are tested without
//! waiting.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// What a request asks for (for the record, and to pick the rules).
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

impl Kind {
    /// The kind of a request to the fake, by method and path.
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

    /// The service that counts it: identity or the API (each counts on its own).
    fn service(self) -> Service {
        match self {
            Kind::Token => Service::Identity,
            _ => Service::Api,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Service {
    Api,
    Identity,
}

/// One `GeneralRules` entry: at most `limit` requests per `period` server seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub period: f64,
    pub limit: u32,
    /// As the message names it (`1s`, `1m`).
    pub label: &'static str,
    /// Only for the token endpoint (else every endpoint).
    pub token_only: bool,
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
    pub answer: Answer,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: f64,
    count: u32,
}

#[derive(Debug, Default)]
struct PerIp {
    /// (service, rule index) → the window open now (or last).
    windows: HashMap<(Service, usize), Window>,
    /// Refusals per service (each service's memory cache): (count, time of the last one).
    refusals: HashMap<Service, (u32, f64)>,
    /// Server time the block ends.
    blocked_until: Option<f64>,
}

/// The cloud's rate limits and their record (see the module doc).
#[derive(Debug)]
pub struct CloudLimits {
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

impl CloudLimits {
    /// The cloud's limits, in real time (scale 1).
    pub fn cloud() -> CloudLimits {
        CloudLimits {
            rules: vec![
                Rule {
                    period: 1.0,
                    limit: 5,
                    label: "1s",
                    token_only: false,
                },
                Rule {
                    period: 60.0,
                    limit: 60,
                    label: "1m",
                    token_only: false,
                },
                Rule {
                    period: 60.0,
                    limit: 10,
                    label: "1m",
                    token_only: true,
                },
            ],
            block_after_refusals: 10,
            refusal_memory: 300.0,
            block_for: 900.0,
            time_scale: 1.0,
            origin: Instant::now(),
            ips: HashMap::new(),
            log: Vec::new(),
        }
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

    /// Answers a request now.
    pub fn admit(&mut self, ip: IpAddr, kind: Kind) -> Answer {
        let now = self.now();
        self.admit_at(ip, kind, now)
    }

    fn rules_for(&self, kind: Kind) -> impl Iterator<Item = (usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .filter(move |(_, r)| !r.token_only || kind == Kind::Token)
    }

    /// Answers a request at server time `now` (seconds; never earlier than the last call's).
    pub fn admit_at(&mut self, ip: IpAddr, kind: Kind, now: f64) -> Answer {
        let service = kind.service();
        let rules: Vec<(usize, Rule)> = self.rules_for(kind).map(|(i, r)| (i, *r)).collect();
        let per = self.ips.entry(ip).or_default();
        if let Some(until) = per.blocked_until {
            if now < until {
                return self.record(ip, kind, now, Answer::Blocked);
            }
            per.blocked_until = None;
        }
        // windows that ended are gone
        for (i, r) in &rules {
            if per
                .windows
                .get(&(service, *i))
                .is_some_and(|w| now >= w.start + r.period)
            {
                per.windows.remove(&(service, *i));
            }
        }
        // the shortest window that is full refuses (AspNetCoreRateLimit checks the rules by
        // period); nothing is counted then
        let mut full: Vec<&(usize, Rule)> = rules
            .iter()
            .filter(|(i, r)| {
                per.windows
                    .get(&(service, *i))
                    .is_some_and(|w| w.count >= r.limit)
            })
            .collect();
        full.sort_by(|a, b| a.1.period.total_cmp(&b.1.period));
        if let Some((i, r)) = full.first() {
            let start = per.windows[&(service, *i)].start;
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
            return self.record(ip, kind, now, answer);
        }
        for (i, _) in &rules {
            per.windows
                .entry((service, *i))
                .or_insert(Window {
                    start: now,
                    count: 0,
                })
                .count += 1;
        }
        self.record(ip, kind, now, Answer::Passed)
    }

    fn record(&mut self, ip: IpAddr, kind: Kind, at: f64, answer: Answer) -> Answer {
        self.log.push(Seen {
            at,
            ip,
            kind,
            answer,
        });
        answer
    }

    /// Other clients behind the same IP send `n` requests of this kind now: they count in the
    /// windows open now (opening them), never refused, not recorded in [`CloudLimits::log`].
    pub fn spend_other(&mut self, kind: Kind, n: u32) {
        let now = self.now();
        self.spend_other_at(LOCALHOST, kind, n, now);
    }

    pub fn spend_other_at(&mut self, ip: IpAddr, kind: Kind, n: u32, now: f64) {
        let service = kind.service();
        let rules: Vec<(usize, Rule)> = self.rules_for(kind).map(|(i, r)| (i, *r)).collect();
        let per = self.ips.entry(ip).or_default();
        for (i, r) in rules {
            let w = per.windows.entry((service, i)).or_insert(Window {
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
/// Bitwarden starts with the cloud's limits at this scale, and [`super::Env`] sets the client's
/// budget and `DIRECTORY_CONNECTOR_TIME_SCALE` to match.
pub fn scale_from_env() -> Option<f64> {
    let v = std::env::var("FAKE_BITWARDEN_CLOUD_LIMITS").ok()?;
    let s: f64 = v.trim().parse().unwrap_or_else(|_| {
        panic!("FAKE_BITWARDEN_CLOUD_LIMITS={v}: a time scale (a positive number) expected")
    });
    assert!(s > 0.0 && s.is_finite(), "FAKE_BITWARDEN_CLOUD_LIMITS={v}");
    Some(s)
}
