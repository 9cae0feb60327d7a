//! Work queues and request/reply on real mounts (docs/semantics.md, "Work queues",
//! "Request/reply"): competing `cat`s each get distinct jobs, none lost; a shell worker
//! killed mid-job has its job redelivered, once; a stopped worker's job goes to another after
//! `ackwait`; a poison message stops circulating after `maxdeliver` and waits in `jobs.dead`;
//! a disk store's queue survives a remount, a job acknowledged out of order never coming
//! back; 20 shell clients of 4 servers each get their own reply; a client that closes first
//! has its reply dropped; a server killed mid-request has the request answered by another.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Mount, Proc, TempDir, blocked_in_syscall, run_ok, sh, wait_until};

/// Liveness deadline for things that should happen promptly (not a contract bound).
const T: Duration = Duration::from_secs(20);

/// A mount whose group `q` is a queue with `settings`, and its stream `jobs`.
fn queue_mount(settings: &str) -> Mount {
    let m = Mount::new();
    run_ok(&format!("mkdir q && printf 'deliver one\\n{settings}' > q/ctl && touch q/jobs"), &m.path);
    m
}

/// Writes each job as one message.
fn publish(m: &Mount, jobs: &[String]) {
    let script: String = jobs.iter().map(|job| format!("echo '{job}' >> q/jobs\n")).collect();
    run_ok(&script, &m.path);
}

fn output_lines(p: &Proc) -> Vec<String> {
    String::from_utf8_lossy(&p.output()).lines().map(str::to_string).collect()
}

/// A shell worker: `while read` over the queue, `body` run per job (`$j`).
fn worker(dir: &Path, body: &str) -> Proc {
    sh(&format!("while read j; do echo \"start $j\"; {body} echo \"done $j\"; done < q/jobs"), dir)
}

#[test]
fn competing_cats_each_get_distinct_jobs_and_none_is_lost() {
    let m = queue_mount("");
    let cats: Vec<Proc> =
        (0..3).map(|_| Proc::spawn(Command::new("cat").arg(m.join("q/jobs")).current_dir(&m.path))).collect();
    wait_until("three cats blocked in read", T, || {
        cats.iter().all(|cat| blocked_in_syscall(cat.pid(), libc::SYS_read))
    });
    let jobs: Vec<String> = (1..=30).map(|i| format!("job {i}")).collect();
    publish(&m, &jobs);
    wait_until("all 30 jobs printed", T, || {
        cats.iter().map(|cat| output_lines(cat).len()).sum::<usize>() >= 30
    });
    let printed: Vec<Vec<String>> = cats.iter().map(output_lines).collect();
    let all: Vec<&String> = printed.iter().flatten().collect();
    assert_eq!(all.len(), 30, "each job exactly once: {printed:?}");
    assert_eq!(
        all.iter().map(|s| s.as_str()).collect::<BTreeSet<_>>(),
        jobs.iter().map(String::as_str).collect()
    );
    assert!(printed.iter().all(|got| !got.is_empty()), "spread across the ready readers: {printed:?}");
    for got in &printed {
        let numbers: Vec<u32> = got.iter().map(|job| job[4..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "commit order per reader: {got:?}");
    }
}

#[test]
fn a_worker_killed_mid_job_has_its_job_redelivered_once() {
    let m = queue_mount("");
    publish(&m, &["job1".into(), "job2".into(), "job3".into()]);
    let mut first = worker(&m.path, "[ \"$j\" = job2 ] && sleep 1000;");
    first.wait_output_contains(b"start job2\n", T);
    first.signal_group(libc::SIGKILL);
    first.wait_exit(T).expect("the worker died");
    assert_eq!(output_lines(&first), ["start job1", "done job1", "start job2"]);
    let second = worker(&m.path, "");
    second.wait_output_contains(b"done job3\n", T);
    assert_eq!(output_lines(&second), ["start job2", "done job2", "start job3", "done job3"]);
}

#[test]
fn ackwait_gives_a_stopped_workers_job_to_another() {
    let m = queue_mount("ackwait 300ms\n");
    publish(&m, &["slow".into()]);
    // It stops itself holding the job, as a worker wedged mid-job.
    let mut stopped = worker(&m.path, "kill -STOP $$;");
    stopped.wait_output_contains(b"start slow\n", T);
    wait_until("the worker stopped", T, || stopped.state() == Some('T'));
    let other = Proc::spawn(Command::new("cat").arg(m.join("q/jobs")));
    other.wait_output_contains(b"slow\n", T);
    // Resumed, it finishes and acknowledges late; nobody gets the job a third time.
    stopped.signal(libc::SIGCONT);
    stopped.wait_output_contains(b"done slow\n", T);
    publish(&m, &["next".into()]);
    wait_until("next printed by one of them", T, || {
        other.output_contains(b"next\n") || stopped.output_contains(b"start next\n")
    });
    let (cat, worker) =
        (String::from_utf8_lossy(&other.output()).into_owned(), output_lines(&stopped).join("\n"));
    assert_eq!((cat.matches("slow").count(), worker.matches("start slow").count()), (1, 1));
    assert_eq!(cat.matches("next").count() + worker.matches("start next").count(), 1, "{cat:?} {worker:?}");
}

#[test]
fn a_poison_message_moves_to_the_dead_stream_after_maxdeliver_deliveries() {
    let m = queue_mount("maxdeliver 2\n");
    run_ok("chmod 640 q/jobs", &m.path);
    publish(&m, &["poison".into(), "fine".into()]);
    for _ in 0..2 {
        // Each worker crashes on the job it gets.
        let out = run_ok("sh -c 'read j; echo \"$j\"; kill -9 $$' < q/jobs || true", &m.path);
        assert_eq!(out, "poison\n");
    }
    let mode = fs::metadata(m.join("q/jobs.dead")).expect("q/jobs.dead made").permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o640);
    assert_eq!(run_ok("head -n1 q/jobs", &m.path), "fine\n");
    assert_eq!(run_ok("head -n1 q/jobs.dead", &m.path), "poison\n");
}

#[test]
fn a_disk_queue_keeps_what_is_not_acknowledged_across_a_remount() {
    let store = TempDir::new();
    {
        let m = Mount::on_store(&store.path, "");
        run_ok("mkdir q && echo 'deliver one' > q/ctl", &m.path);
        publish(&m, &["job1".into(), "job2".into(), "job3".into()]);
        // job1 done and acknowledged; job2 in flight with a worker stopped when the mount ends.
        let mut stopped = worker(&m.path, "[ \"$j\" = job2 ] && kill -STOP $$;");
        stopped.wait_output_contains(b"start job2\n", T);
        wait_until("the worker stopped", T, || stopped.state() == Some('T'));
        drop(stopped);
    }
    let m = Mount::on_store(&store.path, "");
    let cat = Proc::spawn(Command::new("cat").arg(m.join("q/jobs")));
    cat.wait_output_contains(b"job3\n", T);
    assert_eq!(String::from_utf8_lossy(&cat.output()), "job2\njob3\n", "job1 was acknowledged");
}

/// A mount whose group `svc` is a queue with stream `time`, served by `servers` shell
/// servers answering each request `R` with `reply to R` (after `body`).
fn service(servers: usize, body: &str) -> (Mount, Vec<Proc>) {
    let m = Mount::new();
    run_ok("mkdir svc && echo 'deliver one' > svc/ctl && touch svc/time", &m.path);
    let script = format!(
        "exec 3<>svc/time; while read -r req <&3; do echo \"got $req\"; {body} echo \"reply to $req\" >&3 && echo \"sent $req\"; done"
    );
    let servers = (0..servers).map(|_| sh(&script, &m.path)).collect();
    (m, servers)
}

/// One client: a request on a read-write descriptor, then its reply.
fn call(request: &str) -> String {
    format!("exec 3<>svc/time; echo '{request}' >&3; head -n1 <&3")
}

#[test]
fn twenty_clients_of_four_servers_each_get_their_own_reply() {
    let (m, servers) = service(4, "");
    let clients: String =
        (1..=20).map(|i| format!("(echo \"$({}) for {i}\") &\n", call(&format!("req {i}")))).collect();
    let out = run_ok(&format!("{clients}wait"), &m.path);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (1..=20).map(|i| format!("reply to req {i} for {i}")).collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let served: usize =
        servers.iter().map(|s| String::from_utf8_lossy(&s.output()).matches("sent ").count()).sum();
    assert_eq!(served, 20, "each request served once");
    assert_eq!(fs::metadata(m.join("svc/time")).unwrap().len(), 0, "replies are not in the stream");
}

#[test]
fn a_client_that_closes_first_has_its_reply_dropped_and_the_server_goes_on() {
    let (m, servers) = service(1, "");
    run_ok("exec 3<>svc/time; echo 'bye' >&3; exec 3>&-", &m.path);
    servers[0].wait_output_contains(b"sent bye\n", T);
    assert_eq!(run_ok(&call("hello"), &m.path), "reply to hello\n", "nothing else reaches the next client");
    assert!(
        servers[0].stderr_output().is_empty(),
        "{:?}",
        String::from_utf8_lossy(&servers[0].stderr_output())
    );
}

#[test]
fn a_server_killed_mid_request_has_the_request_answered_by_another() {
    let (m, mut servers) = service(1, "case $req in slow) sleep 1000;; esac;");
    let client = sh(&call("slow"), &m.path);
    servers[0].wait_output_contains(b"got slow\n", T);
    let replacement =
        sh("exec 3<>svc/time; while read -r req <&3; do echo \"reply to $req\" >&3; done", &m.path);
    servers[0].signal_group(libc::SIGKILL);
    servers[0].wait_exit(T).expect("the server died");
    client.wait_output_contains(b"reply to slow\n", T);
    drop(replacement);
}

#[test]
fn a_disk_queue_never_redelivers_a_job_acknowledged_out_of_order_after_a_remount() {
    let store = TempDir::new();
    {
        let m = Mount::on_store(&store.path, "");
        run_ok("mkdir q && echo 'deliver one' > q/ctl", &m.path);
        publish(&m, &["job1".into(), "job2".into(), "job3".into()]);
        // job1 in flight with a stopped worker while job2 is done and acknowledged.
        let mut stopped = worker(&m.path, "kill -STOP $$;");
        stopped.wait_output_contains(b"start job1\n", T);
        wait_until("the worker stopped", T, || stopped.state() == Some('T'));
        assert_eq!(run_ok("head -n1 q/jobs", &m.path), "job2\n");
        drop(stopped);
    }
    assert!(
        store
            .path
            .join("logs")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".acks"))
    );
    let m = Mount::on_store(&store.path, "");
    let cat = Proc::spawn(Command::new("cat").arg(m.join("q/jobs")));
    cat.wait_output_contains(b"job3\n", T);
    assert_eq!(String::from_utf8_lossy(&cat.output()), "job1\njob3\n", "job2 was acknowledged");
}
