//! Campaigns, their recipients and the lines they rejected.

use std::collections::BTreeMap;

use async_trait::async_trait;
use verify_carrier::Channel;

use super::db::{self, Row};
use super::rows::{parse_text, updated_one};
use super::{Dialect, WriteTx, in_chunks, is_unique_violation, value_rows};
use crate::domain::DeliveryStatus;
use crate::domain::campaign::{
    Campaign, CampaignSpec, CampaignStatus, LandlineAction, Recipient, RecipientState,
    RecipientTally, Rejection,
};
use crate::domain::notification::category_named;
use crate::store::{CampaignRepository, ServiceKey, StoreError, StoreResult};

pub(super) const CAMPAIGN_COLUMNS: &str = "id, service_id, name, category, program_id, template, bodies, default_locale, \
     variable_names, sender, senders_by_region, start_at_ms, deadline_ms, landline_action, tracks_confirmation, status, accepted, rejected, \
     idempotency_key, created_at_ms, updated_at_ms, finished_at_ms";

const RECIPIENT_COLUMNS: &str = "campaign_id, line, to_e164, region_code, channel, route, locale, vars, state, not_before_ms, detail, message_id";

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn campaign(row: &Row) -> StoreResult<Campaign> {
    let bodies: String = row.try_get("bodies")?;
    let variable_names: String = row.try_get("variable_names")?;
    let corrupt = |what: &str, error: serde_json::Error| {
        StoreError::Corrupt(format!("campaign {what}: {error}"))
    };
    Ok(Campaign {
        id: row.try_get("id")?,
        service_id: row.try_get("service_id")?,
        spec: CampaignSpec {
            name: row.try_get("name")?,
            category: parse_text(row, "category", category_named)?,
            program_id: row.try_get("program_id")?,
            template: row.try_get("template")?,
            bodies: serde_json::from_str::<BTreeMap<String, String>>(&bodies)
                .map_err(|e| corrupt("bodies", e))?,
            default_locale: row.try_get("default_locale")?,
            variable_names: serde_json::from_str(&variable_names)
                .map_err(|e| corrupt("variable names", e))?,
            sender: row.try_get("sender")?,
            senders_by_region: serde_json::from_str(&row.try_get::<String>("senders_by_region")?)
                .map_err(|e| corrupt("senders", e))?,
            start_at_ms: row.try_get("start_at_ms")?,
            deadline_ms: row.try_get("deadline_ms")?,
            landline_action: parse_text(row, "landline_action", LandlineAction::parse)?,
            tracks_confirmation: row.try_get::<i64>("tracks_confirmation")? != 0,
        },
        status: parse_text(row, "status", CampaignStatus::parse)?,
        accepted: to_u64(row.try_get("accepted")?),
        rejected: to_u64(row.try_get("rejected")?),
        idempotency_key: row.try_get("idempotency_key")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
    })
}

fn recipient(row: &Row) -> StoreResult<Recipient> {
    let vars: String = row.try_get("vars")?;
    Ok(Recipient {
        campaign_id: row.try_get("campaign_id")?,
        line: to_u64(row.try_get("line")?),
        to_e164: row.try_get("to_e164")?,
        region_code: row.try_get("region_code")?,
        channel: parse_text(row, "channel", Channel::parse)?,
        route: row.try_get("route")?,
        locale: row.try_get("locale")?,
        values: if vars.is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(&vars)
                .map_err(|e| StoreError::Corrupt(format!("recipient values: {e}")))?
        },
        state: parse_text(row, "state", RecipientState::parse)?,
        not_before_ms: row.try_get("not_before_ms")?,
        detail: row.try_get("detail")?,
        message_id: row.try_get("message_id")?,
    })
}

fn values_text(values: &[String]) -> String {
    if values.is_empty() {
        String::new()
    } else {
        serde_json::to_string(values).unwrap_or_default()
    }
}

#[async_trait]
impl CampaignRepository for WriteTx {
    async fn insert_campaign(&mut self, c: &Campaign) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES ({})",
            super::placeholders(1, 22)
        );
        let result = db::query(sql)
            .bind(&c.id)
            .bind(&c.service_id)
            .bind(&c.spec.name)
            .bind(c.spec.category.as_str())
            .bind(&c.spec.program_id)
            .bind(&c.spec.template)
            .bind(serde_json::to_string(&c.spec.bodies).unwrap_or_default())
            .bind(&c.spec.default_locale)
            .bind(serde_json::to_string(&c.spec.variable_names).unwrap_or_default())
            .bind(&c.spec.sender)
            .bind(serde_json::to_string(&c.spec.senders_by_region).unwrap_or_default())
            .bind(c.spec.start_at_ms)
            .bind(c.spec.deadline_ms)
            .bind(c.spec.landline_action.as_str())
            .bind(i64::from(c.spec.tracks_confirmation))
            .bind(c.status.as_str())
            .bind(to_i64(c.accepted))
            .bind(to_i64(c.rejected))
            .bind(&c.idempotency_key)
            .bind(c.created_at_ms)
            .bind(c.updated_at_ms)
            .bind(c.finished_at_ms)
            .execute(self.conn().await?)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if is_unique_violation(&error) => {
                Err(StoreError::Contended("a campaign idempotency key".into()))
            }
            Err(error) => Err(error),
        }
    }

    async fn save_campaign(&mut self, c: &Campaign) -> StoreResult<()> {
        let updated = db::query(
            "UPDATE campaigns SET status = $1, accepted = $2, rejected = $3, updated_at_ms = $4, \
             finished_at_ms = $5 WHERE id = $6",
        )
        .bind(c.status.as_str())
        .bind(to_i64(c.accepted))
        .bind(to_i64(c.rejected))
        .bind(c.updated_at_ms)
        .bind(c.finished_at_ms)
        .bind(&c.id)
        .execute(self.conn().await?)
        .await?
        .rows_affected();
        updated_one(updated, "campaign", &c.id)
    }

    async fn release_campaign_key(&mut self, id: &str) -> StoreResult<()> {
        db::query("UPDATE campaigns SET idempotency_key = NULL WHERE id = $1")
            .bind(id)
            .execute(self.conn().await?)
            .await?;
        Ok(())
    }

    async fn lock_campaign(&mut self, id: &str) -> StoreResult<Option<Campaign>> {
        let sql = format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1{}",
            self.lock_rows()
        );
        let row = db::query(sql)
            .bind(id)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(campaign).transpose()
    }

    async fn campaign_for_key(&mut self, key: &ServiceKey) -> StoreResult<Option<Campaign>> {
        let sql = format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE service_id = $1 AND idempotency_key = $2"
        );
        let row = db::query(sql)
            .bind(&key.service_id)
            .bind(&key.key)
            .fetch_optional(self.conn().await?)
            .await?;
        row.as_ref().map(campaign).transpose()
    }

    async fn insert_recipients(&mut self, recipients: &[Recipient]) -> StoreResult<Vec<u64>> {
        let mut inserted = Vec::with_capacity(recipients.len());
        for chunk in in_chunks(recipients) {
            let sql = format!(
                "INSERT INTO campaign_recipients ({RECIPIENT_COLUMNS}) VALUES {} \
                 ON CONFLICT (campaign_id, to_e164) DO NOTHING RETURNING line",
                value_rows(12, chunk.len())
            );
            let mut query = db::query(sql);
            for r in chunk {
                query = query
                    .bind(&r.campaign_id)
                    .bind(to_i64(r.line))
                    .bind(&r.to_e164)
                    .bind(&r.region_code)
                    .bind(r.channel.as_str())
                    .bind(&r.route)
                    .bind(&r.locale)
                    .bind(values_text(&r.values))
                    .bind(r.state.as_str())
                    .bind(r.not_before_ms)
                    .bind(&r.detail)
                    .bind(&r.message_id);
            }
            let lines: Vec<i64> = query.scalar_all(self.conn().await?).await?;
            inserted.extend(lines.into_iter().map(to_u64));
        }
        Ok(inserted)
    }

    async fn insert_rejections(
        &mut self,
        campaign_id: &str,
        rejections: &[Rejection],
    ) -> StoreResult<()> {
        for chunk in in_chunks(rejections) {
            let sql = format!(
                "INSERT INTO campaign_rejections (campaign_id, line, field, reason) VALUES {} \
                 ON CONFLICT (campaign_id, line) DO NOTHING",
                value_rows(4, chunk.len())
            );
            let mut query = db::query(sql);
            for r in chunk {
                query = query
                    .bind(campaign_id)
                    .bind(to_i64(r.line))
                    .bind(&r.field)
                    .bind(&r.reason);
            }
            query.execute(self.conn().await?).await?;
        }
        Ok(())
    }

    async fn lock_due_recipients(
        &mut self,
        campaign_id: &str,
        route: &str,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Recipient>> {
        let skip_locked = match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "SELECT {RECIPIENT_COLUMNS} FROM campaign_recipients WHERE campaign_id = $1 AND route = $2 \
             AND state = 'pending' AND not_before_ms <= $3 ORDER BY not_before_ms, line LIMIT $4{skip_locked}"
        );
        db::query(sql)
            .bind(campaign_id)
            .bind(route)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(self.conn().await?)
            .await?
            .iter()
            .map(recipient)
            .collect()
    }

    async fn save_recipients(&mut self, recipients: &[Recipient]) -> StoreResult<()> {
        for chunk in in_chunks(recipients) {
            let sql = format!(
                "UPDATE campaign_recipients SET state = v.column3, not_before_ms = v.column4, detail = v.column5, \
                 message_id = v.column6 FROM (VALUES {}) AS v \
                 WHERE campaign_recipients.campaign_id = v.column1 AND campaign_recipients.line = v.column2",
                value_rows(6, chunk.len())
            );
            let mut query = db::query(sql);
            for r in chunk {
                query = query
                    .bind(&r.campaign_id)
                    .bind(to_i64(r.line))
                    .bind(r.state.as_str())
                    .bind(r.not_before_ms)
                    .bind(&r.detail)
                    .bind(&r.message_id);
            }
            let updated = query.execute(self.conn().await?).await?.rows_affected();
            if updated != chunk.len() as u64 {
                return Err(StoreError::Corrupt(format!(
                    "{} of {} campaign recipients to save were not found",
                    chunk.len() as u64 - updated.min(chunk.len() as u64),
                    chunk.len()
                )));
            }
        }
        Ok(())
    }

    async fn has_pending_recipients(&mut self, campaign_id: &str) -> StoreResult<bool> {
        has_pending(self.conn().await?, campaign_id).await
    }

    async fn confirm_recipient(
        &mut self,
        campaign_id: &str,
        to_e164: Option<&str>,
        line: Option<u64>,
        now_ms: i64,
    ) -> StoreResult<Option<bool>> {
        let (clause, key) = match (to_e164, line) {
            (Some(number), _) => ("to_e164 = $2", db::Value::from(number)),
            (None, Some(line)) => ("line = $2", db::Value::from(to_i64(line))),
            (None, None) => return Ok(None),
        };
        let sql = format!(
            "SELECT confirmed_at_ms FROM campaign_recipients WHERE campaign_id = $1 AND {clause}{}",
            self.lock_rows()
        );
        let Some(row) = db::query(sql)
            .bind(campaign_id)
            .bind(key.clone())
            .fetch_optional(self.conn().await?)
            .await?
        else {
            return Ok(None);
        };
        if row.try_get::<Option<i64>>("confirmed_at_ms")?.is_some() {
            return Ok(Some(false));
        }
        let sql = format!(
            "UPDATE campaign_recipients SET confirmed_at_ms = $3 WHERE campaign_id = $1 AND {clause}"
        );
        db::query(sql)
            .bind(campaign_id)
            .bind(key)
            .bind(now_ms)
            .execute(self.conn().await?)
            .await?;
        Ok(Some(true))
    }
}

/// Whether a campaign has recipients still pending.
pub(super) async fn has_pending(exec: db::Exec<'_>, campaign_id: &str) -> StoreResult<bool> {
    let found: Option<i64> = db::query(
        "SELECT 1 FROM campaign_recipients WHERE campaign_id = $1 AND state = 'pending' LIMIT 1",
    )
    .bind(campaign_id)
    .scalar_optional(exec)
    .await?;
    Ok(found.is_some())
}

/// A campaign by id.
pub(super) async fn by_id(exec: db::Exec<'_>, id: &str) -> StoreResult<Option<Campaign>> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
    let row = db::query(sql).bind(id).fetch_optional(exec).await?;
    row.as_ref().map(campaign).transpose()
}

/// Campaigns in `statuses`, oldest first.
pub(super) async fn in_statuses(
    exec: db::Exec<'_>,
    statuses: &[CampaignStatus],
) -> StoreResult<Vec<Campaign>> {
    let list = statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE status IN ({list}) ORDER BY created_at_ms, id"
    );
    db::query(sql)
        .fetch_all(exec)
        .await?
        .iter()
        .map(campaign)
        .collect()
}

/// A page of campaigns, newest first (ids grow with time): of `service_id` (all with `None`),
/// in `statuses` (any when empty), with ids before `before_id`.
pub(super) async fn list(
    exec: db::Exec<'_>,
    service_id: Option<&str>,
    statuses: &[CampaignStatus],
    before_id: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Campaign>> {
    let mut clauses = vec!["1 = 1".to_string()];
    let mut values: Vec<db::Value> = Vec::new();
    if let Some(service) = service_id {
        values.push(service.into());
        clauses.push(format!("service_id = ${}", values.len()));
    }
    if !statuses.is_empty() {
        let list = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        clauses.push(format!("status IN ({list})"));
    }
    if let Some(id) = before_id {
        values.push(id.into());
        clauses.push(format!("id < ${}", values.len()));
    }
    values.push(i64::from(limit).into());
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE {} ORDER BY id DESC LIMIT ${}",
        clauses.join(" AND "),
        values.len()
    );
    db::query(sql)
        .bind_all(values)
        .fetch_all(exec)
        .await?
        .iter()
        .map(campaign)
        .collect()
}

/// A campaign's recipients counted by region, carrier, channel, state and message status;
/// pending ones split by whether they wait past `now_ms`.
pub(super) async fn tallies(
    exec: db::Exec<'_>,
    campaign_id: &str,
    now_ms: i64,
) -> StoreResult<Vec<RecipientTally>> {
    let rows = db::query(
        "SELECT r.region_code AS region_code, COALESCE(m.carrier, '') AS carrier, \
         COALESCE(m.channel, r.channel) AS channel, r.state AS state, \
         CASE WHEN r.state = 'pending' AND r.not_before_ms > $2 THEN 1 ELSE 0 END AS waiting, \
         COALESCE(m.status, '') AS message_status, \
         CASE WHEN r.confirmed_at_ms IS NULL THEN 0 ELSE 1 END AS confirmed, COUNT(*) AS n \
         FROM campaign_recipients r LEFT JOIN messages m ON m.id = r.message_id \
         WHERE r.campaign_id = $1 GROUP BY 1, 2, 3, 4, 5, 6, 7",
    )
    .bind(campaign_id)
    .bind(now_ms)
    .fetch_all(exec)
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("message_status")?;
            Ok(RecipientTally {
                region_code: row.try_get("region_code")?,
                carrier: row.try_get("carrier")?,
                channel: parse_text(row, "channel", Channel::parse)?,
                state: parse_text(row, "state", RecipientState::parse)?,
                waiting: row.try_get::<i64>("waiting")? != 0,
                message_status: if status.is_empty() {
                    None
                } else {
                    Some(
                        DeliveryStatus::parse(&status).ok_or_else(|| {
                            StoreError::Corrupt(format!("message status `{status}`"))
                        })?,
                    )
                },
                confirmed: row.try_get::<i64>("confirmed")? != 0,
                count: to_u64(row.try_get("n")?),
            })
        })
        .collect()
}

/// Why a campaign's recipients were refused: `(region, reason, count)`, most frequent first,
/// at most `limit`.
pub(super) async fn refusals(
    exec: db::Exec<'_>,
    campaign_id: &str,
    limit: u32,
) -> StoreResult<Vec<(String, String, u64)>> {
    db::query(
        "SELECT region_code, detail, COUNT(*) AS n FROM campaign_recipients \
         WHERE campaign_id = $1 AND state = 'refused' GROUP BY region_code, detail \
         ORDER BY n DESC, region_code, detail LIMIT $2",
    )
    .bind(campaign_id)
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("region_code")?,
            row.try_get("detail")?,
            to_u64(row.try_get("n")?),
        ))
    })
    .collect()
}

/// When the earliest recipient of a campaign waiting past `now_ms` is due.
pub(super) async fn next_window(
    exec: db::Exec<'_>,
    campaign_id: &str,
    now_ms: i64,
) -> StoreResult<Option<i64>> {
    db::query(
        "SELECT MIN(not_before_ms) FROM campaign_recipients WHERE campaign_id = $1 \
         AND state = 'pending' AND not_before_ms > $2",
    )
    .bind(campaign_id)
    .bind(now_ms)
    .scalar(exec)
    .await
}

/// Recipients of a campaign by line (those that exist).
pub(super) async fn recipients_by_lines(
    exec: db::Exec<'_>,
    campaign_id: &str,
    lines: &[u64],
) -> StoreResult<Vec<Recipient>> {
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<String> = lines.iter().map(u64::to_string).collect();
    let (list, _) = super::id_list(2, &texts);
    let padded = texts.len().next_power_of_two();
    let bound = lines
        .iter()
        .chain(std::iter::repeat_n(
            &lines[lines.len() - 1],
            padded - lines.len(),
        ))
        .map(|line| to_i64(*line));
    let sql = format!(
        "SELECT {RECIPIENT_COLUMNS} FROM campaign_recipients WHERE campaign_id = $1 AND line IN ({list})"
    );
    db::query(sql)
        .bind(campaign_id)
        .bind_all(bound)
        .fetch_all(exec)
        .await?
        .iter()
        .map(recipient)
        .collect()
}

/// A page of a campaign's rejected lines after `after_line`, in line order.
pub(super) async fn rejections(
    exec: db::Exec<'_>,
    campaign_id: &str,
    after_line: u64,
    limit: u32,
) -> StoreResult<Vec<Rejection>> {
    db::query(
        "SELECT line, field, reason FROM campaign_rejections WHERE campaign_id = $1 AND line > $2 \
         ORDER BY line LIMIT $3",
    )
    .bind(campaign_id)
    .bind(to_i64(after_line))
    .bind(i64::from(limit))
    .fetch_all(exec)
    .await?
    .iter()
    .map(|row| {
        Ok(Rejection {
            line: to_u64(row.try_get("line")?),
            field: row.try_get("field")?,
            reason: row.try_get("reason")?,
        })
    })
    .collect()
}

/// Unsent messages of a campaign per carrier: how much of each route's next second is taken.
pub(super) async fn queued_by_carrier(exec: db::Exec<'_>) -> StoreResult<Vec<(String, u64)>> {
    db::query(
        "SELECT carrier, COUNT(*) AS n FROM messages WHERE status IN ('queued', 'claimed') \
         AND subject_kind = 'campaign' GROUP BY carrier",
    )
    .fetch_all(exec)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("carrier")?, to_u64(row.try_get("n")?))))
    .collect()
}
