//! Verifications and their idempotency keys.

use super::db;
use async_trait::async_trait;

use super::rows::{self, VERIFICATION_COLUMNS};
use super::{Dialect, WriteTx, id_list, in_chunks, is_unique_violation, value_rows};
use crate::domain::{Verification, VerificationStatus};
use crate::store::{RecordedCode, ServiceKey, StoreError, StoreResult, VerificationRepository};

pub(super) async fn with_due_steps(
    exec: db::Exec<'_>,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<Verification>> {
    let sql = format!(
        "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE status = 'pending' \
         AND step_deadline_ms IS NOT NULL AND step_deadline_ms <= $1 \
         ORDER BY step_deadline_ms, id LIMIT $2"
    );
    db::query(sql)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(exec)
        .await?
        .iter()
        .map(rows::verification)
        .collect()
}

/// The clause that picks the most recent verification of the number bound as `$1` in the
/// service bound as `$2`.
const LATEST_OF_NUMBER: &str = "id = (SELECT id FROM verifications WHERE to_e164 = $1 \
     AND service_id = $2 ORDER BY created_at_ms DESC, id DESC LIMIT 1)";

/// The most recent verification of a number in a service, read without a lock.
pub(super) async fn latest_of(
    exec: db::Exec<'_>,
    service_id: &str,
    e164: &str,
) -> StoreResult<Option<Verification>> {
    let sql = format!("SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE {LATEST_OF_NUMBER}");
    let row = db::query(sql)
        .bind(e164)
        .bind(service_id)
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(rows::verification).transpose()
}

impl WriteTx {
    /// The status a one-column query for verification `id` reads.
    async fn status_of(
        &mut self,
        sql: impl Into<std::borrow::Cow<'static, str>>,
        id: &str,
    ) -> StoreResult<Option<VerificationStatus>> {
        let status: Option<String> = db::query(sql)
            .bind(id)
            .scalar_optional(self.conn().await?)
            .await?;
        status
            .map(|text| {
                VerificationStatus::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("verification status `{text}`")))
            })
            .transpose()
    }

    /// The verification `clause` picks with `values` bound in order, locked.
    async fn lock_one_verification(
        &mut self,
        clause: &'static str,
        values: &[&str],
    ) -> StoreResult<Option<Verification>> {
        let sql = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE {clause}{}",
            self.lock_rows()
        );
        let mut query = db::query(sql);
        for value in values {
            query = query.bind(*value);
        }
        let row = query.fetch_optional(self.conn().await?).await?;
        row.as_ref().map(rows::verification).transpose()
    }
}

#[async_trait]
impl VerificationRepository for WriteTx {
    async fn lock_verification(&mut self, id: &str) -> StoreResult<Option<Verification>> {
        self.lock_one_verification("id = $1", &[id]).await
    }

    async fn verification_status(&mut self, id: &str) -> StoreResult<Option<VerificationStatus>> {
        self.status_of("SELECT status FROM verifications WHERE id = $1", id)
            .await
    }

    async fn lock_verification_status(
        &mut self,
        id: &str,
    ) -> StoreResult<Option<VerificationStatus>> {
        let sql = format!(
            "SELECT status FROM verifications WHERE id = $1{}",
            self.lock_rows()
        );
        self.status_of(sql, id).await
    }

    async fn lock_verification_statuses(
        &mut self,
        ids: &[String],
    ) -> StoreResult<Vec<(String, VerificationStatus)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (list, bound) = id_list(1, ids);
        let sql = format!(
            "SELECT id, status FROM verifications WHERE id IN ({list}) ORDER BY id{}",
            self.lock_rows()
        );
        let rows = db::query(sql)
            .bind_all(bound)
            .fetch_all(self.conn().await?)
            .await?;
        rows.iter()
            .map(|row| {
                let status = rows::parse_text(row, "status", VerificationStatus::parse)?;
                Ok((row.try_get("id")?, status))
            })
            .collect()
    }

    async fn lock_pending_verification_of(
        &mut self,
        service_id: &str,
        e164: &str,
    ) -> StoreResult<Option<Verification>> {
        self.lock_one_verification(
            "to_e164 = $1 AND service_id = $2 AND status = 'pending'",
            &[e164, service_id],
        )
        .await
    }

    async fn lock_latest_verification_of(
        &mut self,
        service_id: &str,
        e164: &str,
    ) -> StoreResult<Option<Verification>> {
        self.lock_one_verification(LATEST_OF_NUMBER, &[e164, service_id])
            .await
    }

    async fn lock_expired_verifications(
        &mut self,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Verification>> {
        let sql = format!(
            "SELECT {VERIFICATION_COLUMNS} FROM verifications WHERE status = 'pending' AND expires_at_ms <= $1 \
             ORDER BY id LIMIT $2{}",
            self.lock_rows()
        );
        db::query(sql)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(rows::verification)
            .collect()
    }

    async fn insert_verification(&mut self, v: &Verification) -> StoreResult<()> {
        self.insert_verifications(std::slice::from_ref(v)).await
    }

    async fn insert_verifications(&mut self, verifications: &[Verification]) -> StoreResult<()> {
        for chunk in in_chunks(verifications) {
            self.insert_verification_rows(chunk).await?;
        }
        Ok(())
    }

    async fn recent_codes(
        &mut self,
        numbers: &[String],
        numbers_since_ms: i64,
        prefixes: &[String],
        prefixes_since_ms: i64,
    ) -> StoreResult<Vec<RecordedCode>> {
        if numbers.is_empty() && prefixes.is_empty() {
            return Ok(Vec::new());
        }
        // The lists go as one parameter each (an array on PostgreSQL, a JSON array on
        // SQLite, joined as the outer loop), so that the statement has one text whatever
        // their lengths; both parts read an index by equality.
        // The pending ones and the recent ones are read apart, each by its own index (a
        // number's whole history is never read).
        let sql = match self.dialect() {
            Dialect::Postgres => {
                "SELECT id, service_id, to_e164, number_prefix, status, sends_used, created_at_ms, updated_at_ms, \
                 expires_at_ms FROM verifications \
                 WHERE number_prefix = ANY($1::text[]) AND created_at_ms >= $2 \
                 UNION ALL SELECT id, service_id, to_e164, number_prefix, status, sends_used, created_at_ms, \
                 updated_at_ms, expires_at_ms FROM verifications \
                 WHERE to_e164 = ANY($3::text[]) AND status = 'pending' \
                 UNION ALL SELECT id, service_id, to_e164, number_prefix, status, sends_used, created_at_ms, \
                 updated_at_ms, expires_at_ms FROM verifications \
                 WHERE to_e164 = ANY($3::text[]) AND created_at_ms >= $4"
            }
            Dialect::Sqlite => {
                "SELECT v.id, v.service_id, v.to_e164, v.number_prefix, v.status, v.sends_used, v.created_at_ms, \
                 v.updated_at_ms, v.expires_at_ms \
                 FROM json_each($1) AS p CROSS JOIN verifications v \
                 ON v.number_prefix = p.value AND v.created_at_ms >= $2 \
                 UNION ALL SELECT v.id, v.service_id, v.to_e164, v.number_prefix, v.status, v.sends_used, \
                 v.created_at_ms, v.updated_at_ms, v.expires_at_ms \
                 FROM json_each($3) AS n CROSS JOIN verifications v \
                 ON v.to_e164 = n.value AND v.status = 'pending' \
                 UNION ALL SELECT v.id, v.service_id, v.to_e164, v.number_prefix, v.status, v.sends_used, \
                 v.created_at_ms, v.updated_at_ms, v.expires_at_ms \
                 FROM json_each($3) AS n CROSS JOIN verifications v \
                 ON v.to_e164 = n.value AND v.created_at_ms >= $4"
            }
        };
        let dialect = self.dialect();
        let list = |values: &[String]| match dialect {
            Dialect::Postgres => postgres_array(values),
            Dialect::Sqlite => serde_json::to_string(values).unwrap_or_default(),
        };
        let (prefixes, numbers) = (list(prefixes), list(numbers));
        let rows = db::query(sql)
            .bind(prefixes)
            .bind(prefixes_since_ms)
            .bind(numbers)
            .bind(numbers_since_ms)
            .fetch_all(self.conn().await?)
            .await?;
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        let mut codes = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            if !seen.insert(id.clone()) {
                continue;
            }
            let status: String = row.try_get("status")?;
            let sends: i64 = row.try_get("sends_used")?;
            let updated_at_ms: i64 = row.try_get("updated_at_ms")?;
            let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
            codes.push(RecordedCode {
                id,
                service_id: row.try_get("service_id")?,
                e164: row.try_get("to_e164")?,
                number_prefix: row
                    .try_get::<Option<String>>("number_prefix")?
                    .unwrap_or_default(),
                pending: status == VerificationStatus::Pending.as_str(),
                approved: status == VerificationStatus::Approved.as_str(),
                sends: u32::try_from(sends.max(0)).unwrap_or(u32::MAX),
                created_at_ms: row.try_get("created_at_ms")?,
                sent_by_ms: updated_at_ms.min(expires_at_ms),
            });
        }
        Ok(codes)
    }

    async fn verification_keys_in_use(
        &mut self,
        keys: &[ServiceKey],
    ) -> StoreResult<Vec<ServiceKey>> {
        // Keys are few per group, and almost always of one or two services: one statement per
        // service.
        let mut services: Vec<&str> = keys.iter().map(|k| k.service_id.as_str()).collect();
        services.sort_unstable();
        services.dedup();
        let mut found = Vec::new();
        for service in services {
            let of_service: Vec<String> = keys
                .iter()
                .filter(|k| k.service_id == service)
                .map(|k| k.key.clone())
                .collect();
            let (list, bound) = id_list(2, &of_service);
            let used: Vec<String> = db::query(format!(
                "SELECT idempotency_key FROM idempotency_keys WHERE service_id = $1 \
                 AND idempotency_key IN ({list})"
            ))
            .bind(service)
            .bind_all(bound)
            .scalar_all(self.conn().await?)
            .await?;
            found.extend(used.into_iter().map(|key| ServiceKey {
                service_id: service.to_string(),
                key,
            }));
        }
        Ok(found)
    }

    async fn save_verification(&mut self, v: &Verification) -> StoreResult<()> {
        let updated = db::query(
            "UPDATE verifications SET status = $1, channel = $2, checks_used = $3, sends_used = $4, updated_at_ms = $5, \
             step = $6, step_deadline_ms = $7, step_failure = $8 WHERE id = $9",
        )
        .bind(v.status.as_str())
        .bind(v.channel.as_str())
        .bind(i64::from(v.checks_used))
        .bind(i64::from(v.sends_used))
        .bind(v.updated_at_ms)
        .bind(i64::from(v.workflow.step))
        .bind(v.workflow.step_deadline_ms)
        .bind(&v.workflow.step_failure)
        .bind(&v.id)
        .execute(self.conn().await?)
        .await?
        .rows_affected();
        rows::updated_one(updated, "verification", &v.id)
    }

    async fn verification_for_key(
        &mut self,
        key: &ServiceKey,
    ) -> StoreResult<Option<(String, String)>> {
        let row = db::query(
            "SELECT verification_id, to_e164 FROM idempotency_keys WHERE service_id = $1 \
             AND idempotency_key = $2",
        )
        .bind(&key.service_id)
        .bind(&key.key)
        .fetch_optional(self.conn().await?)
        .await?;
        row.map(|row| Ok((row.try_get("verification_id")?, row.try_get("to_e164")?)))
            .transpose()
    }

    async fn remember_verification_key(
        &mut self,
        key: &ServiceKey,
        id: &str,
        e164: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        let result = db::query(
            "INSERT INTO idempotency_keys (service_id, idempotency_key, verification_id, to_e164, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&key.service_id)
        .bind(&key.key)
        .bind(id)
        .bind(e164)
        .bind(now_ms)
        .execute(self.conn().await?)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => {
                Err(StoreError::Contended("an idempotency key".into()))
            }
            Err(error) => Err(error),
        }
    }
}

impl WriteTx {
    /// Inserts `verifications` (at least one) in one statement.
    async fn insert_verification_rows(
        &mut self,
        verifications: &[Verification],
    ) -> StoreResult<()> {
        let first = &verifications[0];
        let sql = format!(
            "INSERT INTO verifications (id, to_e164, region_code, status, channel, locale, code_length, code_nonce, code_check, \
             checks_used, max_checks, sends_used, max_sends, idempotency_key, classification, created_at_ms, expires_at_ms, updated_at_ms, \
             strategy, workflow, step, step_deadline_ms, step_failure, decision, program_id, number_prefix, service_id, app_hash, autofill_domain) VALUES {}",
            value_rows(29, verifications.len())
        );
        let mut query = db::query(sql);
        for v in verifications {
            query = query
                .bind(&v.id)
                .bind(&v.to_e164)
                .bind(&v.region_code)
                .bind(v.status.as_str())
                .bind(v.channel.as_str())
                .bind(&v.locale)
                .bind(i64::from(v.code_length))
                .bind(&v.code.nonce)
                .bind(&v.code.check)
                .bind(i64::from(v.checks_used))
                .bind(i64::from(v.max_checks))
                .bind(i64::from(v.sends_used))
                .bind(i64::from(v.max_sends))
                .bind(&v.idempotency_key)
                .bind(&v.classification_json)
                .bind(v.created_at_ms)
                .bind(v.expires_at_ms)
                .bind(v.updated_at_ms)
                .bind(&v.workflow.strategy)
                .bind(&v.workflow.workflow)
                .bind(i64::from(v.workflow.step))
                .bind(v.workflow.step_deadline_ms)
                .bind(&v.workflow.step_failure)
                .bind(&v.decision)
                .bind(&v.program_id)
                .bind(&v.number_prefix)
                .bind(&v.service_id)
                .bind(&v.app_hash)
                .bind(&v.autofill_domain);
        }
        match query.execute(self.conn().await?).await {
            Ok(_) => Ok(()),
            // Two Verify calls for one number race on the one-pending-per-number index.
            Err(error) if is_unique_violation(&error) => Err(StoreError::Contended(format!(
                "a pending verification of {}",
                verify_carrier::mask_number(&first.to_e164)
            ))),
            Err(error) => Err(error),
        }
    }
}

/// `values` as a PostgreSQL array literal of texts (`{"a","b"}`).
fn postgres_array(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|value| format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", quoted.join(","))
}
