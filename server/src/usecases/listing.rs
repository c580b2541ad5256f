//! Lists and lookups beyond one id: verifications and notifications by filters a page at a
//! time, a number's latest verification, and canceling a notification not sent yet.

use base64::Engine as _;
use verify_policy::classify;

use super::caller::Caller;
use super::{
    NotificationView, UseCaseError, UseCases, VerificationView, input, not_found_verification,
};
use crate::clock::now_ms;
use crate::domain::{NotificationStatus, VerificationStatus};
use crate::store::{EventLog, ListFilter, Outbox};

/// Items per page when a request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Most items per page (larger requests get this many).
pub const MAX_PAGE_SIZE: u32 = 500;

/// What a list request selects, as the transport parsed it.
#[derive(Debug, Clone, Default)]
pub struct ListInput<S> {
    /// The service asked for; empty for all the caller sees.
    pub service_id: String,
    /// Only these statuses; empty for any.
    pub statuses: Vec<S>,
    /// Only this country (ISO 3166-1 alpha-2); empty for any.
    pub region_code: String,
    /// Only this number; empty for any.
    pub to: String,
    /// Only those created at or after this time, unix ms.
    pub created_after_ms: Option<i64>,
    /// Only those created before this time, unix ms.
    pub created_before_ms: Option<i64>,
    /// Items per page; 0 for the default.
    pub page_size: u32,
    /// The token of the page before; empty for the first page.
    pub page_token: String,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

/// Most statuses one list request may name.
const MAX_STATUSES: usize = 16;

/// Prefix of page tokens (a token of another format is refused, not misread).
const TOKEN_PREFIX: &str = "after:";

pub(super) fn page_token_of(last_id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{last_id}"))
}

pub(super) fn id_of_page_token(token: &str) -> Result<Option<String>, UseCaseError> {
    if token.is_empty() {
        return Ok(None);
    }
    let refused = || {
        UseCaseError::invalid(
            "page_token",
            "not a token this server gave; pass the `next_page_token` of the page before",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| refused())?;
    let text = String::from_utf8(bytes).map_err(|_| refused())?;
    let id = text.strip_prefix(TOKEN_PREFIX).ok_or_else(refused)?;
    input::validate_id("page_token", id).map_err(|_| refused())?;
    Ok(Some(id.to_string()))
}

impl<S> ListInput<S> {
    /// The store's filter for this request by `caller`, with the stored names of its
    /// statuses; one more than a page is asked for, to know whether another follows.
    fn filter(
        &self,
        caller: &Caller,
        stored_statuses: Vec<String>,
    ) -> Result<(ListFilter, u32), UseCaseError> {
        let service_id = caller.events_of(&self.service_id)?;
        if self.statuses.len() > MAX_STATUSES {
            return Err(UseCaseError::invalid(
                "statuses",
                format!("at most {MAX_STATUSES} statuses"),
            ));
        }
        let region_code = match self.region_code.trim() {
            "" => None,
            region if region.len() == 2 && region.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Some(region.to_ascii_uppercase())
            }
            region => {
                return Err(UseCaseError::invalid(
                    "region_code",
                    format!("`{region}` is not an ISO 3166-1 alpha-2 code such as IN"),
                ));
            }
        };
        let to_e164 = match self.to.trim() {
            "" => None,
            to => Some(e164_of("to", to)?),
        };
        if let (Some(after), Some(before)) = (self.created_after_ms, self.created_before_ms)
            && after >= before
        {
            return Err(UseCaseError::invalid(
                "created_before",
                "must be later than created_after",
            ));
        }
        let page_size = match self.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let filter = ListFilter {
            service_id,
            statuses: stored_statuses,
            region_code,
            to_e164,
            created_from_ms: self.created_after_ms,
            created_before_ms: self.created_before_ms,
            before_id: id_of_page_token(&self.page_token)?,
            limit: page_size + 1,
        };
        Ok((filter, page_size))
    }
}

/// A valid number's E.164 form; `field` names it in the refusal.
fn e164_of(field: &'static str, to: &str) -> Result<String, UseCaseError> {
    input::validate_number_input(field, to)?;
    let classification = classify(to, None);
    match classification.e164 {
        Some(e164) if classification.valid => Ok(e164),
        _ => Err(UseCaseError::invalid(
            field,
            format!("invalid phone number: {}", classification.detail),
        )),
    }
}

/// The first `page_size` of `items` and the token of the next page when there are more.
fn page<T>(mut items: Vec<T>, page_size: u32, id: impl Fn(&T) -> &str) -> Page<T> {
    let more = items.len() > page_size as usize;
    items.truncate(page_size as usize);
    let next_page_token = match (more, items.last()) {
        (true, Some(last)) => page_token_of(id(last)),
        _ => String::new(),
    };
    Page {
        items,
        next_page_token,
    }
}

impl UseCases {
    /// The latest verification of a number in a service (the one named, or the caller's).
    pub async fn latest_verification(
        &self,
        caller: &Caller,
        to: &str,
        service_id: &str,
    ) -> Result<VerificationView, UseCaseError> {
        let service = caller.service_for(service_id)?;
        let e164 = e164_of("to", to)?;
        let verification = self
            .store
            .latest_verification_of(&service, &e164)
            .await?
            .ok_or_else(|| not_found_verification("to", &e164))?;
        self.view_of(verification).await
    }

    /// A page of the verifications the caller sees, newest first, without their messages.
    pub async fn list_verifications(
        &self,
        caller: &Caller,
        request: &ListInput<VerificationStatus>,
    ) -> Result<Page<VerificationView>, UseCaseError> {
        let statuses = request
            .statuses
            .iter()
            .map(|status| status.as_str().to_string())
            .collect();
        let (filter, page_size) = request.filter(caller, statuses)?;
        let found = self.store.list_verifications(&filter).await?;
        let views = found
            .into_iter()
            .map(|verification| VerificationView {
                verification,
                messages: Vec::new(),
            })
            .collect();
        Ok(page(views, page_size, |view| &view.verification.id))
    }

    /// A page of the notifications the caller sees, newest first.
    pub async fn list_notifications(
        &self,
        caller: &Caller,
        request: &ListInput<NotificationStatus>,
    ) -> Result<Page<NotificationView>, UseCaseError> {
        let statuses = request
            .statuses
            .iter()
            .flat_map(|status| status.message_statuses())
            .map(|status| status.as_str().to_string())
            .collect();
        let (filter, page_size) = request.filter(caller, statuses)?;
        let found = self.store.list_notifications(&filter).await?;
        let views = found
            .into_iter()
            .map(|(notification, message)| NotificationView {
                notification,
                message,
            })
            .collect();
        Ok(page(views, page_size, |view| &view.notification.id))
    }

    /// Cancels a notification whose message has not gone to a carrier; one of another
    /// service than the caller's is NOT_FOUND.
    pub async fn cancel_notification(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<NotificationView, UseCaseError> {
        let view = self.get_notification(caller, id).await?;
        let notification = view.notification;
        let mut tx = self.store.begin().await?;
        let mut message = tx.lock_message(&view.message.id).await?.ok_or_else(|| {
            UseCaseError::internal("storage", format!("notification {id} lost its message"))
        })?;
        match notification.cancel(&mut message, now_ms()) {
            Ok(Some(event)) => {
                tx.save_message(&message).await?;
                tx.record([event]);
                tx.commit().await?;
                tracing::info!(notification = %id, by = caller.name(), "notification canceled");
            }
            Ok(None) => tx.rollback().await?,
            Err(refusal) => {
                tx.rollback().await?;
                return Err(UseCaseError::precondition(
                    "notification_id",
                    refusal
                        .to_string()
                        .trim_start_matches("notification_id: ")
                        .to_string(),
                ));
            }
        }
        Ok(NotificationView {
            notification,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_others_are_refused() {
        let token = page_token_of("vf_0190a1b2c3d4");
        assert_eq!(
            id_of_page_token(&token).unwrap().as_deref(),
            Some("vf_0190a1b2c3d4")
        );
        assert_eq!(id_of_page_token("").unwrap(), None);
        for bad in ["vf_0190a1b2c3d4", "!!!", "YWZ0ZXI6"] {
            assert!(matches!(
                id_of_page_token(bad),
                Err(UseCaseError::InvalidArgument {
                    field: "page_token",
                    ..
                })
            ));
        }
        let paged = page(vec!["a", "b", "c"], 2, |s| s);
        assert_eq!(paged.items, ["a", "b"]);
        assert_eq!(
            id_of_page_token(&paged.next_page_token).unwrap().as_deref(),
            Some("b")
        );
        assert!(page(vec!["a"], 2, |s| s).next_page_token.is_empty());
    }
}
