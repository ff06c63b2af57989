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
    /// A Task API request named something that does not exist (no container yet, an
    /// unknown exec id).
    #[error("{0}")]
    NotFound(String),
    /// A Task API request would create something that exists (Create twice).
    #[error("{0}")]
    AlreadyExists(String),
    /// A Task API request came in the wrong state (Start twice, Delete while running).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A Task API request is malformed (wrong id, relative path, bad signal).
    #[error("{0}")]
    InvalidArgument(String),
    /// The shim of a state directory is gone: no socket, or nobody answers on it. For the
    /// engine's live restore this means "the container's shim died".
    #[error("no shim serves {}: {reason}", state_dir.display())]
    ShimNotFound {
        /// The container's state directory.
        state_dir: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// `berth-shim` could not be started, or did not get ready.
    #[error("spawn berth-shim: {0}")]
    Spawn(String),
    /// The gRPC transport to a shim failed.
    #[error("{context}: {source}")]
    Transport {
        /// What was being done.
        context: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A shim answered a call with an error status.
    #[error("{context}: {}", source.message())]
    Rpc {
        /// The call.
        context: String,
        /// The status.
        #[source]
        source: tonic::Status,
    },
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

impl Error {
    /// True for errors that mean "no such thing": a missing shim, a container not created.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) | Error::ShimNotFound { .. } => true,
            Error::Rpc { source, .. } => source.code() == tonic::Code::NotFound,
            _ => false,
        }
    }
}

/// One mapping from the shim's errors to gRPC codes a client can act on. Setup failures
/// inside the container (exec of a missing binary, a bad mount) are the request's fault in
/// the container's current state, so FailedPrecondition with the init's own message, as
/// `docker run` prints it; failures of the shim itself are Internal.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Init(msg) => tonic::Status::failed_precondition(msg),
            Error::LoadSpec { .. } | Error::InvalidSpec(_) | Error::InvalidArgument(_) => {
                tonic::Status::invalid_argument(e.to_string())
            }
            Error::NotFound(_) | Error::ShimNotFound { .. } => {
                tonic::Status::not_found(e.to_string())
            }
            Error::AlreadyExists(_) => tonic::Status::already_exists(e.to_string()),
            Error::FailedPrecondition(_) | Error::Protocol(_) => {
                tonic::Status::failed_precondition(e.to_string())
            }
            Error::Spawn(_) | Error::Transport { .. } => tonic::Status::unavailable(e.to_string()),
            Error::Rpc { source, .. } => source,
            Error::Sys { .. } | Error::Io { .. } | Error::Cgroup(_) => {
                tonic::Status::internal(e.to_string())
            }
        }
    }
}
