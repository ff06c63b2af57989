//! One error type for the shim library. Every variant carries enough context (which file,
//! which mount, which step of container start) for a person to act on the message alone.

use std::path::PathBuf;

/// Errors of the shim library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's `config.json` could not be read or parsed.
    #[error("bundle {bundle}: cannot load config.json: {source}")]
    LoadSpec {
        /// The bundle directory.
        bundle: PathBuf,
        /// What oci-spec said.
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// The bundle parsed but asks for something invalid or unsupported.
    #[error("invalid bundle: {0}")]
    InvalidSpec(String),
    /// A system call failed in the shim itself (not in the container).
    #[error("{context}: {source}")]
    Sys {
        /// What was being done.
        context: String,
        /// The kernel's answer.
        #[source]
        source: nix::Error,
    },
    /// A file operation failed in the shim itself.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// The container's init process reported an error while it set the container up
    /// (mounts, user, capabilities, exec); the message is the init's own.
    #[error("container init: {0}")]
    Init(String),
    /// The protocol between the shim and the container init broke (a process died, or a
    /// message was not the expected one).
    #[error("container start protocol: {0}")]
    Protocol(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn sys(context: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidSpec(message.into())
    }
}
