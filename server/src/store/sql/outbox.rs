//! The outbox: every message of every subject, the dispatchers' claims and hand-offs.

use super::db;
use async_trait::async_trait;

use super::rows::{self, MESSAGE_COLUMNS, join_list};
use super::{Dialect, WriteTx, id_list, in_chunks, value_rows};
use crate::domain::{DeliveryStatus, OutboxMessage, Subject};
use crate::store::{Outbox, StoreError, StoreResult};

pub(super) async fn of_subject(
    exec: db::Exec<'_>,
    subject: &Subject,
) -> StoreResult<Vec<OutboxMessage>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE subject_id = $1 AND subject_kind = $2 \
         ORDER BY created_at_ms, id"
    );
    db::query(sql)
        .bind(subject.id())
        .bind(subject.kind().as_str())
        .fetch_all(exec)
        .await?
        .iter()
        .map(rows::message)
        .collect()
}

/// `'scheduled', 'queued'`: the states a dispatcher claims from.
fn claimable() -> String {
    DeliveryStatus::CLAIMABLE
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statuses of `messages_unsettled_by_subject`, as its predicate writes them.
const UNSETTLED: &str = "'scheduled', 'queued', 'claimed', 'sending'";

/// The messages a dispatcher holds.
const HELD_BY: &str = "claimed_by = $1 AND status IN ('claimed', 'sending')";

impl WriteTx {
    async fn lock_messages(
        &mut self,
        clause: &str,
        values: &[&str],
    ) -> StoreResult<Vec<OutboxMessage>> {
        self.select_messages(clause, values, true).await
    }

    /// The messages `clause` selects, oldest first; locked when `lock` says so.
    async fn select_messages(
        &mut self,
        clause: &str,
        values: &[&str],
        lock: bool,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {clause} ORDER BY created_at_ms, id{}",
            if lock { self.lock_rows() } else { "" }
        );
        let mut query = db::query(sql);
        for value in values {
            query = query.bind(*value);
        }
        query
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(rows::message)
            .collect()
    }
}

impl WriteTx {
    /// The messages of `ids`, in the order of their ids; locked when `lock` says so.
    async fn messages_by_ids(
        &mut self,
        ids: &[String],
        lock: bool,
    ) -> StoreResult<Vec<OutboxMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (list, bound) = id_list(1, ids);
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({list}) ORDER BY id{}",
            if lock { self.lock_rows() } else { "" }
        );
        db::query(sql)
            .bind_all(bound)
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(rows::message)
            .collect()
    }
}

#[async_trait]
impl Outbox for WriteTx {
    async fn insert_message(&mut self, m: &OutboxMessage) -> StoreResult<()> {
        self.insert_messages(std::slice::from_ref(m)).await
    }

    async fn insert_messages(&mut self, messages: &[OutboxMessage]) -> StoreResult<()> {
        for chunk in in_chunks(messages) {
            self.insert_message_rows(chunk).await?;
        }
        Ok(())
    }

    async fn save_message(&mut self, m: &OutboxMessage) -> StoreResult<()> {
        // Written with the others saved before the write's next statement (see `WriteTx`).
        self.unsaved_messages.push(m.clone());
        Ok(())
    }

    async fn read_message(&mut self, id: &str) -> StoreResult<Option<OutboxMessage>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
        let row = db::query(sql)
            .bind(id)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(rows::message).transpose()
    }

    async fn message_id_by_carrier_id(
        &mut self,
        carrier: &str,
        carrier_message_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(
            db::query("SELECT id FROM messages WHERE carrier = $1 AND carrier_message_id = $2")
                .bind(carrier)
                .bind(carrier_message_id)
                .scalar_optional(self.conn().await?)
                .await?,
        )
    }

    async fn lock_messages_by_ids(&mut self, ids: &[String]) -> StoreResult<Vec<OutboxMessage>> {
        self.messages_by_ids(ids, true).await
    }

    async fn read_messages(&mut self, ids: &[String]) -> StoreResult<Vec<OutboxMessage>> {
        self.messages_by_ids(ids, false).await
    }

    async fn lock_message(&mut self, id: &str) -> StoreResult<Option<OutboxMessage>> {
        Ok(self.lock_messages("id = $1", &[id]).await?.pop())
    }

    async fn lock_unsent_messages_of(
        &mut self,
        subject: &Subject,
    ) -> StoreResult<Vec<OutboxMessage>> {
        // The first status list is the partial index's (`messages_unsettled_by_subject`),
        // word for word, so that SQLite uses it.
        let clause = format!(
            "subject_id = $1 AND subject_kind = $2 AND status IN ({UNSETTLED}) AND status IN ({})",
            claimable()
        );
        self.lock_messages(&clause, &[subject.id(), subject.kind().as_str()])
            .await
    }

    async fn claim_due_messages(
        &mut self,
        worker: &str,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        // PostgreSQL: rows another claimer holds are skipped, not waited for. SQLite has one
        // writer at a time.
        let skip_locked = match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        // Each priority in turn, the most urgent first, each read in order from the index of
        // claimable messages (one statement sorting every due message costs a campaign's
        // whole queue on every claim).
        let sql = format!(
            "UPDATE messages SET status = 'claimed', claimed_by = $1, updated_at_ms = $2 \
             WHERE id IN (SELECT id FROM messages WHERE status IN ({}) AND priority = $4 \
             AND due_at_ms <= $2 ORDER BY due_at_ms, id LIMIT $3{skip_locked}) RETURNING {MESSAGE_COLUMNS}",
            claimable()
        );
        let mut claimed = Vec::new();
        for priority in OutboxMessage::PRIORITIES {
            let room = i64::from(limit) - claimed.len() as i64;
            if room <= 0 {
                break;
            }
            let rows = db::query(sql.clone())
                .bind(worker)
                .bind(now_ms)
                .bind(room)
                .bind(priority)
                .fetch_all(self.conn().await?)
                .await?;
            for row in &rows {
                claimed.push(rows::message(row)?);
            }
        }
        claimed.sort_by(|a, b| {
            (a.priority(), a.due_at_ms, &a.id).cmp(&(b.priority(), b.due_at_ms, &b.id))
        });
        Ok(claimed)
    }

    async fn hand_off(
        &mut self,
        worker: &str,
        ids: &[String],
        now_ms: i64,
    ) -> StoreResult<Vec<(String, u32)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (list, bound) = id_list(3, ids);
        let update = format!(
            "UPDATE messages SET status = 'sending', attempt = attempt + 1, updated_at_ms = $1 \
             WHERE claimed_by = $2 AND status = 'claimed' AND id IN ({list})"
        );
        db::query(update)
            .bind(now_ms)
            .bind(worker)
            .bind_all(bound)
            .execute(self.conn().await?)
            .await?;
        // Those it already handed over count too: a retry after a commit whose answer was
        // lost finds them so, and must still send them, with the attempt recorded then.
        let (list, bound) = id_list(2, ids);
        let handed = format!(
            "SELECT id, attempt FROM messages WHERE claimed_by = $1 AND status = 'sending' AND id IN ({list})"
        );
        db::query(handed)
            .bind(worker)
            .bind_all(bound)
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(|row| {
                let attempt: i64 = row.try_get("attempt")?;
                Ok((
                    row.try_get("id")?,
                    u32::try_from(attempt).unwrap_or(u32::MAX),
                ))
            })
            .collect()
    }

    async fn messages_held_by(&mut self, worker: &str) -> StoreResult<Vec<OutboxMessage>> {
        self.select_messages(HELD_BY, &[worker], false).await
    }

    async fn lock_messages_held_by(&mut self, worker: &str) -> StoreResult<Vec<OutboxMessage>> {
        self.select_messages(HELD_BY, &[worker], true).await
    }

    async fn lock_messages_of_unregistered_holders(
        &mut self,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let limit = limit.to_string();
        let held = "status IN ('claimed', 'sending') AND claimed_by IS NOT NULL \
                    AND claimed_by NOT IN (SELECT id FROM dispatcher_workers)";
        let clause = format!(
            "{held} AND id IN (SELECT id FROM messages WHERE {held} ORDER BY id LIMIT {limit})"
        );
        self.lock_messages(&clause, &[]).await
    }
}

/// Whether a subject has messages not yet settled by a carrier (due, held, or being handed
/// over).
pub(super) async fn has_unsettled(exec: db::Exec<'_>, subject: &Subject) -> StoreResult<bool> {
    let sql = format!(
        "SELECT 1 FROM messages WHERE subject_id = $1 AND subject_kind = $2 AND status IN ({UNSETTLED}) LIMIT 1"
    );
    let found: Option<i64> = db::query(sql)
        .bind(subject.id())
        .bind(subject.kind().as_str())
        .scalar_optional(exec)
        .await?;
    Ok(found.is_some())
}

impl WriteTx {
    /// Inserts `messages` in one statement.
    async fn insert_message_rows(&mut self, messages: &[OutboxMessage]) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO messages (id, subject_kind, subject_id, channel, carrier, fallback_carriers, step, status, due_at_ms, \
             claimed_by, attempt, carrier_message_id, detail, created_at_ms, updated_at_ms, service_id, trace_parent, priority) VALUES {}",
            value_rows(18, messages.len())
        );
        let mut query = db::query(sql);
        for m in messages {
            query = query
                .bind(&m.id)
                .bind(m.subject.kind().as_str())
                .bind(m.subject.id())
                .bind(m.channel.as_str())
                .bind(&m.carrier)
                .bind(join_list(&m.fallback_carriers))
                .bind(i64::from(m.step));
            query = bind_delivery_state(query, m)
                .bind(m.created_at_ms)
                .bind(m.updated_at_ms)
                .bind(&m.service_id)
                .bind(m.trace_parent.as_deref())
                .bind(m.priority());
        }
        query.execute(self.conn().await?).await?;
        Ok(())
    }
}

/// Writes a changed message.
pub(super) async fn update_message(exec: db::Exec<'_>, m: &OutboxMessage) -> StoreResult<()> {
    let query = db::query(
        "UPDATE messages SET carrier = $1, fallback_carriers = $2, status = $3, due_at_ms = $4, claimed_by = $5, \
         attempt = $6, carrier_message_id = $7, detail = $8, updated_at_ms = $9 WHERE id = $10",
    )
    .bind(&m.carrier)
    .bind(join_list(&m.fallback_carriers));
    let updated = bind_delivery_state(query, m)
        .bind(m.updated_at_ms)
        .bind(&m.id)
        .execute(exec)
        .await?
        .rows_affected();
    rows::updated_one(updated, "message", &m.id)
}

/// Writes changed messages (each once) with one statement: an `UPDATE` joined with the new
/// values, row by row (`VALUES` columns are `column1`, `column2`... on both databases).
pub(super) async fn update_messages(
    exec: db::Exec<'_>,
    messages: &[OutboxMessage],
) -> StoreResult<()> {
    if let [message] = messages {
        return update_message(exec, message).await;
    }
    let sql = format!(
        "UPDATE messages SET carrier = v.column2, fallback_carriers = v.column3, status = v.column4, \
         due_at_ms = v.column5, claimed_by = v.column6, attempt = v.column7, carrier_message_id = v.column8, \
         detail = v.column9, updated_at_ms = v.column10 FROM (VALUES {}) AS v WHERE messages.id = v.column1",
        value_rows(10, messages.len())
    );
    let mut query = db::query(sql);
    for m in messages {
        query = query
            .bind(&m.id)
            .bind(&m.carrier)
            .bind(join_list(&m.fallback_carriers));
        query = bind_delivery_state(query, m).bind(m.updated_at_ms);
    }
    let updated = query.execute(exec).await?.rows_affected();
    if updated != messages.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "{} of {} messages to save were not found",
            messages.len() as u64 - updated.min(messages.len() as u64),
            messages.len()
        )));
    }
    Ok(())
}

/// Binds a message's delivery state, in this order: status, due time, holder, attempt,
/// carrier's id, detail.
fn bind_delivery_state(query: db::Query, m: &OutboxMessage) -> db::Query {
    query
        .bind(m.status.as_str())
        .bind(m.due_at_ms)
        .bind(&m.claimed_by)
        .bind(i64::from(m.attempt))
        .bind(&m.carrier_message_id)
        .bind(&m.detail)
}
