//! Worker processes: the bench re-executed as `mqfs-bench __worker ROLE key=value...`, doing
//! read(2)/write(2) (or the system's own calls) on real endpoints as users' programs would.
//!
//! - `read`: THREADS readers (each its own open file, in its own thread with a 64 KiB stack, more for NATS clients)
//!   read fixed-size messages, check each writer's sequence, and record delivery latency
//!   (now − the send time in the header). They stop at every writer's END, after `count:N`
//!   messages, at their first END (`queue`: competing consumers, each reading its share), or after `time:MS` of reading as fast as they can (the ceiling's mode, which
//!   counts reads without looking at the bytes).
//! - `write`: sends messages, as fast as it can or at `rate` per second, until `count` or
//!   `duration_ms`, then `end` END messages (default 1; a queue's readers take one each); with `start_ns`, from that CLOCK_MONOTONIC instant
//!   on (so that several writer processes write over the same window).
//! - `ping` / `pong`: one message in flight between two streams; ping records round trips.
//!   With `check=0` ping alone writes then reads (the ceiling's round trip, nobody echoes).
//!
//! - `rpc-serve`, `rpc-call`, `hold`, `await`: the queue scenarios' (see `queue_workers`).
//!
//! A worker prints `ready` once its endpoints are open, then one `result key=value...` line.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::clock::{now_ns, sleep_until_ns};
use crate::endpoint::{Endpoint, Source};
use crate::hist::Histogram;
use crate::message::{FLAG_END, HEADER_LEN, Header};
use crate::queue_workers;

pub fn main(args: &[String]) -> ! {
    let role = args.first().map(String::as_str).unwrap_or("");
    let mut params = HashMap::new();
    for arg in args.iter().skip(1) {
        if let Some((key, value)) = arg.split_once('=') {
            params.insert(key.to_string(), value.to_string());
        }
    }
    let params = Params(params);
    let result = match role {
        "read" => read(&params),
        "write" => write(&params),
        "ping" => ping(&params),
        "pong" => pong(&params),
        "rpc-serve" | "rpc-call" | "hold" | "await" => queue_role(role, &params),
        _ => Err(format!("unknown worker role {role:?}")),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("error {}", e.replace('\n', " ")));
            1
        }
    };
    std::process::exit(code);
}

/// The queue scenarios' roles (see `queue_workers`).
fn queue_role(role: &str, params: &Params) -> Result<(), String> {
    let stream = || params.text("stream").map(std::path::PathBuf::from);
    match role {
        "hold" => queue_workers::hold(&stream()?),
        "await" => queue_workers::await_one(&stream()?),
        _ => {
            let rpc = queue_workers::Rpc::parse(params.text("service")?)?;
            let size = params.number("size", None)? as usize;
            if role == "rpc-serve" {
                queue_workers::serve(&rpc, size)
            } else {
                queue_workers::call(
                    &rpc,
                    size,
                    params.number("warmup", Some(0))?,
                    params.number("count", None)?,
                )
            }
        }
    }
}

pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Params(HashMap<String, String>);

impl Params {
    fn text(&self, key: &str) -> Result<&str, String> {
        self.0.get(key).map(String::as_str).ok_or_else(|| format!("missing {key}="))
    }

    fn number(&self, key: &str, default: Option<u64>) -> Result<u64, String> {
        match self.0.get(key) {
            Some(v) => v.parse().map_err(|_| format!("bad {key}={v}")),
            None => default.ok_or_else(|| format!("missing {key}=")),
        }
    }

    fn endpoint(&self, key: &str) -> Result<Endpoint, String> {
        Endpoint::parse(self.text(key)?)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After an END from every writer.
    End,
    /// A competing consumer of a queue: after its first END, having read its share of the
    /// messages, whose sequence numbers rise with gaps (the other readers' shares).
    Queue,
    /// After this many messages.
    Count(u64),
    /// After reading this long (counting reads, not parsing).
    Time(Duration),
}

impl Stop {
    pub fn to_arg(self) -> String {
        match self {
            Stop::End => "end".into(),
            Stop::Queue => "queue".into(),
            Stop::Count(n) => format!("count:{n}"),
            Stop::Time(d) => format!("time:{}", d.as_millis()),
        }
    }

    fn parse(text: &str) -> Result<Stop, String> {
        match text {
            "end" => return Ok(Stop::End),
            "queue" => return Ok(Stop::Queue),
            _ => {}
        }
        let (kind, n) = text.split_once(':').ok_or_else(|| format!("bad stop {text}"))?;
        let n: u64 = n.parse().map_err(|_| format!("bad stop {text}"))?;
        match kind {
            "count" => Ok(Stop::Count(n)),
            "time" => Ok(Stop::Time(Duration::from_millis(n))),
            _ => Err(format!("bad stop {text}")),
        }
    }
}

/// One reader's counts.
#[derive(Default)]
struct Tally {
    messages: u64,
    /// read(2) calls that returned data.
    reads: u64,
    bytes: u64,
    first_ns: u64,
    last_ns: u64,
    order_errors: u64,
    ends: u64,
    done: bool,
    error: Option<String>,
    hist: Histogram,
    /// Next sequence number expected from each writer.
    expected: Vec<u64>,
}

struct Shared {
    tallies: Vec<Mutex<Tally>>,
    opened: AtomicUsize,
    finished: AtomicUsize,
    /// Taken only to notify or to wait: counting is lock-free, so that thousands of readers
    /// finishing at once do not queue on it (the blocked-readers scenario times them).
    lock: Mutex<()>,
    changed: Condvar,
}

impl Shared {
    /// Counts one more thread; the last one wakes the main thread.
    fn bump(&self, counter: &AtomicUsize) {
        if counter.fetch_add(1, Ordering::AcqRel) + 1 == self.tallies.len() {
            let _guard = self.lock.lock().unwrap();
            self.changed.notify_all();
        }
    }

    /// Waits until every thread is counted in `counter`, or `deadline` passes.
    fn wait(&self, counter: &AtomicUsize, deadline: Instant) -> bool {
        let mut guard = self.lock.lock().unwrap();
        while counter.load(Ordering::Acquire) < self.tallies.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self.changed.wait_timeout(guard, left).unwrap().0;
        }
        true
    }
}

#[derive(Clone)]
struct ReadSpec {
    size: usize,
    buf: usize,
    writers: usize,
    stop: Stop,
}

fn read(params: &Params) -> Result<(), String> {
    let template = params.endpoint("endpoint")?;
    let first = params.number("first", Some(0))? as usize;
    let threads = params.number("threads", Some(1))? as usize;
    let spec = ReadSpec {
        size: params.number("size", None)? as usize,
        buf: params.number("buf", None)? as usize,
        writers: params.number("writers", Some(1))? as usize,
        stop: Stop::parse(params.text("stop")?)?,
    };
    let deadline_ms = params.number("deadline_ms", None)?;
    if spec.size < HEADER_LEN && !matches!(spec.stop, Stop::Time(_)) {
        return Err(format!("messages must be at least {HEADER_LEN} bytes"));
    }
    let shared = Arc::new(Shared {
        tallies: (0..threads).map(|_| Mutex::new(Tally::default())).collect(),
        opened: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        lock: Mutex::new(()),
        changed: Condvar::new(),
    });
    for t in 0..threads {
        let endpoint = template.nth(first + t);
        let shared = shared.clone();
        let spec = spec.clone();
        std::thread::Builder::new()
            .stack_size(endpoint.reader_stack())
            .spawn(move || reader_thread(endpoint, spec, &shared, t))
            .map_err(|e| format!("cannot start reader thread {t}: {e}"))?;
    }
    let open_deadline = Instant::now() + Duration::from_secs(120);
    if !shared.wait(&shared.opened, open_deadline) {
        return Err("readers did not open in time".into());
    }
    if let Some(error) = shared.tallies.iter().find_map(|t| t.lock().unwrap().error.clone()) {
        return Err(error);
    }
    say("ready");
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    shared.wait(&shared.finished, deadline);
    let mut total = Tally::default();
    let mut incomplete = 0;
    for tally in &shared.tallies {
        let tally = tally.lock().unwrap();
        total.messages += tally.messages;
        total.reads += tally.reads;
        total.bytes += tally.bytes;
        if tally.first_ns != 0 && (total.first_ns == 0 || tally.first_ns < total.first_ns) {
            total.first_ns = tally.first_ns;
        }
        total.last_ns = total.last_ns.max(tally.last_ns);
        total.order_errors += tally.order_errors;
        total.hist.merge(&tally.hist);
        if !tally.done {
            incomplete += 1;
        }
        if total.error.is_none() {
            total.error.clone_from(&tally.error);
        }
    }
    say(&format!(
        "result messages={} reads={} bytes={} first={} last={} order_errors={} incomplete={} error={} hist={}",
        total.messages,
        total.reads,
        total.bytes,
        total.first_ns,
        total.last_ns,
        total.order_errors,
        incomplete,
        total.error.unwrap_or_default().replace([' ', '='], "_"),
        total.hist.encode(),
    ));
    // Stay until the bench has every reader process's result and closes our standard input:
    // exiting now would tear down this process's threads while other processes' readers are
    // still being delivered to, and take CPU from them. Readers still blocked at the deadline
    // are abandoned then.
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
    std::process::exit(0);
}

fn reader_thread(endpoint: Endpoint, spec: ReadSpec, shared: &Shared, index: usize) {
    let tally = &shared.tallies[index];
    let mut source = match endpoint.open_source() {
        Ok(source) => source,
        Err(e) => {
            let mut t = tally.lock().unwrap();
            t.error = Some(format!("{}: {e}", endpoint.to_arg()));
            t.done = true;
            drop(t);
            shared.bump(&shared.opened);
            shared.bump(&shared.finished);
            return;
        }
    };
    tally.lock().unwrap().expected = vec![0; spec.writers];
    shared.bump(&shared.opened);
    let outcome = match spec.stop {
        Stop::Time(duration) => read_for(&mut *source, &spec, tally, duration),
        _ => read_messages(&mut *source, &spec, tally),
    };
    let mut t = tally.lock().unwrap();
    if let Err(e) = outcome {
        t.error = Some(e);
    }
    drop(t);
    shared.bump(&shared.finished);
    // Stay parked rather than exit: thread teardown would take CPU from readers still
    // waking up. The process exits once every reader is done.
    loop {
        std::thread::park();
    }
}

/// The ceiling's mode: as many reads as fit in `duration`.
fn read_for(
    source: &mut dyn Source,
    spec: &ReadSpec,
    tally: &Mutex<Tally>,
    duration: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; spec.buf];
    let start = now_ns();
    let end = start + duration.as_nanos() as u64;
    let (mut reads, mut bytes) = (0u64, 0u64);
    let mut now = start;
    while now < end {
        let n = source.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("unexpected end of file".into());
        }
        reads += 1;
        bytes += n as u64;
        now = now_ns();
    }
    let mut t = tally.lock().unwrap();
    (t.messages, t.reads, t.bytes, t.first_ns, t.last_ns, t.done) = (reads, reads, bytes, start, now, true);
    Ok(())
}

fn read_messages(source: &mut dyn Source, spec: &ReadSpec, tally: &Mutex<Tally>) -> Result<(), String> {
    let mut buf = vec![0u8; spec.buf.max(spec.size)];
    let mut pending: Vec<u8> = Vec::with_capacity(spec.size);
    loop {
        let n = source.read(&mut buf).map_err(|e| e.to_string())?;
        let now = now_ns();
        let mut t = tally.lock().unwrap();
        if n == 0 {
            t.done = true;
            return Err("end of file before the end of the run".into());
        }
        t.reads += 1;
        let mut data = &buf[..n];
        if !pending.is_empty() {
            let need = (spec.size - pending.len()).min(data.len());
            pending.extend_from_slice(&data[..need]);
            data = &data[need..];
            if pending.len() == spec.size && take(&mut t, &pending, spec, now) {
                return Ok(());
            }
            if pending.len() == spec.size {
                pending.clear();
            }
        }
        while data.len() >= spec.size {
            if take(&mut t, &data[..spec.size], spec, now) {
                return Ok(());
            }
            data = &data[spec.size..];
        }
        pending.extend_from_slice(data);
    }
}

/// Counts one message; true when the reader is done.
fn take(t: &mut Tally, message: &[u8], spec: &ReadSpec, now: u64) -> bool {
    let header = Header::read_from(message);
    let queue = spec.stop == Stop::Queue;
    if header.flags & FLAG_END != 0 {
        t.ends += 1;
        t.done = queue || t.ends >= spec.writers as u64;
        return t.done;
    }
    t.messages += 1;
    t.bytes += message.len() as u64;
    if t.first_ns == 0 {
        t.first_ns = now;
    }
    t.last_ns = now;
    t.hist.record(now.saturating_sub(header.sent_ns));
    match t.expected.get_mut(header.writer as usize) {
        Some(expected) => {
            if header.seq < *expected || (!queue && header.seq != *expected) {
                t.order_errors += 1;
            }
            *expected = header.seq + 1;
        }
        None => t.order_errors += 1,
    }
    t.done = matches!(spec.stop, Stop::Count(n) if t.messages >= n);
    t.done
}

fn write(params: &Params) -> Result<(), String> {
    let endpoint = params.endpoint("endpoint")?;
    let size = params.number("size", None)? as usize;
    let count = params.number("count", Some(u64::MAX))?;
    let duration_ns = params.number("duration_ms", Some(0))? * 1_000_000;
    let rate = params.number("rate", Some(0))?;
    let id = params.number("id", Some(0))? as u32;
    let ends = params.number("end", Some(1))?;
    let start_ns = params.number("start_ns", Some(0))?;
    if size < HEADER_LEN {
        return Err(format!("messages must be at least {HEADER_LEN} bytes"));
    }
    let mut sink = endpoint.open_sink(id).map_err(|e| format!("{}: {e}", endpoint.to_arg()))?;
    let mut message = vec![b'x'; size];
    say("ready");
    sleep_until_ns(start_ns);
    let interval = 1_000_000_000u64.checked_div(rate).unwrap_or(0);
    let start = now_ns();
    let stop_at = if duration_ns > 0 { start + duration_ns } else { u64::MAX };
    let mut sent = 0u64;
    while sent < count {
        if interval > 0 {
            sleep_until_ns(start + sent * interval);
        }
        let now = now_ns();
        if now >= stop_at {
            break;
        }
        Header { sent_ns: now, seq: sent, writer: id, flags: 0 }.write_to(&mut message);
        sink.send(&message).map_err(|e| format!("write {sent}: {e}"))?;
        sent += 1;
    }
    let end = now_ns();
    for _ in 0..ends {
        Header { sent_ns: end, seq: sent, writer: id, flags: FLAG_END }.write_to(&mut message);
        sink.send(&message).map_err(|e| format!("write END: {e}"))?;
    }
    say(&format!("result sent={sent} start={start} end={end}"));
    Ok(())
}

/// Reads exactly one `size`-byte message (one message is in flight at a time).
fn read_one<'a>(source: &mut dyn Source, buf: &'a mut Vec<u8>, size: usize) -> Result<&'a [u8], String> {
    let mut filled = 0;
    buf.resize(size.max(crate::systems::STREAM_BUF), 0);
    while filled < size {
        let n = source.read(&mut buf[filled..]).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("unexpected end of file".into());
        }
        filled += n;
    }
    Ok(&buf[..size])
}

fn pong(params: &Params) -> Result<(), String> {
    let input = params.endpoint("in")?;
    let output = params.endpoint("out")?;
    let size = params.number("size", None)? as usize;
    let count = params.number("count", None)?;
    let mut source = input.open_source().map_err(|e| format!("{}: {e}", input.to_arg()))?;
    let mut sink = output.open_sink(1).map_err(|e| format!("{}: {e}", output.to_arg()))?;
    say("ready");
    let mut buf = Vec::new();
    for _ in 0..count {
        let message = read_one(&mut *source, &mut buf, size)?;
        sink.send(message).map_err(|e| e.to_string())?;
    }
    say("result");
    Ok(())
}

fn ping(params: &Params) -> Result<(), String> {
    let input = params.endpoint("in")?;
    let output = params.endpoint("out")?;
    let size = params.number("size", None)? as usize;
    let count = params.number("count", None)?;
    let warmup = params.number("warmup", Some(0))?;
    let interval = params.number("interval_us", None)? * 1000;
    // check=0: the answer is not an echo (the ceiling answers zeros): time it locally.
    let check = params.number("check", Some(1))? != 0;
    let mut source = input.open_source().map_err(|e| format!("{}: {e}", input.to_arg()))?;
    let mut sink = output.open_sink(0).map_err(|e| format!("{}: {e}", output.to_arg()))?;
    say("ready");
    let mut message = vec![b'x'; size];
    let mut buf = Vec::new();
    let mut hist = Histogram::default();
    let start = now_ns();
    for i in 0..warmup + count {
        sleep_until_ns(start + i * interval);
        let sent_ns = now_ns();
        Header { sent_ns, seq: i, writer: 0, flags: 0 }.write_to(&mut message);
        sink.send(&message).map_err(|e| e.to_string())?;
        let reply = read_one(&mut *source, &mut buf, size)?;
        let header = Header::read_from(reply);
        let now = now_ns();
        if check && header.seq != i {
            return Err(format!("pong {} for ping {i}", header.seq));
        }
        if i >= warmup {
            hist.record(now - sent_ns);
        }
    }
    say(&format!("result samples={} hist={}", hist.count(), hist.encode()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, flags: u32) -> Vec<u8> {
        let mut m = vec![0u8; HEADER_LEN];
        Header { sent_ns: 1, seq, writer: 0, flags }.write_to(&mut m);
        m
    }

    #[test]
    fn a_queue_reader_takes_gaps_but_not_going_back_and_stops_at_its_first_end() {
        let spec = ReadSpec { size: HEADER_LEN, buf: HEADER_LEN, writers: 2, stop: Stop::Queue };
        let mut t = Tally { expected: vec![0; 2], ..Tally::default() };
        for seq in [0, 3, 7] {
            assert!(!take(&mut t, &message(seq, 0), &spec, 2));
        }
        assert_eq!(t.order_errors, 0, "other consumers' shares leave gaps");
        assert!(!take(&mut t, &message(5, 0), &spec, 2));
        assert_eq!(t.order_errors, 1, "a job older than one already read");
        assert!(
            take(&mut t, &message(8, FLAG_END), &spec, 2),
            "one END ends a consumer, however many writers"
        );
        assert_eq!(t.messages, 4);
    }

    #[test]
    fn a_fan_out_reader_counts_gaps_and_waits_for_every_writers_end() {
        let spec = ReadSpec { size: HEADER_LEN, buf: HEADER_LEN, writers: 2, stop: Stop::End };
        let mut t = Tally { expected: vec![0; 2], ..Tally::default() };
        assert!(!take(&mut t, &message(0, 0), &spec, 2));
        assert!(!take(&mut t, &message(2, 0), &spec, 2));
        assert_eq!(t.order_errors, 1);
        assert!(!take(&mut t, &message(3, FLAG_END), &spec, 2));
        assert!(take(&mut t, &message(3, FLAG_END), &spec, 2));
        for stop in [Stop::End, Stop::Queue, Stop::Count(5), Stop::Time(Duration::from_millis(7))] {
            assert_eq!(Stop::parse(&stop.to_arg()), Ok(stop));
        }
    }
}
