//! When the service runs next: a cron expression (`service.schedule`, 5 fields or 6 with
//! seconds first, evaluated in local time) or a fixed interval (`sync.interval_minutes`), plus a
//! random jitter. A cron expression that matches no time in the next [`HORIZON_YEARS`] years
//! (`0 0 30 2 *`, February 30th) is refused like one that does not parse.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use super::Config;

/// How runs follow each other.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<Cron>),
}

impl Default for Schedule {
    /// Every 5 minutes (the default of `sync.interval_minutes`), for a service whose
    /// configuration could never be read.
    fn default() -> Self {
        Schedule::Every(Duration::minutes(5))
    }
}

impl Schedule {
    /// The schedule the configuration asks for, or why there is none (the message names the key).
    pub fn from_config(cfg: &Config) -> Result<Schedule, String> {
        if let Some(expr) = cfg
            .service
            .schedule
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            return parse_cron(expr).map(|c| Schedule::Cron(Box::new(c)));
        }
        match cfg.sync.interval_minutes {
            0 => Err(
                "sync.interval_minutes is 0 (off) and service.schedule is not set: the service \
                 needs one of them"
                    .into(),
            ),
            m => Ok(Schedule::Every(Duration::minutes(i64::from(m)))),
        }
    }

    /// The next run after `now` (without jitter).
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => now + *d,
            Schedule::Cron(c) => {
                let local = now.with_timezone(&chrono::Local);
                match c.find_next_occurrence(&local, false) {
                    Ok(t) => t.with_timezone(&Utc),
                    // a pattern that never matches again: wait a day, then look again
                    Err(_) => now + Duration::days(1),
                }
            }
        }
    }

    /// The time between two runs around `now` (for the health check's "twice the interval").
    pub fn period(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Every(d) => *d,
            Schedule::Cron(_) => {
                let a = self.next_after(now);
                let b = self.next_after(a);
                b - a
            }
        }
    }
}

/// How far ahead a cron expression must match a time: 10 years, so that February 29th (up to 8
/// years apart around 2100) is kept and February 30th is refused.
pub const HORIZON_YEARS: i32 = 10;

/// Parses a cron expression (5 fields, or 6 with seconds first; `@hourly` and the like too) and
/// refuses one that never fires (no matching time within [`HORIZON_YEARS`] years of now).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let parsed = CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .or_else(|_| Cron::from_str(expr));
    let cron = parsed.map_err(|e| {
        format!(
            "`{expr}` is not a cron expression ({e}); e.g. `*/30 * * * *` (every 30 minutes) or \
             `0 2 * * *` (02:00 every day)"
        )
    })?;
    check_fires(expr, &cron, Utc::now())?;
    Ok(cron)
}

/// Refuses a cron expression with no matching time within [`HORIZON_YEARS`] years after `now`.
fn check_fires(expr: &str, cron: &Cron, now: DateTime<Utc>) -> Result<(), String> {
    let local = now.with_timezone(&chrono::Local);
    let horizon = now + Duration::days(i64::from(HORIZON_YEARS) * 366);
    match cron.find_next_occurrence(&local, false) {
        Ok(t) if t.with_timezone(&Utc) <= horizon => Ok(()),
        _ => Err(format!(
            "`{expr}` never fires: no time matches it in the next {HORIZON_YEARS} years (a day \
             that month does not have, such as February 30th?); e.g. `0 2 * * *` (02:00 every \
             day) or `0 2 L * *` (02:00 on the last day of every month)"
        )),
    }
}

/// A random delay of 0 to `seconds` seconds.
pub fn jitter(seconds: u64) -> Duration {
    if seconds == 0 {
        return Duration::zero();
    }
    Duration::milliseconds(fastrand::i64(0..=(seconds as i64) * 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_applies_unless_a_cron_expression_is_set() {
        let mut cfg = Config::default();
        cfg.sync.interval_minutes = 30;
        let now = Utc::now();
        let s = Schedule::from_config(&cfg).unwrap();
        assert_eq!(s.next_after(now), now + Duration::minutes(30));
        assert_eq!(s.period(now), Duration::minutes(30));
        cfg.service.schedule = Some("*/2 * * * * *".into());
        let s = Schedule::from_config(&cfg).unwrap();
        let next = s.next_after(now);
        assert!(next > now && next <= now + Duration::seconds(2), "{next}");
        assert_eq!(s.period(now), Duration::seconds(2));
        cfg.service.schedule = Some("0 3 * * *".into());
        let s = Schedule::from_config(&cfg).unwrap();
        assert_eq!(s.period(now), Duration::days(1));
        use chrono::Timelike;
        assert_eq!(
            s.next_after(now).with_timezone(&chrono::Local).hour(),
            3,
            "five fields: minute hour …"
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let mut cfg = Config::default();
        cfg.service.schedule = Some("every tuesday".into());
        let e = Schedule::from_config(&cfg).unwrap_err();
        assert!(e.contains("every tuesday") && e.contains("cron"), "{e}");
        // valid fields, but no such day: refused, not "next run in a day" forever
        for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"] {
            cfg.service.schedule = Some(never.into());
            let e = Schedule::from_config(&cfg).unwrap_err();
            assert!(e.contains(never) && e.contains("never fires"), "{e}");
        }
        // rare but real: February 29th fires within the horizon
        cfg.service.schedule = Some("0 0 29 2 *".into());
        assert!(Schedule::from_config(&cfg).is_ok());
        assert!(
            parse_cron("0 2 L * *").is_ok(),
            "the example the message gives"
        );
        let cron = parse_cron("0 0 29 2 *").unwrap();
        let around_2100 = "2096-03-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(check_fires("0 0 29 2 *", &cron, around_2100).is_ok());
        cfg.service.schedule = None;
        cfg.sync.interval_minutes = 0;
        let e = Schedule::from_config(&cfg).unwrap_err();
        assert!(e.contains("service.schedule"), "{e}");
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(0), Duration::zero());
        for _ in 0..100 {
            let j = jitter(3);
            assert!(j >= Duration::zero() && j <= Duration::seconds(3), "{j}");
        }
    }
}
