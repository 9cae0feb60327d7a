//! `mq-call`, `mq-serve` and `mqfs-stat` on real mounts: a request answered by `/bin/cat` and
//! by a shell one-liner, each of concurrent clients getting its own reply from `-j 4` servers
//! running at once, failing commands logged and still answered, a clean stop on SIGTERM that
//! finishes the request in progress and a second one that hands it to another server, a
//! server ending when its stream goes, `-t` giving up with its message and exit status 124,
//! usage errors, the `user.mq.*` extended attributes and the table mqfs-stat prints of them.
//!
//! Request/reply needs a `deliver one` group (the queue engine): the tests that serve say so
//! in their names' `serves_` prefix; on an engine without it they fail at the ctl write.

mod common;

use common::{Mount, Proc, TempDir, wait_until};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

const MQ_CALL: &str = env!("CARGO_BIN_EXE_mq-call");
const MQ_SERVE: &str = env!("CARGO_BIN_EXE_mq-serve");
const MQFS_STAT: &str = env!("CARGO_BIN_EXE_mqfs-stat");
const T: Duration = Duration::from_secs(20);

/// A `deliver one` group `svc` in a fresh mount.
fn service_group(m: &Mount) -> PathBuf {
    let g = m.join("svc");
    fs::create_dir(&g).unwrap();
    fs::write(g.join("ctl"), "deliver one\n").expect("a deliver one group (the queue engine)");
    g
}

/// Runs a tool to completion with `stdin` as its standard input; (status, stdout, stderr).
fn run(tool: &str, args: &[&str], stdin: Option<&[u8]>) -> (ExitStatus, String, String) {
    let mut p = match stdin {
        Some(_) => Proc::spawn_piped_stdin(Command::new(tool).args(args)),
        None => Proc::spawn(Command::new(tool).args(args)),
    };
    if let Some(data) = stdin {
        p.write_stdin(data);
        p.close_stdin();
    }
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("{tool} {args:?} did not finish within {T:?}"));
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (status, text(p.output()), text(p.stderr_output()))
}

fn call(stream: &Path, words: &[&str]) -> (ExitStatus, String, String) {
    let mut args = vec![stream.to_str().unwrap()];
    args.extend_from_slice(words);
    run(MQ_CALL, &args, None)
}

/// Starts `mq-serve ARGS STREAM -- COMMAND` and waits until its `jobs` descriptors are open.
fn serve(stream: &Path, jobs: usize, command: &[&str]) -> Proc {
    let jobs_arg = jobs.to_string();
    let mut args = vec!["-j", &jobs_arg, stream.to_str().unwrap(), "--"];
    args.extend_from_slice(command);
    let server = Proc::spawn(Command::new(MQ_SERVE).args(&args));
    wait_until("the server's descriptors are open", T, || xattr(stream, "readers") == Some(jobs as u64));
    server
}

/// The number a stream's `user.mq.NAME` gives, None if it has none.
fn xattr(path: &Path, name: &str) -> Option<u64> {
    let value = getxattr(path, &format!("user.mq.{name}")).ok()?;
    String::from_utf8(value).ok()?.parse().ok()
}

fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut value = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the length passed.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    value.truncate(n as usize);
    Ok(value)
}

fn listxattr(path: &Path) -> Result<Vec<String>, i32> {
    let path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: a NUL-terminated string and a buffer of the length passed.
    let n = unsafe { libc::listxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    let names = &names[..n as usize];
    Ok(names
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

// ---------------------------------------------------------------------------
// Request/reply (the queue engine)
// ---------------------------------------------------------------------------

#[test]
fn serves_requests_with_cat_from_arguments_and_from_standard_input() {
    let m = Mount::new();
    let echo = service_group(&m).join("echo");
    let _server = serve(&echo, 1, &["/bin/cat"]);
    let (status, out, err) = call(&echo, &["hello", "world"]);
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(out, "hello world\n", "the arguments joined by spaces and a newline, echoed back");
    let (status, out, err) = run(MQ_CALL, &["-t", "10", echo.to_str().unwrap()], Some(b"line 1\nline 2\n"));
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(out, "line 1\nline 2\n", "all of standard input is one request");
}

#[test]
fn serves_with_a_shell_one_liner_and_keeps_serving_after_failures() {
    let m = Mount::new();
    let svc = service_group(&m);
    let upper = svc.join("upper");
    let _server = serve(&upper, 1, &["sh", "-c", "tr a-z A-Z"]);
    assert_eq!(call(&upper, &["quiet", "please"]).1, "QUIET PLEASE\n");

    let flaky = svc.join("flaky");
    let mut server = serve(&flaky, 1, &["sh", "-c", "read word; echo \"no $word\"; exit 3"]);
    let (status, out, _) = call(&flaky, &["dice"]);
    assert!(status.success());
    assert_eq!(out, "no dice\n", "a failed command's output is still the reply");
    wait_until("the failure is logged", T, || {
        String::from_utf8_lossy(&server.stderr_output())
            .contains("mq-serve: request 1: sh exited with status 3")
    });
    assert_eq!(call(&flaky, &["luck"]).1, "no luck\n", "the server goes on serving");
    assert!(!server.has_exited());

    let missing = svc.join("missing");
    let server = serve(&missing, 1, &["/nonexistent/command"]);
    assert_eq!(call(&missing, &["anyone?"]).1, "\n", "a command that cannot run gets an empty line");
    let log = String::from_utf8_lossy(&server.stderr_output()).into_owned();
    assert!(log.contains("request 1: cannot run /nonexistent/command: No such file or directory"), "{log}");
}

#[test]
fn serves_n_requests_at_once_each_reply_to_its_own_client() {
    let m = Mount::new();
    let work = service_group(&m).join("work");
    let dir = TempDir::new();
    // Each command marks its request and waits (at most 10 s) until four are marked: only four
    // commands running at once all answer with their own request.
    let script = format!(
        "read word; touch {d}/$word; i=0; while [ $(ls {d} | wc -l) -lt 4 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
         [ $i -lt 200 ] && echo \"done $word\" || echo alone",
        d = dir.path.display()
    );
    let _server = serve(&work, 4, &["sh", "-c", &script]);
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let work = work.clone();
            std::thread::spawn(move || call(&work, &[&format!("job{i}")]))
        })
        .collect();
    for (i, client) in clients.into_iter().enumerate() {
        let (status, out, err) = client.join().unwrap();
        assert!(status.success(), "client {i}: {status:?} {err}");
        assert_eq!(
            out,
            format!("done job{i}\n"),
            "client {i} got its own reply, with four commands running at once"
        );
    }
}

#[test]
fn serves_until_sigterm_then_finishes_the_request_in_progress() {
    let m = Mount::new();
    let slow = service_group(&m).join("slow");
    let dir = TempDir::new();
    let (started, go) = (dir.join("started"), dir.join("go"));
    let script = format!(
        "touch {s}; i=0; while [ ! -e {g} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo finished",
        s = started.display(),
        g = go.display()
    );
    let mut server = serve(&slow, 1, &["sh", "-c", &script]);
    let client = {
        let slow = slow.clone();
        std::thread::spawn(move || call(&slow, &["x"]))
    };
    wait_until("the command runs", T, || started.exists());
    server.signal(libc::SIGTERM);
    wait_until("the server says it finishes", T, || {
        String::from_utf8_lossy(&server.stderr_output())
            .contains("SIGTERM: finishing the requests in progress")
    });
    assert!(!server.has_exited(), "the request in progress is finished first");
    fs::write(&go, "").unwrap();
    let (status, out, _) = client.join().unwrap();
    assert!(status.success());
    assert_eq!(out, "finished\n");
    let status = server.wait_exit(T).expect("the server exits once the request is answered");
    assert_eq!(status.code(), Some(0), "a clean stop");
}

#[test]
fn serves_until_a_second_sigterm_abandons_the_request_to_another_server() {
    let m = Mount::new();
    let svc = service_group(&m).join("svc");
    let dir = TempDir::new();
    let started = dir.join("started");
    let never = format!(
        "touch {}; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; echo by A",
        started.display()
    );
    let mut first = serve(&svc, 1, &["sh", "-c", &never]);
    let client = {
        let svc = svc.clone();
        std::thread::spawn(move || call(&svc, &["job"]))
    };
    wait_until("the first server's command runs", T, || started.exists());
    first.signal(libc::SIGTERM);
    wait_until("the first server says it finishes", T, || {
        String::from_utf8_lossy(&first.stderr_output()).contains("finishing the requests in progress")
    });
    first.signal(libc::SIGTERM);
    let status = first.wait_exit(T).expect("a second SIGTERM ends the server");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "it dies of the signal, so mqfs takes the request back");
    let _second = serve(&svc, 1, &["sh", "-c", "read job; echo \"$job by B\""]);
    let (status, out, err) = client.join().unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(out, "job by B\n", "the abandoned request was redelivered to the other server");
}

#[test]
fn serves_nothing_so_a_call_times_out_with_status_124() {
    let m = Mount::new();
    let nobody = service_group(&m).join("nobody");
    let started = Instant::now();
    let (status, out, err) = run(MQ_CALL, &["-t", "0.3", nobody.to_str().unwrap(), "hello?"], None);
    assert_eq!(status.code(), Some(124), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(out, "", "its own request is not its reply");
    assert_eq!(err, format!("mq-call: {}: no reply within 0.3 s\n", nobody.display()));
}

// ---------------------------------------------------------------------------
// What runs on any engine
// ---------------------------------------------------------------------------

#[test]
fn a_call_blocked_in_its_write_times_out_with_status_124() {
    let m = Mount::new();
    let g = m.join("g");
    fs::create_dir(&g).unwrap();
    // Under `write one` the request's write waits for a reader to take it: none will.
    fs::write(g.join("ctl"), "write one\n").unwrap();
    let s = g.join("s");
    let started = Instant::now();
    let (status, out, err) = run(MQ_CALL, &["-t", "0.5", s.to_str().unwrap(), "ping"], None);
    assert_eq!(status.code(), Some(124), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(out, "");
    assert_eq!(err, format!("mq-call: {}: no reply within 0.5 s\n", s.display()));
}

#[test]
fn mq_serve_opens_n_descriptors_stops_on_sigterm_and_fails_when_its_stream_goes() {
    let m = Mount::new();
    let s = m.join("s");
    let mut server = serve(&s, 3, &["cat"]);
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(T).expect("SIGTERM stops an idle server");
    assert_eq!(status.code(), Some(0));
    let log = String::from_utf8_lossy(&server.stderr_output()).into_owned();
    assert_eq!(log, "mq-serve: SIGTERM: finishing the requests in progress (again to abandon them)\n");
    wait_until("its descriptors are closed", T, || xattr(&s, "readers") == Some(0));

    let mut server = serve(&s, 2, &["cat"]);
    fs::remove_file(&s).unwrap();
    let status = server.wait_exit(T).expect("the server ends once its stream is removed");
    assert_eq!(status.code(), Some(1));
    let log = String::from_utf8_lossy(&server.stderr_output()).into_owned();
    assert_eq!(log, format!("mq-serve: {}: the stream was removed\n", s.display()).repeat(2));
}

#[test]
fn usage_errors_exit_2_and_system_errors_1_with_the_errno_text() {
    let m = Mount::new();
    let s = m.join("s");
    let s = s.to_str().unwrap();
    for (tool, args) in [
        (MQ_CALL, vec![]),
        (MQ_CALL, vec!["-t", "soon", s]),
        (MQ_CALL, vec!["-t", "0", s]),
        (MQ_SERVE, vec![s]),
        (MQ_SERVE, vec!["-j", "0", s, "--", "cat"]),
        (MQFS_STAT, vec!["--frobnicate"]),
    ] {
        let (status, _, err) = run(tool, &args, None);
        assert_eq!(status.code(), Some(2), "{tool} {args:?}: {err}");
        assert!(
            err.contains("Usage") || err.contains("usage") || err.contains("error:"),
            "{tool} {args:?}: {err}"
        );
    }
    let (status, _, err) = run(MQ_CALL, &[s], Some(b""));
    assert_eq!(
        (status.code(), err.as_str()),
        (Some(2), "mq-call: the request is empty (standard input had nothing)\n")
    );
    let nowhere = m.join("no/such/group/s");
    let (status, _, err) = call(&nowhere, &["hi"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(err, format!("mq-call: {}: No such file or directory\n", nowhere.display()));
    let (status, _, err) = run(MQ_SERVE, &[nowhere.to_str().unwrap(), "--", "cat"], None);
    assert_eq!(status.code(), Some(1));
    assert_eq!(err, format!("mq-serve: {}: No such file or directory\n", nowhere.display()));
}

#[test]
fn streams_have_their_numbers_as_extended_attributes_and_nothing_else_has_any() {
    let m = Mount::new();
    let g = m.join("g");
    fs::create_dir(&g).unwrap();
    fs::write(g.join("ctl"), "replay all\n").unwrap();
    let s = g.join("s");
    fs::write(&s, "").unwrap();
    let reader = Proc::spawn(Command::new("cat").arg(&s));
    wait_until("cat has s open", T, || xattr(&s, "readers") == Some(1));
    fs::write(&s, "twelve bytes").unwrap();
    wait_until("cat read it", T, || reader.output_contains(b"twelve bytes"));
    let names = listxattr(&s).unwrap();
    let want: Vec<String> = ["readers", "backlog", "inflight", "redelivered", "dead", "messages", "bytes"]
        .iter()
        .map(|n| format!("user.mq.{n}"))
        .collect();
    assert_eq!(names, want);
    let numbers: Vec<Option<u64>> =
        ["readers", "backlog", "messages", "bytes"].iter().map(|n| xattr(&s, n)).collect();
    assert_eq!(numbers, [Some(1), Some(0), Some(1), Some(12)]);
    assert_eq!(getxattr(&s, "user.other"), Err(libc::ENODATA));
    assert_eq!(getxattr(&s, "user.mq.nonsense"), Err(libc::ENODATA));
    for other in [g.clone(), g.join("ctl"), g.join("order")] {
        assert_eq!(listxattr(&other), Ok(Vec::new()), "{}", other.display());
        assert_eq!(getxattr(&other, "user.mq.readers"), Err(libc::ENODATA), "{}", other.display());
    }
    // Setting one is refused, as before extended attributes were read.
    let path = CString::new(s.as_os_str().as_bytes()).unwrap();
    // SAFETY: NUL-terminated strings and a value of the length passed.
    let set =
        unsafe { libc::setxattr(path.as_ptr(), c"user.mq.readers".as_ptr(), b"5".as_ptr().cast(), 1, 0) };
    assert_eq!((set, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EOPNOTSUPP)));
}

#[test]
fn mqfs_stat_lists_groups_and_streams_with_their_numbers() {
    let m = Mount::new();
    let g = m.join("g");
    fs::create_dir(&g).unwrap();
    fs::write(g.join("ctl"), "replay all\n").unwrap();
    fs::create_dir(g.join("sub")).unwrap();
    fs::write(g.join("a"), "one").unwrap();
    fs::write(g.join("a"), "two").unwrap();
    fs::write(g.join("sub/b"), "x").unwrap();
    let reader = Proc::spawn(Command::new("cat").arg(g.join("a")));
    wait_until("cat read both", T, || reader.output_contains(b"onetwo"));
    let (status, out, err) = run(MQFS_STAT, &[g.to_str().unwrap()], None);
    assert!(status.success(), "{err}");
    let rows: Vec<Vec<String>> =
        out.lines().map(|l| l.split_whitespace().map(String::from).collect()).collect();
    let g = g.display();
    let want = [
        "STREAM READERS BACKLOG INFLIGHT REDELIVERED DEAD MESSAGES BYTES".to_string(),
        format!("{g}/ 1 0 0 0 0 2 6"),
        format!("{g}/a 1 0 0 0 0 2 6"),
        format!("{g}/sub/ 0 0 0 0 0 1 1"),
        format!("{g}/sub/b 0 0 0 0 0 1 1"),
    ];
    let want: Vec<Vec<String>> =
        want.iter().map(|l| l.split_whitespace().map(String::from).collect()).collect();
    assert_eq!(rows, want, "{out}");

    // Without arguments: every mqfs mounted, this one among them.
    // (Other mounts may be listed too, or fail: only this one's line is checked.)
    let (_, out, _) = run(MQFS_STAT, &[], None);
    let root = format!("{}/ ", m.path.display());
    assert!(out.lines().any(|l| l.starts_with(&root)), "{out}");
    // A path that is no group or stream of mqfs is an error; the rest is still listed.
    let elsewhere = TempDir::new();
    let (status, out, err) = run(MQFS_STAT, &[elsewhere.path.to_str().unwrap(), &format!("{g}/sub")], None);
    assert_eq!(status.code(), Some(1));
    assert_eq!(err, format!("mqfs-stat: {}: not an mqfs group or stream\n", elsewhere.path.display()));
    assert!(out.contains(&format!("{g}/sub/b ")), "{out}");
}
