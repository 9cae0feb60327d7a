//! Terminals and pseudo-terminals: raw mode and its undoing, window sizes, `openpty`, and the
//! `^X` notation of keys.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::pty::Winsize;
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

/// A terminal's settings as they were, put back by [`Saved::restore`] (and on drop).
pub struct Saved<F: AsFd> {
    fd: F,
    termios: Termios,
}

impl<F: AsFd> Saved<F> {
    /// The current settings of terminal `fd`.
    pub fn get(fd: F) -> io::Result<Saved<F>> {
        let termios = termios::tcgetattr(&fd)?;
        Ok(Saved { fd, termios })
    }

    /// Puts the terminal in raw mode: every byte as typed, no echo, no signals from keys,
    /// output passed through unchanged.
    pub fn make_raw(&self) -> io::Result<()> {
        let mut raw = self.termios.clone();
        termios::cfmakeraw(&mut raw);
        raw.control_chars[libc::VMIN] = 1;
        raw.control_chars[libc::VTIME] = 0;
        self.set(&raw)
    }

    /// Keeps the terminal's line editing, but makes `key` its quit character (so typing it
    /// sends `SIGQUIT`) — how a viewer of a session without a pseudo-terminal detaches.
    pub fn quit_key(&self, key: Option<u8>) -> io::Result<()> {
        let mut t = self.termios.clone();
        t.control_chars[libc::VQUIT] = key.unwrap_or(0);
        t.local_flags |= LocalFlags::ISIG;
        self.set(&t)
    }

    /// Puts the saved settings back.
    pub fn restore(&self) {
        let _ = self.set(&self.termios);
    }

    fn set(&self, termios: &Termios) -> io::Result<()> {
        Ok(termios::tcsetattr(&self.fd, SetArg::TCSADRAIN, termios)?)
    }
}

impl<F: AsFd> Drop for Saved<F> {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The window size (rows, columns) of terminal `fd`, if it has a non-zero one.
pub fn window_size(fd: impl AsFd) -> Option<(u16, u16)> {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into ws (nix has no safe wrapper of this ioctl).
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets the window size of the terminal (or pseudo-terminal master) `fd`; the kernel sends
/// `SIGWINCH` to its foreground process group.
pub fn set_window_size(fd: impl AsFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from ws (nix has no safe wrapper of this ioctl).
    if unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new pseudo-terminal pair (master, slave) of the given size, with the kernel's default
/// settings (line editing, echo, `^C` for `SIGINT`, ...).
pub fn openpty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(&ws, None)?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    }
    Ok((pty.master, pty.slave))
}

/// The foreground process group of the terminal whose master (or slave) is `fd`.
pub fn foreground_group(fd: impl AsFd) -> Option<i32> {
    nix::unistd::tcgetpgrp(fd).ok().map(|pgrp| pgrp.as_raw()).filter(|&pgrp| pgrp > 0)
}

/// Parses a key: `^\`, `^]`, `^A` ... (control keys in caret notation), a single character,
/// or `none` (None). Returns the byte the terminal sends for it.
pub fn parse_key(spec: &str) -> Result<Option<u8>, String> {
    if spec == "none" {
        return Ok(None);
    }
    let b = spec.as_bytes();
    match b {
        [b'^', c] => {
            let c = c.to_ascii_uppercase();
            if c == b'?' {
                Ok(Some(0x7f))
            } else if (b'@'..=b'_').contains(&c) {
                Ok(Some(c - b'@'))
            } else {
                Err(format!("{spec}: not a control key (^@ ... ^_, ^?)"))
            }
        }
        [c] if c.is_ascii() => Ok(Some(*c)),
        _ => Err(format!("{spec}: a key is ^X, one character, or none")),
    }
}
