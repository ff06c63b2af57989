//! One flight per key: concurrent callers asking for the same work (two pulls needing the
//! same layer blob) share one run of it and its progress.
//!
//! The work is a future shared by every caller ([`futures::future::Shared`]); it runs while
//! at least one of them still awaits it, and is dropped (cancelled) when the last one goes
//! away, so a pull whose client disconnected stops a download nobody else wants. The map
//! keeps only a weak handle: a finished or abandoned flight is never joined again, and a
//! caller coming later starts a new one.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use tokio::sync::watch;

/// The shared result of a flight.
pub type Flight<V> = Shared<BoxFuture<'static, V>>;

struct Entry<V, P> {
    id: u64,
    flight: WeakShared<BoxFuture<'static, V>>,
    progress: watch::Receiver<P>,
}

/// Flights by key. `V` is the (cloneable) result, `P` the progress the work publishes.
pub struct SingleFlight<K, V, P> {
    flights: Arc<Mutex<HashMap<K, Entry<V, P>>>>,
    next: AtomicU64,
}

impl<K, V, P> Default for SingleFlight<K, V, P> {
    fn default() -> Self {
        SingleFlight {
            flights: Arc::default(),
            next: AtomicU64::new(0),
        }
    }
}

/// A caller's handle on a flight.
pub struct Joined<V, P> {
    /// Resolves to the flight's result; cloneable.
    pub result: Flight<V>,
    /// The progress the work publishes.
    pub progress: watch::Receiver<P>,
    /// True for the caller whose `start` runs the work.
    pub leader: bool,
}

impl<K, V, P> SingleFlight<K, V, P>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    P: Send + Sync + 'static,
{
    /// A new, empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins the running flight of `key`, or starts one with `start`, which receives the
    /// sender of the flight's progress (starting at `initial`).
    pub fn join<F, Fut>(&self, key: K, initial: P, start: F) -> Joined<V, P>
    where
        F: FnOnce(watch::Sender<P>) -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = flights.get(&key) {
            if let Some(flight) = entry.flight.upgrade().filter(|f| f.peek().is_none()) {
                return Joined {
                    result: flight,
                    progress: entry.progress.clone(),
                    leader: false,
                };
            }
        }
        // Forget flights nobody awaits any more (their callers were all cancelled).
        flights.retain(|_, e| e.flight.upgrade().is_some());
        let (tx, rx) = watch::channel(initial);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let work = start(tx);
        let map = Arc::clone(&self.flights);
        let done_key = key.clone();
        let flight = async move {
            let v = work.await;
            let mut flights = map.lock().unwrap_or_else(PoisonError::into_inner);
            if flights.get(&done_key).is_some_and(|e| e.id == id) {
                flights.remove(&done_key);
            }
            v
        }
        .boxed()
        .shared();
        if let Some(weak) = flight.downgrade() {
            flights.insert(
                key,
                Entry {
                    id,
                    flight: weak,
                    progress: rx.clone(),
                },
            );
        }
        Joined {
            result: flight,
            progress: rx,
            leader: true,
        }
    }

    /// Number of flights in the map (running, or abandoned and not yet forgotten).
    pub fn len(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no flight is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_its_progress() {
        let sf: SingleFlight<String, u32, u32> = SingleFlight::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let r = runs.clone();
        let a = sf.join("k".into(), 0, move |p| async move {
            r.fetch_add(1, Ordering::SeqCst);
            p.send_replace(50);
            let _ = go_rx.await;
            7
        });
        assert!(a.leader);
        let r = runs.clone();
        let mut b = sf.join("k".into(), 0, move |_| async move {
            r.fetch_add(1, Ordering::SeqCst);
            8
        });
        assert!(!b.leader);
        let (ra, rb) = (a.result.clone(), b.result.clone());
        let both = tokio::spawn(async move { (ra.await, rb.await) });
        b.progress.wait_for(|v| *v == 50).await.unwrap();
        go_tx.send(()).unwrap();
        assert_eq!(both.await.unwrap(), (7, 7));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Finished: the next caller starts afresh.
        assert!(sf.is_empty());
        let c = sf.join("k".into(), 0, |_| async { 9 });
        assert!(c.leader);
        assert_eq!(c.result.await, 9);
    }

    #[tokio::test]
    async fn the_work_is_cancelled_when_every_caller_is_gone() {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let sf: SingleFlight<u8, (), ()> = SingleFlight::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = Flag(dropped.clone());
        let a = sf.join(1, (), move |_| async move {
            let _flag = flag;
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        let b = sf.join(1, (), |_| async {});
        assert!(!b.leader);
        // Polled once by a caller that then goes away.
        let _ = tokio::time::timeout(Duration::from_millis(10), a.result).await;
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            0,
            "b still holds the flight"
        );
        drop(b);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        // An abandoned flight is not joined: the next caller leads a new one.
        let c = sf.join(1, (), |_| async {});
        assert!(c.leader);
        c.result.await;
    }
}
