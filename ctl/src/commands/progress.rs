//! Docker's per-layer progress of `pull` and `push` on standard output: on a terminal one line
//! per layer, redrawn in place ("a1b2c3d4e5f6: Downloading [=====>     ]  12.3MB/45.6MB");
//! otherwise one plain line each time a layer's status changes ("a1b2c3d4e5f6: Pull
//! complete"); nothing with `-q`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::os::fd::AsRawFd;

use berth_proto::types::v1::{BlobKind, TransferProgress, TransferStatus};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::commands::human;

/// Which way the blobs go; it decides the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Registry to engine.
    Pull,
    /// Engine to registry.
    Push,
}

/// Terminal width from which Docker draws the `[===>   ]` bar.
const BAR_MIN_WIDTH: u16 = 110;
/// Characters of the bar between the brackets, as Docker draws it.
const BAR_CELLS: usize = 50;

/// The twelve hex characters Docker names a layer by.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// "Retrying in 2s: connection reset" from "retrying in 2s: connection reset".
fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What Docker shows for a blob in this state — the words, and whether byte counts follow —
/// or `None` for blobs and states it does not show (indexes, manifests and configurations;
/// resolving).
pub fn status_words(direction: Direction, p: &TransferProgress) -> Option<(String, bool)> {
    let kind = BlobKind::try_from(p.kind).unwrap_or(BlobKind::Unspecified);
    if p.digest.is_empty() || !matches!(kind, BlobKind::Layer | BlobKind::Unspecified) {
        return None;
    }
    let status = TransferStatus::try_from(p.status).unwrap_or(TransferStatus::Unspecified);
    let pull = direction == Direction::Pull;
    let words = match status {
        TransferStatus::Unspecified | TransferStatus::Resolving => return None,
        TransferStatus::Waiting => "Waiting".to_string(),
        TransferStatus::Downloading => return Some(("Downloading".into(), true)),
        TransferStatus::Uploading => return Some(("Pushing".into(), true)),
        TransferStatus::Extracting => return Some(("Extracting".into(), true)),
        TransferStatus::Verifying => "Verifying Checksum".to_string(),
        TransferStatus::Exists if pull => "Already exists".to_string(),
        TransferStatus::Exists => "Layer already exists".to_string(),
        TransferStatus::Mounted if p.message.is_empty() => "Mounted".to_string(),
        TransferStatus::Mounted => format!("Mounted from {}", p.message),
        TransferStatus::Retrying if p.message.is_empty() => "Retrying".to_string(),
        TransferStatus::Retrying => capitalised(&p.message),
        TransferStatus::Complete if pull => "Pull complete".to_string(),
        TransferStatus::Complete => "Pushed".to_string(),
        TransferStatus::Failed if p.message.is_empty() => "Failed".to_string(),
        TransferStatus::Failed => format!("Failed: {}", p.message),
    };
    Some((words, false))
}

/// True when the blob will not change any more.
fn is_final(p: &TransferProgress) -> bool {
    matches!(
        TransferStatus::try_from(p.status),
        Ok(TransferStatus::Complete
            | TransferStatus::Exists
            | TransferStatus::Mounted
            | TransferStatus::Failed)
    )
}

/// Docker's byte counts, with the bar when the terminal is wide enough:
/// "[=====>          ]  12.35MB/45.6MB".
pub fn counts(current: i64, total: i64, width: u16) -> String {
    if current <= 0 && total <= 0 {
        return String::new();
    }
    let cur = human::total(current.max(0) as u64);
    if total <= 0 {
        return format!("{cur:>8}");
    }
    if current > total {
        return format!("{cur:>8}");
    }
    let filled = ((current as f64 / total as f64 * 100.0) as usize / 2).min(BAR_CELLS);
    let bar = if width > BAR_MIN_WIDTH {
        format!(
            "[{}>{}] ",
            "=".repeat(filled),
            " ".repeat(BAR_CELLS - filled)
        )
    } else {
        String::new()
    };
    format!("{bar}{cur:>8}/{}", human::total(total as u64))
}

nix::ioctl_read_bad!(window_size, nix::libc::TIOCGWINSZ, nix::libc::winsize);

/// Columns of the terminal on standard output (or standard error).
fn terminal_width(stderr: bool) -> Option<u16> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct it is given, which lives
    // through the call; a descriptor that is no terminal makes it fail without writing.
    let fd = if stderr {
        std::io::stderr().as_raw_fd()
    } else {
        std::io::stdout().as_raw_fd()
    };
    unsafe { window_size(fd, &mut ws) }.ok()?;
    (ws.ws_col > 0).then_some(ws.ws_col)
}

/// How progress is shown.
enum Mode {
    /// Nothing (`-q`).
    Quiet,
    /// A plain line per change.
    Lines {
        /// Last words printed per blob.
        last: HashMap<String, String>,
    },
    /// A line per blob, redrawn in place.
    Bars {
        multi: MultiProgress,
        /// Bars by blob digest.
        bars: HashMap<String, ProgressBar>,
        width: u16,
    },
}

/// The progress display of one pull or push.
pub struct Progress {
    direction: Direction,
    mode: Mode,
    /// Shown on standard error (a pull for `run`, as Docker's) instead of standard output.
    stderr: bool,
}

impl Progress {
    /// Bars when standard output is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn new(direction: Direction, quiet: bool) -> Progress {
        Self::make(direction, quiet, false)
    }

    /// The same on standard error, where `run` shows the pull of a missing image.
    pub fn on_stderr(direction: Direction) -> Progress {
        Self::make(direction, false, true)
    }

    fn make(direction: Direction, quiet: bool, stderr: bool) -> Progress {
        let terminal = if stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let mode = if quiet {
            Mode::Quiet
        } else if terminal {
            Mode::Bars {
                multi: MultiProgress::with_draw_target(draw_target(stderr)),
                bars: HashMap::new(),
                width: terminal_width(stderr).unwrap_or(80),
            }
        } else {
            Mode::Lines {
                last: HashMap::new(),
            }
        };
        Progress {
            direction,
            mode,
            stderr,
        }
    }

    fn print(&self, text: &str) {
        if self.stderr {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// Prints a line of output (not progress), above the bars if there are any; nothing when
    /// quiet.
    pub fn line(&self, text: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Bars { multi, bars, .. } if !bars.is_empty() => {
                let _ = multi.println(text);
            }
            _ => self.print(text),
        }
    }

    /// Shows one progress message.
    pub fn update(&mut self, p: &TransferProgress) {
        let Some((words, with_counts)) = status_words(self.direction, p) else {
            return;
        };
        let id = short_digest(&p.digest);
        let stderr = self.stderr;
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Lines { last } => {
                if last.get(&p.digest) != Some(&words) {
                    if stderr {
                        eprintln!("{id}: {words}");
                    } else {
                        println!("{id}: {words}");
                    }
                    last.insert(p.digest.clone(), words);
                }
            }
            Mode::Bars { multi, bars, width } => {
                let bar = bars.entry(p.digest.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(0));
                    if let Ok(style) = ProgressStyle::with_template("{wide_msg}") {
                        bar.set_style(style);
                    }
                    bar
                });
                let text = if with_counts {
                    format!("{id}: {words} {}", counts(p.current, p.total, *width))
                } else {
                    format!("{id}: {words}")
                };
                if is_final(p) {
                    bar.finish_with_message(text);
                } else {
                    bar.set_message(text);
                }
            }
        }
    }

    /// Leaves every line as it stands (after a result or a failure); later blobs start new
    /// lines below.
    pub fn finish(&mut self) {
        if let Mode::Bars { multi, bars, .. } = &mut self.mode {
            for (_, bar) in bars.drain() {
                bar.abandon();
            }
            *multi = MultiProgress::with_draw_target(draw_target(self.stderr));
        }
    }
}

fn draw_target(stderr: bool) -> ProgressDrawTarget {
    if stderr {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::stdout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(kind: BlobKind, status: TransferStatus, message: &str) -> TransferProgress {
        TransferProgress {
            digest: format!("sha256:{}", "ab".repeat(32)),
            kind: kind as i32,
            status: status as i32,
            message: message.into(),
            ..Default::default()
        }
    }

    fn words(d: Direction, status: TransferStatus, message: &str) -> Option<String> {
        status_words(d, &progress(BlobKind::Layer, status, message)).map(|(w, _)| w)
    }

    #[test]
    fn layers_are_named_by_twelve_hex_characters() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "0123456789abcdef".repeat(4))),
            "0123456789ab"
        );
        assert_eq!(short_digest("abc"), "abc");
    }

    #[test]
    fn statuses_read_as_in_docker() {
        use Direction::*;
        use TransferStatus::*;
        assert_eq!(words(Pull, Complete, "").as_deref(), Some("Pull complete"));
        assert_eq!(words(Pull, Exists, "").as_deref(), Some("Already exists"));
        assert_eq!(words(Push, Complete, "").as_deref(), Some("Pushed"));
        assert_eq!(
            words(Push, Exists, "").as_deref(),
            Some("Layer already exists")
        );
        assert_eq!(
            words(Push, Mounted, "library/x").as_deref(),
            Some("Mounted from library/x")
        );
        assert_eq!(
            words(Pull, Verifying, "").as_deref(),
            Some("Verifying Checksum")
        );
        assert_eq!(
            words(Pull, Retrying, "retrying in 2s: connection reset").as_deref(),
            Some("Retrying in 2s: connection reset")
        );
        assert_eq!(words(Pull, Resolving, ""), None);
        let dl = status_words(Pull, &progress(BlobKind::Layer, Downloading, ""));
        assert_eq!(dl, Some(("Downloading".to_string(), true)));
        // Configurations and manifests are not shown, as in Docker.
        assert_eq!(
            status_words(Pull, &progress(BlobKind::Config, Complete, "")),
            None
        );
        assert_eq!(
            status_words(Pull, &progress(BlobKind::Manifest, Downloading, "")),
            None
        );
    }

    #[test]
    fn counts_draw_docker_bars_on_wide_terminals() {
        assert_eq!(
            counts(12_300_000, 45_600_000, 120),
            format!(
                "[{}>{}]   12.3MB/45.6MB",
                "=".repeat(13),
                " ".repeat(BAR_CELLS - 13)
            )
        );
        assert_eq!(counts(12_300_000, 45_600_000, 80), "  12.3MB/45.6MB");
        assert_eq!(counts(0, 0, 120), "");
        assert_eq!(counts(1500, 0, 120), "   1.5kB");
        assert_eq!(counts(2000, 1000, 120), "     2kB");
        assert!(counts(1000, 1000, 120).starts_with(&format!("[{}>]", "=".repeat(50))));
    }
}
