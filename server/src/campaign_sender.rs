//! The campaign sender: moves running campaigns' due recipients into the outbox at the rate
//! their routes take, fairly across campaigns, keeping no more than a moment of each route's
//! work queued so that verification codes (which dispatchers claim first) never wait behind a
//! campaign. It also starts scheduled campaigns and ends finished or expired ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::carriers::CarrierSet;
use crate::clock::now_ms;
use crate::domain::{Campaign, CampaignStatus};
use crate::store::SqlStore;
use crate::usecases::UseCases;
use crate::usecases::campaign::FeedShares;

/// How often recipients are fed to routes.
const FEED_EVERY: Duration = Duration::from_millis(50);
/// How often campaigns are read again and settled (started, completed, expired).
const SETTLE_EVERY: Duration = Duration::from_millis(500);
/// The most of a route's work kept queued in the outbox, in seconds of its rate: enough that
/// the dispatcher never runs dry between rounds, little enough that pausing holds back at most
/// this much and a code waits behind none of it.
const QUEUED_SECONDS: f64 = 0.5;
/// A route that declares no rate: the most of its campaign messages kept queued.
const UNLIMITED_QUEUED: u64 = 4_096;
/// The most tokens a route saves up while idle, in seconds of its rate (its burst); a round
/// that took longer keeps the whole of what it earned (slow rounds must not cost capacity).
const BURST_SECONDS: f64 = 0.2;

/// A route's pace: tokens at its rate, spent by each message fed to it.
#[derive(Debug)]
struct RoutePace {
    /// Messages per second; `None` when the carrier declares no limit.
    rate: Option<f64>,
    /// Messages it may take now.
    tokens: f64,
}

impl RoutePace {
    fn refill(&mut self, elapsed: Duration) {
        if let Some(rate) = self.rate {
            let saved = elapsed.as_secs_f64().max(BURST_SECONDS);
            self.tokens = (self.tokens + rate * elapsed.as_secs_f64()).min(rate * saved);
        }
    }

    /// How many more messages it may take now, with `queued` of its campaign messages waiting.
    fn room(&self, queued: u64) -> u64 {
        match self.rate {
            Some(rate) => {
                let cap = (rate * QUEUED_SECONDS).ceil() as u64;
                (self.tokens.floor().max(0.0) as u64).min(cap.saturating_sub(queued))
            }
            None => UNLIMITED_QUEUED.saturating_sub(queued),
        }
    }

    fn spend(&mut self, count: u32) {
        if self.rate.is_some() {
            self.tokens -= f64::from(count);
        }
    }
}

/// Sends running campaigns until shutdown.
pub struct CampaignSender {
    store: Arc<SqlStore>,
    cases: Arc<UseCases>,
    routes: HashMap<String, RoutePace>,
}

impl CampaignSender {
    /// A sender over the use cases, pacing each configured carrier at its declared rate.
    pub fn new(store: Arc<SqlStore>, cases: Arc<UseCases>, carriers: &CarrierSet) -> Self {
        let routes = carriers
            .names()
            .map(|name| {
                let rate = carriers
                    .get(name)
                    .and_then(|carrier| carrier.capabilities().max_messages_per_second)
                    .map(f64::from);
                (name.to_string(), RoutePace { rate, tokens: 0.0 })
            })
            .collect();
        CampaignSender {
            store,
            cases,
            routes,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut campaigns: Vec<Campaign> = Vec::new();
        let mut last_settle: Option<Instant> = None;
        let mut last_feed = Instant::now();
        let mut turn = 0usize;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if last_settle.is_none_or(|at| at.elapsed() >= SETTLE_EVERY) {
                last_settle = Some(Instant::now());
                campaigns = self.settle().await;
            }
            let elapsed = last_feed.elapsed();
            last_feed = Instant::now();
            for pace in self.routes.values_mut() {
                pace.refill(elapsed);
            }
            let running: Vec<&Campaign> = campaigns
                .iter()
                .filter(|c| c.status == CampaignStatus::Running)
                .collect();
            if !running.is_empty() {
                turn = turn.wrapping_add(1);
                let started = Instant::now();
                self.feed(&running, turn).await;
                tracing::debug!(
                    took_ms = started.elapsed().as_millis() as u64,
                    since_last_ms = elapsed.as_millis() as u64,
                    "campaign feed round"
                );
            }
            tokio::select! {
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                _ = tokio::time::sleep(FEED_EVERY) => {}
            }
        }
    }

    /// Reads the campaigns that may send, settling each; returns those still live.
    async fn settle(&self) -> Vec<Campaign> {
        let live = [
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            CampaignStatus::Paused,
        ];
        let campaigns = match self.store.campaigns_in(&live).await {
            Ok(campaigns) => campaigns,
            Err(error) => {
                tracing::error!(%error, "reading the campaigns failed");
                return Vec::new();
            }
        };
        let mut settled = Vec::with_capacity(campaigns.len());
        for campaign in campaigns {
            if campaign.status == CampaignStatus::Paused && !campaign.past_deadline(now_ms()) {
                settled.push(campaign);
                continue;
            }
            match self.cases.settle_campaign(&campaign).await {
                Ok(campaign) if !campaign.status.is_final() => settled.push(campaign),
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(campaign = %campaign.id, %error, "settling a campaign failed");
                    settled.push(campaign);
                }
            }
        }
        settled
    }

    /// One round: each route's room shared among the running campaigns, the first in turn
    /// getting what does not divide evenly.
    async fn feed(&mut self, running: &[&Campaign], turn: usize) {
        let queued: HashMap<String, u64> = match self.store.campaign_backlog_by_carrier().await {
            Ok(queued) => queued.into_iter().collect(),
            Err(error) => {
                tracing::error!(%error, "reading the queued campaign messages failed");
                return;
            }
        };
        let mut rooms: Vec<(String, u64)> = self
            .routes
            .iter()
            .map(|(name, pace)| {
                (
                    name.clone(),
                    pace.room(queued.get(name).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, room)| *room > 0)
            .collect();
        if rooms.is_empty() {
            return;
        }
        rooms.sort();
        let count = running.len() as u64;
        for offset in 0..running.len() {
            let index = (turn + offset) % running.len();
            let campaign = running[index];
            let per_route = rooms
                .iter()
                .map(|(name, room)| {
                    let share = room / count + u64::from(offset == 0) * (room % count);
                    (name.clone(), u32::try_from(share).unwrap_or(u32::MAX))
                })
                .collect();
            match self
                .cases
                .feed_campaign(&campaign.id, FeedShares { per_route })
                .await
            {
                Ok(fed) => {
                    tracing::debug!(campaign = %campaign.id, queued = ?fed.queued, rooms = ?rooms, "campaign fed");
                    for (carrier, count) in &fed.queued {
                        if let Some(pace) = self.routes.get_mut(carrier) {
                            pace.spend(*count);
                        }
                    }
                    if fed.deferred > 0 || fed.refused > 0 {
                        tracing::info!(
                            campaign = %campaign.id,
                            deferred = fed.deferred,
                            refused = fed.refused,
                            "campaign recipients held or refused at send time"
                        );
                    }
                }
                Err(error) => {
                    tracing::error!(campaign = %campaign.id, %error, "feeding a campaign failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route of `rate` messages/s that has saved nothing yet.
    fn route(rate: Option<f64>) -> RoutePace {
        RoutePace { rate, tokens: 0.0 }
    }

    #[test]
    fn an_idle_route_saves_up_a_burst_at_most() {
        let mut pace = route(Some(10_000.0));
        pace.refill(Duration::from_millis(50));
        assert_eq!(pace.room(0), 500);
        // Idle rounds of the usual length: the savings stop at BURST_SECONDS of the rate.
        for _ in 0..20 {
            pace.refill(Duration::from_millis(50));
        }
        assert_eq!(pace.room(0), 2_000);
    }

    #[test]
    fn a_slow_round_keeps_all_it_earned() {
        // A round that took 600 ms (a busy database) earned 6,000 messages at 10,000/s:
        // capping them at the idle burst (2,000) would run the route at a third of its rate.
        let mut pace = route(Some(10_000.0));
        pace.refill(Duration::from_millis(600));
        assert_eq!(pace.room(0), 5_000, "still bound by what may wait queued");
        pace.spend(4_000);
        assert_eq!(pace.room(0), 2_000);
        // What is already queued counts against the queue's bound, not against the tokens.
        assert_eq!(pace.room(4_000), 1_000);
    }

    #[test]
    fn a_route_without_a_rate_is_bound_by_its_queue_alone() {
        let mut pace = route(None);
        pace.refill(Duration::from_secs(10));
        pace.spend(1_000);
        assert_eq!(pace.room(96), UNLIMITED_QUEUED - 96);
    }
}
