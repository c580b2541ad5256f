//! What the server benchmarks share: a closed-loop load of concurrent callers.

use std::time::{Duration, Instant};

/// Calls per second of `call` from `concurrency` tasks, each calling in a loop for `budget`;
/// `call(worker, n)` is the `n`th call of task `worker`.
pub async fn measure<F, Fut>(concurrency: usize, budget: Duration, call: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.spawn(async move {
            let mut count = 0usize;
            while started.elapsed() < budget {
                call(worker, count).await;
                count += 1;
            }
            count
        });
    }
    let mut total = 0;
    while let Some(count) = tasks.join_next().await {
        total += count.expect("client task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}
