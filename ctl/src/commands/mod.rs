//! One module per command.

pub mod completion;
pub mod containers;
pub mod df;
pub mod events;
pub mod human;
pub mod images;
pub mod info;
pub mod login;
pub mod progress;
pub mod pull;
pub mod push;
pub mod template;
pub mod transfer;
pub mod version;

/// The command already told the user what failed (e.g. one image of several); berthctl exits
/// with status 1 without another message.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}

impl std::error::Error for Reported {}

/// End berthctl with this exit status and no further message (`run` exits with the
/// container's exit code, as Docker does).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}
