//! The msgfs pattern: one file per message in a tmpfs directory. A writer writes a
//! temporary file and renames it to the message's sequence number (so a reader never sees
//! half a message); readers open the next number, and sleep on inotify (IN_MOVED_TO) while it
//! does not exist yet.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::tail::Inotify;
use crate::endpoint::{Sink, Source};

fn message_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:012}"))
}

pub struct DirSink {
    dir: PathBuf,
    temporary: PathBuf,
    next: u64,
}

impl DirSink {
    pub fn open(dir: &Path, writer: u32) -> io::Result<DirSink> {
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(DirSink { dir: dir.to_path_buf(), temporary: dir.join(format!(".writer-{writer}")), next: 0 })
    }
}

impl Sink for DirSink {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        std::fs::write(&self.temporary, message)?;
        std::fs::rename(&self.temporary, message_path(&self.dir, self.next))?;
        self.next += 1;
        Ok(())
    }
}

pub struct DirSource {
    dir: PathBuf,
    inotify: Inotify,
    next: u64,
}

impl DirSource {
    pub fn open(dir: &Path) -> io::Result<DirSource> {
        let inotify = Inotify::watch(dir, libc::IN_MOVED_TO)?;
        Ok(DirSource { dir: dir.to_path_buf(), inotify, next: 0 })
    }
}

impl Source for DirSource {
    /// One whole message per call (`buf` must hold it).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match File::open(message_path(&self.dir, self.next)) {
                Ok(mut file) => {
                    let mut filled = 0;
                    loop {
                        match file.read(&mut buf[filled..]) {
                            Ok(0) => break,
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                        if filled == buf.len() {
                            break;
                        }
                    }
                    self.next += 1;
                    return Ok(filled);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.inotify.wait()?,
                Err(e) => return Err(e),
            }
        }
    }
}
