//! Fallback workflows as operators and clients write them: `sms(30s) -> voice(60s)`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use verify_carrier::Channel;

use crate::routing::duration;

/// Most steps a workflow may have.
pub const MAX_STEPS: usize = 10;
/// Shortest wait of a step.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// Longest wait of a step.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// One step: send the code on `channel`, then wait up to `wait` for an approved check before
/// the next step (a failed delivery moves on at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowStep {
    /// The channel of this send.
    pub channel: Channel,
    /// How long to wait for an approved check before moving on.
    pub wait: Duration,
}

impl fmt::Display for WorkflowStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.channel, duration::format(self.wait))
    }
}

/// Steps run in order, each sending the same code. Two steps on the same channel mean a resend
/// on the next route. Written `sms(30s) -> sms(30s) -> voice(2m)`; serde reads and writes
/// that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    steps: Vec<WorkflowStep>,
}

/// Why a workflow text is not a workflow, naming the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// Nothing to run.
    #[error("empty workflow; write e.g. sms(30s) -> voice(60s)")]
    Empty,
    /// More than [`MAX_STEPS`] steps.
    #[error("{0} steps; a workflow has at most {MAX_STEPS}")]
    TooManySteps(usize),
    /// One step is malformed.
    #[error("step {position} `{text}`: {problem}")]
    Step {
        /// 1-based position of the step.
        position: usize,
        /// The step as written.
        text: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl Workflow {
    /// A workflow of these steps (at least one, at most [`MAX_STEPS`]).
    pub fn new(steps: Vec<WorkflowStep>) -> Result<Self, WorkflowError> {
        match steps.len() {
            0 => Err(WorkflowError::Empty),
            n if n > MAX_STEPS => Err(WorkflowError::TooManySteps(n)),
            _ => Ok(Workflow { steps }),
        }
    }

    /// Parses `sms(30s) -> voice(60s)`. Each step is `channel(wait)`, with channel `sms` or
    /// `voice` and wait like `30s`, `2m`, `1m30s` (1s to 24h); steps are joined by `->`.
    pub fn parse(text: &str) -> Result<Self, WorkflowError> {
        if text.trim().is_empty() {
            return Err(WorkflowError::Empty);
        }
        let parts: Vec<&str> = text.split("->").collect();
        if parts.len() > MAX_STEPS {
            return Err(WorkflowError::TooManySteps(parts.len()));
        }
        let steps = parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                parse_step(part.trim()).map_err(|problem| WorkflowError::Step {
                    position: i + 1,
                    text: part.trim().to_string(),
                    problem,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Workflow::new(steps)
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[WorkflowStep] {
        &self.steps
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always false: a workflow has at least one step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Step `index` (0-based).
    pub fn step(&self, index: usize) -> Option<WorkflowStep> {
        self.steps.get(index).copied()
    }

    /// The workflow without the steps on channels `allowed` refuses (a service that allows
    /// only some channels); `None` when no step is left.
    pub fn keeping(&self, allowed: impl Fn(Channel) -> bool) -> Option<Workflow> {
        let steps: Vec<WorkflowStep> = self
            .steps
            .iter()
            .copied()
            .filter(|step| allowed(step.channel))
            .collect();
        Workflow::new(steps).ok()
    }
}

fn parse_step(text: &str) -> Result<WorkflowStep, String> {
    if text.is_empty() {
        return Err("empty step; write channel(wait), e.g. voice(60s)".into());
    }
    let Some((name, rest)) = text.split_once('(') else {
        return Err(format!(
            "missing wait; write {}(30s)",
            text.to_ascii_lowercase()
        ));
    };
    let name = name.trim();
    let Some(wait) = rest.strip_suffix(')') else {
        return Err("expected `)` at the end of the step".into());
    };
    let channel = Channel::parse(&name.to_ascii_lowercase())
        .ok_or_else(|| format!("unknown channel `{name}`; use sms or voice"))?;
    let wait = duration::parse(wait)?;
    if !(MIN_WAIT..=MAX_WAIT).contains(&wait) {
        return Err(format!(
            "wait {} is out of range; use 1s to 24h",
            duration::format(wait)
        ));
    }
    Ok(WorkflowStep { channel, wait })
}

impl FromStr for Workflow {
    type Err = WorkflowError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Workflow::parse(text)
    }
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl Serialize for Workflow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Workflow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Workflow::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_steps_and_prints_them_back() {
        let workflow = Workflow::parse("sms(30s) -> voice(60s)").unwrap();
        assert_eq!(
            workflow.steps(),
            [
                WorkflowStep {
                    channel: Channel::Sms,
                    wait: secs(30)
                },
                WorkflowStep {
                    channel: Channel::Voice,
                    wait: secs(60)
                },
            ]
        );
        assert_eq!(workflow.to_string(), "sms(30s) -> voice(1m)");
        let resend: Workflow = "SMS( 30s )->sms(30s)  ->  voice(2m)".parse().unwrap();
        assert_eq!(resend.to_string(), "sms(30s) -> sms(30s) -> voice(2m)");
        assert_eq!(resend.step(2).unwrap().wait, secs(120));
        assert_eq!(Workflow::parse("voice(1m30s)").unwrap().len(), 1);
    }

    #[test]
    fn printed_workflows_parse_back_to_the_same_steps() {
        for text in [
            "sms(30s) -> voice(60s)",
            "sms(1m30s) -> sms(1500ms) -> voice(2h)",
            "voice(24h)",
        ] {
            let workflow = Workflow::parse(text).unwrap();
            assert_eq!(Workflow::parse(&workflow.to_string()), Ok(workflow.clone()));
            let json = serde_json::to_string(&workflow).unwrap();
            assert_eq!(serde_json::from_str::<Workflow>(&json).unwrap(), workflow);
        }
    }

    #[test]
    fn errors_name_the_step() {
        let cases = [
            ("", "empty workflow; write e.g. sms(30s) -> voice(60s)"),
            (
                "sms(30s) -> vioce(60s)",
                "step 2 `vioce(60s)`: unknown channel `vioce`; use sms or voice",
            ),
            (
                "sms(30s) -> voice",
                "step 2 `voice`: missing wait; write voice(30s)",
            ),
            (
                "sms(30) -> voice(60s)",
                "step 1 `sms(30)`: `30` needs a unit: ms, s, m or h (e.g. 30s)",
            ),
            (
                "sms(30s) ->",
                "step 2 ``: empty step; write channel(wait), e.g. voice(60s)",
            ),
            (
                "sms(30s -> voice(1m)",
                "step 1 `sms(30s`: expected `)` at the end of the step",
            ),
            (
                "sms(500ms)",
                "step 1 `sms(500ms)`: wait 500ms is out of range; use 1s to 24h",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(
                Workflow::parse(text).unwrap_err().to_string(),
                message,
                "{text}"
            );
        }
        let long = ["sms(1s)"; 11].join(" -> ");
        assert_eq!(
            Workflow::parse(&long).unwrap_err(),
            WorkflowError::TooManySteps(11)
        );
    }
}
