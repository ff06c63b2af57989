//! The one error type of this crate.

use std::path::PathBuf;

/// Errors of the serving and connecting plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path or address.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another live process holds the lock or the socket.
    #[error("another instance is already running ({what}{})", pid.map(|p| format!(", pid {p}")).unwrap_or_default())]
    AlreadyRunning {
        /// The lock file or socket that is taken.
        what: String,
        /// The pid recorded in the lock file, when there is one.
        pid: Option<i32>,
    },
    /// A path that should be a socket is something else; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// An address string could not be parsed.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// Why it was refused.
        reason: String,
    },
    /// The configuration file is unreadable or invalid.
    #[error("config file {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// TLS material is missing or invalid.
    #[error("TLS: {0}")]
    Tls(String),
    /// The gRPC transport failed.
    #[error("{context}: {source}")]
    Transport {
        /// What was being done.
        context: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to I/O results.
pub trait IoContext<T> {
    /// Turns an `io::Error` into [`Error::Io`] with the given context.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::io(context(), source))
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::AlreadyRunning { .. } => tonic::Status::already_exists(msg),
            Error::InvalidAddress { .. } | Error::Config { .. } | Error::Tls(_) => {
                tonic::Status::invalid_argument(msg)
            }
            Error::NotASocket(_) => tonic::Status::failed_precondition(msg),
            Error::Transport { .. } => tonic::Status::unavailable(msg),
            Error::Io { .. } => tonic::Status::internal(msg),
        }
    }
}
