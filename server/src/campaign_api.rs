//! The gRPC side of campaigns: CreateCampaign's stream parsed into the use case's input, and
//! campaigns, their counts and rejections to proto messages.

use futures::{Stream, StreamExt};
use tonic::Status;

use crate::convert::{self, timestamp, unix_ms};
use crate::domain::campaign::{
    CampaignCounts, CampaignSpec, CampaignStatus, LandlineAction, Rejection,
};
use crate::errors::invalid_argument;
use crate::proto;
use crate::usecases::UseCaseError;
use crate::usecases::campaign::{
    CampaignDimension, CampaignInput, CampaignView, RecipientChunk, RecipientLine,
};

/// The campaign of a CreateCampaign stream's first request.
pub fn campaign_input(
    first: Option<proto::CreateCampaignRequest>,
) -> Result<CampaignInput, Status> {
    let spec = match first.and_then(|request| request.part) {
        Some(proto::create_campaign_request::Part::Campaign(spec)) => spec,
        Some(proto::create_campaign_request::Part::Recipients(_)) => {
            return Err(invalid_argument(
                "campaign",
                "the first request must carry the campaign; recipients follow it",
            ));
        }
        None => {
            return Err(invalid_argument(
                "campaign",
                "the stream must start with the campaign",
            ));
        }
    };
    let category = convert::category_from_proto(spec.category).ok_or_else(|| {
        invalid_argument(
            "campaign.category",
            "set one of MESSAGE_CATEGORY_ALERT, _TRANSACTIONAL or _MARKETING",
        )
    })?;
    let landline_action = match proto::LandlineAction::try_from(spec.landline_action) {
        Ok(proto::LandlineAction::Voice) => Some(LandlineAction::Voice),
        Ok(proto::LandlineAction::Report) => Some(LandlineAction::Report),
        Ok(proto::LandlineAction::Unspecified) => None,
        Err(_) => {
            return Err(invalid_argument(
                "campaign.landline_action",
                "not a LandlineAction value",
            ));
        }
    };
    Ok(CampaignInput {
        spec: CampaignSpec {
            name: spec.name.trim().to_string(),
            category,
            program_id: spec.program_id.trim().to_string(),
            template: spec.template.trim().to_string(),
            bodies: spec.bodies.into_iter().collect(),
            default_locale: spec.default_locale.trim().to_string(),
            variable_names: spec.variable_names,
            sender: spec.sender.trim().to_string(),
            senders_by_region: spec
                .senders_by_region
                .into_iter()
                .map(|(region, sender)| (region.trim().to_string(), sender.trim().to_string()))
                .collect(),
            start_at_ms: spec.start_time.as_ref().map(unix_ms),
            deadline_ms: spec.deadline.as_ref().map(unix_ms),
            landline_action: landline_action.unwrap_or(LandlineAction::Report),
            tracks_confirmation: spec.tracks_confirmation,
        },
        landline_action,
        service_id: spec.service_id,
        idempotency_key: spec.idempotency_key,
    })
}

/// The rest of a CreateCampaign stream as chunks of recipients.
pub fn recipient_chunks(
    rest: impl Stream<Item = Result<proto::CreateCampaignRequest, Status>> + Unpin,
) -> impl Stream<Item = Result<RecipientChunk, UseCaseError>> + Unpin {
    rest.map(|request| match request {
        Ok(proto::CreateCampaignRequest {
            part: Some(proto::create_campaign_request::Part::Recipients(chunk)),
        }) => Ok(RecipientChunk {
            region_hint: chunk.region_hint,
            lines: chunk
                .recipients
                .into_iter()
                .map(|r| RecipientLine {
                    line: r.line,
                    to: r.to,
                    locale: r.locale,
                    values: r.values,
                })
                .collect(),
        }),
        Ok(_) => Err(UseCaseError::InvalidArgument {
            field: "campaign",
            reason: "only the first request carries the campaign; the next ones carry recipients"
                .into(),
        }),
        Err(status) => Err(UseCaseError::InvalidArgument {
            field: "recipients",
            reason: format!("the stream broke: {}", status.message()),
        }),
    })
}

/// The dimensions of a GetCampaign request.
pub fn dimensions(values: &[i32]) -> Result<Vec<CampaignDimension>, Status> {
    values
        .iter()
        .map(|value| match proto::CampaignDimension::try_from(*value) {
            Ok(proto::CampaignDimension::Country) => Ok(CampaignDimension::Country),
            Ok(proto::CampaignDimension::Carrier) => Ok(CampaignDimension::Carrier),
            Ok(proto::CampaignDimension::Channel) => Ok(CampaignDimension::Channel),
            _ => Err(invalid_argument(
                "group_by",
                "use CAMPAIGN_DIMENSION_COUNTRY, _CARRIER or _CHANNEL",
            )),
        })
        .collect()
}

/// The statuses of a ListCampaigns request.
pub fn statuses(values: &[i32]) -> Result<Vec<CampaignStatus>, Status> {
    use proto::CampaignStatus as P;
    values
        .iter()
        .map(|value| match P::try_from(*value) {
            Ok(P::Ingesting) => Ok(CampaignStatus::Ingesting),
            Ok(P::Scheduled) => Ok(CampaignStatus::Scheduled),
            Ok(P::Running) => Ok(CampaignStatus::Running),
            Ok(P::Paused) => Ok(CampaignStatus::Paused),
            Ok(P::Completed) => Ok(CampaignStatus::Completed),
            Ok(P::Canceled) => Ok(CampaignStatus::Canceled),
            Ok(P::Expired) => Ok(CampaignStatus::Expired),
            _ => Err(invalid_argument("statuses", "not a CampaignStatus value")),
        })
        .collect()
}

/// Counts to the proto message.
pub fn counts(counts: &CampaignCounts) -> proto::CampaignCounts {
    proto::CampaignCounts {
        recipients: counts.recipients,
        queued: counts.queued,
        deferred: counts.deferred,
        sent: counts.sent,
        delivered: counts.delivered,
        failed: counts.failed,
        refused: counts.refused,
        maybe_sent: counts.maybe_sent,
        canceled: counts.canceled,
        confirmed: counts.confirmed,
        confirmation_rate: counts.confirmation_rate(),
    }
}

/// A campaign (with its total counts when `view` has them) to the proto message.
pub fn campaign(
    campaign: &crate::domain::Campaign,
    total: Option<&CampaignCounts>,
    next_window_ms: Option<i64>,
) -> proto::Campaign {
    let spec = &campaign.spec;
    proto::Campaign {
        id: campaign.id.clone(),
        spec: Some(proto::CampaignSpec {
            name: spec.name.clone(),
            category: convert::category(spec.category) as i32,
            program_id: spec.program_id.clone(),
            template: spec.template.clone(),
            bodies: spec.bodies.clone().into_iter().collect(),
            default_locale: spec.default_locale.clone(),
            variable_names: spec.variable_names.clone(),
            sender: spec.sender.clone(),
            senders_by_region: spec.senders_by_region.clone().into_iter().collect(),
            start_time: spec.start_at_ms.map(timestamp),
            deadline: spec.deadline_ms.map(timestamp),
            landline_action: match spec.landline_action {
                LandlineAction::Voice => proto::LandlineAction::Voice,
                LandlineAction::Report => proto::LandlineAction::Report,
            } as i32,
            tracks_confirmation: spec.tracks_confirmation,
            service_id: campaign.service_id.clone(),
            idempotency_key: campaign.idempotency_key.clone().unwrap_or_default(),
        }),
        status: convert::campaign_status(campaign.status) as i32,
        accepted: campaign.accepted,
        rejected: campaign.rejected,
        counts: total.map(counts),
        created_at: Some(timestamp(campaign.created_at_ms)),
        updated_at: Some(timestamp(campaign.updated_at_ms)),
        finished_at: campaign.finished_at_ms.map(timestamp),
        next_window_at: next_window_ms.map(timestamp),
    }
}

/// A campaign view to the proto message.
pub fn view(view: &CampaignView) -> proto::Campaign {
    campaign(&view.campaign, Some(&view.total), view.next_window_ms)
}

/// A view's groups to proto messages.
pub fn groups(view: &CampaignView) -> Vec<proto::CampaignGroup> {
    view.groups
        .iter()
        .map(|(group, group_counts)| proto::CampaignGroup {
            region_code: group.region_code.clone(),
            carrier: group.carrier.clone(),
            channel: group
                .channel
                .map_or(proto::Channel::Unspecified, convert::channel) as i32,
            counts: Some(counts(group_counts)),
        })
        .collect()
}

/// A view's refusal reasons to proto messages.
pub fn refusals(view: &CampaignView) -> Vec<proto::CampaignRefusals> {
    view.refusals
        .iter()
        .map(|(region, reason, count)| proto::CampaignRefusals {
            region_code: region.clone(),
            reason: reason.clone(),
            recipients: *count,
        })
        .collect()
}

/// A rejected line to the proto message.
pub fn rejection(rejection: &Rejection) -> proto::CampaignRejection {
    proto::CampaignRejection {
        line: rejection.line,
        field: rejection.field.clone(),
        reason: rejection.reason.clone(),
    }
}
