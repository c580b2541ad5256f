//! Where and how each message goes: the route planner, circuit breakers and fallback policy of
//! `verify-policy`, fed with the configured carriers' capabilities. The service asks it for a
//! verification's first step; the dispatcher asks it for the next one when a step is over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use verify_policy::fallback::{
    ConversionStats, FallbackEvent, Next, StepOutcome, StepPlan, StepRecord, StrategyKind,
    VerificationFacts,
};
use verify_policy::routing::{Candidate, CircuitBreakers, RoutePlan, RoutePlanner};
use verify_policy::{Channel, Classification, FallbackConfig, FallbackPolicy, Workflow};

use crate::carriers::CarrierSet;
use crate::domain::{DeliveryStatus, OutboxMessage, Verification};

/// The first step of a new verification, as the fallback strategy chose it.
#[derive(Debug, Clone)]
pub struct FirstStep {
    /// The strategy that chose it; later steps ask the same one.
    pub strategy: StrategyKind,
    /// The workflow as it will run.
    pub workflow: Workflow,
    /// Index of the step in `workflow`.
    pub step: usize,
    /// Channel of the message.
    pub channel: Channel,
    /// Carrier of the message, then its failover carriers.
    pub carriers: Vec<String>,
    /// How long the step waits for an approved check; `None` at the last step.
    pub wait: Option<Duration>,
    /// The decision in one line: step, channel and route, each with its reason.
    pub explanation: String,
}

/// Routing and fallback for one server.
pub struct Decider {
    planner: RoutePlanner,
    breakers: Arc<CircuitBreakers>,
    fallback: FallbackPolicy,
    carriers: Arc<CarrierSet>,
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decider")
            .field("fallback", self.fallback.config())
            .finish_non_exhaustive()
    }
}

impl Decider {
    /// A decider over validated route and fallback configuration.
    pub fn new(
        routes: RoutePlan,
        fallback: FallbackConfig,
        carriers: Arc<CarrierSet>,
        breakers: Arc<CircuitBreakers>,
        stats: Arc<dyn ConversionStats>,
    ) -> Result<Decider, String> {
        Ok(Decider {
            planner: RoutePlanner::new(routes),
            breakers,
            fallback: FallbackPolicy::new(fallback, stats).map_err(|e| e.to_string())?,
            carriers,
        })
    }

    /// Candidate routes for one number, best first, by channel.
    fn routes<'a>(
        &'a self,
        region: Option<&'a str>,
        e164: &'a str,
    ) -> impl Fn(Channel) -> Vec<Candidate> + 'a {
        let digits = e164.trim_start_matches('+');
        move |channel| {
            self.planner.candidates(
                region,
                digits,
                channel,
                |name| self.carriers.can_carry(name, channel, region),
                &self.breakers.at(Instant::now()),
            )
        }
    }

    /// Candidate routes for `channel` to a number, best first, each with its reason.
    pub fn routes_for(&self, region: Option<&str>, e164: &str, channel: Channel) -> Vec<Candidate> {
        self.routes(region, e164)(channel)
    }

    /// The workflow and first step for a new verification of `classification`; `Err` is why
    /// nothing can be sent (no route carries any step's channel, or the service allows none
    /// of the workflow's channels). `service` limits the sends and the channels.
    pub fn start(
        &self,
        classification: &Classification,
        requested: Option<Channel>,
        workflow: Option<&Workflow>,
        service: &crate::domain::Service,
    ) -> Result<FirstStep, String> {
        let region = classification.region_code.as_deref();
        let e164 = classification.e164.as_deref().unwrap_or_default();
        let (strategy, configured) = self.fallback.for_region(region);
        let line_type = classification
            .line_type
            .ok_or_else(|| "the number has no line type".to_string())?;
        let workflow = workflow.unwrap_or(configured);
        let allowed = workflow
            .keeping(|channel| service.allows(channel))
            .ok_or_else(|| {
                format!(
                    "service `{}` allows only {}, and the workflow `{workflow}` has no step on them",
                    service.id,
                    service.channel_names()
                )
            })?;
        let facts = VerificationFacts {
            region,
            line_type,
            requested_channel: requested,
            workflow: &allowed,
            max_sends: service.max_sends,
            sends: 0,
            history: &[],
        };
        let start = strategy.start(&facts, &self.routes(region, e164));
        match start.next {
            Next::Send(plan) => Ok(FirstStep {
                strategy: start.strategy,
                wait: (plan.step + 1 < start.workflow.len()).then_some(plan.wait),
                step: plan.step,
                channel: plan.channel,
                carriers: plan.routes.iter().map(|c| c.carrier.clone()).collect(),
                explanation: explain(&plan),
                workflow: start.workflow,
            }),
            Next::Stop { reason } | Next::Ignore { reason } => Err(reason),
        }
    }

    /// What to do for a verification whose running step is over: the strategy's answer,
    /// given the stored workflow and the steps' outcomes (`messages`, oldest first).
    pub fn next(&self, verification: &Verification, messages: &[OutboxMessage]) -> Next {
        let state = &verification.workflow;
        let Ok(workflow) = Workflow::parse(&state.workflow) else {
            return Next::Stop {
                reason: format!("stored workflow `{}` is unreadable", state.workflow),
            };
        };
        let strategy = StrategyKind::parse(&state.strategy).unwrap_or_default();
        let classification = verify_policy::classify(&verification.to_e164, None);
        let Some(line_type) = classification.line_type else {
            return Next::Stop {
                reason: "the number no longer classifies".into(),
            };
        };
        let step = state.step as usize;
        let history: Vec<StepRecord> = messages
            .iter()
            .map(|message| StepRecord {
                step: message.step as usize,
                channel: message.channel,
                carrier: message.carrier.clone(),
                outcome: match message.status {
                    DeliveryStatus::Failed => StepOutcome::Failed(message.detail.clone()),
                    _ if (message.step as usize) < step => StepOutcome::DeadlinePassed,
                    _ => StepOutcome::Pending,
                },
            })
            .collect();
        let facts = VerificationFacts {
            region: verification.region_code.as_deref(),
            line_type,
            requested_channel: None,
            workflow: &workflow,
            max_sends: verification.max_sends,
            sends: verification.sends_used,
            history: &history,
        };
        let event = if state.step_failure.is_empty() {
            FallbackEvent::DeadlinePassed { step }
        } else {
            FallbackEvent::MessageFailed {
                step,
                reason: state.step_failure.clone(),
            }
        };
        let routes = self.routes(verification.region_code.as_deref(), &verification.to_e164);
        self.fallback
            .strategy(strategy)
            .next(&facts, &event, &routes)
    }

    /// The explanation of a later step, as [`Decider::start`] gives the first.
    pub fn explain(plan: &StepPlan) -> String {
        explain(plan)
    }
}

/// A step's decision in one line, with the routes its breakers set aside and why.
fn explain(plan: &StepPlan) -> String {
    let aside: Vec<&str> = plan
        .routes
        .iter()
        .filter(|candidate| !candidate.health.is_usable())
        .map(|candidate| candidate.reason.as_str())
        .collect();
    if aside.is_empty() {
        plan.explanation()
    } else {
        format!("{}; set aside: {}", plan.explanation(), aside.join("; "))
    }
}
