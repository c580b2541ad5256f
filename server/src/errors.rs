//! The one place where use-case errors become gRPC statuses. Bad input names the field (in the
//! message and as a `google.rpc.BadRequest` detail); internal failures are logged with context
//! and reach the client as a short message without internals.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::usecases::UseCaseError;

/// `INVALID_ARGUMENT` naming `field`, with a BadRequest detail for clients that read details.
pub fn invalid_argument(field: &str, reason: impl Into<String>) -> Status {
    with_field(Code::InvalidArgument, field, reason.into())
}

/// `FAILED_PRECONDITION` about `field`: valid input that cannot be served as asked.
pub fn failed_precondition(field: &str, reason: impl Into<String>) -> Status {
    with_field(Code::FailedPrecondition, field, reason.into())
}

fn with_field(code: Code, field: &str, reason: String) -> Status {
    Status::with_error_details(
        code,
        format!("{field}: {reason}"),
        ErrorDetails::with_bad_request_violation(field, reason),
    )
}

/// A failure that is ours, not the client's: logged in full, reported briefly.
pub fn internal(context: &str, error: impl std::fmt::Display) -> Status {
    tracing::error!(context, error = %error, "internal error");
    Status::internal(format!("{context} failed; see the server log"))
}

impl From<UseCaseError> for Status {
    fn from(error: UseCaseError) -> Status {
        match error {
            UseCaseError::InvalidArgument { field, reason } => invalid_argument(field, reason),
            UseCaseError::FailedPrecondition { field, reason } => {
                failed_precondition(field, reason)
            }
            UseCaseError::NotFound {
                resource,
                field,
                value,
            } => Status::with_error_details(
                Code::NotFound,
                format!("{field}: no {resource} {value}"),
                ErrorDetails::with_resource_info(resource, value, "", "not found"),
            ),
            UseCaseError::ResourceExhausted(message) => {
                Status::new(Code::ResourceExhausted, message)
            }
            UseCaseError::RateLimited {
                explanation,
                subject,
                retry_after,
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.add_quota_failure_violation(subject, explanation.clone());
                Status::with_error_details(Code::ResourceExhausted, explanation, details)
            }
            UseCaseError::PermissionDenied(message) => Status::permission_denied(message),
            UseCaseError::AlreadyExists(what) => {
                Status::already_exists(format!("{what} exists already"))
            }
            UseCaseError::Contended(what) => Status::aborted(format!(
                "another request changed {what} at the same moment; try again"
            )),
            UseCaseError::Internal { context, detail } => internal(context, detail),
        }
    }
}
