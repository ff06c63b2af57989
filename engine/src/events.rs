//! The engine's event log: every event gets the next sequence number, is kept in sled for a
//! bounded window and broadcast live. A subscriber replays what it missed (from a sequence
//! number) and then follows live events, with no gap and no duplicate in between.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_proto::engine::v1::Event;
use futures::Stream;
use prost::Message;
use tokio::sync::broadcast;

use crate::error::{Error, Result};

/// Events kept when the configuration does not say.
pub const DEFAULT_RETENTION: u64 = 10_000;

/// How many live events a slow subscriber may fall behind before it re-reads the store.
const LIVE_BUFFER: usize = 256;

/// The log. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    tree: sled::Tree,
    /// Next sequence number; held while storing and broadcasting so order is total.
    next: Mutex<u64>,
    live: broadcast::Sender<Event>,
    retention: u64,
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn decode(v: &[u8]) -> Option<Event> {
    Event::decode(v).ok()
}

impl EventLog {
    /// Opens the log in `db`, keeping at most `retention` events.
    pub fn open(db: &sled::Db, retention: u64) -> Result<Self> {
        let tree = db.open_tree("events")?;
        let last = match tree.last()? {
            Some((k, _)) => u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let retention = retention.max(1);
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let log = EventLog {
            inner: Arc::new(Inner {
                tree,
                next: Mutex::new(last + 1),
                live,
                retention,
            }),
        };
        log.trim(last)?;
        Ok(log)
    }

    fn trim(&self, last: u64) -> Result<()> {
        let Some(keep_from) = last.checked_sub(self.inner.retention - 1) else {
            return Ok(());
        };
        for k in self.inner.tree.range(..key(keep_from)).keys() {
            self.inner.tree.remove(k?)?;
        }
        Ok(())
    }

    /// Records and broadcasts an event; returns it with its sequence number.
    pub fn publish<'a>(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Event {
        let mut next = self.inner.next.lock().unwrap_or_else(|p| p.into_inner());
        let event = Event {
            seq: *next,
            time: Some(prost_types::Timestamp::from(SystemTime::now())),
            r#type: kind.to_string(),
            action: action.to_string(),
            id: id.to_string(),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        *next += 1;
        // An event that cannot be stored is still delivered live; losing history is
        // better than failing the operation that produced it.
        if let Err(e) = self
            .inner
            .tree
            .insert(key(event.seq), event.encode_to_vec())
        {
            tracing::warn!(error = %e, seq = event.seq, "could not store event");
        }
        if let Some(old) = event.seq.checked_sub(self.inner.retention) {
            let _ = self.inner.tree.remove(key(old));
        }
        let _ = self.inner.live.send(event.clone());
        tracing::debug!(seq = event.seq, r#type = kind, action, id, "event");
        event
    }

    /// Sequence number of the newest event, 0 when there is none.
    pub fn latest_seq(&self) -> u64 {
        *self.inner.next.lock().unwrap_or_else(|p| p.into_inner()) - 1
    }

    /// Events after `since` still retained, then live ones; all passing `filter`.
    pub fn subscribe(&self, since: Option<u64>, filter: Filter) -> impl Stream<Item = Event> {
        let next = self.inner.next.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.inner.live.subscribe();
        let latest = *next - 1;
        let mut backlog = VecDeque::new();
        if let Some(since) = since {
            let oldest = self.read_from(since + 1, &mut backlog);
            if let Some(oldest) = oldest.filter(|&o| o > since + 1) {
                backlog.push_front(gap_notice(since + 1, oldest - 1));
            } else if oldest.is_none() && since < latest {
                backlog.push_front(gap_notice(since + 1, latest));
            }
        }
        drop(next);
        let state = Subscription {
            log: self.clone(),
            backlog,
            rx,
            last: latest,
            filter,
        };
        futures::stream::unfold(state, |mut s| async move {
            let event = s.next().await?;
            Some((event, s))
        })
    }

    /// Appends stored events from `from` on to `out`; returns the first stored seq found.
    fn read_from(&self, from: u64, out: &mut VecDeque<Event>) -> Option<u64> {
        let mut first = None;
        for (_, v) in self.inner.tree.range(key(from)..).flatten() {
            if let Some(e) = decode(&v) {
                first.get_or_insert(e.seq);
                out.push_back(e);
            }
        }
        first
    }
}

fn gap_notice(from: u64, to: u64) -> Event {
    Event {
        seq: to,
        time: Some(prost_types::Timestamp::from(SystemTime::now())),
        r#type: "events".into(),
        action: "gap".into(),
        id: String::new(),
        attributes: HashMap::from([
            ("from".to_string(), from.to_string()),
            ("to".to_string(), to.to_string()),
            (
                "reason".to_string(),
                "older than the retained window".to_string(),
            ),
        ]),
    }
}

struct Subscription {
    log: EventLog,
    backlog: VecDeque<Event>,
    rx: broadcast::Receiver<Event>,
    /// Last sequence number handed out or skipped as already replayed.
    last: u64,
    filter: Filter,
}

impl Subscription {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if self.filter.matches(&e) {
                    return Some(e);
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(e) if e.seq <= self.last => continue,
                Ok(e) => {
                    self.last = e.seq;
                    if self.filter.matches(&e) {
                        return Some(e);
                    }
                }
                // Fell behind the live buffer: the store still has what was skipped.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let mut missed = VecDeque::new();
                    self.log.read_from(self.last + 1, &mut missed);
                    if let Some(e) = missed.back() {
                        self.last = e.seq;
                    }
                    self.backlog = missed;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Which events a subscriber wants: values of one key are alternatives, keys combine.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    by_key: HashMap<String, Vec<String>>,
}

/// Keys a filter may use.
pub const FILTER_KEYS: [&str; 3] = ["type", "action", "id"];

impl Filter {
    /// Parses `key=value` strings.
    pub fn parse(filters: &[String]) -> Result<Self> {
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for f in filters {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                Error::InvalidArgument(format!("bad filter {f:?}: expected key=value"))
            })?;
            if !FILTER_KEYS.contains(&k) {
                return Err(Error::InvalidArgument(format!(
                    "unknown filter key {k:?}: use one of {}",
                    FILTER_KEYS.join(", ")
                )));
            }
            by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(Filter { by_key })
    }

    /// True when `e` passes every key.
    pub fn matches(&self, e: &Event) -> bool {
        self.by_key.iter().all(|(k, values)| {
            values.iter().any(|v| match k.as_str() {
                "type" => e.r#type == *v,
                "action" => e.action == *v,
                "id" => e.id == *v || e.attributes.get("name") == Some(v),
                _ => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        (dir, db)
    }

    async fn take(s: impl Stream<Item = Event>, n: usize) -> Vec<Event> {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.take(n).collect())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn replays_since_then_follows_live_without_gaps() {
        let (_d, db) = db();
        let log = EventLog::open(&db, 100).unwrap();
        for i in 0..5 {
            log.publish("container", "start", &format!("c{i}"), []);
        }
        let stream = log.subscribe(Some(3), Filter::default());
        log.publish("container", "die", "c9", []);
        let got = take(stream, 3).await;
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(got[2].action, "die");
    }

    #[tokio::test]
    async fn sequence_survives_reopen_and_window_is_bounded() {
        let (_d, db) = db();
        {
            let log = EventLog::open(&db, 3).unwrap();
            for _ in 0..10 {
                log.publish("daemon", "tick", "", []);
            }
        }
        let log = EventLog::open(&db, 3).unwrap();
        assert_eq!(log.latest_seq(), 10);
        assert_eq!(log.publish("daemon", "tick", "", []).seq, 11);
        let got = take(log.subscribe(Some(0), Filter::default()), 4).await;
        assert_eq!(got[0].r#type, "events");
        assert_eq!(got[0].attributes["from"], "1");
        assert_eq!(got[0].attributes["to"], "8");
        assert_eq!(
            got[1..].iter().map(|e| e.seq).collect::<Vec<_>>(),
            [9, 10, 11]
        );
    }

    #[tokio::test]
    async fn filters_and_across_keys_or_within_a_key() {
        let (_d, db) = db();
        let log = EventLog::open(&db, 100).unwrap();
        log.publish("container", "start", "a", []);
        log.publish("image", "pull", "busybox", []);
        log.publish("container", "die", "b", [("name", "web".to_string())]);
        log.publish("container", "start", "c", []);
        let f = Filter::parse(&["type=container".into(), "id=a".into(), "id=web".into()]).unwrap();
        let got = take(log.subscribe(Some(0), f), 2).await;
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn bad_filters_are_refused() {
        assert!(Filter::parse(&["type".into()]).is_err());
        assert!(Filter::parse(&["colour=red".into()]).is_err());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_recovers_from_the_store() {
        let (_d, db) = db();
        let log = EventLog::open(&db, 10_000).unwrap();
        let stream = log.subscribe(None, Filter::default());
        for _ in 0..(LIVE_BUFFER * 2) {
            log.publish("daemon", "tick", "", []);
        }
        let got = take(stream, LIVE_BUFFER * 2).await;
        let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=(LIVE_BUFFER as u64 * 2)).collect::<Vec<_>>());
    }
}
