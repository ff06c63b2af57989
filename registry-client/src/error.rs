//! The one error type of the registry client.

/// Errors of references and registry operations. Every message is one line a user can act
/// on: it names the registry, repository or digest involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference string does not follow Docker's grammar.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest, blob or repository does not exist, e.g.
    /// `manifest unknown: localhost:5000/x:tag`.
    #[error("{0}")]
    NotFound(String),
    /// The registry wants credentials, or refused the ones given.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are valid but do not grant the access asked for.
    #[error("denied: {0}")]
    Denied(String),
    /// Content does not hash to the digest it was asked for or announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked (a reference or a blob).
        what: String,
        /// The digest asked for or announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Content has another size than announced.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The announced size.
        expected: u64,
        /// The size seen.
        actual: u64,
    },
    /// A document is larger than the client accepts (manifests are capped at 4 MiB).
    #[error("too large: {0}")]
    TooLarge(String),
    /// Content berth does not handle: Docker schema 1, a document that is both manifest and
    /// index, an unknown media type.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The registry stopped sending for longer than the stall timeout, on every attempt.
    #[error("stalled: {0}")]
    Stalled(String),
    /// The registry answered with an unexpected HTTP status.
    #[error("registry error: HTTP {status}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The registry's own error message when it sent one, else what was asked.
        message: String,
    },
    /// The registry could not be reached, or the connection broke (names the URL).
    #[error("{0}")]
    Transport(String),
    /// The client's configuration is invalid (mirror URL, certificates, config.json).
    #[error("configuration: {0}")]
    Config(String),
    /// A local I/O error (credential files, helpers).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// True when trying the same request again may succeed: connection errors, stalls,
    /// 5xx and 429 answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Stalled(_) => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// Result with the registry client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
