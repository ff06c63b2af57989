//! The one error type of the registry client.

/// Errors of references and registry operations.
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
}

/// Result with the registry client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
