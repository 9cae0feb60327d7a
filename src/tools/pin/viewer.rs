//! A viewer (`mq-pin -a`): replays `1`, `2` and `status` in write order, then follows them,
//! sending what is typed to `0`, until the program ends, the detach key is typed, or the
//! session goes away; the terminal's settings are put back whatever happens.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::mpsc;

use nix::sys::signal::{SigSet, Signal};

use super::session::{State, check_name, open_existing_writer, parse_status, session_state, state_of};
use super::{Failure, Result, at};
use crate::tools::ordered::{Item, Ordered};
use crate::tools::sys::{self, strerror};
use crate::tools::term;

/// How a viewer ended.
enum Outcome {
    Exited(i32),
    Detached,
    Signal(i32),
    Removed,
    Error(String),
}

/// Blocks the signals a viewer handles in its signal thread (in every thread: call before
/// starting any) and returns the set.
fn block_viewer_signals() -> nix::Result<SigSet> {
    use Signal::*;
    let set = SigSet::from_iter([SIGWINCH, SIGINT, SIGQUIT, SIGTERM, SIGHUP]);
    set.thread_block()?;
    Ok(set)
}

/// `mq-pin -a NAME`: replays the session's output in write order, then follows it, sending
/// what is typed to the program, until the program ends (returns its status), the viewer
/// detaches (0), or the session goes away.
pub fn attach(dir: &Path, name: &OsStr, detach_key: Option<u8>) -> Result<u8> {
    check_name(name)?;
    let shown = name.to_string_lossy().into_owned();
    let group = dir.join(name);
    let state = session_state(dir, name)?;
    let ended = |status: i32| {
        if sys::isatty(io::stderr()) {
            eprintln!("[mq-pin: {shown}: exited with status {status}]");
        }
        Ok(status.clamp(0, 255) as u8)
    };
    let pty = match state {
        State::Exited(status) => return ended(status),
        State::Lost { .. } => {
            return Err(Failure::new(format!(
                "{shown}: its supervisor is gone (mq-pin -k {shown} removes the session)"
            )));
        }
        State::Running { pty, .. } => pty,
        State::Starting => true,
    };
    let names: Vec<OsString> = ["1", "2", "status"].iter().map(OsString::from).collect();
    let opened = Ordered::open(&group, &names, true).map_err(|e| at(&e.path, &e.error)).and_then(|reader| {
        let input = open_existing_writer(&group.join("0")).map_err(|e| at(&group.join("0"), &e))?;
        let note = open_existing_writer(&group.join("note")).map_err(|e| at(&group.join("note"), &e))?;
        Ok((reader, input, note))
    });
    let (mut reader, input, note) = match opened {
        Ok(files) => files,
        // It may have ended just now.
        Err(f) => match state_of(&group) {
            Some(State::Exited(status)) => return ended(status),
            _ => return Err(f),
        },
    };

    let tty = sys::isatty(io::stdin());
    let saved = if tty { term::Saved::get(io::stdin()).ok() } else { None };
    if let Some(saved) = &saved {
        let set = if pty { saved.make_raw() } else { saved.quit_key(detach_key) };
        set.map_err(|e| Failure::new(format!("standard input: {}", strerror(&e))))?;
    }
    let signals =
        block_viewer_signals().map_err(|e| Failure::new(format!("signals: {}", strerror(&e.into()))))?;
    let send_size = {
        let note = note.try_clone().map_err(|e| Failure::new(strerror(&e)))?;
        move || {
            if let Some((rows, cols)) = term::window_size(io::stdin()) {
                let _ = sys::write_message(&note, format!("winch {rows} {cols}\n").as_bytes());
            }
        }
    };
    if pty && tty {
        send_size();
    }

    let (tx, rx) = mpsc::channel::<Outcome>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let outcome = loop {
                match reader.next_item() {
                    Ok(Some(Item::Message(2, text))) => {
                        if let State::Exited(status) = parse_status(&String::from_utf8_lossy(text)) {
                            break Outcome::Exited(status);
                        }
                    }
                    Ok(Some(Item::Message(_, data))) => {
                        if let Err(e) = sys::write_all(io::stdout(), data) {
                            break Outcome::Error(format!("standard output: {}", strerror(&e)));
                        }
                    }
                    Ok(Some(Item::Lost(_))) => {}
                    Ok(None) => break Outcome::Removed,
                    Err(e) => break Outcome::Error(strerror(&e)),
                }
            };
            let _ = tx.send(outcome);
        });
    }
    {
        let tx = tx.clone();
        let raw = pty && tty;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match sys::read(io::stdin(), &mut buf) {
                    Ok(0) | Err(_) => {
                        // On a terminal: hung up, or ^D without a pseudo-terminal, which
                        // detaches as ending `cat >>0` would. Otherwise input is over, and
                        // the viewer goes on showing output.
                        if tty {
                            let _ = tx.send(Outcome::Detached);
                        }
                        return;
                    }
                    Ok(n) => n,
                };
                let mut data = &buf[..n];
                let mut detach = false;
                if raw
                    && let Some(key) = detach_key
                    && let Some(at) = data.iter().position(|&b| b == key)
                {
                    data = &data[..at];
                    detach = true;
                }
                if !data.is_empty() && sys::write_message(&input, data).is_err() {
                    // The session ended: the output side reports how.
                    return;
                }
                if detach {
                    let _ = tx.send(Outcome::Detached);
                    return;
                }
            }
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            loop {
                let Ok(sig) = signals.wait() else { continue };
                match sig {
                    Signal::SIGWINCH if pty && tty => send_size(),
                    Signal::SIGINT => {
                        let _ = sys::write_message(&note, b"int\n");
                    }
                    Signal::SIGQUIT => {
                        let _ = tx.send(Outcome::Detached);
                    }
                    Signal::SIGTERM | Signal::SIGHUP => {
                        let _ = tx.send(Outcome::Signal(sig as i32));
                    }
                    _ => {}
                }
            }
        });
    }
    let outcome = rx.recv().unwrap_or(Outcome::Removed);
    drop(saved);
    match outcome {
        Outcome::Exited(status) => ended(status),
        Outcome::Detached => {
            if sys::isatty(io::stderr()) {
                eprintln!("[mq-pin: detached from {shown}]");
            }
            Ok(0)
        }
        Outcome::Signal(sig) => Ok((128 + sig) as u8),
        Outcome::Removed => match state_of(&group) {
            Some(State::Exited(status)) => ended(status),
            _ => Err(Failure::new(format!("{shown}: the session was removed"))),
        },
        Outcome::Error(message) => Err(Failure::new(message)),
    }
}
