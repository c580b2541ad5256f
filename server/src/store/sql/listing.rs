//! Lists of verifications and notifications for the API: newest first (ids are time-ordered,
//! so the primary key orders them), filtered, a page at a time after the last id shown.

use super::db::{self, Value};
use super::rows::{self, MESSAGE_COLUMNS};
use crate::domain::{Notification, OutboxMessage, Verification};
use crate::store::StoreResult;

/// What a list selects; every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this service's.
    pub service_id: Option<String>,
    /// Only these stored statuses (a verification's, or a notification's message's); empty
    /// for any.
    pub statuses: Vec<String>,
    /// Only this country.
    pub region_code: Option<String>,
    /// Only this number (E.164).
    pub to_e164: Option<String>,
    /// Only those created at or after this time, unix ms.
    pub created_from_ms: Option<i64>,
    /// Only those created before this time, unix ms.
    pub created_before_ms: Option<i64>,
    /// Only ids before this one (the last one of the page before).
    pub before_id: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// The `WHERE` clause of `filter` on the table aliased `t` (`TRUE` when it has nothing), with
/// its parameters from `$1` on; `status_clause` turns the `IN` list of statuses into a
/// condition.
fn where_clause(
    filter: &ListFilter,
    status_clause: impl Fn(&str) -> String,
) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let next = |value: Value, values: &mut Vec<Value>| {
        values.push(value);
        format!("${}", values.len())
    };
    if let Some(service) = &filter.service_id {
        clauses.push(format!(
            "t.service_id = {}",
            next(service.into(), &mut values)
        ));
    }
    if !filter.statuses.is_empty() {
        let list: Vec<String> = filter
            .statuses
            .iter()
            .map(|status| next(status.into(), &mut values))
            .collect();
        clauses.push(status_clause(&list.join(", ")));
    }
    if let Some(region) = &filter.region_code {
        clauses.push(format!(
            "t.region_code = {}",
            next(region.into(), &mut values)
        ));
    }
    if let Some(to) = &filter.to_e164 {
        clauses.push(format!("t.to_e164 = {}", next(to.into(), &mut values)));
    }
    if let Some(from) = filter.created_from_ms {
        clauses.push(format!(
            "t.created_at_ms >= {}",
            next(from.into(), &mut values)
        ));
    }
    if let Some(before) = filter.created_before_ms {
        clauses.push(format!(
            "t.created_at_ms < {}",
            next(before.into(), &mut values)
        ));
    }
    if let Some(id) = &filter.before_id {
        clauses.push(format!("t.id < {}", next(id.into(), &mut values)));
    }
    if clauses.is_empty() {
        clauses.push("1 = 1".into());
    }
    (clauses.join(" AND "), values)
}

/// A page of verifications.
pub(super) async fn verifications(
    exec: db::Exec<'_>,
    filter: &ListFilter,
) -> StoreResult<Vec<Verification>> {
    let (clause, values) = where_clause(filter, |list| format!("t.status IN ({list})"));
    rows::newest_first(exec, &rows::VERIFICATIONS, &clause, values, filter.limit).await
}

/// A page of notifications (a status filter applies to their messages).
pub(super) async fn notifications(
    exec: db::Exec<'_>,
    filter: &ListFilter,
) -> StoreResult<Vec<Notification>> {
    let (clause, values) = where_clause(filter, |list| {
        format!(
            "EXISTS (SELECT 1 FROM messages m WHERE m.subject_id = t.id AND m.status IN ({list}))"
        )
    });
    rows::newest_first(exec, &rows::NOTIFICATIONS, &clause, values, filter.limit).await
}

/// The messages of `subject_ids`, oldest first.
pub(super) async fn messages_of_subjects(
    exec: db::Exec<'_>,
    subject_ids: &[String],
) -> StoreResult<Vec<OutboxMessage>> {
    if subject_ids.is_empty() {
        return Ok(Vec::new());
    }
    let (list, bound) = super::id_list(1, subject_ids);
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE subject_id IN ({list}) ORDER BY created_at_ms, id"
    );
    db::query(sql)
        .bind_all(bound)
        .fetch_all(exec)
        .await?
        .iter()
        .map(rows::message)
        .collect()
}
