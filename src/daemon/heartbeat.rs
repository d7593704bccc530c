//! The heartbeat: proves the scheduler loop alive to systemd's watchdog.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::health::{self, Health};
use crate::scheduler::Command;
use crate::service::Notifier;

/// Proves the scheduler loop alive: nudges it, and when it turns, pings the
/// systemd watchdog.
pub(super) async fn heartbeat(
    health: Arc<Health>,
    tx: mpsc::Sender<Command>,
    watchdog: Option<Duration>,
    notifier: Arc<dyn Notifier>,
) {
    let period = health::heartbeat_period(watchdog);
    let mut ticks = health.subscribe();
    let mut missed = 0u32;
    loop {
        tokio::time::sleep(period).await;
        ticks.borrow_and_update();
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Command::Ping) {
            return;
        }
        let turned = matches!(
            tokio::time::timeout(period, ticks.changed()).await,
            Ok(Ok(()))
        );
        if turned {
            missed = 0;
            if watchdog.is_some() {
                notifier.watchdog();
            }
        } else {
            missed += 1;
            if missed == 3 {
                tracing::warn!(
                    "the scheduler loop has not answered for {:?}; no watchdog pings until it does",
                    period * 6
                );
            }
        }
    }
}
