//! The shim's end of a process's terminal: the pty master, non-blocking and registered
//! with tokio, read by the output copier and written by attached clients' stdin.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::console;
use crate::error::{Error, Result};

/// The terminal's end-of-file character (`VEOF`, ctrl-D): what CloseIO writes, since
/// closing the master would hang up the terminal instead.
pub const EOF_CHAR: u8 = 0x04;

/// A pty master.
#[derive(Debug)]
pub struct Master {
    fd: AsyncFd<OwnedFd>,
}

impl Master {
    /// Makes `fd` non-blocking and registers it. Must run inside the runtime.
    pub fn new(fd: OwnedFd) -> Result<Master> {
        let flags = rustix::fs::fcntl_getfl(&fd)
            .map_err(|e| Error::io("read the terminal's flags", e.into()))?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)
            .map_err(|e| Error::io("make the terminal non-blocking", e.into()))?;
        // SAFETY: an OwnedFd's raw fd stays the same open file until the AsyncFd, its
        // only owner from here on, drops it.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(|e| Error::io("register the terminal", e.into()))?;
        Ok(Master { fd })
    }

    /// Waits until a read would not block.
    pub async fn readable(&self) -> io::Result<()> {
        self.fd.readable().await.map(drop)
    }

    /// Reads output; `Ok(0)` at the end. The end of a terminal is EIO: every holder of
    /// the slave has closed it (the process and whatever it started have exited).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` (the process's input).
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the window size; the process's foreground group gets SIGWINCH.
    pub fn set_size(&self, width: u16, height: u16) -> Result<()> {
        console::set_size(self.fd.get_ref().as_fd(), width, height)
    }
}
