//! Progress of a pull or push: one [`TransferProgress`] stream per call, keyed by blob.
//!
//! A status change is always sent; byte counts within one status are throttled to about ten
//! messages a second per blob (the last count, `current == total`, always goes out), so a
//! fast transfer does not flood the client and a slow client never slows the transfer:
//! throttled counts are dropped when the client lags behind.

use std::time::{Duration, Instant};

use berth_proto::types::v1::{BlobKind, TransferProgress, TransferStatus};
use tokio::sync::mpsc;

use crate::images::media;
use crate::images::record::Descriptor;

/// Least time between two byte-count messages of one blob.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Messages buffered for a client that reads slowly.
const BUFFER: usize = 256;

/// Lets an event through at most once per interval.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// A throttle letting one event through per `every`.
    pub fn new(every: Duration) -> Self {
        Throttle { every, last: None }
    }

    /// True (and the interval restarts) when an event at `now` may go through.
    pub fn ready(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// The sending side of a call's progress. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    tx: mpsc::Sender<TransferProgress>,
}

impl Progress {
    /// A progress stream and its receiving end.
    pub fn channel() -> (Progress, mpsc::Receiver<TransferProgress>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        (Progress { tx }, rx)
    }

    /// Progress that goes nowhere (tests, internal callers).
    pub fn discard() -> Progress {
        let (tx, _) = mpsc::channel(1);
        Progress { tx }
    }

    /// Sends one message; a client that went away is not an error here (the call is
    /// cancelled through [`Progress::closed`]).
    pub async fn send(&self, p: TransferProgress) {
        let _ = self.tx.send(p).await;
    }

    /// Resolves when the receiving side is gone: the client disconnected.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// The progress of one blob.
    pub fn blob(&self, desc: &Descriptor, kind: BlobKind) -> BlobProgress {
        BlobProgress {
            progress: self.clone(),
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            kind,
            total: desc.size,
            status: TransferStatus::Unspecified,
            throttle: Throttle::new(INTERVAL),
        }
    }
}

/// What a blob is, from its media type.
pub fn kind_of(media_type: &str) -> BlobKind {
    if media::is_index(media_type) {
        BlobKind::Index
    } else if media::is_manifest(media_type) {
        BlobKind::Manifest
    } else if media_type == media::OCI_CONFIG || media_type == media::DOCKER_CONFIG {
        BlobKind::Config
    } else if media::is_layer(media_type) {
        BlobKind::Layer
    } else {
        BlobKind::Unspecified
    }
}

/// Progress of one blob of a call.
#[derive(Debug, Clone)]
pub struct BlobProgress {
    progress: Progress,
    digest: String,
    media_type: String,
    kind: BlobKind,
    total: i64,
    status: TransferStatus,
    throttle: Throttle,
}

impl BlobProgress {
    fn message(&self, status: TransferStatus, current: u64, message: String) -> TransferProgress {
        TransferProgress {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            kind: self.kind as i32,
            status: status as i32,
            current: i64::try_from(current).unwrap_or(i64::MAX),
            total: self.total,
            message,
        }
    }

    /// The status last reported.
    pub fn current_status(&self) -> TransferStatus {
        self.status
    }

    /// Reports a new status (always sent).
    pub async fn status(
        &mut self,
        status: TransferStatus,
        current: u64,
        message: impl Into<String>,
    ) {
        self.status = status;
        self.throttle = Throttle::new(INTERVAL);
        self.throttle.ready(Instant::now());
        let m = self.message(status, current, message.into());
        self.progress.send(m).await;
    }

    /// Reports `current` bytes done in `status`: a change of status is sent like
    /// [`BlobProgress::status`] would, further counts at most once per [`INTERVAL`] and
    /// when the blob is complete; counts a lagging client has no room for are dropped.
    pub fn bytes(&mut self, status: TransferStatus, current: u64) {
        let changed = status != self.status;
        if changed {
            self.status = status;
            self.throttle = Throttle::new(INTERVAL);
        }
        let last = i64::try_from(current).is_ok_and(|c| c == self.total);
        if self.throttle.ready(Instant::now()) || last || changed {
            let m = self.message(status, current, String::new());
            let _ = self.progress.tx.try_send(m);
        }
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The response stream of a transfer call: the progress of `work` as it runs, then its
/// outcome (last message, or the call's error). `work` runs in a task of its own, which is
/// aborted when the client goes away (drops the stream), cancelling the transfer.
pub fn transfer_stream<R, T>(
    work: impl std::future::Future<Output = crate::error::Result<R>> + Send + 'static,
    mut progress: mpsc::Receiver<TransferProgress>,
    on_progress: fn(TransferProgress) -> T,
    on_done: fn(R) -> T,
) -> tonic::codegen::BoxStream<T>
where
    R: Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<T, tonic::Status>>(BUFFER);
    tokio::spawn(async move {
        let mut work = AbortOnDrop(tokio::spawn(work));
        let outcome = loop {
            tokio::select! {
                biased;
                () = tx.closed() => {
                    tracing::info!("client went away: transfer cancelled");
                    return;
                }
                Some(p) = progress.recv() => {
                    if tx.send(Ok(on_progress(p))).await.is_err() {
                        return;
                    }
                }
                done = &mut work.0 => break done,
            }
        };
        // What the work reported before it ended goes out before the outcome.
        while let Ok(p) = progress.try_recv() {
            if tx.send(Ok(on_progress(p))).await.is_err() {
                return;
            }
        }
        let last = match outcome {
            Ok(Ok(r)) => Ok(on_done(r)),
            Ok(Err(e)) => Err(tonic::Status::from(e)),
            Err(e) => Err(tonic::Status::internal(format!("transfer failed: {e}"))),
        };
        let _ = tx.send(last).await;
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(size: i64) -> Descriptor {
        Descriptor {
            media_type: media::OCI_LAYER_GZIP.into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size,
            annotations: Default::default(),
        }
    }

    #[test]
    fn throttle_lets_one_event_per_interval() {
        let mut t = Throttle::new(Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(t.ready(t0));
        assert!(!t.ready(t0 + Duration::from_millis(50)));
        assert!(!t.ready(t0 + Duration::from_millis(99)));
        assert!(t.ready(t0 + Duration::from_millis(100)));
        assert!(!t.ready(t0 + Duration::from_millis(150)));
        assert!(t.ready(t0 + Duration::from_millis(250)));
    }

    #[tokio::test]
    async fn byte_counts_are_throttled_but_status_changes_and_the_end_go_out() {
        let (p, mut rx) = Progress::channel();
        let mut b = p.blob(&desc(1000), BlobKind::Layer);
        b.status(TransferStatus::Waiting, 0, "").await;
        for n in 1..=1000 {
            b.bytes(TransferStatus::Downloading, n);
        }
        b.status(TransferStatus::Complete, 1000, "").await;
        drop((p, b));
        let mut got = Vec::new();
        while let Some(m) = rx.recv().await {
            got.push((m.status, m.current));
        }
        let dl = TransferStatus::Downloading as i32;
        let downloads: Vec<_> = got.iter().filter(|(s, _)| *s == dl).collect();
        // The first count (a change of status) and the last; the loop takes far less than
        // a second, so at most a few more.
        assert!(downloads.len() >= 2 && downloads.len() < 20, "{got:?}");
        assert_eq!(downloads.first().map(|d| d.1), Some(1));
        assert_eq!(downloads.last().map(|d| d.1), Some(1000));
        assert_eq!(
            got.first().map(|g| g.0),
            Some(TransferStatus::Waiting as i32)
        );
        assert_eq!(
            got.last().map(|g| g.0),
            Some(TransferStatus::Complete as i32)
        );
        assert_eq!(kind_of(media::DOCKER_LIST), BlobKind::Index);
        assert_eq!(kind_of(media::DOCKER_CONFIG), BlobKind::Config);
    }
}
