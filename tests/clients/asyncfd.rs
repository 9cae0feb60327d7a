use std::{fs::OpenOptions, io::Read, os::unix::fs::OpenOptionsExt};
use tokio::io::{Interest, unix::AsyncFd};

/// Calls `on_message` with each message of the stream at `path`, until the stream is removed.
pub async fn follow(path: &str, mut on_message: impl FnMut(&[u8])) -> std::io::Result<()> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    // SAFETY: `file` owns its descriptor and is moved into the AsyncFd, which closes it.
    let fd = unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) };
    let fd = fd.map_err(|e| e.into_parts().1)?;
    let mut buf = vec![0; 65536];
    loop {
        let mut ready = fd.readable().await?;
        match ready.try_io(|file| file.get_ref().read(&mut buf)) {
            Ok(Ok(0)) => return Ok(()), // end-of-file: the stream was removed
            Ok(Ok(n)) => on_message(&buf[..n]),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}
