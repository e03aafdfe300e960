//! The internal, validated DisruptionBudget: one cluster's limits on the
//! placement moves stevedore makes, and the time windows they may happen
//! in. Windows are evaluated here (a pure function of a wall-clock instant),
//! so the planner and the simulator read them the same way.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::policy::{ResourceRef, TaskCount};
use crate::model::Millis;
use crate::spec::diag::Position;

/// A validated DisruptionBudget.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub name: String,
    pub cluster: ResourceRef,
    /// Tasks stopped by stevedore and not yet replaced, across the cluster.
    pub max_unavailable: Option<TaskCount>,
    /// All stops in flight are in one zone.
    pub one_zone_at_a_time: bool,
    pub moves: Option<MoveRate>,
    /// Moves only inside one of these; empty: always.
    pub windows: Vec<Window>,
    /// Where the budget was written (its name), for conflicts and reasons.
    #[serde(skip)]
    pub origin: Position,
}

/// At most `max` stops in any sliding `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveRate {
    pub max: u32,
    #[serde(with = "as_millis")]
    pub per: Duration,
}

/// A recurring window: opens at each time `schedule` names in `time_zone`,
/// open for `duration`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// The schedule as written.
    pub schedule: String,
    #[serde(with = "as_millis")]
    pub duration: Duration,
    /// The IANA name as written (`UTC` by default).
    pub time_zone: String,
    #[serde(skip)]
    cron: croner::Cron,
    #[serde(skip)]
    zone: jiff::tz::TimeZone,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Window")
            .field("schedule", &self.schedule)
            .field("duration", &self.duration)
            .field("time_zone", &self.time_zone)
            .finish()
    }
}

impl PartialEq for Window {
    /// The parsed forms follow from the written ones.
    fn eq(&self, other: &Window) -> bool {
        (&self.schedule, self.duration, &self.time_zone)
            == (&other.schedule, other.duration, &other.time_zone)
    }
}

/// Why a window could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("`{schedule}` is not a cron schedule: {why}")]
    Schedule { schedule: String, why: String },
    #[error("`{0}` is not an IANA time zone (such as `Europe/Berlin` or `UTC`)")]
    TimeZone(String),
    #[error("a window's duration must be longer than zero")]
    ZeroDuration,
}

/// The parser of window schedules: exactly five fields, as in crontab.
fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
}

/// A five-field cron schedule.
pub fn schedule(text: &str) -> Result<croner::Cron, WindowError> {
    cron_parser()
        .parse(text)
        .map_err(|e| WindowError::Schedule {
            schedule: text.to_owned(),
            why: e.to_string(),
        })
}

/// An IANA time zone, from the system's database or the one bundled.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, WindowError> {
    jiff::tz::db()
        .get(name)
        .map_err(|_| WindowError::TimeZone(name.to_owned()))
}

impl Window {
    pub fn new(schedule: &str, duration: Duration, time_zone: &str) -> Result<Window, WindowError> {
        let cron = self::schedule(schedule)?;
        let zone = self::time_zone(time_zone)?;
        if duration.is_zero() {
            return Err(WindowError::ZeroDuration);
        }
        Ok(Window {
            schedule: schedule.to_owned(),
            duration,
            time_zone: time_zone.to_owned(),
            cron,
            zone,
        })
    }

    fn zoned(&self, wall: Millis) -> Option<jiff::Zoned> {
        let at = jiff::Timestamp::from_millisecond(i64::try_from(wall).ok()?).ok()?;
        Some(at.to_zoned(self.zone.clone()))
    }

    /// When the window that holds `wall` closes, if one does: the last
    /// opening at or before `wall` is less than `duration` ago.
    pub fn open_until(&self, wall: Millis) -> Option<Millis> {
        let now = self.zoned(wall)?;
        let opened = self.cron.find_previous_occurrence(&now, true).ok()?;
        let opened = opened.timestamp().as_millisecond();
        let closes = opened.checked_add(i64::try_from(self.duration.as_millis()).ok()?)?;
        (closes > wall as i64).then_some(closes as Millis)
    }

    /// When the window next opens after `wall`.
    pub fn next_opening(&self, wall: Millis) -> Option<Millis> {
        let now = self.zoned(wall)?;
        let next = self.cron.find_next_occurrence(&now, false).ok()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }

    /// `02:00-04:00 Europe/Berlin` for a window opening at `at`.
    pub fn describe_from(&self, at: Millis) -> String {
        let Some(start) = self.zoned(at) else {
            return format!("`{}` {}", self.schedule, self.time_zone);
        };
        let end = self.zoned(at + self.duration.as_millis() as Millis);
        let hm = |z: &jiff::Zoned| format!("{:02}:{:02}", z.hour(), z.minute());
        match end {
            Some(end) => format!("{}-{} {}", hm(&start), hm(&end), self.time_zone),
            None => format!("{} {}", hm(&start), self.time_zone),
        }
    }
}

impl Budget {
    /// A budget for `cluster` with no limit yet (tests set the ones they need).
    #[cfg(test)]
    pub(crate) fn unlimited(name: &str, cluster: &str) -> Budget {
        Budget {
            name: name.into(),
            cluster: ResourceRef {
                written: cluster.into(),
                name: cluster.into(),
                scope: None,
            },
            max_unavailable: None,
            one_zone_at_a_time: false,
            moves: None,
            windows: vec![],
            origin: Position::default(),
        }
    }

    /// Whether placement moves may happen at `wall` (milliseconds since
    /// the Unix epoch): always without windows, else inside one.
    pub fn window_open(&self, wall: Millis) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.open_until(wall).is_some())
    }

    /// The window that opens first after `wall`, with its opening time.
    pub fn next_window(&self, wall: Millis) -> Option<(&Window, Millis)> {
        self.windows
            .iter()
            .filter_map(|w| w.next_opening(wall).map(|at| (w, at)))
            .min_by_key(|(_, at)| *at)
    }
}

/// Durations serialize as milliseconds, as everywhere in the JSON output.
mod as_millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: Millis = 1_767_225_600_000;
    const HOUR: Millis = 3_600_000;

    #[test]
    fn a_window_is_open_from_its_opening_for_its_duration_in_its_time_zone() {
        // 02:00 in Berlin is 01:00 UTC in winter.
        let w = Window::new("0 2 * * *", Duration::from_secs(7200), "Europe/Berlin").unwrap();
        assert_eq!(w.open_until(NEW_YEAR), None);
        assert_eq!(w.open_until(NEW_YEAR + HOUR - 1), None);
        assert_eq!(w.open_until(NEW_YEAR + HOUR), Some(NEW_YEAR + 3 * HOUR));
        assert_eq!(
            w.open_until(NEW_YEAR + 3 * HOUR - 1),
            Some(NEW_YEAR + 3 * HOUR)
        );
        assert_eq!(w.open_until(NEW_YEAR + 3 * HOUR), None);
        assert_eq!(w.next_opening(NEW_YEAR), Some(NEW_YEAR + HOUR));
        assert_eq!(w.next_opening(NEW_YEAR + HOUR), Some(NEW_YEAR + 25 * HOUR));
        assert_eq!(
            w.describe_from(NEW_YEAR + HOUR),
            "02:00-04:00 Europe/Berlin"
        );
    }

    #[test]
    fn summer_time_moves_the_window_in_utc() {
        // 2026-07-01T00:00:00Z: Berlin is UTC+2, so 02:00 there is 00:00 UTC.
        let july = 1_782_864_000_000;
        let w = Window::new("0 2 * * *", Duration::from_secs(3600), "Europe/Berlin").unwrap();
        assert_eq!(w.open_until(july), Some(july + HOUR));
    }

    /// Windows compare (a reload that changed nothing) and print by what
    /// was written.
    #[test]
    fn windows_are_equal_when_written_alike_and_print_what_was_written() {
        let hour = Duration::from_secs(3600);
        let w = Window::new("0 2 * * *", hour, "UTC").unwrap();
        assert_eq!(w, Window::new("0 2 * * *", hour, "UTC").unwrap());
        assert_ne!(w, Window::new("0 3 * * *", hour, "UTC").unwrap());
        assert_ne!(w, Window::new("0 2 * * *", 2 * hour, "UTC").unwrap());
        assert_ne!(w, Window::new("0 2 * * *", hour, "Europe/Berlin").unwrap());
        assert_eq!(
            format!("{w:?}"),
            "Window { schedule: \"0 2 * * *\", duration: 3600s, time_zone: \"UTC\" }"
        );
    }

    #[test]
    fn bad_schedules_zones_and_durations_are_refused() {
        let hour = Duration::from_secs(3600);
        assert!(matches!(
            Window::new("0 2 * *", hour, "UTC"),
            Err(WindowError::Schedule { .. })
        ));
        assert!(matches!(
            Window::new("0 0 2 * * *", hour, "UTC"),
            Err(WindowError::Schedule { .. })
        ));
        assert!(matches!(
            Window::new("61 2 * * *", hour, "UTC"),
            Err(WindowError::Schedule { .. })
        ));
        assert_eq!(
            Window::new("0 2 * * *", hour, "Europe/Berlln").unwrap_err(),
            WindowError::TimeZone("Europe/Berlln".into())
        );
        assert_eq!(
            Window::new("0 2 * * *", Duration::ZERO, "UTC").unwrap_err(),
            WindowError::ZeroDuration
        );
    }

    #[test]
    fn a_budget_without_windows_is_always_open_and_with_them_only_inside() {
        let mut budget = Budget::unlimited("b", "prod");
        assert!(budget.window_open(NEW_YEAR));
        assert_eq!(budget.next_window(NEW_YEAR), None);
        budget.windows = vec![
            Window::new("0 2 * * *", Duration::from_secs(3600), "UTC").unwrap(),
            Window::new("30 1 * * *", Duration::from_secs(600), "UTC").unwrap(),
        ];
        assert!(!budget.window_open(NEW_YEAR));
        let (w, at) = budget.next_window(NEW_YEAR).unwrap();
        assert_eq!(
            (w.schedule.as_str(), at),
            ("30 1 * * *", NEW_YEAR + 90 * 60_000)
        );
        assert!(budget.window_open(NEW_YEAR + 95 * 60_000));
        assert!(!budget.window_open(NEW_YEAR + 100 * 60_000));
        assert!(budget.window_open(NEW_YEAR + 2 * HOUR));
    }
}
