//! Number formatting for tables, plots and progress lines: rates, bytes, latencies, sizes,
//! ratios.

use crate::results::Cell;
use crate::systems::System;

fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// 1234567 → "1.23 M".
pub fn fmt_rate(v: f64) -> String {
    for (scale, unit) in [(1e9, " G"), (1e6, " M"), (1e3, " k")] {
        if v >= scale {
            return format!("{}{unit}", sig3(v / scale));
        }
    }
    sig3(v)
}

/// Decimal units: 52100000 → "52.1 MB".
pub fn fmt_bytes(v: f64) -> String {
    for (scale, unit) in [(1e9, " GB"), (1e6, " MB"), (1e3, " kB")] {
        if v >= scale {
            return format!("{}{unit}", sig3(v / scale));
        }
    }
    format!("{v:.0} B")
}

/// Microseconds, shown in µs, ms or s.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", sig3(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", sig3(us / 1e3))
    } else {
        format!("{} µs", sig3(us))
    }
}

pub fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

pub fn times(ratio: f64) -> String {
    if ratio >= 10.0 { format!("{ratio:.0}×") } else { format!("{ratio:.2}×") }
}

pub fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// One line on stderr per measurement, while the bench runs.
pub fn progress<T>(scenario: &str, system: System, what: &str, cell: &Cell<T>, show: impl Fn(&T) -> String) {
    match cell {
        Ok(value) => eprintln!("[{scenario}] {} {what}: {}", system.label(), show(value)),
        Err(e) => eprintln!("[{scenario}] {} {what}: {e}", system.label()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_rate(1_234_567.0), "1.23 M");
        assert_eq!(fmt_rate(456_000.0), "456 k");
        assert_eq!(fmt_bytes(52_100_000.0), "52.1 MB");
        assert_eq!(fmt_us(12.34), "12.3 µs");
        assert_eq!(fmt_us(1500.0), "1.50 ms");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(1 << 20), "1 MiB");
        assert_eq!(size_label(100), "100 B");
    }
}
