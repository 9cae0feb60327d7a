//! The shell examples of README.md, mqfs(1), mqfs(5) and mq-pin(1) run as a user types them: each
//! document's runnable blocks, in order, a line at a time, in one fresh interactive bash in tmux,
//! with `/n/mq` replaced by a temporary directory and the binaries under test first in `PATH`.
//!
//! The runner waits for the prompt after each line (its PS1 carries `$?`) and for the processes
//! the shell started to settle before the next, as a user would; every line must exit 0. A line's
//! comment says what it must print and what the reader types while it runs (README.md's opening
//! comment spells the convention): `→ "TEXT"` is output the line makes, in that order, after the
//! line itself; `type "TEXT"` types a line into the program; `Ctrl-C`, `Ctrl-D`, `Ctrl-\` press
//! those keys (a line ended by Ctrl-C may exit 130). Like a user, the runner types once the
//! outputs written before have appeared and the program waits: a key that a program takes only
//! in raw mode (mq-pin's Ctrl-\) follows an output the program shows once in that mode.
//!
//! README.md's ```sh blocks run (an untagged block is an error: say what it is); in mqfs(1),
//! mqfs(5) and mq-pin(1), the `.EX` blocks of SYNOPSIS and EXAMPLES, which are the README's
//! snippets. A block that cannot run here has a "not run: REASON; WHERE IT IS CHECKED" comment
//! on the line above it.
//! Everything the shell started is ended, and everything it mounted unmounted, also on failure.

mod common;

use common::{TempDir, detach_all, mountinfo, poll_until, proc_state, wait_until};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BINARIES: [&str; 3] = [common::MQFS_BIN, env!("CARGO_BIN_EXE_mq-cat"), env!("CARGO_BIN_EXE_mq-pin")];
/// How long one line may take to print what it promises and return to the prompt.
const STEP: Duration = Duration::from_secs(20);
/// The prompt: `[N rc=S]$ `, N the number of the command about to be typed, S the last status.
const PS1: &str = r"[\# rc=$?]$ ";
/// What the shell prints when a command of a line fails: this, its status, `: COMMAND`.
const ERROR: &str = "[failed with status ";

// ---------------------------------------------------------------------------
// The examples and their comments
// ---------------------------------------------------------------------------

/// One example block: where it is, its lines (with their line numbers), and why it does not
/// run, if it does not.
struct Block {
    at: usize,
    lines: Vec<(usize, String)>,
    not_run: Option<String>,
}

/// What a line's comment asks: output to wait for, a line to type, a key to press.
#[derive(Debug, PartialEq)]
enum Step {
    Expect(String),
    Type(String),
    Key(&'static str),
}

/// The reason in a "not run: REASON; WHERE" marker, which must name both.
fn not_run(doc: &str, at: usize, marker: &str) -> String {
    let reason = marker.trim().to_string();
    assert!(
        reason.contains(';'),
        "{doc}:{at}: a not-run marker says why, then (after ;) where it is checked: {reason:?}"
    );
    reason
}

/// README.md's ```sh blocks. Every block must say its language, so that a shell block cannot
/// hide in an untagged one.
fn markdown_blocks(doc: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(Block, bool)> = None;
    let mut previous = "";
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            match open.take() {
                Some((block, shell)) => {
                    if shell {
                        blocks.push(block);
                    }
                }
                None => {
                    assert!(
                        !fence.is_empty(),
                        "{doc}:{n}: a code block without a language (```text if it is no shell)"
                    );
                    let shell = matches!(fence, "sh" | "bash" | "shell");
                    let not_run = previous
                        .trim()
                        .strip_prefix("<!-- not run:")
                        .and_then(|m| m.strip_suffix("-->"))
                        .map(|m| not_run(doc, n, m));
                    open = Some((Block { at: n, lines: Vec::new(), not_run }, shell));
                }
            }
        } else if let Some((block, _)) = open.as_mut() {
            block.lines.push((n, line.to_string()));
        }
        previous = line;
    }
    assert!(open.is_none(), "{doc}: a code block is not closed");
    blocks
}

/// A man page's `.EX` blocks in SYNOPSIS and EXAMPLES, unescaped as man(1) shows them.
fn man_blocks(doc: &str, text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut section = "";
    let mut open: Option<Block> = None;
    let mut previous = "";
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if let Some(name) = line.strip_prefix(".SH ") {
            section = name;
        } else if line == ".EX" && matches!(section, "SYNOPSIS" | "EXAMPLES") {
            let not_run = previous.strip_prefix(".\\\" not run:").map(|m| not_run(doc, n, m));
            open = Some(Block { at: n, lines: Vec::new(), not_run });
        } else if line == ".EE" {
            blocks.extend(open.take());
        } else if let Some(block) = open.as_mut() {
            assert!(!line.starts_with('.'), "{doc}:{n}: a request inside an example: {line:?}");
            block.lines.push((n, unescape_roff(doc, n, line)));
        }
        previous = line;
    }
    blocks
}

/// The text man(1) shows for an example line; an escape it does not know is an error.
fn unescape_roff(doc: &str, n: usize, line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (shown, len) = [("\\-", "-"), ("\\e", "\\"), ("\\[->]", "→"), ("\\(aq", "'"), ("\\&", "")]
            .iter()
            .find(|(escape, _)| rest.starts_with(escape))
            .map(|(escape, shown)| (*shown, escape.len()))
            .unwrap_or_else(|| panic!("{doc}:{n}: an escape the runner does not know: {line:?}"));
        out.push_str(shown);
        rest = &rest[len..];
    }
    out + rest
}

/// The comment of a shell line, as bash finds it: from a `#` that starts a word outside quotes.
fn comment(line: &str) -> Option<&str> {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return Some(&line[at + 1..]),
            _ => {}
        }
        previous = c;
    }
    None
}

/// The steps a comment asks for, in the order written.
fn steps(comment: &str) -> Vec<Step> {
    let quoted = |s: &str| -> Option<(String, usize)> {
        let body = s.strip_prefix('"')?;
        let end = body.find('"')?;
        Some((body[..end].to_string(), end + 2))
    };
    let mut steps = Vec::new();
    let mut rest = comment;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix('→') {
            rest = after.trim_start();
            while let Some((text, len)) = quoted(rest) {
                steps.push(Step::Expect(text));
                rest = rest[len..].trim_start();
            }
        } else if let Some((text, len)) = rest.strip_prefix("type ").and_then(quoted) {
            steps.push(Step::Type(text));
            rest = &rest["type ".len() + len..];
        } else if let Some((key, len)) = [("Ctrl-C", "C-c"), ("Ctrl-D", "C-d"), ("Ctrl-\\", "C-\\")]
            .iter()
            .find(|(k, _)| rest.starts_with(k))
            .map(|(k, t)| (*t, k.len()))
        {
            steps.push(Step::Key(key));
            rest = &rest[len..];
        } else {
            rest = &rest[c.len_utf8()..];
        }
    }
    steps
}

// ---------------------------------------------------------------------------
// The shell in tmux
// ---------------------------------------------------------------------------

/// A fresh interactive bash in a tmux server of its own, in a temporary directory that holds
/// `/n/mq`'s stand-in, `HOME` and `XDG_RUNTIME_DIR`. Every process it starts carries a marker
/// in its environment, by which the runner waits for them to settle and ends them on drop.
struct Shell {
    tmp: TempDir,
    socket: String,
    marker: String,
    pid: u32,
}

impl Shell {
    fn start() -> Shell {
        let tmp = TempDir::new();
        let name = tmp.path.file_name().unwrap().to_string_lossy().into_owned();
        let marker = format!("MQFS_README_RUN={name}");
        for dir in ["home", "run"] {
            fs::create_dir(tmp.join(dir)).unwrap();
        }
        fs::write(tmp.join("tmux.conf"), "set -g history-limit 100000\nset -g remain-on-exit on\n").unwrap();
        // The prompt shows a line's status, the trap that of each command of a list.
        fs::write(tmp.join("bashrc"), format!("PS1='{PS1}'\ntrap 'echo \"{ERROR}$?: $BASH_COMMAND\"' ERR\n"))
            .unwrap();
        let mut path: Vec<String> =
            BINARIES.iter().map(|b| Path::new(b).parent().unwrap().display().to_string()).collect();
        path.dedup();
        path.push(std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()));
        let env = [
            format!("HOME={}", tmp.join("home").display()),
            format!("XDG_RUNTIME_DIR={}", tmp.join("run").display()),
            format!("PATH={}", path.join(":")),
            "TERM=screen".into(),
            "SHELL=/bin/sh".into(),
            "LANG=C.UTF-8".into(),
            marker.clone(),
        ];
        let mut shell = Shell { socket: name, tmp, marker, pid: 0 };
        let conf = shell.tmp.join("tmux.conf");
        let rc = shell.tmp.join("bashrc");
        let home = shell.tmp.join("home");
        let mut args: Vec<String> = [
            "-f",
            conf.to_str().unwrap(),
            "new-session",
            "-d",
            "-x",
            "250",
            "-y",
            "50",
            "-c",
            home.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(["--", "env", "-i"].map(String::from));
        args.extend(env);
        args.extend(["bash", "--noprofile", "--rcfile", rc.to_str().unwrap(), "-i"].map(String::from));
        shell.tmux(&args.iter().map(String::as_str).collect::<Vec<_>>());
        shell.pid = String::from_utf8_lossy(&shell.tmux(&["display", "-p", "#{pane_pid}"]).stdout)
            .trim()
            .parse()
            .unwrap();
        wait_until("the first prompt", STEP, || !prompts(&shell.screen()).is_empty());
        shell
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-u", "-L", &self.socket])
            .args(args)
            .env("LANG", "C.UTF-8")
            .output()
            .expect("run tmux");
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Everything the pane has shown, wrapped lines joined.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-E", "-"]).stdout)
            .into_owned()
    }

    fn send_line(&self, text: &str) {
        self.tmux(&["send-keys", "-l", "--", text]);
        self.tmux(&["send-keys", "Enter"]);
    }

    /// The processes the shell started (and their descendants, even in sessions of their own).
    fn processes(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| {
                pid != self.pid
                    && fs::read(format!("/proc/{pid}/environ"))
                        .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == self.marker.as_bytes()))
            })
            .collect()
    }

    /// Whether nothing the shell started is running (all wait, in a read, a poll, or stopped),
    /// seen twice in a row: what a user's pause before the next line gives.
    fn settled(&self) -> bool {
        let idle = || self.processes().iter().all(|&pid| !matches!(proc_state(pid), Some('R')));
        let mut seen = 0;
        poll_until(STEP, || {
            seen = if idle() { seen + 1 } else { 0 };
            seen >= 2
        })
    }

    /// The terminal's foreground process group is the shell's own: it waits at its prompt.
    fn at_prompt(&self) -> bool {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, f)| f.split_whitespace().collect()).unwrap_or_default();
        fields.get(5).and_then(|f| f.parse::<u32>().ok()) == Some(self.pid)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
        // Unmount first, so that nothing blocks on a mount whose daemon is about to die.
        for m in mountinfo().iter().filter(|m| m.mount_point.starts_with(&self.tmp.path)).rev() {
            detach_all(&m.mount_point);
        }
        for pid in self.processes() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        if !poll_until(STEP, || self.processes().is_empty()) {
            eprintln!("warning: processes of the README run left: {:?}", self.processes());
        }
    }
}

/// The prompts on a screen: where each ends, its command number and the status it shows.
fn prompts(screen: &str) -> Vec<(usize, u32, i32)> {
    let mut found = Vec::new();
    for (at, _) in screen.match_indices('[') {
        let rest = &screen[at + 1..];
        let parsed = rest.split_once(" rc=").and_then(|(n, r)| {
            let (status, _) = r.split_once("]$ ")?;
            Some((n.parse().ok()?, status.parse().ok()?, n.len() + " rc=".len() + status.len() + "]$ ".len()))
        });
        if let Some((n, status, len)) = parsed {
            found.push((at + 1 + len, n, status));
        }
    }
    found
}

/// A report of bash's that a background job exited non-zero or was stopped, if any.
fn failed_job(screen: &str) -> Option<&str> {
    screen.lines().find(|line| {
        let Some((number, rest)) = line.strip_prefix('[').and_then(|l| l.split_once(']')) else {
            return false;
        };
        let rest = rest.trim_start_matches(['+', '-']).trim_start();
        number.parse::<u32>().is_ok() && (rest.starts_with("Exit ") || rest.starts_with("Stopped"))
    })
}

/// `expects` in this order in `text`.
fn in_order(text: &str, expects: &[&str]) -> bool {
    let mut rest = text;
    expects.iter().all(|e| match rest.find(e) {
        Some(at) => {
            rest = &rest[at + e.len()..];
            true
        }
        None => false,
    })
}

/// Runs the document's runnable blocks in one fresh shell, checking every line.
fn run_document(doc: &str, blocks: Vec<Block>) {
    let runnable: Vec<&Block> = blocks.iter().filter(|b| b.not_run.is_none()).collect();
    assert!(!runnable.is_empty(), "{doc}: no example to run");
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "`tmux` is not installed: .ci/run installs it");
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "{doc}: examples not run: `tmux` is not installed (apt-get install tmux); under CI=true this fails"
        );
        return;
    }
    let shell = Shell::start();
    let mq = shell.tmp.join("n/mq");
    let mq = mq.to_str().unwrap();
    for block in runnable {
        for (n, line) in &block.lines {
            let line = line.replace("/n/mq", mq);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let fail = |what: &str| -> String {
                let screen = shell.screen();
                let tail: Vec<&str> = screen.trim_end().lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!(
                    "{doc}:{n} (block at line {}): {what}\n  {line}\nscreen:\n{}",
                    block.at,
                    tail.join("\n")
                )
            };
            let wait =
                |what: &str, done: bool| assert!(done, "{}", fail(&format!("timed out waiting for {what}")));
            wait("the shell to return to its prompt", poll_until(STEP, || shell.at_prompt()));
            wait("the previous line's processes to settle", shell.settled());
            let (_, number, _) = *prompts(&shell.screen()).last().expect("a prompt");
            // The output of this line: after its echo, which follows its prompt.
            let output = || {
                let screen = shell.screen();
                let prompt = prompts(&screen).iter().rev().find(|p| p.1 == number).map_or(0, |p| p.0);
                let echo =
                    screen[prompt..].find(line.as_str()).map_or(screen.len(), |at| prompt + at + line.len());
                screen[echo..].to_string()
            };
            shell.send_line(&line);
            let steps = steps(comment(&line).unwrap_or(""));
            let mut expects: Vec<&str> = Vec::new();
            for step in &steps {
                match step {
                    Step::Expect(text) => {
                        expects.push(text);
                        // A background job that failed (a reader that could not open) fails at once.
                        let failed = || failed_job(&shell.screen()).map(String::from);
                        let seen = poll_until(STEP, || in_order(&output(), &expects) || failed().is_some());
                        if let Some(job) = failed() {
                            panic!("{}", fail(&format!("a background job failed: {job}")));
                        }
                        wait(&format!("output {expects:?}"), seen);
                    }
                    Step::Type(_) | Step::Key(_) => {
                        wait("a program to read the terminal", poll_until(STEP, || !shell.at_prompt()));
                        wait("the program to wait for input", shell.settled());
                        match step {
                            Step::Type(text) => shell.send_line(text),
                            Step::Key(key) => {
                                shell.tmux(&["send-keys", key]);
                            }
                            Step::Expect(_) => unreachable!(),
                        }
                    }
                }
            }
            let mut status = None;
            let prompt = poll_until(STEP, || {
                status = prompts(&output()).iter().find(|p| p.1 == number + 1).map(|p| p.2);
                status.is_some()
            });
            wait("its prompt", prompt);
            if let Some(job) = failed_job(&shell.screen()) {
                panic!("{}", fail(&format!("a background job failed: {job}")));
            }
            // Every command of the line exits 0, or 130 if Ctrl-C ended it.
            let interrupted = steps.contains(&Step::Key("C-c"));
            let ok = |status: i32| status == 0 || (interrupted && status == 130);
            let status = status.unwrap();
            assert!(ok(status), "{}", fail(&format!("exit status {status}")));
            let output = output();
            let failed =
                output.match_indices(ERROR).map(|(at, _)| &output[at + ERROR.len()..]).find(|failed| {
                    !failed.split_once(':').and_then(|(status, _)| status.parse().ok()).is_some_and(ok)
                });
            if let Some(failed) = failed {
                panic!("{}", fail(&format!("a command failed: {}", failed.lines().next().unwrap_or(""))));
            }
        }
    }
}

fn read(doc: &str) -> String {
    fs::read_to_string(PathBuf::from(REPO).join(doc)).unwrap()
}

// ---------------------------------------------------------------------------
// The documents
// ---------------------------------------------------------------------------

#[test]
fn the_readme_examples_run_as_typed() {
    run_document("README.md", markdown_blocks("README.md", &read("README.md")));
}

#[test]
fn the_mqfs_1_examples_run_as_typed() {
    run_document("docs/man/mqfs.1", man_blocks("docs/man/mqfs.1", &read("docs/man/mqfs.1")));
}

#[test]
fn the_mqfs_5_synopsis_runs_as_typed() {
    run_document("docs/man/mqfs.5", man_blocks("docs/man/mqfs.5", &read("docs/man/mqfs.5")));
}

#[test]
fn the_mq_pin_1_examples_run_as_typed() {
    run_document("docs/man/mq-pin.1", man_blocks("docs/man/mq-pin.1", &read("docs/man/mq-pin.1")));
}

#[test]
fn comments_spell_outputs_typing_and_keys() {
    let line = r#"cat 1 & cat >>0   # attach: type "echo $((6*7))" → "42" "4"; Ctrl-D, or Ctrl-\"#;
    assert_eq!(
        steps(comment(line).unwrap()),
        [
            Step::Type("echo $((6*7))".into()),
            Step::Expect("42".into()),
            Step::Expect("4".into()),
            Step::Key("C-d"),
            Step::Key("C-\\")
        ]
    );
    assert_eq!(comment("echo 'a # b' \"# c\" d#e # f"), Some(" f"));
    let screen = "[1 rc=0]$ cat x &\n[1] 42\n[2 rc=0]$ hi[3 rc=130]$ ";
    assert_eq!(prompts(screen).iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(), [(1, 0), (2, 0), (3, 130)]);
    assert_eq!(failed_job(screen), None);
    assert!(failed_job("[1]+  Stopped   sh -i").is_some() && failed_job("[2]-  Exit 1   cat s").is_some());
    assert!(failed_job("[1]+  Done   cat s\n[2]  Terminated  cat s").is_none());
    assert_eq!(unescape_roff("t", 1, r"mkdir \-p x \[->] \(aq"), "mkdir -p x → '");
}
