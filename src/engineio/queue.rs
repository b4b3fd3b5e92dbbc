//! The bounded outbound queue of one session. Every byte counts against the limit, control
//! frames (pongs, close echoes) included. Overflow policy: a push that would pass the byte
//! limit fails, and the caller disconnects the session as a slow consumer (or, for volatile
//! packets, drops them). Only the last frame of a connection, the server's close frame, may
//! pass the limit (by at most 125 bytes, once).

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use crate::net::Stream;

use crate::protocol::deflate::Agreement;
use crate::protocol::frame::{FrameKind, OutFrame};

/// Queue slots kept after the queue drains (about 40 bytes each).
const RETAINED_FRAMES: usize = 256;
/// Frames gathered into one `writev`.
const WRITE_BATCH: usize = 64;

pub(crate) struct OutQueue {
    frames: VecDeque<OutFrame>,
    /// Bytes of the front frame already written.
    head_written: usize,
    /// Bytes queued and not yet written.
    bytes: usize,
    limit: usize,
    /// permessage-deflate, when the WebSocket writing this queue negotiated it: frames are
    /// queued in their compressed form where they have one.
    deflate: Option<Agreement>,
}

/// What one push queued compressed: messages, and the bytes compression took off the wire.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Compressed {
    pub(super) messages: u64,
    pub(super) saved: u64,
}

impl OutQueue {
    pub(super) fn new(limit: usize) -> Self {
        OutQueue {
            frames: VecDeque::new(),
            head_written: 0,
            bytes: 0,
            limit,
            deflate: None,
        }
    }

    /// Frames pushed from now on go out compressed under `agreement` (a WebSocket that
    /// negotiated permessage-deflate takes the queue over); frames queued before stay plain.
    pub(super) fn set_deflate(&mut self, agreement: Option<Agreement>) {
        self.deflate = agreement;
    }

    /// The form of `frame` this queue sends.
    fn form<'a>(&self, frame: &'a OutFrame) -> &'a OutFrame {
        match &self.deflate {
            Some(agreement) => frame.deflated(agreement).unwrap_or(frame),
            None => frame,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes queued and not written yet.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn fits(&self, frames: &[OutFrame]) -> bool {
        let add: usize = frames.iter().map(|f| self.form(f).len()).sum();
        self.bytes + add <= self.limit
    }

    /// Queues all frames (each in the form this queue sends), or none of them when they would
    /// pass the limit (`None`).
    #[must_use]
    pub(super) fn push_all(&mut self, frames: &[OutFrame]) -> Option<Compressed> {
        if !self.fits(frames) {
            return None;
        }
        let mut compressed = Compressed::default();
        for f in frames {
            let form = self.form(f);
            if form.len() < f.len() {
                compressed.messages += 1;
                compressed.saved += (f.len() - form.len()) as u64;
            }
            self.bytes += form.len();
            self.frames.push_back(form.clone());
        }
        Some(compressed)
    }

    /// Queues a control frame (a pong, a close echo) within the limit; false when it does not
    /// fit: a client that pings and never reads is a slow consumer like any other.
    #[must_use]
    pub(super) fn push_control(&mut self, frame: OutFrame) -> bool {
        debug_assert_eq!(frame.kind(), FrameKind::Control);
        self.push_all(std::slice::from_ref(&frame)).is_some()
    }

    /// Queues the server's close frame, the last of the connection, even past the limit.
    pub(super) fn push_close(&mut self, frame: OutFrame) {
        debug_assert_eq!(frame.kind(), FrameKind::Control);
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Writes as much of the queue to `stream` as it takes without waiting, in `writev`s of
    /// up to [`WRITE_BATCH`] frames. `Ok(true)`: all written.
    pub(super) fn write_to(&mut self, stream: &Stream) -> io::Result<bool> {
        loop {
            if self.is_empty() {
                // TLS: the last records may still wait for the socket.
                return stream.try_flush();
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
                let n = self.slices(&mut slices);
                stream.try_write_vectored(&slices[..n])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Fills `slices` with the unwritten bytes, front first; returns how many were filled.
    pub(super) fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, f) in self.frames.iter().take(slices.len()).enumerate() {
            let bytes = if i == 0 {
                &f.wire()[self.head_written..]
            } else {
                &f.wire()[..]
            };
            slices[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Drops `written` bytes from the front.
    pub(super) fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.frames.front() else {
                break;
            };
            let left = front.len() - self.head_written;
            if written >= left {
                written -= left;
                self.head_written = 0;
                self.frames.pop_front();
            } else {
                self.head_written += written;
                written = 0;
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > RETAINED_FRAMES {
            // A big burst is over: give the memory back (idle sockets must stay small), but
            // keep a working size, so steady traffic does not regrow the queue every turn.
            self.frames = VecDeque::new();
        }
    }

    /// The next frame to send.
    pub(super) fn front(&self) -> Option<&OutFrame> {
        self.frames.front()
    }

    /// Removes the front frame whole, for transports that re-encode frames (polling) and so
    /// never write part of one.
    pub(super) fn pop_front(&mut self) -> Option<OutFrame> {
        debug_assert_eq!(self.head_written, 0, "pop_front after a partial write");
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        if self.frames.is_empty() && self.frames.capacity() > 64 {
            // As in `advance`: idle sessions must stay small.
            self.frames = VecDeque::new();
        }
        Some(frame)
    }

    /// Gives back the slots of an empty queue. The heartbeat calls it when the client answers a
    /// ping (once a ping interval): a session that stays idle then holds no queue memory
    /// between pings, while a busy one still keeps its slots from burst to burst.
    pub(super) fn release_if_empty(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
    }

    pub(super) fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.bytes = 0;
        self.head_written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> OutFrame {
        OutFrame::text(s.len(), |b| b.extend_from_slice(s.as_bytes()))
    }

    #[test]
    fn enforces_the_byte_limit_all_or_nothing() {
        let mut q = OutQueue::new(20);
        assert!(q.push_all(&[text("4aaaaaaa")]).is_some()); // 10 bytes on the wire
        assert!(q.push_all(&[text("4bbbbbbb"), text("4c")]).is_none());
        assert!(q.push_all(&[text("4bbbbbbb")]).is_some());
        assert!(!q.fits(&[text("")]));
        q.push_close(OutFrame::close(1001));
        assert_eq!(q.frames.len(), 3);
    }

    #[test]
    fn control_frames_count_against_the_limit() {
        let mut q = OutQueue::new(20);
        assert!(q.push_control(OutFrame::pong(b"12345678"))); // 10 bytes
        assert!(q.push_control(OutFrame::pong(b"12345678")));
        assert!(
            !q.push_control(OutFrame::pong(b"")),
            "a pong past the limit is refused"
        );
        assert_eq!(q.bytes(), 20);
        q.push_close(OutFrame::close(1000));
        assert_eq!(q.bytes(), 24, "the final close frame may pass it");
    }

    #[test]
    fn an_empty_queue_gives_its_slots_back_when_asked() {
        let mut q = OutQueue::new(1000);
        assert!(q.push_all(&[text("4a"), text("4b")]).is_some());
        q.release_if_empty();
        assert!(q.frames.capacity() > 0, "released while frames wait");
        let n = q.bytes();
        q.advance(n);
        assert!(
            q.frames.capacity() > 0,
            "a drained queue keeps its working slots"
        );
        q.release_if_empty();
        assert_eq!(q.frames.capacity(), 0);
        assert!(q.push_all(&[text("4c")]).is_some());
        assert_eq!(q.bytes(), text("4c").len());
    }

    #[test]
    fn pop_front_keeps_the_byte_count() {
        let mut q = OutQueue::new(20);
        assert!(q.push_all(&[text("4aaaaaaa"), text("4b")]).is_some());
        assert_eq!(q.front(), Some(&text("4aaaaaaa")));
        assert_eq!(q.pop_front(), Some(text("4aaaaaaa")));
        assert!(
            q.push_all(&[text("4ccccccc")]).is_some(),
            "the popped bytes are free again"
        );
        assert_eq!(q.pop_front(), Some(text("4b")));
        assert_eq!(q.pop_front(), Some(text("4ccccccc")));
        assert_eq!(q.pop_front(), None);
        assert_eq!(q.bytes, 0);
    }

    /// On TLS, taking the last frame is not writing it: the socket may not have taken the
    /// last records yet, and the queue must not be reported written (the WebSocket loop would
    /// then stop waiting for the socket, and those bytes would sit in rustls).
    #[tokio::test(flavor = "current_thread")]
    async fn a_tls_queue_is_written_once_its_last_record_has_left() {
        use tokio::io::AsyncReadExt as _;
        let (server, mut client) = crate::net::testing::tls_pair().await;
        let mut q = OutQueue::new(usize::MAX);
        let chunk: Vec<u8> = (0..60_000u32).map(|i| i as u8).collect();
        let frames: Vec<OutFrame> = (0..16).map(|_| OutFrame::binary(&chunk)).collect();
        assert!(q.push_all(&frames).is_some());
        let total: usize = frames.iter().map(OutFrame::len).sum();
        let mut received = Vec::with_capacity(total);
        let mut buf = vec![0u8; 64 * 1024];
        let mut waits = 0;
        while !q.write_to(&server).expect("write") {
            // The socket is full: the client reads some, then the server waits for room.
            waits += 1;
            let n = client.read(&mut buf).await.expect("read");
            received.extend_from_slice(&buf[..n]);
            server.writable().await.expect("writable");
        }
        assert!(
            waits > 0,
            "the socket never filled: the test proves nothing"
        );
        // Written means sent: the client gets the rest without the server doing anything.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while received.len() < total {
            let read = tokio::time::timeout_at(deadline, client.read(&mut buf)).await;
            let n = read.expect("the whole queue arrives").expect("read");
            assert!(n > 0, "closed early");
            received.extend_from_slice(&buf[..n]);
        }
        let wire: Vec<u8> = frames.iter().flat_map(|f| f.wire().to_vec()).collect();
        assert!(received == wire, "the frames as queued");
    }

    #[test]
    fn a_compressing_queue_holds_and_counts_the_compressed_form() {
        let big = "4".to_string() + &"abcdefgh".repeat(500);
        let frames = [text(&big), text("4small")];
        let mut plain = OutQueue::new(1 << 20);
        assert_eq!(plain.push_all(&frames), Some(Compressed::default()));
        let mut q = OutQueue::new(1 << 20);
        q.set_deflate(crate::protocol::deflate::negotiate(["permessage-deflate"]));
        let compressed = q.push_all(&frames).unwrap();
        assert_eq!(compressed.messages, 1);
        assert_eq!(q.bytes() as u64 + compressed.saved, plain.bytes() as u64);
        assert_eq!(q.front().map(|f| f.wire()[0]), Some(0xC1));
        assert!(q.bytes() < 100, "{}", q.bytes());
        // The limit applies to what is queued: the compressed form fits where the plain does not.
        let mut tight = OutQueue::new(200);
        assert!(tight.push_all(&frames[..1]).is_none());
        tight.set_deflate(crate::protocol::deflate::negotiate(["permessage-deflate"]));
        assert!(tight.push_all(&frames[..1]).is_some());
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut q = OutQueue::new(1000);
        assert!(q.push_all(&[text("4one"), text("4two")]).is_some());
        q.advance(3);
        let mut slices = [IoSlice::new(&[]); 8];
        let n = q.slices(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(&*slices[0], b"one");
        assert_eq!(&*slices[1], b"\x81\x044two");
        q.advance(3 + 6);
        assert!(q.is_empty());
        assert_eq!(q.bytes, 0);
    }
}
