//! Scenario 9 (issue 15): mqfs across two mounts of one nats-server, beside a plain
//! async-nats client through the same server. One writer on mount A, 1 or 10 readers of the
//! same stream on mount B, 64-byte messages: deliveries per second flat out, and p50/p99
//! latency at 1000 messages per second (the send time travels in the message). Beside it
//! the same runs with async-nats: JetStream (each publish waits for its acknowledgement, as
//! mqfs's write(2) does; an ordered pull consumer per reader) and core NATS (publishes not
//! acknowledged, a subscription per reader).

use super::{Budget, fanout, measure_grid};
use crate::report::{fmt_rate, fmt_us, progress};
use crate::results::{Fanout, Grid, Latency, Nats};
use crate::systems::{Env, Lab, System};

pub const READERS: [usize; 2] = [1, 10];
pub const RATE: u64 = 1000;
pub const SYSTEMS: [System; 3] = [System::MqfsNats, System::Jetstream, System::NatsCore];

pub fn run(env: &Env, budget: &Budget) -> Nats {
    let mut lab = Lab::new(env, "s9", "");
    let mut rates: Grid<Fanout> = Grid::new(READERS.iter().map(|n| format!("1→{n}")).collect());
    rates.rows = measure_grid(
        budget,
        &SYSTEMS,
        READERS.len(),
        budget.rounds,
        |system, column| {
            let readers = READERS[column];
            let cell = fanout::flat_out(&mut lab, system, readers, budget);
            progress("nats", system, &format!("1→{readers}"), &cell, |f| {
                format!("{} deliveries/s", fmt_rate(f.deliveries_per_s))
            });
            cell
        },
        |new, old| new.deliveries_per_s > old.deliveries_per_s,
    );
    let mut latency: Grid<Latency> =
        Grid::new(READERS.iter().map(|&n| fanout::paced_label(n, RATE)).collect());
    latency.rows = measure_grid(
        budget,
        &SYSTEMS,
        READERS.len(),
        1,
        |system, column| {
            let readers = READERS[column];
            let cell = fanout::at_rate(&mut lab, system, readers, RATE, budget);
            progress("nats", system, &fanout::paced_label(readers, RATE), &cell, |l| {
                format!("p50 {} p99 {}", fmt_us(l.p50), fmt_us(l.p99))
            });
            cell
        },
        |_, _| false,
    );
    Nats { rates, latency }
}
