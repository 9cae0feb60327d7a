//! The plots, drawn from the results: throughput against message size, fan-out against
//! readers, paced latency, ping-pong, durable writes, and across NATS mounts.

use super::format::{fmt_bytes, fmt_rate, fmt_us, size_label};
use super::svg::{self, Series};
use crate::results::{Grid, Results};
use crate::scenarios::{fanout, throughput};

fn series_of<T>(grid: &Grid<T>, xs: &[f64], value: impl Fn(&T) -> f64) -> Vec<Series> {
    grid.rows
        .iter()
        .map(|(system, _)| Series {
            name: system.label().into(),
            color: system.color().into(),
            points: xs
                .iter()
                .enumerate()
                .filter_map(|(col, &x)| Some((x, value(grid.get(*system, col)?))))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

pub fn charts(results: &Results) -> Vec<(String, String)> {
    let mut charts = Vec::new();
    if let Some(grid) = &results.throughput {
        let xs: Vec<f64> = throughput::SIZES.iter().map(|&s| s as f64).collect();
        let ticks: Vec<(f64, String)> =
            throughput::SIZES.iter().map(|&s| (s as f64, size_label(s))).collect();
        let series = series_of(grid, &xs, |t| t.bytes_per_s);
        charts.push((
            "throughput.svg".into(),
            svg::line_chart(
                "One writer, one reader",
                "message size",
                "bytes per second",
                &ticks,
                &|v| format!("{}/s", fmt_bytes(v)),
                &series,
            ),
        ));
    }
    if let Some(grid) = &results.fanout {
        let xs: Vec<f64> = fanout::READERS.iter().map(|&n| n as f64).collect();
        let ticks: Vec<(f64, String)> = fanout::READERS.iter().map(|&n| (n as f64, n.to_string())).collect();
        let series = series_of(grid, &xs, |f| f.deliveries_per_s);
        charts.push((
            "fanout.svg".into(),
            svg::line_chart(
                "Fan-out, 64 B messages, flat out",
                "readers",
                "deliveries per second",
                &ticks,
                &fmt_rate,
                &series,
            ),
        ));
    }
    if let Some(grid) = &results.paced {
        let categories: Vec<String> = grid.columns.iter().map(|c| c.replacen(" @ ", "\n@ ", 1)).collect();
        let series: Vec<Series> = grid
            .rows
            .iter()
            .map(|(system, _)| Series {
                name: system.label().into(),
                color: system.color().into(),
                points: (0..categories.len())
                    .filter_map(|c| Some((c as f64, grid.get(*system, c)?.p99)))
                    .collect(),
            })
            .collect();
        charts.push((
            "latency.svg".into(),
            svg::bar_chart(
                "p99 delivery latency at a fixed rate (lower is better)",
                "p99 latency",
                &categories,
                &fmt_us,
                &series,
            ),
        ));
    }
    if let Some(grid) = &results.pingpong {
        let categories: Vec<String> = vec!["p50".into(), "p99".into(), "p99.9".into()];
        let series: Vec<Series> = grid
            .rows
            .iter()
            .filter_map(|(system, _)| {
                let l = grid.get(*system, 0)?;
                Some(Series {
                    name: system.label().into(),
                    color: system.color().into(),
                    points: vec![(0.0, l.p50), (1.0, l.p99), (2.0, l.p999)],
                })
            })
            .collect();
        charts.push((
            "pingpong.svg".into(),
            svg::bar_chart(
                "Ping-pong round trip (lower is better)",
                "round-trip time",
                &categories,
                &fmt_us,
                &series,
            ),
        ));
    }
    if let Some(grid) = &results.durable {
        let series = bars_of(grid, |t| t.msgs_per_s);
        if !series.is_empty() {
            charts.push((
                "durable.svg".into(),
                svg::bar_chart(
                    "Durable writes, 64 B messages, one queue",
                    "messages per second",
                    &grid.columns,
                    &fmt_rate,
                    &series,
                ),
            ));
        }
    }
    if let Some(n) = &results.nats {
        let series = bars_of(&n.rates, |f| f.deliveries_per_s);
        if !series.is_empty() {
            charts.push((
                "nats-rate.svg".into(),
                svg::bar_chart(
                    "Across NATS: one writer, flat out, 64 B",
                    "deliveries per second",
                    &n.rates.columns,
                    &fmt_rate,
                    &series,
                ),
            ));
        }
        let series = bars_of(&n.latency, |l| l.p99);
        if !series.is_empty() {
            charts.push((
                "nats-latency.svg".into(),
                svg::bar_chart(
                    "Across NATS: p99 latency at 1000 msg/s (lower is better)",
                    "p99 latency",
                    &n.latency.columns,
                    &fmt_us,
                    &series,
                ),
            ));
        }
    }
    charts
}

/// One series per system with a value in some column: bar `column` of each group.
fn bars_of<T>(grid: &Grid<T>, value: impl Fn(&T) -> f64) -> Vec<Series> {
    let xs: Vec<f64> = (0..grid.columns.len()).map(|c| c as f64).collect();
    series_of(grid, &xs, value)
}
