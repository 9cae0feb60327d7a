//! Terminals and pseudo-terminals: raw mode and its undoing, window sizes, `openpty`, and the
//! `^X` notation of keys.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A terminal's settings as they were, put back by [`Saved::restore`] (and on drop).
pub struct Saved {
    fd: RawFd,
    termios: libc::termios,
}

impl Saved {
    /// The current settings of terminal `fd`.
    pub fn get(fd: RawFd) -> io::Result<Saved> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a termios.
        if unsafe { libc::tcgetattr(fd, &mut termios) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Saved { fd, termios })
    }

    /// Puts terminal `fd` in raw mode: every byte as typed, no echo, no signals from keys,
    /// output passed through unchanged.
    pub fn make_raw(&self) -> io::Result<()> {
        let mut raw = self.termios;
        // SAFETY: raw is a valid termios.
        unsafe { libc::cfmakeraw(&mut raw) };
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        set(self.fd, &raw)
    }

    /// Keeps the terminal's line editing, but makes `key` its quit character (so typing it
    /// sends `SIGQUIT`) — how a viewer of a session without a pseudo-terminal detaches.
    pub fn quit_key(&self, key: Option<u8>) -> io::Result<()> {
        let mut t = self.termios;
        t.c_cc[libc::VQUIT] = key.unwrap_or(0);
        t.c_lflag |= libc::ISIG;
        set(self.fd, &t)
    }

    /// Puts the saved settings back.
    pub fn restore(&self) {
        let _ = set(self.fd, &self.termios);
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        self.restore();
    }
}

fn set(fd: RawFd, termios: &libc::termios) -> io::Result<()> {
    // SAFETY: valid pointer to a termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, termios) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size (rows, columns) of terminal `fd`, if it has a non-zero one.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a winsize for TIOCGWINSZ.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Sets the window size of the terminal (or pseudo-terminal master) `fd`; the kernel sends
/// `SIGWINCH` to its foreground process group.
pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: valid pointer to a winsize for TIOCSWINSZ.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new pseudo-terminal pair (master, slave) of the given size, with the kernel's default
/// settings (line editing, echo, `^C` for `SIGINT`, ...).
pub fn openpty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave): (libc::c_int, libc::c_int) = (-1, -1);
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: valid out-pointers; name and termios may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty returned two new descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((master, slave))
}

/// The foreground process group of the terminal whose master (or slave) is `fd`.
pub fn foreground_group(fd: RawFd) -> Option<i32> {
    let mut pgrp: libc::pid_t = 0;
    // SAFETY: valid out-pointer for TIOCGPGRP.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGPGRP, &mut pgrp) };
    (rc == 0 && pgrp > 0).then_some(pgrp)
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

/// The caret notation of a key byte, for messages.
pub fn key_name(key: u8) -> String {
    match key {
        0x7f => "^?".to_string(),
        0..=0x1f => format!("^{}", (key + b'@') as char),
        _ => (key as char).to_string(),
    }
}
