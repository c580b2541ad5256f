//! Rows to domain types and back: the column lists and the readers every repository shares.

use super::db::{self, Row};
use verify_carrier::Channel;

use crate::domain::{
    DeliveryStatus, Notification, OutboxMessage, StoredCode, Subject, SubjectKind, Verification,
    VerificationStatus, WorkflowState, notification::category_named,
};
use crate::store::{StoreError, StoreResult};

pub(crate) const VERIFICATION_COLUMNS: &str = "id, to_e164, region_code, status, channel, locale, code_length, code_nonce, code_check, \
     checks_used, max_checks, sends_used, max_sends, idempotency_key, classification, created_at_ms, expires_at_ms, updated_at_ms, \
     strategy, workflow, step, step_deadline_ms, step_failure, decision, program_id, number_prefix, service_id, app_hash, autofill_domain";

pub(crate) const MESSAGE_COLUMNS: &str = "id, subject_kind, subject_id, channel, carrier, fallback_carriers, step, status, due_at_ms, \
     claimed_by, attempt, carrier_message_id, detail, created_at_ms, updated_at_ms, service_id, trace_parent";

pub(crate) const NOTIFICATION_COLUMNS: &str = "id, to_e164, region_code, time_zones, category, program_id, template, body, sender, \
     decision, idempotency_key, created_at_ms, service_id";

/// One kind of row read by id: its table, its columns and how to read it.
pub(crate) struct Table<T> {
    name: &'static str,
    columns: &'static str,
    read: fn(&Row) -> StoreResult<T>,
}

/// Verifications, read as [`Verification`].
pub(crate) const VERIFICATIONS: Table<Verification> = Table {
    name: "verifications",
    columns: VERIFICATION_COLUMNS,
    read: verification,
};

/// Notifications, read as [`Notification`].
pub(crate) const NOTIFICATIONS: Table<Notification> = Table {
    name: "notifications",
    columns: NOTIFICATION_COLUMNS,
    read: notification,
};

/// The row of `table` with this id.
pub(crate) async fn by_id<T>(
    exec: db::Exec<'_>,
    table: &Table<T>,
    id: &str,
) -> StoreResult<Option<T>> {
    let sql = format!("SELECT {} FROM {} WHERE id = $1", table.columns, table.name);
    let row = db::query(sql).bind(id).fetch_optional(exec).await?;
    row.as_ref().map(table.read).transpose()
}

/// The rows of `table` with these ids, in no particular order; unknown ids are left out.
pub(crate) async fn by_ids<T>(
    exec: db::Exec<'_>,
    table: &Table<T>,
    ids: &[String],
) -> StoreResult<Vec<T>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let (list, bound) = super::id_list(1, ids);
    let sql = format!(
        "SELECT {} FROM {} WHERE id IN ({list})",
        table.columns, table.name
    );
    db::query(sql)
        .bind_all(bound)
        .fetch_all(exec)
        .await?
        .iter()
        .map(table.read)
        .collect()
}

/// The rows of `table` (aliased `t`) that `clause` selects with its `values`, newest first
/// (ids are time-ordered), at most `limit`: a page of a list.
pub(crate) async fn newest_first<T>(
    exec: db::Exec<'_>,
    table: &Table<T>,
    clause: &str,
    values: Vec<db::Value>,
    limit: u32,
) -> StoreResult<Vec<T>> {
    let columns = table
        .columns
        .split(',')
        .map(|column| format!("t.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns} FROM {} t WHERE {clause} ORDER BY t.id DESC LIMIT {limit}",
        table.name
    );
    db::query(sql)
        .bind_all(values)
        .fetch_all(exec)
        .await?
        .iter()
        .map(table.read)
        .collect()
}

/// Checks that an update by id changed its one row (a row that vanished is corruption).
pub(crate) fn updated_one(rows_affected: u64, what: &str, id: &str) -> StoreResult<()> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("saving missing {what} {id}")))
    }
}

/// A list stored as comma-separated text (carrier names, time zones: neither has commas).
pub(crate) fn join_list(items: &[String]) -> String {
    items.join(",")
}

pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_u32(row: &Row, column: &str) -> StoreResult<u32> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} = {value}")))
}

pub(crate) fn parse_text<T>(
    row: &Row,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> StoreResult<T> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("{column} `{text}`")))
}

pub(crate) fn verification(row: &Row) -> StoreResult<Verification> {
    Ok(Verification {
        id: row.try_get("id")?,
        service_id: row.try_get("service_id")?,
        to_e164: row.try_get("to_e164")?,
        number_prefix: row
            .try_get::<Option<String>>("number_prefix")?
            .unwrap_or_default(),
        region_code: row.try_get("region_code")?,
        status: parse_text(row, "status", VerificationStatus::parse)?,
        channel: parse_text(row, "channel", Channel::parse)?,
        locale: row.try_get("locale")?,
        code_length: parse_u32(row, "code_length")?,
        code: StoredCode {
            nonce: row.try_get("code_nonce")?,
            check: row.try_get("code_check")?,
        },
        checks_used: parse_u32(row, "checks_used")?,
        max_checks: parse_u32(row, "max_checks")?,
        sends_used: parse_u32(row, "sends_used")?,
        max_sends: parse_u32(row, "max_sends")?,
        idempotency_key: row.try_get("idempotency_key")?,
        classification_json: row.try_get("classification")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        workflow: WorkflowState {
            strategy: row.try_get("strategy")?,
            workflow: row.try_get("workflow")?,
            step: parse_u32(row, "step")?,
            step_deadline_ms: row.try_get("step_deadline_ms")?,
            step_failure: row.try_get("step_failure")?,
        },
        decision: row.try_get("decision")?,
        program_id: row.try_get("program_id")?,
        app_hash: row.try_get("app_hash")?,
        autofill_domain: row.try_get("autofill_domain")?,
    })
}

pub(crate) fn message(row: &Row) -> StoreResult<OutboxMessage> {
    let kind = parse_text(row, "subject_kind", SubjectKind::parse)?;
    let subject_id: String = row.try_get("subject_id")?;
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        service_id: row.try_get("service_id")?,
        subject: Subject::new(kind, subject_id),
        channel: parse_text(row, "channel", Channel::parse)?,
        carrier: row.try_get("carrier")?,
        fallback_carriers: split_list(&row.try_get::<String>("fallback_carriers")?),
        step: parse_u32(row, "step")?,
        status: parse_text(row, "status", DeliveryStatus::parse)?,
        due_at_ms: row.try_get("due_at_ms")?,
        claimed_by: row.try_get("claimed_by")?,
        attempt: parse_u32(row, "attempt")?,
        carrier_message_id: row.try_get("carrier_message_id")?,
        detail: row.try_get("detail")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        trace_parent: row.try_get("trace_parent")?,
    })
}

pub(crate) fn notification(row: &Row) -> StoreResult<Notification> {
    Ok(Notification {
        id: row.try_get("id")?,
        service_id: row.try_get("service_id")?,
        to_e164: row.try_get("to_e164")?,
        region_code: row.try_get("region_code")?,
        time_zones: split_list(&row.try_get::<String>("time_zones")?),
        category: parse_text(row, "category", category_named)?,
        program_id: row.try_get("program_id")?,
        template: row.try_get("template")?,
        body: row.try_get("body")?,
        sender: row.try_get("sender")?,
        decision: row.try_get("decision")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}
