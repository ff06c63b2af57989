//! The one error type of the engine, and its mapping to gRPC status codes.

/// Errors the engine reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client sent something malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The named object does not exist (e.g. "No such image: busybox:latest").
    #[error("{0}")]
    NotFound(String),
    /// The object exists already (e.g. a container name in use).
    #[error("{0}")]
    AlreadyExists(String),
    /// The object's state does not allow the operation (e.g. removing an image that is
    /// referenced in several repositories without force).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A backing service answered with an error; its code and message go to the client
    /// unchanged.
    #[error("{service}: {}", status.message())]
    Downstream {
        /// "snapshotter" or "builder".
        service: &'static str,
        /// What the service answered.
        status: tonic::Status,
    },
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
    /// Converts the error status of a call to a backing service, keeping its code. A service
    /// that cannot be reached becomes [`Error::Unavailable`], naming it.
    pub fn downstream(service: &'static str, status: tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unavailable => Error::Unavailable {
                service,
                message: status.message().to_string(),
            },
            _ => Error::Downstream { service, status },
        }
    }

    /// The gRPC code this error is reported with.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::Downstream { status, .. } => status.code(),
            Error::Unavailable { .. } => tonic::Code::Unavailable,
            Error::Rpc(_) | Error::Metadata(_) | Error::Io { .. } => tonic::Code::Internal,
        }
    }

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
            Error::NotFound(m) => tonic::Status::not_found(m),
            Error::AlreadyExists(m) => tonic::Status::already_exists(m),
            Error::FailedPrecondition(m) => tonic::Status::failed_precondition(m),
            Error::Downstream { status, .. } => tonic::Status::new(status.code(), status.message()),
            Error::Unavailable { .. } => tonic::Status::unavailable(e.to_string()),
            Error::Rpc(e) => e.into(),
            Error::Metadata(_) | Error::Io { .. } => tonic::Status::internal(e.to_string()),
        }
    }
}
