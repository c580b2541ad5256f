//! The lease under which a dispatcher holds messages: it registers, renews its heartbeat every
//! fifth of the lease, and is taken for dead when the heartbeat (stamped with the database's
//! clock) is older than the lease, or at once when it ran on this host and its process is gone
//! (a restart after `kill -9` takes over the dead process's messages within a sweep, not a
//! lease).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::store::{SqlStore, WorkerRecord};
use crate::usecases::delivery;

/// Who a dispatcher is: its id, and the host and process it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    /// Unique per dispatcher run.
    pub id: String,
    /// The host, as processes on it see it: host name, boot and process namespace, so that a
    /// process id means the same process to every dispatcher with the same host. Empty when
    /// the system does not tell: the lease alone then decides.
    pub host: String,
    /// This process's id.
    pub pid: u32,
    /// When it started, unix ms.
    pub started_at_ms: i64,
}

impl WorkerIdentity {
    /// A new identity for a dispatcher in this process.
    pub fn of_this_process() -> WorkerIdentity {
        WorkerIdentity {
            id: format!("dispatcher-{}", uuid::Uuid::now_v7().simple()),
            host: this_host(),
            pid: std::process::id(),
            started_at_ms: now_ms(),
        }
    }

    /// Its registration (the database stamps the heartbeat).
    pub fn record(&self) -> WorkerRecord {
        WorkerRecord {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            started_at_ms: self.started_at_ms,
            heartbeat_at_ms: 0,
        }
    }

    /// Whether this dispatcher takes `other` for dead when the database's clock reads
    /// `database_now_ms`: its heartbeat is older than `lease`, or it ran on this host in a
    /// process that is gone.
    pub fn takes_for_dead(
        &self,
        other: &WorkerRecord,
        lease: Duration,
        database_now_ms: i64,
    ) -> bool {
        if other.id == self.id {
            return false;
        }
        if other.heartbeat_at_ms < database_now_ms - lease.as_millis() as i64 {
            return true;
        }
        // Same host: a process id this process has (reused) or no process has is dead.
        !self.host.is_empty()
            && other.host == self.host
            && (other.pid == self.pid || !process_exists(other.pid))
    }
}

/// Renews the lease every fifth of it, until the task is aborted (after the dispatcher's
/// last submission has its outcome); registers again if another dispatcher took this one for
/// dead meanwhile (it then gave this one's messages to others, and this one can no longer
/// hand those over).
pub async fn keep_alive(store: Arc<SqlStore>, identity: WorkerIdentity, lease: Duration) {
    let every = lease / 5;
    loop {
        tokio::time::sleep(every).await;
        match delivery::heartbeat(&store, &identity.id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(worker = %identity.id, "this dispatcher was taken for dead (its heartbeat was late); registering again");
                if let Err(error) = delivery::register_worker(&store, &identity.record()).await {
                    tracing::error!(%error, "registering the dispatcher again failed");
                }
            }
            Err(error) => tracing::error!(%error, "renewing the dispatcher lease failed"),
        }
    }
}

/// Host name, boot id and process namespace; empty unless this system tells all three.
fn this_host() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_string())
            .unwrap_or_default()
    };
    let namespace = std::fs::read_link("/proc/self/ns/pid")
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let parts = [
        read("/proc/sys/kernel/hostname"),
        read("/proc/sys/kernel/random/boot_id"),
        namespace,
    ];
    if parts.iter().any(String::is_empty) {
        return String::new();
    }
    parts.join("/")
}

/// Whether a process with this id exists on this host (where `/proc` tells; elsewhere it is
/// assumed to, and the lease alone decides).
fn process_exists(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(host: &str, pid: u32, heartbeat_at_ms: i64) -> WorkerRecord {
        WorkerRecord {
            id: "dispatcher-other".into(),
            host: host.into(),
            pid,
            started_at_ms: 0,
            heartbeat_at_ms,
        }
    }

    #[test]
    fn a_late_heartbeat_or_a_gone_process_on_this_host_is_dead() {
        let me = WorkerIdentity::of_this_process();
        let lease = Duration::from_secs(5);
        let now = 100_000;
        // Elsewhere: only the lease decides.
        assert!(!me.takes_for_dead(&other("elsewhere", 1, now - 4_999), lease, now));
        assert!(me.takes_for_dead(&other("elsewhere", 1, now - 5_001), lease, now));
        // This host, a live process (this one's parent is alive while it runs).
        let parent = std::os::unix::process::parent_id();
        assert!(!me.takes_for_dead(&other(&me.host, parent, now), lease, now));
        // This host, this process id under another dispatcher id: the old process is gone.
        assert!(me.takes_for_dead(&other(&me.host, me.pid, now), lease, now));
        // This host, a process id nobody has.
        assert!(me.takes_for_dead(&other(&me.host, u32::MAX - 1, now), lease, now));
        // Never itself.
        assert!(!me.takes_for_dead(&me.record(), lease, now));
        // A host it cannot name: the lease alone decides.
        let nameless = WorkerIdentity {
            host: String::new(),
            ..me.clone()
        };
        assert!(!nameless.takes_for_dead(&other("", me.pid, now), lease, now));
    }
}
