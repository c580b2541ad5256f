//! The one place where domain errors become gRPC statuses. Bad input names the field (in the
//! message and as a `google.rpc.BadRequest` detail); internal failures are logged with context
//! and reach the client as a short message without internals.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::store::StoreError;

/// `INVALID_ARGUMENT` naming `field`, with a BadRequest detail for clients that read details.
pub fn invalid_argument(field: &str, reason: impl Into<String>) -> Status {
    let reason = reason.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// `FAILED_PRECONDITION` about `field`: valid input that cannot be served as asked.
pub fn failed_precondition(field: &str, reason: impl Into<String>) -> Status {
    let reason = reason.into();
    Status::with_error_details(
        Code::FailedPrecondition,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// A failure that is ours, not the client's: logged in full, reported briefly.
pub fn internal(context: &str, error: impl std::fmt::Display) -> Status {
    tracing::error!(context, error = %error, "internal error");
    Status::internal(format!("{context} failed; see the server log"))
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            StoreError::NotFound { field, value } => Status::with_error_details(
                Code::NotFound,
                format!("{field}: no verification {value}"),
                ErrorDetails::with_resource_info("verification", value, "", "not found"),
            ),
            StoreError::TooManySends { .. } => {
                Status::new(Code::ResourceExhausted, error.to_string())
            }
            StoreError::CodeLength { expected, got } => invalid_argument(
                "code",
                format!("this verification's code has {expected} digits, got {got}"),
            ),
            StoreError::Conflict(message) => Status::failed_precondition(message),
            StoreError::Corrupt(_) | StoreError::Database(_) => internal("storage", error),
        }
    }
}
