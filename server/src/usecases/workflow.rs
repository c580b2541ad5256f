//! The passage of time, run by the dispatcher's sweep: verifications whose lifetime ran out
//! expire, and workflows whose running step is over move to their next step.

use verify_policy::fallback::Next;

use super::{drop_unsent_messages, new_id};
use crate::decide::Decider;
use crate::domain::{MessageSpec, OutboxMessage, StepMove, SubjectState, VerificationStatus};
use crate::store::{EventLog, Outbox, SqlStore, StoreResult, VerificationRepository};

/// Verifications expired per sweep at most.
const EXPIRE_BATCH: u32 = 100;
/// Workflow steps run per sweep at most.
const STEP_BATCH: u32 = 100;

/// Expires pending verifications whose lifetime ran out by `now_ms`; returns how many.
pub async fn expire_due(store: &SqlStore, now_ms: i64) -> StoreResult<u64> {
    let mut tx = store.begin_background().await?;
    let mut count = 0;
    for mut verification in tx.lock_expired_verifications(now_ms, EXPIRE_BATCH).await? {
        if let Some(event) = verification.expire_if_due(now_ms) {
            tx.save_verification(&verification).await?;
            tx.record([event]);
            drop_unsent_messages(&mut tx, &verification, now_ms).await?;
            count += 1;
        }
    }
    if count == 0 {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(count)
}

/// Moves every verification whose running step is over (its deadline passed unchecked, or its
/// message failed) to what its fallback strategy says: the next step's message with the same
/// code, or a stop. Each move applies only if the verification is still where it was read,
/// so replicas never run a step twice. Returns how many moved.
pub async fn run_due_steps(store: &SqlStore, decider: &Decider, now_ms: i64) -> StoreResult<usize> {
    let mut moved = 0;
    for verification in store
        .verifications_with_due_steps(now_ms, STEP_BATCH)
        .await?
    {
        let Some(deadline) = verification.workflow.step_deadline_ms else {
            continue;
        };
        let messages = store.messages_of(&verification.subject()).await?;
        let (step_move, detail, route) = match decider.next(&verification, &messages) {
            Next::Send(plan) => {
                // The last step has no successor to wait for.
                let deadline_ms =
                    (plan.step + 1 < plan.of).then(|| now_ms + plan.wait.as_millis() as i64);
                let step_move = StepMove::Send {
                    step: plan.step as u32,
                    channel: plan.channel,
                    deadline_ms,
                };
                let route = (plan.carrier().to_string(), plan.failover());
                (step_move, Decider::explain(&plan), Some(route))
            }
            Next::Stop { reason } => (StepMove::Stop, format!("workflow stopped: {reason}"), None),
            Next::Ignore { reason } => {
                tracing::debug!(verification = %verification.id, %reason, "stale workflow event");
                (StepMove::Stop, format!("workflow stopped: {reason}"), None)
            }
        };
        let mut tx = store.begin_background().await?;
        let Some(mut current) = tx.lock_verification(&verification.id).await? else {
            tx.rollback().await?;
            continue;
        };
        let decided_at = (verification.workflow.step, deadline);
        let Some(event) = current.advance(decided_at, &step_move, &detail, now_ms) else {
            tx.rollback().await?;
            continue;
        };
        tx.save_verification(&current).await?;
        tx.record([event]);
        if let (StepMove::Send { step, channel, .. }, Some((carrier, fallback_carriers))) =
            (&step_move, route)
        {
            let (message, queued) = OutboxMessage::queue(
                MessageSpec {
                    id: new_id("msg"),
                    service_id: current.service_id.clone(),
                    subject: current.subject(),
                    channel: *channel,
                    carrier,
                    fallback_carriers,
                    step: *step,
                    trace_parent: crate::telemetry::current_traceparent(),
                },
                &detail,
                SubjectState::Verification(VerificationStatus::Pending),
                now_ms,
            );
            tx.insert_message(&message).await?;
            tx.record([queued]);
        }
        tx.commit().await?;
        tracing::info!(verification = %current.id, "workflow step run");
        moved += 1;
    }
    Ok(moved)
}
