//! Rate limiting of repeated log lines: at most [`BURST`] lines from one call site per
//! [`INTERVAL`]; the rest are counted, and once the interval is over one line says how many
//! were left out ("… (M more like this suppressed in the last 5 s)"), repeating the last
//! line shown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::Level;

pub const BURST: u32 = 10;
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A call site: source file and line.
pub type Site = (&'static str, u32);

struct Window {
    start: Instant,
    shown: u32,
    suppressed: u64,
    level: Level,
    last: String,
}

/// A line to write for a window that ended with lines suppressed.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub level: Level,
    pub text: String,
}

#[derive(Default)]
pub struct Limiter {
    sites: HashMap<Site, Window>,
}

impl Limiter {
    /// Whether a line from `site` may be written now; `text` gives it (called only if so).
    /// A window of `site` that ended first gives its summary, to write before the line.
    pub fn admit(
        &mut self,
        site: Site,
        level: Level,
        now: Instant,
        text: impl FnOnce() -> String,
    ) -> (bool, Option<Summary>) {
        let mut summary = None;
        let window = self.sites.entry(site).or_insert_with(|| Window {
            start: now,
            shown: 0,
            suppressed: 0,
            level,
            last: String::new(),
        });
        if now.duration_since(window.start) >= INTERVAL {
            summary = window.summary();
            *window = Window { start: now, shown: 0, suppressed: 0, level, last: String::new() };
        }
        if window.shown < BURST {
            window.shown += 1;
            window.level = level;
            window.last = text();
            (true, summary)
        } else {
            window.suppressed += 1;
            (false, summary)
        }
    }

    /// Summaries of the windows that ended by `now`; sites gone quiet are forgotten.
    pub fn due(&mut self, now: Instant) -> Vec<Summary> {
        let mut due = Vec::new();
        self.sites.retain(|_, window| {
            if now.duration_since(window.start) < INTERVAL {
                return true;
            }
            due.extend(window.summary());
            false
        });
        due
    }
}

impl Window {
    fn summary(&self) -> Option<Summary> {
        (self.suppressed > 0).then(|| Summary {
            level: self.level,
            text: format!(
                "{} ({} more like this suppressed in the last {} s)",
                self.last,
                self.suppressed,
                INTERVAL.as_secs()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: Site = ("src/x.rs", 7);

    fn flood(limiter: &mut Limiter, site: Site, n: usize, at: Instant) -> (usize, Vec<Summary>) {
        let mut shown = 0;
        let mut summaries = Vec::new();
        for i in 0..n {
            let (show, summary) = limiter.admit(site, Level::Warn, at, || format!("refused {i}"));
            shown += usize::from(show);
            summaries.extend(summary);
        }
        (shown, summaries)
    }

    #[test]
    fn a_flood_shows_a_burst_then_says_how_many_were_suppressed() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        let (shown, summaries) = flood(&mut limiter, SITE, 10_000, start);
        assert_eq!(shown, BURST as usize);
        assert!(summaries.is_empty());
        assert!(limiter.due(start + INTERVAL / 2).is_empty(), "the window is not over");
        let due = limiter.due(start + INTERVAL);
        assert_eq!(
            due,
            [Summary {
                level: Level::Warn,
                text: "refused 9 (9990 more like this suppressed in the last 5 s)".into()
            }]
        );
        assert!(limiter.due(start + INTERVAL * 3).is_empty(), "said once");
    }

    #[test]
    fn the_next_window_starts_afresh_after_its_summary() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        flood(&mut limiter, SITE, 15, start);
        let (shown, summaries) = flood(&mut limiter, SITE, 3, start + INTERVAL);
        assert_eq!(shown, 3);
        assert_eq!(summaries.len(), 1);
        assert!(summaries[0].text.ends_with("(5 more like this suppressed in the last 5 s)"));
    }

    #[test]
    fn sites_are_limited_apart_and_rare_lines_are_never_suppressed() {
        let mut limiter = Limiter::default();
        let start = Instant::now();
        flood(&mut limiter, SITE, 100, start);
        let (shown, _) = flood(&mut limiter, ("src/y.rs", 1), 1, start);
        assert_eq!(shown, 1, "another call site has its own budget");
        let due = limiter.due(start + INTERVAL);
        assert_eq!(due.len(), 1, "only the flooded site has a summary");
    }
}
