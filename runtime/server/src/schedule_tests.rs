//! Unit tests of `schedule.rs`: cron specs, time zones, catch-up.

use super::*;
use crate::pauses::resume_hint;

fn spec(cron: &str, tz: Option<&str>) -> Spec {
    Spec {
        id: "w#0".into(),
        workflow: "w".into(),
        cron: cron.into(),
        timezone: tz.map(str::to_string),
        overlap: OverlapPolicy::Skip,
        catch_up: false,
        jitter: None,
        inputs: BTreeMap::new(),
        error: None,
    }
}

#[test]
fn ticks_follow_the_time_zone_and_seconds() {
    let at = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    // 03:00 in Berlin in summer (UTC+2) is 01:00 UTC.
    let next = spec("0 3 * * *", Some("Europe/Berlin"))
        .next_after(at)
        .unwrap();
    assert_eq!(next.to_rfc3339(), "2026-07-01T01:00:00+00:00");
    let next = spec("*/10 * * * * *", None).next_after(at).unwrap();
    assert_eq!(next.to_rfc3339(), "2026-07-01T00:00:10+00:00");
}

#[test]
fn ticks_a_late_scheduler_passed_over_are_counted() {
    let at = DateTime::parse_from_rfc3339("2026-07-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let s = spec("* * * * * *", None);
    assert_eq!(s.ticks_between(at, at + chrono::Duration::seconds(5)), 4);
    assert_eq!(
        s.ticks_between(at, at + chrono::Duration::milliseconds(900)),
        0
    );
}

#[test]
fn jitter_delays_within_its_bound() {
    let mut s = Sched::new(Spec {
        jitter: Some(Duration::from_secs(5)),
        ..spec("0 * * * *", None)
    });
    for _ in 0..50 {
        s.arm(Utc::now());
        let d = s.fire_at.unwrap() - s.next.unwrap();
        assert!(d >= chrono::Duration::zero() && d <= chrono::Duration::seconds(5));
    }
}

#[test]
fn a_bad_time_zone_in_the_server_config_is_said() {
    let mut config = crate::ServerConfig::default();
    config.schedules.push(crate::config::ExtraSchedule {
        workflow: "nope".into(),
        cron: "* * * * *".into(),
        timezone: Some("Mars/Olympus".into()),
        overlap: None,
        catch_up: None,
        jitter: None,
        inputs: BTreeMap::new(),
    });
    let specs = specs(&[], &config);
    assert!(
        specs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no workflow `nope`")
    );
}

#[test]
fn the_resume_hint_is_a_path_that_works_when_typed() {
    assert_eq!(
        resume_hint("dr-drill#0"),
        "POST /api/v1/schedules/dr-drill%230/resume"
    );
    assert_eq!(
        resume_hint("a b/c?#1"),
        "POST /api/v1/schedules/a%20b%2Fc%3F%231/resume"
    );
}

/// Two servers started at different instants compute the same ticks: on the cron's whole
/// second, whatever the sub-second of "now" (they fired `…:50.879` and `…:50.554`, two claims,
/// two runs, for one tick).
#[test]
fn ticks_are_on_the_whole_second_whenever_they_are_computed() {
    let at = DateTime::parse_from_rfc3339("2026-07-01T00:00:00.879Z")
        .unwrap()
        .with_timezone(&Utc);
    let other = DateTime::parse_from_rfc3339("2026-07-01T00:00:00.554Z")
        .unwrap()
        .with_timezone(&Utc);
    for cron in ["*/5 * * * * *", "0 3 * * *"] {
        let s = spec(cron, Some("Europe/Berlin"));
        let a = s.next_after(at).unwrap();
        assert_eq!(a, s.next_after(other).unwrap(), "{cron}");
        assert_eq!(a.timestamp_subsec_nanos(), 0, "{cron}: {a}");
    }
    let every = spec("* * * * * *", None);
    assert_eq!(
        every.next_after(at).unwrap().to_rfc3339(),
        "2026-07-01T00:00:01+00:00"
    );
    assert_eq!(
        every.previous(at).unwrap().to_rfc3339(),
        "2026-07-01T00:00:00+00:00"
    );
}
