//! The one error type of the engine, and its mapping to gRPC status codes.

/// Errors the engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client sent something malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Metadata(#[from] sled::Error),
    /// A backing service could not be reached or failed.
    #[error("{service} unavailable: {message}")]
    Unavailable {
        /// "snapshotter" or "builder".
        service: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Serving, listening or connecting failed.
    #[error(transparent)]
    Rpc(#[from] berth_rpc::Error),
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with the engine's [`Error`].
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

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            Error::Unavailable { .. } => tonic::Status::unavailable(e.to_string()),
            Error::Rpc(e) => e.into(),
            Error::Metadata(_) | Error::Io { .. } => tonic::Status::internal(e.to_string()),
        }
    }
}
