//! The published chain every replica relays: the newest full snapshot and
//! the deltas after it, followed from the database (`LISTEN` for speed, a
//! poll as the fallback), so replicas that do not publish serve edges too.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::db::notify::{self, Listener};
use crate::db::publish::{self, Stored};

/// How often the database is asked even without a notification.
const POLL: Duration = Duration::from_secs(1);

/// A full snapshot and the deltas on it, in sequence order.
#[derive(Debug, Default)]
pub struct Chain {
    pub snapshots: Vec<Arc<Stored>>,
}

impl Chain {
    pub fn latest(&self) -> Option<u64> {
        self.snapshots.last().map(|s| s.sequence)
    }

    /// What an edge holding `held` is sent to reach the newest sequence: the
    /// deltas after `held` when it is on this chain, else everything.
    pub fn to_send(&self, held: Option<u64>) -> &[Arc<Stored>] {
        let on_chain = held.and_then(|held| self.snapshots.iter().position(|s| s.sequence == held));
        match on_chain {
            Some(at) => &self.snapshots[at + 1..],
            None => &self.snapshots,
        }
    }

    /// The chain with `next` added: a full snapshot starts a new chain; a
    /// delta must extend the newest sequence.
    fn extended(&self, next: Stored) -> Option<Self> {
        let mut snapshots = match next.base {
            None => Vec::new(),
            Some(base) if Some(base) == self.latest() => self.snapshots.clone(),
            Some(_) => return None,
        };
        snapshots.push(Arc::new(next));
        Some(Self { snapshots })
    }
}

/// Follows the database and publishes each new chain on `sender`.
pub async fn follow(pool: PgPool, sender: watch::Sender<Arc<Chain>>) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            listener = match Listener::listen(&pool, notify::SNAPSHOTS).await {
                Ok(l) => Some(l),
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for snapshots; polling");
                    None
                }
            };
        }
        if let Err(error) = catch_up(&pool, &sender).await {
            tracing::warn!(%error, "reading published snapshots failed; retrying");
        }
        match listener.as_mut() {
            Some(l) => {
                if let Err(error) = l.wait(POLL).await {
                    tracing::warn!(%error, "snapshot notifications lost; reconnecting");
                    listener = None;
                }
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

async fn catch_up(
    pool: &PgPool,
    sender: &watch::Sender<Arc<Chain>>,
) -> crate::error::DomainResult<()> {
    let current = sender.borrow().clone();
    let Some(latest) = current.latest() else {
        let snapshots: Vec<_> = publish::chain(pool)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        if !snapshots.is_empty() {
            sender.send_replace(Arc::new(Chain { snapshots }));
        }
        return Ok(());
    };
    let newer = publish::after(pool, latest).await?;
    if newer.is_empty() {
        return Ok(());
    }
    let mut chain = Chain {
        snapshots: current.snapshots.clone(),
    };
    for stored in newer {
        match chain.extended(stored) {
            Some(next) => chain = next,
            None => {
                // A gap (pruned or out of order): start over from the newest full.
                let snapshots = publish::chain(pool)
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                chain = Chain { snapshots };
                break;
            }
        }
    }
    sender.send_replace(Arc::new(chain));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(sequence: u64, base: Option<u64>) -> Stored {
        Stored {
            sequence,
            base,
            bytes: vec![],
        }
    }

    #[test]
    fn an_edge_gets_only_what_it_lacks() {
        let chain = Chain::default()
            .extended(stored(5, None))
            .and_then(|c| c.extended(stored(6, Some(5))))
            .and_then(|c| c.extended(stored(8, Some(6))))
            .unwrap();
        let sequences =
            |held| -> Vec<u64> { chain.to_send(held).iter().map(|s| s.sequence).collect() };
        assert_eq!(sequences(Some(6)), vec![8]);
        assert_eq!(sequences(Some(8)), Vec::<u64>::new());
        assert_eq!(sequences(None), vec![5, 6, 8]);
        assert_eq!(
            sequences(Some(3)),
            vec![5, 6, 8],
            "an older chain: start from the full"
        );
        assert!(
            chain.extended(stored(9, Some(7))).is_none(),
            "a delta off the chain"
        );
        assert_eq!(chain.extended(stored(9, None)).unwrap().latest(), Some(9));
    }
}
