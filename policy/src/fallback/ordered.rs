//! The `ordered` strategy, and the walk through a workflow that `adaptive` shares.

use verify_carrier::Channel;

use super::{
    FallbackEvent, FallbackStrategy, Next, RouteOptions, Start, StepPlan, StrategyKind,
    VerificationFacts, Workflow, WorkflowStep, show,
};
use crate::channel::{accepts_sms, recommended_channel};
use crate::classify::LineType;
use crate::routing::Candidate;

/// Runs the workflow as written: step 1 first; on a failed message the next step at once, on a
/// passed deadline the next step; stop after the last step or at `max_sends`. Landlines skip
/// SMS steps; a requested channel runs first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ordered;

impl FallbackStrategy for Ordered {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Ordered
    }

    fn start(&self, facts: &VerificationFacts<'_>, routes: &dyn RouteOptions) -> Start {
        start(
            StrategyKind::Ordered,
            facts,
            routes,
            None,
            "ordered workflow",
        )
    }

    fn next(
        &self,
        facts: &VerificationFacts<'_>,
        event: &FallbackEvent,
        routes: &dyn RouteOptions,
    ) -> Next {
        next(facts, event, routes, &|_, _| {})
    }
}

/// A route preference applied to a step's candidates before routes already used go last.
pub(super) type Prefer<'a> = &'a dyn Fn(Channel, &mut Vec<Candidate>);

/// The workflow as it can run for this number: SMS steps dropped for lines that cannot take
/// SMS, the requested channel first. Notes say what changed.
pub(super) fn reachable(facts: &VerificationFacts<'_>) -> Result<(Workflow, Vec<String>), String> {
    let line = facts.line_type;
    recommended_channel(line).map_err(str::to_string)?;
    let mut notes = Vec::new();
    let first_wait = facts.workflow.steps()[0].wait;
    let mut steps: Vec<WorkflowStep> = facts.workflow.steps().to_vec();
    if !accepts_sms(line) {
        steps.retain(|step| step.channel != Channel::Sms);
        if steps.is_empty() {
            steps.push(WorkflowStep {
                channel: Channel::Voice,
                wait: first_wait,
            });
        }
        notes.push(format!(
            "{} cannot receive SMS, so it starts on voice",
            describe(line)
        ));
    }
    if let Some(requested) = facts.requested_channel {
        if requested == Channel::Sms && !accepts_sms(line) {
            return Err(format!(
                "{} cannot receive SMS: ask for a mobile number, or use voice",
                describe(line)
            ));
        }
        match steps.iter().position(|step| step.channel == requested) {
            Some(0) => {}
            Some(i) => {
                let step = steps.remove(i);
                steps.insert(0, step);
                notes.push(format!(
                    "{requested} requested by the client, so it runs first"
                ));
            }
            None => {
                steps.insert(
                    0,
                    WorkflowStep {
                        channel: requested,
                        wait: first_wait,
                    },
                );
                notes.push(format!(
                    "{requested} requested by the client, so it runs first"
                ));
            }
        }
    }
    steps.truncate(super::MAX_STEPS);
    let workflow = Workflow::new(steps).expect("at least one step, at most MAX_STEPS");
    Ok((workflow, notes))
}

fn describe(line: LineType) -> &'static str {
    match line {
        LineType::FixedLine => "a landline",
        LineType::TollFree => "a toll-free number",
        LineType::Uan => "a universal access number",
        _ => "this line",
    }
}

/// The plan for the first runnable step at or after `from`: routes ordered by the preference,
/// then routes already used on the channel (by earlier steps) moved after unused ones, so that
/// `sms -> sms` resends on the next route. Steps no route can carry are skipped with a note.
pub(super) fn plan_from(
    workflow: &Workflow,
    from: usize,
    facts: &VerificationFacts<'_>,
    routes: &dyn RouteOptions,
    prefer: Prefer<'_>,
    skipped: &mut Vec<String>,
) -> Option<StepPlan> {
    for (index, step) in workflow.steps().iter().enumerate().skip(from) {
        let mut candidates = routes.routes(step.channel);
        if candidates.is_empty() {
            skipped.push(format!(
                "no route carries {} to {}, step {} skipped",
                step.channel,
                facts.region.unwrap_or("this number"),
                index + 1
            ));
            continue;
        }
        prefer(step.channel, &mut candidates);
        let used = |carrier: &str| {
            facts
                .history
                .iter()
                .any(|r| r.channel == step.channel && r.carrier == carrier)
        };
        let had_used = candidates.iter().any(|c| used(&c.carrier));
        candidates.sort_by_key(|c| (!c.health.is_usable(), used(&c.carrier)));
        if had_used && candidates.len() > 1 && !used(&candidates[0].carrier) {
            skipped.push(format!(
                "resent on the next route, {}",
                candidates[0].carrier
            ));
        }
        return Some(StepPlan {
            step: index,
            of: workflow.len(),
            channel: step.channel,
            wait: step.wait,
            routes: candidates,
            reason: String::new(),
        });
    }
    None
}

/// The start shared by the strategies: `preferred` moves its channel's first step to the
/// front (adaptive's choice); `intro` opens the reason.
pub(super) fn start(
    kind: StrategyKind,
    facts: &VerificationFacts<'_>,
    routes: &dyn RouteOptions,
    preferred: Option<(Channel, Prefer<'_>)>,
    intro: &str,
) -> Start {
    let (mut workflow, mut notes) = match reachable(facts) {
        Ok(reachable) => reachable,
        Err(reason) => {
            return Start {
                strategy: kind,
                workflow: facts.workflow.clone(),
                next: Next::Stop { reason },
            };
        }
    };
    let prefer: Prefer<'_> = match preferred {
        Some((channel, prefer)) => {
            let mut steps = workflow.steps().to_vec();
            if let Some(i) = steps.iter().position(|s| s.channel == channel)
                && i > 0
            {
                let step = steps.remove(i);
                steps.insert(0, step);
                workflow = Workflow::new(steps).expect("same steps");
            }
            prefer
        }
        None => &|_, _| {},
    };
    if facts.sends >= facts.max_sends {
        return Start {
            strategy: kind,
            workflow,
            next: Next::Stop {
                reason: format!("all {} sends used", facts.max_sends),
            },
        };
    }
    let plan = plan_from(&workflow, 0, facts, routes, prefer, &mut notes);
    let next = match plan {
        Some(mut plan) => {
            let step = workflow.steps()[plan.step];
            plan.reason = format!(
                "{intro} {workflow}: step {} of {}, {}",
                plan.step + 1,
                plan.of,
                show(step)
            );
            for note in &notes {
                plan.reason.push_str("; ");
                plan.reason.push_str(note);
            }
            Next::Send(plan)
        }
        None => Next::Stop {
            reason: format!("{intro} {workflow}: {}", notes.join("; ")),
        },
    };
    Start {
        strategy: kind,
        workflow,
        next,
    }
}

/// The next step after `event`, shared by the strategies.
pub(super) fn next(
    facts: &VerificationFacts<'_>,
    event: &FallbackEvent,
    routes: &dyn RouteOptions,
    prefer: Prefer<'_>,
) -> Next {
    let workflow = facts.workflow;
    let at = event.step();
    if let Some(running) = facts.history.last()
        && running.step != at
    {
        return Next::Ignore {
            reason: format!(
                "event about step {} while step {} is running",
                at + 1,
                running.step + 1
            ),
        };
    }
    let Some(step) = workflow.step(at) else {
        return Next::Ignore {
            reason: format!("the workflow {workflow} has no step {}", at + 1),
        };
    };
    let carrier = facts
        .history
        .last()
        .map(|r| format!(" via {}", r.carrier))
        .unwrap_or_default();
    let (cause, at_once) = match event {
        FallbackEvent::MessageFailed { reason, .. } => (
            format!(
                "step {} ({}{carrier}) failed: {reason}",
                at + 1,
                step.channel
            ),
            " at once",
        ),
        FallbackEvent::DeadlinePassed { .. } => (
            format!(
                "no approved check within {} of step {} ({})",
                crate::routing::duration::format(step.wait),
                at + 1,
                step.channel
            ),
            "",
        ),
    };
    if facts.sends >= facts.max_sends {
        return Next::Stop {
            reason: format!("{cause}; all {} sends used", facts.max_sends),
        };
    }
    if at + 1 >= workflow.len() {
        return Next::Stop {
            reason: format!(
                "{cause}; it was the last step of {workflow}; the code stays valid until it expires"
            ),
        };
    }
    let mut notes = Vec::new();
    match plan_from(workflow, at + 1, facts, routes, prefer, &mut notes) {
        Some(mut plan) => {
            let step = workflow.steps()[plan.step];
            plan.reason = format!(
                "{cause}: step {} of {}, {}{at_once} with the same code",
                plan.step + 1,
                plan.of,
                show(step)
            );
            for note in &notes {
                plan.reason.push_str("; ");
                plan.reason.push_str(note);
            }
            Next::Send(plan)
        }
        None => Next::Stop {
            reason: format!("{cause}; {}", notes.join("; ")),
        },
    }
}
