//! The held `GET /v1/flows/{id}?wait=…` reads of this replica, by flow (`flows::push`): a push
//! answer wakes the reads of its own flow and no other, so an answer costs one re-read per read
//! waiting for it, however many other flows are waiting.

use crate::ids::FlowId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// The flows some read on this replica is waiting on, each with the `Notify` its reads share.
#[derive(Debug, Default)]
pub(crate) struct PushWaits {
    flows: Mutex<HashMap<FlowId, Arc<Notify>>>,
}

impl PushWaits {
    /// Start waiting on `flow`: the wait's `Notify`, held until the returned `Wait` is dropped.
    pub(crate) fn wait(&self, flow: FlowId) -> Wait<'_> {
        let notify = self.map().entry(flow).or_default().clone();
        Wait { waits: self, flow, notify }
    }

    /// Wake every read waiting on `flow` (none: nothing to do).
    pub(crate) fn wake(&self, flow: FlowId) {
        if let Some(n) = self.map().get(&flow) {
            n.notify_waiters();
        }
    }

    /// How many flows are waited on.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<FlowId, Arc<Notify>>> {
        // The map holds no invariant a panic elsewhere could break.
        self.flows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One read waiting on a flow; its flow leaves the map with its last `Wait`.
#[derive(Debug)]
pub(crate) struct Wait<'a> {
    waits: &'a PushWaits,
    flow: FlowId,
    notify: Arc<Notify>,
}

impl Wait<'_> {
    /// Woken by the next `wake` of this flow: create it before reading the flow, so an answer
    /// given between the read and the sleep is not missed.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let mut map = self.waits.map();
        // The map's own reference and this one: no other read waits on the flow. Every clone is
        // made under the lock, so the count cannot grow meanwhile.
        if Arc::strong_count(&self.notify) == 2 {
            map.remove(&self.flow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn woken(f: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) -> bool {
        matches!(f.poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()))
    }

    #[test]
    fn an_answer_wakes_the_reads_of_its_own_flow_only() {
        let waits = PushWaits::default();
        let (a, b) = (FlowId::new(), FlowId::new());
        let (a1, a2, b1) = (waits.wait(a), waits.wait(a), waits.wait(b));
        let (mut na1, mut na2, mut nb1) = (pin!(a1.notified()), pin!(a2.notified()), pin!(b1.notified()));
        assert!(!woken(na1.as_mut()) && !woken(na2.as_mut()) && !woken(nb1.as_mut()));
        waits.wake(a);
        assert!(woken(na1.as_mut()), "the first read of the answered flow is woken");
        assert!(woken(na2.as_mut()), "so is the second");
        assert!(!woken(nb1.as_mut()), "another flow's read sleeps on");
        waits.wake(b);
        assert!(woken(nb1.as_mut()));
    }

    #[test]
    fn a_flow_leaves_the_map_with_its_last_read() {
        let waits = PushWaits::default();
        let (a, b) = (FlowId::new(), FlowId::new());
        let a1 = waits.wait(a);
        let a2 = waits.wait(a);
        let b1 = waits.wait(b);
        assert_eq!(waits.len(), 2);
        drop(a1);
        assert_eq!(waits.len(), 2, "a second read still waits on the flow");
        drop(a2);
        assert_eq!(waits.len(), 1);
        drop(b1);
        assert_eq!(waits.len(), 0);
        waits.wake(a); // nobody waits: nothing to do, and nothing added
        assert_eq!(waits.len(), 0);
    }
}
