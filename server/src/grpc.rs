//! The gRPC transport: `verify.v1.VerifyService`. Each handler turns the request into a
//! use-case input (reading the proto's enums), calls the use case, and turns the answer into
//! the response; errors are mapped in one place (`crate::errors`). No rule lives here.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use verify_carrier::Channel;
use verify_policy::abuse::RawContext;
use verify_policy::classify;

use crate::campaign_api;
use crate::convert;
use crate::domain::conversion::Dimension;
use crate::domain::{NotificationStatus, VerificationStatus};
use crate::errors::{internal, invalid_argument};
use crate::proto;
use crate::proto::verify_service_server::VerifyService;
use crate::usecases::{
    Caller, CheckTarget, ListInput, NotifyInput, StatsInput, UseCases, VerifyInput, WatchedIds,
};

/// Most numbers in one ClassifyBatch chunk.
const MAX_BATCH_CHUNK: usize = 10_000;
/// Chunks classified at once per stream (in order on the way out).
const BATCH_CHUNKS_IN_FLIGHT: usize = 4;

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEventsResponse, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<proto::ClassifyBatchResponse, Status>> + Send>>;

/// The gRPC service over the use cases.
pub struct VerifyApi {
    cases: Arc<UseCases>,
}

impl VerifyApi {
    /// The service over `cases`.
    pub fn new(cases: Arc<UseCases>) -> Self {
        VerifyApi { cases }
    }
}

/// The channel a request asks for; `None` lets verifyd choose.
fn requested_channel(value: i32) -> Result<Option<Channel>, Status> {
    match proto::Channel::try_from(value) {
        Ok(proto::Channel::Unspecified) => Ok(None),
        Ok(proto::Channel::Sms) => Ok(Some(Channel::Sms)),
        Ok(proto::Channel::Voice) => Ok(Some(Channel::Voice)),
        Err(_) => Err(invalid_argument(
            "channel",
            format!(
                "unknown value {value}; use CHANNEL_SMS, CHANNEL_VOICE, or leave it unset to let verifyd choose"
            ),
        )),
    }
}

fn region_hint(hint: &str) -> Result<Option<verify_policy::TerritoryId>, Status> {
    verify_policy::parse_region_hint(hint)
        .map_err(|e| invalid_argument("region_hint", e.to_string()))
}

/// Classifies one chunk on a blocking thread (it is pure CPU work).
async fn classify_chunk(
    index: u64,
    chunk: proto::ClassifyBatchRequest,
) -> Result<proto::ClassifyBatchResponse, Status> {
    if chunk.numbers.len() > MAX_BATCH_CHUNK {
        return Err(invalid_argument(
            "numbers",
            format!(
                "chunk {index} has {} numbers; send at most {MAX_BATCH_CHUNK} per chunk",
                chunk.numbers.len()
            ),
        ));
    }
    let hint = region_hint(&chunk.region_hint)?;
    tokio::task::spawn_blocking(move || proto::ClassifyBatchResponse {
        classifications: chunk
            .numbers
            .iter()
            .map(|number| convert::classification_owned(classify(number, hint)))
            .collect(),
        chunk_index: index,
    })
    .await
    .map_err(|e| internal("batch classification", e))
}

/// Who sent a request, as the API key check found (an admin on a server without keys).
fn caller_of<T>(request: &Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::local)
}

/// The list filters every list request shares.
#[allow(clippy::too_many_arguments)]
fn list_input<S>(
    service_id: String,
    statuses: Vec<S>,
    region_code: String,
    to: String,
    created_after: Option<verify_proto::Timestamp>,
    created_before: Option<verify_proto::Timestamp>,
    page_size: u32,
    page_token: String,
) -> ListInput<S> {
    ListInput {
        service_id,
        statuses,
        region_code,
        to,
        created_after_ms: created_after.as_ref().map(convert::unix_ms),
        created_before_ms: created_before.as_ref().map(convert::unix_ms),
        page_size,
        page_token,
    }
}

/// Verification statuses a list asks for; an unknown or unset value is named.
fn verification_statuses(values: &[i32]) -> Result<Vec<VerificationStatus>, Status> {
    values
        .iter()
        .map(|&value| {
            convert::verification_status_from_proto(value).ok_or_else(|| {
                invalid_argument("statuses", format!("{value} is not a verification status"))
            })
        })
        .collect()
}

/// The dimensions a statistics request groups by; an unknown or unset value is named.
fn stats_dimensions(values: &[i32]) -> Result<Vec<Dimension>, Status> {
    values
        .iter()
        .map(|&value| {
            convert::dimension_from_proto(value).ok_or_else(|| {
                invalid_argument(
                    "group_by",
                    format!(
                        "{value} is not a dimension; use STATS_DIMENSION_COUNTRY, _CARRIER, _CHANNEL, _SERVICE, _DAY or _HOUR"
                    ),
                )
            })
        })
        .collect()
}

/// Notification statuses a list asks for; an unknown or unset value is named.
fn notification_statuses(values: &[i32]) -> Result<Vec<NotificationStatus>, Status> {
    values
        .iter()
        .map(|&value| {
            convert::notification_status_from_proto(value).ok_or_else(|| {
                invalid_argument("statuses", format!("{value} is not a notification status"))
            })
        })
        .collect()
}

/// A proto service as settings, a wrong channel value named.
fn service_settings(
    service: Option<proto::Service>,
) -> Result<crate::domain::ServiceSettings, Status> {
    let service = service.ok_or_else(|| invalid_argument("service", "must be set"))?;
    convert::service_settings(&service).map_err(|(field, reason)| invalid_argument(&field, reason))
}

/// A request context as received, with the API key it came with.
fn context_input(context: Option<proto::RequestContext>, api_key: Option<String>) -> RawContext {
    let context = context.unwrap_or_default();
    RawContext {
        client_ip: context.client_ip,
        device_id: context.device_id,
        app_version: context.app_version,
        user_id: context.user_id,
        risk_tags: context.risk_tags,
        api_key,
    }
}

#[tonic::async_trait]
impl VerifyService for VerifyApi {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let input = VerifyInput {
            context: context_input(request.context, caller.key_name.clone()),
            service_id: request.service_id,
            app_hash: request.app_hash,
            domain: request.domain,
            channel: requested_channel(request.channel)?,
            to: request.to,
            locale: request.locale,
            code_length: request.code_length,
            idempotency_key: request.idempotency_key,
            region_hint: request.region_hint,
            workflow: request.workflow,
            program_id: request.program_id,
        };
        let outcome = self.cases.verify(&caller, input).await?;
        Ok(Response::new(proto::VerifyResponse {
            verification: Some(convert::verification(&outcome.view)),
            resent: outcome.resent,
            replayed: outcome.replayed,
            decision: outcome.decision,
        }))
    }

    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let target = match request.target {
            Some(proto::check_request::Target::VerificationId(id)) => CheckTarget::Id(id),
            Some(proto::check_request::Target::To(to)) => CheckTarget::Number {
                to,
                service_id: request.service_id,
            },
            None => CheckTarget::Missing,
        };
        let (result, view) = self.cases.check(&caller, target, &request.code).await?;
        Ok(Response::new(proto::CheckResponse {
            result: convert::check_result(result) as i32,
            checks_left: view.verification.checks_left(),
            verification: Some(convert::verification(&view)),
        }))
    }

    async fn classify(
        &self,
        request: Request<proto::ClassifyRequest>,
    ) -> Result<Response<proto::ClassifyResponse>, Status> {
        let request = request.into_inner();
        let classification = self.cases.classify(&request.number, &request.region_hint)?;
        Ok(Response::new(proto::ClassifyResponse {
            classification: Some(convert::classification(&classification)),
        }))
    }

    type ClassifyBatchStream = BatchStream;

    async fn classify_batch(
        &self,
        request: Request<tonic::Streaming<proto::ClassifyBatchRequest>>,
    ) -> Result<Response<Self::ClassifyBatchStream>, Status> {
        use futures::StreamExt as _;
        let chunks = request.into_inner();
        let answers = chunks
            .enumerate()
            .map(|(index, chunk)| async move {
                match chunk {
                    Ok(chunk) => classify_chunk(index as u64, chunk).await,
                    Err(status) => Err(status),
                }
            })
            .buffered(BATCH_CHUNKS_IN_FLIGHT);
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_verification(
        &self,
        request: Request<proto::GetVerificationRequest>,
    ) -> Result<Response<proto::GetVerificationResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let view = match (request.verification_id.as_str(), request.to.as_str()) {
            ("", "") => {
                return Err(invalid_argument(
                    "verification_id",
                    "set verification_id (or to) to say which verification",
                ));
            }
            (id, "") => self.cases.get_verification(&caller, id).await?,
            ("", to) => {
                self.cases
                    .latest_verification(&caller, to, &request.service_id)
                    .await?
            }
            _ => {
                return Err(invalid_argument(
                    "to",
                    "set verification_id or to, not both",
                ));
            }
        };
        Ok(Response::new(proto::GetVerificationResponse {
            verification: Some(convert::verification(&view)),
        }))
    }

    async fn list_verifications(
        &self,
        request: Request<proto::ListVerificationsRequest>,
    ) -> Result<Response<proto::ListVerificationsResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        let input = list_input(
            r.service_id,
            verification_statuses(&r.statuses)?,
            r.region_code,
            r.to,
            r.created_after,
            r.created_before,
            r.page_size,
            r.page_token,
        );
        let page = self.cases.list_verifications(&caller, &input).await?;
        Ok(Response::new(proto::ListVerificationsResponse {
            verifications: page.items.iter().map(convert::verification).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_notifications(
        &self,
        request: Request<proto::ListNotificationsRequest>,
    ) -> Result<Response<proto::ListNotificationsResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        let input = list_input(
            r.service_id,
            notification_statuses(&r.statuses)?,
            r.region_code,
            r.to,
            r.created_after,
            r.created_before,
            r.page_size,
            r.page_token,
        );
        let page = self.cases.list_notifications(&caller, &input).await?;
        Ok(Response::new(proto::ListNotificationsResponse {
            notifications: page.items.iter().map(convert::notification).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn cancel_notification(
        &self,
        request: Request<proto::CancelNotificationRequest>,
    ) -> Result<Response<proto::CancelNotificationResponse>, Status> {
        let caller = caller_of(&request);
        let view = self
            .cases
            .cancel_notification(&caller, &request.into_inner().notification_id)
            .await?;
        Ok(Response::new(proto::CancelNotificationResponse {
            notification: Some(convert::notification(&view)),
        }))
    }

    async fn cancel_verification(
        &self,
        request: Request<proto::CancelVerificationRequest>,
    ) -> Result<Response<proto::CancelVerificationResponse>, Status> {
        let caller = caller_of(&request);
        let view = self
            .cases
            .cancel(&caller, &request.into_inner().verification_id)
            .await?;
        Ok(Response::new(proto::CancelVerificationResponse {
            verification: Some(convert::verification(&view)),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<proto::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let events = self
            .cases
            .watch(
                &caller,
                WatchedIds {
                    verification_id: &request.verification_id,
                    notification_id: &request.notification_id,
                    campaign_id: &request.campaign_id,
                },
                &request.service_id,
                request.after_cursor,
            )
            .await?;
        use futures::StreamExt as _;
        let events = events.map(|item| {
            item.map(|event| proto::WatchEventsResponse {
                event: Some(convert::event(&event)),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn notify(
        &self,
        request: Request<proto::NotifyRequest>,
    ) -> Result<Response<proto::NotifyResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let input = NotifyInput {
            context: context_input(request.context, caller.key_name.clone()),
            service_id: request.service_id,
            category: convert::category_from_proto(request.category),
            to: request.to,
            region_hint: request.region_hint,
            program_id: request.program_id,
            template: request.template,
            body: request.body,
            sender: request.sender,
            idempotency_key: request.idempotency_key,
        };
        let outcome = self.cases.notify(&caller, input).await?;
        let view = &outcome.view;
        let action = match &outcome.deferred_by {
            Some(_) => proto::PolicyAction::Defer,
            None => proto::PolicyAction::SendNow,
        };
        let rule = outcome.deferred_by.as_ref();
        Ok(Response::new(proto::NotifyResponse {
            decision: Some(proto::PolicyDecision {
                action: action as i32,
                rule_id: rule.map(|r| r.id.to_string()).unwrap_or_default(),
                rule_source: rule.map(|r| r.source.to_string()).unwrap_or_default(),
                explanation: view.notification.decision.clone(),
                send_at: Some(convert::timestamp(view.message.due_at_ms)),
                channel: convert::channel(view.message.channel) as i32,
                carrier: view.message.carrier.clone(),
            }),
            notification: Some(convert::notification(view)),
            replayed: outcome.replayed,
        }))
    }

    async fn create_campaign(
        &self,
        request: Request<tonic::Streaming<proto::CreateCampaignRequest>>,
    ) -> Result<Response<proto::CreateCampaignResponse>, Status> {
        use futures::StreamExt as _;
        let caller = caller_of(&request);
        let mut stream = request.into_inner();
        let first = stream.next().await.transpose()?;
        let input = campaign_api::campaign_input(first)?;
        let created = self
            .cases
            .create_campaign(&caller, input, campaign_api::recipient_chunks(stream))
            .await?;
        Ok(Response::new(proto::CreateCampaignResponse {
            campaign: Some(campaign_api::view(&created.view)),
            rejections: created
                .rejections
                .iter()
                .map(campaign_api::rejection)
                .collect(),
            replayed: created.replayed,
        }))
    }

    async fn get_campaign(
        &self,
        request: Request<proto::GetCampaignRequest>,
    ) -> Result<Response<proto::GetCampaignResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let group_by = campaign_api::dimensions(&request.group_by)?;
        let view = self
            .cases
            .get_campaign(&caller, &request.campaign_id, &group_by)
            .await?;
        Ok(Response::new(proto::GetCampaignResponse {
            campaign: Some(campaign_api::view(&view)),
            groups: campaign_api::groups(&view),
            refusals: campaign_api::refusals(&view),
        }))
    }

    async fn list_campaigns(
        &self,
        request: Request<proto::ListCampaignsRequest>,
    ) -> Result<Response<proto::ListCampaignsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let statuses = campaign_api::statuses(&request.statuses)?;
        let (campaigns, next_page_token) = self
            .cases
            .list_campaigns(
                &caller,
                &request.service_id,
                &statuses,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(proto::ListCampaignsResponse {
            campaigns: campaigns
                .iter()
                .map(|c| campaign_api::campaign(c, None, None))
                .collect(),
            next_page_token,
        }))
    }

    async fn list_campaign_rejections(
        &self,
        request: Request<proto::ListCampaignRejectionsRequest>,
    ) -> Result<Response<proto::ListCampaignRejectionsResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let (rejections, next_page_token) = self
            .cases
            .list_campaign_rejections(
                &caller,
                &request.campaign_id,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(proto::ListCampaignRejectionsResponse {
            rejections: rejections.iter().map(campaign_api::rejection).collect(),
            next_page_token,
        }))
    }

    async fn pause_campaign(
        &self,
        request: Request<proto::PauseCampaignRequest>,
    ) -> Result<Response<proto::PauseCampaignResponse>, Status> {
        let caller = caller_of(&request);
        let view = self
            .cases
            .pause_campaign(&caller, &request.into_inner().campaign_id)
            .await?;
        Ok(Response::new(proto::PauseCampaignResponse {
            campaign: Some(campaign_api::view(&view)),
        }))
    }

    async fn resume_campaign(
        &self,
        request: Request<proto::ResumeCampaignRequest>,
    ) -> Result<Response<proto::ResumeCampaignResponse>, Status> {
        let caller = caller_of(&request);
        let view = self
            .cases
            .resume_campaign(&caller, &request.into_inner().campaign_id)
            .await?;
        Ok(Response::new(proto::ResumeCampaignResponse {
            campaign: Some(campaign_api::view(&view)),
        }))
    }

    async fn cancel_campaign(
        &self,
        request: Request<proto::CancelCampaignRequest>,
    ) -> Result<Response<proto::CancelCampaignResponse>, Status> {
        let caller = caller_of(&request);
        let view = self
            .cases
            .cancel_campaign(&caller, &request.into_inner().campaign_id)
            .await?;
        Ok(Response::new(proto::CancelCampaignResponse {
            campaign: Some(campaign_api::view(&view)),
        }))
    }

    async fn report_campaign_confirmation(
        &self,
        request: Request<proto::ReportCampaignConfirmationRequest>,
    ) -> Result<Response<proto::ReportCampaignConfirmationResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let counted = self
            .cases
            .report_campaign_confirmation(&caller, &request.campaign_id, &request.to, request.line)
            .await?;
        Ok(Response::new(proto::ReportCampaignConfirmationResponse {
            counted,
        }))
    }

    async fn get_notification(
        &self,
        request: Request<proto::GetNotificationRequest>,
    ) -> Result<Response<proto::GetNotificationResponse>, Status> {
        let caller = caller_of(&request);
        let view = self
            .cases
            .get_notification(&caller, &request.into_inner().notification_id)
            .await?;
        Ok(Response::new(proto::GetNotificationResponse {
            notification: Some(convert::notification(&view)),
        }))
    }

    async fn list_blocks(
        &self,
        request: Request<proto::ListBlocksRequest>,
    ) -> Result<Response<proto::ListBlocksResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let blocks = self
            .cases
            .list_blocks(&caller, request.include_ended, request.limit)
            .await?;
        let now = crate::clock::now_ms();
        Ok(Response::new(proto::ListBlocksResponse {
            blocks: blocks.iter().map(|b| convert::block(b, now)).collect(),
        }))
    }

    async fn unblock(
        &self,
        request: Request<proto::UnblockRequest>,
    ) -> Result<Response<proto::UnblockResponse>, Status> {
        let caller = caller_of(&request);
        let block = self
            .cases
            .unblock(&caller, &request.into_inner().block_id)
            .await?;
        Ok(Response::new(proto::UnblockResponse {
            block: Some(convert::block(&block, crate::clock::now_ms())),
        }))
    }

    async fn create_service(
        &self,
        request: Request<proto::CreateServiceRequest>,
    ) -> Result<Response<proto::CreateServiceResponse>, Status> {
        let caller = caller_of(&request);
        let settings = service_settings(request.into_inner().service)?;
        let service = self.cases.create_service(&caller, settings).await?;
        Ok(Response::new(proto::CreateServiceResponse {
            service: Some(convert::service(&service)),
        }))
    }

    async fn get_service(
        &self,
        request: Request<proto::GetServiceRequest>,
    ) -> Result<Response<proto::GetServiceResponse>, Status> {
        let caller = caller_of(&request);
        let service = self
            .cases
            .get_service(&caller, request.into_inner().service_id.trim())
            .await?;
        Ok(Response::new(proto::GetServiceResponse {
            service: Some(convert::service(&service)),
        }))
    }

    async fn list_services(
        &self,
        request: Request<proto::ListServicesRequest>,
    ) -> Result<Response<proto::ListServicesResponse>, Status> {
        let caller = caller_of(&request);
        let services = self.cases.list_services(&caller).await?;
        Ok(Response::new(proto::ListServicesResponse {
            services: services.iter().map(|s| convert::service(s)).collect(),
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<proto::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<proto::ListWebhookDeliveriesResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let state = self
            .cases
            .webhook_deliveries(&caller, &request.service_id, request.limit)
            .await?;
        Ok(Response::new(proto::ListWebhookDeliveriesResponse {
            webhook_url: state.url,
            delivered_through_cursor: state.delivered_through.max(0) as u64,
            deliveries: state.failed.iter().map(convert::webhook_delivery).collect(),
        }))
    }

    async fn get_conversion_stats(
        &self,
        request: Request<proto::GetConversionStatsRequest>,
    ) -> Result<Response<proto::GetConversionStatsResponse>, Status> {
        let caller = caller_of(&request);
        let r = request.into_inner();
        let input = StatsInput {
            start_ms: r.start_time.as_ref().map(convert::unix_ms),
            end_ms: r.end_time.as_ref().map(convert::unix_ms),
            group_by: stats_dimensions(&r.group_by)?,
            service_id: r.service_id,
            region_codes: r.region_codes,
            channel: requested_channel(r.channel)?,
        };
        let answer = self.cases.conversion_stats(&caller, &input).await?;
        Ok(Response::new(convert::conversion_stats(&answer)))
    }

    async fn update_service(
        &self,
        request: Request<proto::UpdateServiceRequest>,
    ) -> Result<Response<proto::UpdateServiceResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let settings = service_settings(request.service)?;
        let service = self
            .cases
            .update_service(&caller, settings, &request.update_fields)
            .await?;
        Ok(Response::new(proto::UpdateServiceResponse {
            service: Some(convert::service(&service)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_and_hints_name_the_field() {
        assert!(
            requested_channel(9)
                .unwrap_err()
                .message()
                .starts_with("channel: ")
        );
        assert!(
            region_hint("QQQ")
                .unwrap_err()
                .message()
                .starts_with("region_hint: ")
        );
    }
}
