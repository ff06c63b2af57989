//! The local side of an attached session (`run -it`, `exec -it`, `attach`, `start -ai`):
//! the terminal in raw mode while attached, its size and resizes, stdin read on a thread
//! of its own, and output frames written to stdout/stderr.

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use berth_proto::types::v1::{ConsoleSize, StdioFrame, StdioStream};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What the local side produces for the engine.
#[derive(Debug)]
pub enum Input {
    /// Bytes typed or piped.
    Stdin(Vec<u8>),
    /// Stdin ended.
    Eof,
    /// The terminal was resized.
    Resize(ConsoleSize),
}

/// Puts the terminal on stdin in raw mode; restores it when dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode when stdin is a terminal; nothing otherwise.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawMode { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode { saved: None };
        }
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

nix::ioctl_read_bad!(tiocgwinsz, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// The size of the terminal on stdout (or stdin), if there is one.
pub fn size() -> Option<ConsoleSize> {
    for fd in [nix::libc::STDOUT_FILENO, nix::libc::STDIN_FILENO] {
        let mut ws = nix::libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ fills the winsize it is given; a non-terminal fd fails.
        if unsafe { tiocgwinsz(fd, &mut ws) }.is_ok() && ws.ws_col > 0 && ws.ws_row > 0 {
            return Some(ConsoleSize {
                width: u32::from(ws.ws_col),
                height: u32::from(ws.ws_row),
            });
        }
    }
    None
}

/// Starts reading stdin (when `stdin`) and watching resizes (when `tty`). Stdin is read on
/// a plain thread: a blocked read must not keep the runtime from shutting down.
pub fn inputs(stdin: bool, tty: bool) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    if stdin {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            let mut input = std::io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Input::Eof);
                        return;
                    }
                    Ok(n) => {
                        if tx.blocking_send(Input::Stdin(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        let _ = tx.blocking_send(Input::Eof);
                        return;
                    }
                }
            }
        });
    }
    if tty {
        if let Ok(mut winch) = signal(SignalKind::window_change()) {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(s) = size() {
                        if tx.send(Input::Resize(s)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
    rx
}

/// Writes an output frame where the container wrote it.
pub fn write_frame(frame: &StdioFrame) {
    if frame.stream == StdioStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&frame.data);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&frame.data);
        let _ = out.flush();
    }
}

/// Docker's check before `-it`: the input must be a terminal.
pub fn check_tty_input(tty: bool, interactive: bool) -> anyhow::Result<()> {
    if tty && interactive && !std::io::stdin().is_terminal() {
        anyhow::bail!("the input device is not a TTY");
    }
    Ok(())
}
