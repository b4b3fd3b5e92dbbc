//! A shard's inbox: what arrives travels in parcels (one message, or every message a shard
//! queued for this one within a turn of its loop), each parcel one push on the channel and at
//! most one wake-up of the receiving shard. The bound is on messages, not parcels: a count
//! shared by the senders (who reserve a place before queuing) and the receiver (who frees them
//! as it takes them), so a full inbox refuses a message at once, as a bounded channel would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::ShardMsg;

/// What travels on the channel: one message, and those queued after it in the same turn (no
/// allocation for a parcel of one).
#[derive(Debug)]
pub(crate) struct Parcel {
    pub(crate) first: ShardMsg,
    pub(crate) rest: Vec<ShardMsg>,
}

impl Parcel {
    pub(crate) fn one(msg: ShardMsg) -> Self {
        Parcel {
            first: msg,
            rest: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        1 + self.rest.len()
    }
}

/// The senders' end of one inbox.
#[derive(Debug, Clone)]
pub(super) struct InboxTx {
    tx: mpsc::UnboundedSender<Parcel>,
    /// Messages reserved or queued and not yet taken.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl InboxTx {
    /// Reserves a place for one message; false when the inbox is full or its shard stopped.
    pub(super) fn reserve(&self) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether the receiving shard has stopped.
    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a parcel whose messages have their places reserved. When the shard has stopped,
    /// the places are freed and the parcel is handed back.
    pub(super) fn post(&self, parcel: Parcel) -> Result<(), Parcel> {
        let n = parcel.len();
        self.tx.send(parcel).map_err(|e| {
            self.queued.fetch_sub(n, Ordering::Relaxed);
            e.0
        })
    }
}

/// The receiving end of one inbox: its shard's.
#[derive(Debug)]
pub(crate) struct Inbox {
    rx: mpsc::UnboundedReceiver<Parcel>,
    queued: Arc<AtomicUsize>,
    parcels: Vec<Parcel>,
}

/// An inbox of `capacity` messages: the senders' end and the receiver's.
pub(super) fn inbox(capacity: usize) -> (InboxTx, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        InboxTx {
            tx,
            queued: queued.clone(),
            capacity,
        },
        Inbox {
            rx,
            queued,
            parcels: Vec::new(),
        },
    )
}

/// What one [`Inbox::recv`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) messages: usize,
    pub(crate) parcels: usize,
}

impl Inbox {
    /// Waits for at least one parcel, then appends the messages of up to `parcels` parcels to
    /// `out`, in their order; `None` once every sender is gone and nothing is left.
    pub(crate) async fn recv(&mut self, out: &mut Vec<ShardMsg>, parcels: usize) -> Option<Taken> {
        let got = self.rx.recv_many(&mut self.parcels, parcels).await;
        if got == 0 {
            return None;
        }
        Some(self.unpack(out))
    }

    /// Like [`recv`](Self::recv), without waiting: `None` when nothing is there.
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self, out: &mut Vec<ShardMsg>) -> Option<Taken> {
        while let Ok(parcel) = self.rx.try_recv() {
            self.parcels.push(parcel);
        }
        (!self.parcels.is_empty()).then(|| self.unpack(out))
    }

    fn unpack(&mut self, out: &mut Vec<ShardMsg>) -> Taken {
        let before = out.len();
        let parcels = self.parcels.len();
        for parcel in self.parcels.drain(..) {
            out.push(parcel.first);
            out.extend(parcel.rest);
        }
        let messages = out.len() - before;
        self.queued.fetch_sub(messages, Ordering::Relaxed);
        Taken { messages, parcels }
    }
}
