//! The one error type of the snapshotter, and its one mapping to gRPC status codes.
//!
//! Add a variant with a small edit when a module needs a new class of error; keep the
//! mapping in `From<Error> for Status` complete.

/// Errors of the content store, snapshots, layers and image records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named object exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The caller sent something malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object is in a state that does not allow the operation (e.g. a snapshot with
    /// children, an ingest locked by another writer, an image used by a container).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Data did not hash to the digest it claims.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (a blob, a layer, a manifest).
        what: String,
        /// The digest it should have had.
        expected: String,
        /// The digest it had.
        actual: String,
    },
    /// Data was shorter or longer than its descriptor says.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size it should have had.
        expected: u64,
        /// The size it had.
        actual: u64,
    },
    /// A layer archive holds an entry that is refused (escapes the root, malformed
    /// whiteout, unsupported type) or is itself corrupt.
    #[error("layer entry {entry:?}: {reason}")]
    Layer {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// An archive (image tarball) is malformed.
    #[error("invalid archive: {0}")]
    Archive(String),
    /// A filesystem or kernel operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Metadata(#[from] sled::Error),
    /// Shared plumbing (directories, sockets) failed.
    #[error(transparent)]
    Rpc(#[from] berth_rpc::Error),
    /// A read or write position lies past the end of the data (e.g. reading a blob at an
    /// offset beyond its size).
    #[error("{0}")]
    OutOfRange(String),
    /// A call to another service failed with a status that has no domain meaning here
    /// (unavailable, internal, …); kept whole so it reaches our own callers unchanged.
    #[error("remote call failed ({}): {}", .0.code(), .0.message())]
    Remote(tonic::Status),
    /// A registry refused or failed an operation of a pull, push or login.
    #[error(transparent)]
    Registry(#[from] berth_registry_client::Error),
}

/// Result with the snapshotter's [`Error`].
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

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e.into()))
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Status;
        let msg = e.to_string();
        match e {
            Error::NotFound(_) => Status::not_found(msg),
            Error::AlreadyExists(_) => Status::already_exists(msg),
            Error::InvalidArgument(_) | Error::Layer { .. } | Error::Archive(_) => {
                Status::invalid_argument(msg)
            }
            Error::FailedPrecondition(_) => Status::failed_precondition(msg),
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => Status::data_loss(msg),
            Error::Io { .. } | Error::Metadata(_) => Status::internal(msg),
            Error::Rpc(e) => e.into(),
            Error::OutOfRange(_) => Status::out_of_range(msg),
            Error::Remote(status) => status,
            Error::Registry(e) => Status::new(registry_code(&e), msg),
        }
    }
}

/// The gRPC code a registry error maps to.
pub fn registry_code(e: &berth_registry_client::Error) -> tonic::Code {
    use berth_registry_client::Error as R;
    use tonic::Code;
    match e {
        R::InvalidReference { .. } | R::TooLarge(_) | R::Unsupported(_) | R::Config(_) => {
            Code::InvalidArgument
        }
        R::NotFound(_) => Code::NotFound,
        R::Unauthorized(_) => Code::Unauthenticated,
        R::Denied(_) => Code::PermissionDenied,
        R::DigestMismatch { .. } | R::SizeMismatch { .. } => Code::DataLoss,
        R::Stalled(_) | R::Transport(_) => Code::Unavailable,
        R::Http { status, .. } if *status == 429 || *status >= 500 => Code::Unavailable,
        R::Http { .. } | R::Io(_) => Code::Unknown,
    }
}
