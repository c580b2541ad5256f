//! Time windows in a recipient's local time ("mon-fri 08:00-21:00"), and the search for the
//! first instant that lies inside every window in every one of a number's time zones.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const ALL_DAYS: u8 = 0b111_1111;
const SECONDS_PER_DAY: u32 = 86_400;

/// How many days ahead the deferral search looks before it gives up.
pub(crate) const SEARCH_DAYS: i64 = 8;

/// One allowed interval per matching day, in local time. `end <= start` means the interval
/// crosses midnight into the next day (which then need not be one of `days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    days: u8,
    start: u32,
    end: u32,
}

impl Window {
    /// Parses `"09:00-21:00"` (every day) or `"mon-fri 07:00-21:00"` / `"sat,sun 09:00-20:00"`.
    pub(crate) fn parse(text: &str) -> Result<Window, String> {
        let text = text.trim();
        let (days, hours) = match text.split_once(' ') {
            Some((days, hours)) => (parse_days(days.trim())?, hours.trim()),
            None => (ALL_DAYS, text),
        };
        let (start, end) = hours
            .split_once('-')
            .ok_or_else(|| format!("`{text}`: expected HH:MM-HH:MM, e.g. 09:00-21:00"))?;
        let start = parse_clock(start.trim(), false).map_err(|e| format!("`{text}`: {e}"))?;
        let end = parse_clock(end.trim(), true).map_err(|e| format!("`{text}`: {e}"))?;
        if start == end || (start == 0 && end == SECONDS_PER_DAY) && days == ALL_DAYS {
            return Err(format!(
                "`{text}`: an empty or whole-day window restricts nothing; remove the rule instead"
            ));
        }
        Ok(Window { days, start, end })
    }

    fn crosses_midnight(self) -> bool {
        self.end <= self.start
    }

    fn has_day(self, weekday: chrono::Weekday) -> bool {
        self.days & (1 << weekday.num_days_from_monday()) != 0
    }

    /// Whether a local weekday and second of the day fall inside this window.
    fn contains(self, weekday: chrono::Weekday, second: u32) -> bool {
        if !self.crosses_midnight() {
            return self.has_day(weekday) && self.start <= second && second < self.end;
        }
        (self.has_day(weekday) && second >= self.start)
            || (self.has_day(weekday.pred()) && second < self.end)
    }

    fn start_time(self) -> NaiveTime {
        NaiveTime::from_num_seconds_from_midnight_opt(self.start, 0).unwrap_or(NaiveTime::MIN)
    }
}

/// The windows of one rule; a local time is allowed when any of them contains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    windows: Vec<Window>,
    /// The windows as written, joined with ", ", for explanations.
    pub(crate) text: String,
}

impl Schedule {
    pub(crate) fn parse(texts: &[String]) -> Result<Schedule, String> {
        if texts.is_empty() {
            return Err("at least one window is required, e.g. [\"09:00-21:00\"]".into());
        }
        let windows = texts
            .iter()
            .map(|text| Window::parse(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Schedule {
            windows,
            text: texts
                .iter()
                .map(|t| t.trim())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Whether instant `at` is inside the schedule in zone `zone`.
    pub(crate) fn allows(&self, zone: Tz, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&zone);
        let weekday = local.weekday();
        let second = local.num_seconds_from_midnight();
        self.windows.iter().any(|w| w.contains(weekday, second))
    }

    /// Instants after `after` at which one of the windows opens in `zone`, over the search span.
    fn openings(&self, zone: Tz, after: DateTime<Utc>, out: &mut Vec<DateTime<Utc>>) {
        let today = after.with_timezone(&zone).date_naive();
        for offset in -1..=SEARCH_DAYS {
            let Some(date) = today.checked_add_signed(Duration::days(offset)) else {
                continue;
            };
            for window in &self.windows {
                if window.has_day(date.weekday()) {
                    push_local(zone, date, window.start_time(), after, out);
                }
            }
        }
    }
}

/// Adds the instants of local `date time` in `zone` that come after `after`. A time skipped by a
/// DST change opens at the first local time after the gap; a repeated one opens twice.
fn push_local(
    zone: Tz,
    date: NaiveDate,
    time: NaiveTime,
    after: DateTime<Utc>,
    out: &mut Vec<DateTime<Utc>>,
) {
    let local = date.and_time(time);
    let mut push = |instant: DateTime<Tz>| {
        let instant = instant.with_timezone(&Utc);
        if instant > after {
            out.push(instant);
        }
    };
    match zone.from_local_datetime(&local) {
        LocalResult::Single(instant) => push(instant),
        LocalResult::Ambiguous(first, second) => {
            push(first);
            push(second);
        }
        LocalResult::None => {
            // Walk out of the gap a minute at a time (gaps are at most a few hours).
            for minutes in 1..=(4 * 60) {
                if let Some(instant) = zone
                    .from_local_datetime(&(local + Duration::minutes(minutes)))
                    .earliest()
                {
                    push(instant);
                    break;
                }
            }
        }
    }
}

/// The first instant after `now` at which every schedule allows every zone, within the
/// search span; `None` when the schedules never overlap in all the zones.
pub(crate) fn next_allowed(
    schedules: &[&Schedule],
    zones: &[Tz],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut candidates = Vec::with_capacity(16);
    for schedule in schedules {
        for &zone in zones {
            schedule.openings(zone, now, &mut candidates);
        }
    }
    candidates.sort_unstable();
    candidates.dedup();
    candidates.into_iter().find(|&instant| {
        schedules
            .iter()
            .all(|schedule| zones.iter().all(|&zone| schedule.allows(zone, instant)))
    })
}

fn parse_days(text: &str) -> Result<u8, String> {
    let mut days = 0u8;
    for part in text.split(',') {
        let part = part.trim();
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (day_index(first)?, day_index(last)?),
            None => (day_index(part)?, day_index(part)?),
        };
        // A range may wrap around the week: "sat-mon".
        let mut day = first;
        loop {
            days |= 1 << day;
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    Ok(days)
}

fn day_index(name: &str) -> Result<u8, String> {
    let name = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|day| *day == name)
        .map(|i| i as u8)
        .ok_or_else(|| format!("unknown day `{name}`: use mon, tue, wed, thu, fri, sat or sun"))
}

fn parse_clock(text: &str, end: bool) -> Result<u32, String> {
    let invalid = || format!("`{text}` is not a time of day HH:MM");
    let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(invalid());
    }
    let hours: u32 = hours.parse().map_err(|_| invalid())?;
    let minutes: u32 = minutes.parse().map_err(|_| invalid())?;
    if end && hours == 24 && minutes == 0 {
        return Ok(SECONDS_PER_DAY);
    }
    if hours > 23 || minutes > 59 {
        return Err(format!(
            "`{text}` is out of range (00:00 to 23:59, or 24:00 as an end)"
        ));
    }
    Ok(hours * 3600 + minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    #[test]
    fn windows_parse_days_and_hours() {
        let w = Window::parse("mon-fri 07:00-21:00").unwrap();
        assert!(w.contains(Weekday::Mon, 7 * 3600));
        assert!(!w.contains(Weekday::Mon, 21 * 3600));
        assert!(!w.contains(Weekday::Sat, 12 * 3600));
        let wrap = Window::parse("sat-mon 10:00-12:00").unwrap();
        assert!(wrap.contains(Weekday::Sun, 11 * 3600) && wrap.contains(Weekday::Mon, 11 * 3600));
        assert!(!wrap.contains(Weekday::Tue, 11 * 3600));
        assert!(
            Window::parse("25:00-21:00")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(Window::parse("9-21").unwrap_err().contains("HH:MM"));
        assert!(
            Window::parse("funday 09:00-10:00")
                .unwrap_err()
                .contains("unknown day")
        );
        assert!(Window::parse("09:00-09:00").is_err());
        assert!(Window::parse("00:00-24:00").is_err());
        assert_eq!(
            Window::parse("sat 00:00-24:00").unwrap().end,
            SECONDS_PER_DAY
        );
    }

    #[test]
    fn a_window_crossing_midnight_covers_the_early_hours_of_the_next_day() {
        let w = Window::parse("fri 22:00-06:00").unwrap();
        assert!(w.contains(Weekday::Fri, 23 * 3600));
        assert!(w.contains(Weekday::Sat, 5 * 3600));
        assert!(!w.contains(Weekday::Sat, 6 * 3600));
        assert!(
            !w.contains(Weekday::Fri, 5 * 3600),
            "Thursday night is not listed"
        );
        assert!(!w.contains(Weekday::Sat, 23 * 3600));
    }
}
