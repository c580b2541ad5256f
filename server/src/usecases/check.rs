//! Check a code, and cancel a verification.

use std::sync::Arc;

use verify_policy::classify;

use super::abuse::CheckGuard;
use super::pending_counts::HeldCounts;
use super::{
    Caller, UseCaseError, UseCases, VerificationView, drop_unsent_messages, input,
    not_found_verification,
};
use crate::clock::now_ms;
use crate::domain::{CheckRefusal, CheckResult, EventKind, Verification};
use crate::store::{EventLog, StoreError, VerificationRepository, WriteTx};

/// Which verification a check is for, as the request named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckTarget {
    /// By id.
    Id(String),
    /// The most recent verification of a number, as typed, in a service (empty: the
    /// caller's own).
    Number {
        /// The number as typed.
        to: String,
        /// The service asked for.
        service_id: String,
    },
    /// Neither was given.
    Missing,
}

impl UseCases {
    /// Checks `code` against the target verification. A repeated check of an approved
    /// verification writes nothing.
    pub async fn check(
        &self,
        caller: &Caller,
        target: CheckTarget,
        code: &str,
    ) -> Result<(CheckResult, VerificationView), UseCaseError> {
        let mut service = String::new();
        let (field, value, by_number) = match &target {
            CheckTarget::Id(id) => {
                input::validate_id("verification_id", id)?;
                ("verification_id", id.clone(), false)
            }
            CheckTarget::Number { to, service_id } => {
                service = caller.service_for(service_id)?;
                input::validate_number_input("to", to)?;
                let classification = classify(to, None);
                match classification.e164 {
                    Some(e164) if classification.valid => ("to", e164, true),
                    _ => {
                        return Err(UseCaseError::invalid(
                            "to",
                            format!("invalid phone number: {}", classification.detail),
                        ));
                    }
                }
            }
            CheckTarget::Missing => {
                return Err(UseCaseError::invalid(
                    "verification_id",
                    "set verification_id (or to) to say which verification to check",
                ));
            }
        };
        input::validate_code(code)?;
        let now = now_ms();
        // A verification that has ended (approved, canceled, expired, out of checks) never
        // changes again, so a check of it (such as the repeated check of an approved one) is
        // answered from its view kept in memory, or from a plain read, without waiting for
        // the write lock. A pending one is read again under the lock, and the check decided
        // on that.
        if !by_number
            && let Some(view) = self.ended.get(&value)
            && caller.sees(&view.verification.service_id)
        {
            let result = view
                .verification
                .clone()
                .check(code, &self.codes, now)
                .map_err(code_length_refused)?
                .result;
            tracing::info!(verification = %view.verification.id, ?result, "code checked");
            return Ok((result, VerificationView::clone(&view)));
        }
        let read = if by_number {
            self.store.latest_verification_of(&service, &value).await?
        } else {
            self.store
                .verification(&value)
                .await?
                .filter(|v| caller.sees(&v.service_id))
        };
        let Some(mut verification) = read else {
            if by_number {
                self.count_probe(&value, None, now).await?;
            }
            return Err(not_found_verification(field, &value));
        };
        if verification.has_ended() {
            let result = verification
                .check(code, &self.codes, now)
                .map_err(code_length_refused)?
                .result;
            if by_number && result != CheckResult::Approved {
                self.count_probe(&value, verification.region_code.as_deref(), now)
                    .await?;
            }
            tracing::info!(verification = %verification.id, ?result, "code checked");
            return Ok((result, self.view_of(verification).await?));
        }
        let codes = self.codes.clone();
        let code = code.to_string();
        let defense = Arc::clone(&self.defense);
        let view = Arc::clone(&self.guard_view);
        let (verification, result, held) = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let found = if by_number {
                        tx.lock_latest_verification_of(&service, &value).await?
                    } else {
                        tx.lock_verification(&value).await?
                    };
                    let mut verification =
                        found.ok_or_else(|| not_found_verification(field, &value))?;
                    // A number cooled off for guessing takes no check until the cool-off ends.
                    let guard = CheckGuard::new(
                        &defense,
                        &view,
                        &verification.to_e164,
                        verification.region_code.as_deref(),
                    );
                    let cool_offs = if verification.has_ended() {
                        Vec::new()
                    } else {
                        guard.before(now)?
                    };
                    let checked = verification
                        .check(&code, &codes, now)
                        .map_err(code_length_refused)?;
                    let mut held = HeldCounts::none();
                    if checked.events.is_empty() {
                        tx.discard();
                    } else {
                        let approved = checked.result == CheckResult::Approved;
                        let wrong = checked.events.iter().any(|event| {
                            matches!(
                                event.kind,
                                EventKind::CheckFailed | EventKind::VerificationMaxAttemptsReached
                            )
                        });
                        save_ended_or_changed(tx, &verification, checked.events, now).await?;
                        held = guard.after(tx, approved, wrong, &cool_offs, now).await?;
                    }
                    Ok::<_, UseCaseError>((verification, checked.result, held))
                })
            })
            .await?;
        held.keep();
        tracing::info!(verification = %verification.id, ?result, "code checked");
        Ok((result, self.view_of(verification).await?))
    }

    /// A check by number that found no pending verification to try the code on counts as a
    /// wrong code for the number, so that checks by number cannot probe many times which
    /// numbers have verifications: after a few, the number is cooled off and every check of
    /// it is answered alike, with the cool-off.
    async fn count_probe(
        &self,
        e164: &str,
        region: Option<&str>,
        now: i64,
    ) -> Result<(), UseCaseError> {
        if !self.defense.guessing.is_on() {
            return Ok(());
        }
        let defense = Arc::clone(&self.defense);
        let view = Arc::clone(&self.guard_view);
        let (e164, region) = (e164.to_string(), region.map(str::to_string));
        let held = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let guard = CheckGuard::new(&defense, &view, &e164, region.as_deref());
                    let cool_offs = guard.before(now)?;
                    Ok::<_, UseCaseError>(guard.after(tx, false, true, &cool_offs, now).await?)
                })
            })
            .await?;
        held.keep();
        Ok(())
    }

    /// Cancels a pending verification; canceling a canceled one changes nothing.
    /// One of another service than the caller's is NOT_FOUND.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<VerificationView, UseCaseError> {
        input::validate_id("verification_id", id)?;
        let now = now_ms();
        let mut tx = self.store.begin().await?;
        let mut verification = tx
            .lock_verification(id)
            .await?
            .filter(|v| caller.sees(&v.service_id))
            .ok_or_else(|| not_found_verification("verification_id", id))?;
        match verification.cancel(now)? {
            Some(event) => {
                save_ended_or_changed(&mut tx, &verification, vec![event], now).await?;
                tx.commit().await?;
                tracing::info!(verification = %id, "verification canceled");
            }
            None => tx.rollback().await?,
        }
        self.view_of(verification).await
    }
}

/// The answer to a code of the wrong length.
fn code_length_refused(refusal: CheckRefusal) -> UseCaseError {
    let CheckRefusal::CodeLength { expected, got } = refusal;
    UseCaseError::invalid(
        "code",
        format!("this verification's code has {expected} digits, got {got}"),
    )
}

/// Saves a changed verification with its events; if it ended, its unsent messages are dropped.
async fn save_ended_or_changed(
    tx: &mut WriteTx,
    verification: &Verification,
    events: Vec<crate::domain::Event>,
    now: i64,
) -> Result<(), StoreError> {
    tx.save_verification(verification).await?;
    tx.record(events);
    drop_unsent_messages(tx, verification, now).await
}
