//! A session's log context: every line logged while the session's work runs (its driver, a
//! request served for it, the app's handlers they call) carries its `sid` and `shard`, in a
//! tracing span named `session` (`session{sid=… shard=…}:` in text, `span` in JSON).
//!
//! The span is made when the session first logs, not when it opens. The subscriber's record
//! of a span (the registry's slot and the formatter's copy of its fields) costs about 0.7 KB;
//! most sessions log nothing, and then they cost the subscriber nothing.
//!
//! How: the session's work runs in [`SessionSpan::scope`]. A scope enters the span if it was
//! made; if not, it pushes a frame (the session's id) on a thread-local stack.
//! [`SpanOnLog`], a layer that [`crate::init_tracing`] puts under the formatter, sees each
//! event before the formatter does: inside a frame whose span is not entered, it makes the
//! span and enters it, so the formatter finds it as the current span. The scope then exits
//! it and keeps it in the session, where later scopes enter it as any span.
//!
//! When there is no such layer (another subscriber), or `RUST_LOG` filters by span
//! (`[session]=debug`: the filter decides on a span that exists before the event), the span
//! is made with the session instead, if its level is enabled.

use std::cell::{OnceCell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};

use tracing::span::{Attributes, Id};
use tracing::{Dispatch, Level, Subscriber};
use tracing_core::callsite::DefaultCallsite;
use tracing_core::dispatcher::WeakDispatch;
use tracing_core::field::Value;
use tracing_core::metadata::Kind;
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::sid::Sid;

static CALLSITE: DefaultCallsite = DefaultCallsite::new(&META);
static META: tracing::Metadata<'static> = tracing_core::metadata! {
    name: "session",
    target: "shardio::engineio::session",
    level: Level::INFO,
    fields: &["sid", "shard"],
    callsite: &CALLSITE,
    kind: Kind::SPAN,
};

thread_local! {
    /// The scopes running on this thread whose session had no span when they began, innermost
    /// last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

struct Frame {
    sid: Sid,
    /// The span, once an event made it (or an inner scope of the same session did).
    made: Option<Made>,
    /// This frame entered `made` (and its scope exits it).
    entered: bool,
}

/// A span in the subscriber that made it: what `tracing::Span` holds, made here from a
/// `Dispatch` that a layer was given (a layer cannot use the thread's current dispatcher
/// while it handles an event).
struct Made {
    id: Id,
    dispatch: Dispatch,
}

impl Made {
    fn new(dispatch: &Dispatch, sid: Sid) -> Made {
        let fields = META.fields();
        let mut names = fields.iter();
        let (Some(sid_field), Some(shard_field)) = (names.next(), names.next()) else {
            unreachable!("the callsite names two fields");
        };
        let shard = sid.shard() as u64;
        let sid = tracing::field::display(sid);
        let values = [
            (&sid_field, Some(&sid as &dyn Value)),
            (&shard_field, Some(&shard as &dyn Value)),
        ];
        let id = dispatch.new_span(&Attributes::new(&META, &fields.value_set(&values)));
        Made {
            id,
            dispatch: dispatch.clone(),
        }
    }

    fn enter(&self) -> Entered<'_> {
        self.dispatch.enter(&self.id);
        Entered(self)
    }
}

impl Clone for Made {
    fn clone(&self) -> Made {
        Made {
            id: self.dispatch.clone_span(&self.id),
            dispatch: self.dispatch.clone(),
        }
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        self.dispatch.try_close(self.id.clone());
    }
}

/// Exits the span when dropped (also when a panic unwinds through the scope).
struct Entered<'a>(&'a Made);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.dispatch.exit(&self.0.id);
    }
}

/// The `session` span of one session, made on its first log line (see the module's text).
#[derive(Default)]
pub(super) struct SessionSpan {
    made: OnceCell<Made>,
}

impl SessionSpan {
    /// A session's span: nothing yet when the subscriber makes spans on first log (it has a
    /// [`SpanOnLog`] that is on); else the span now, if its level is enabled.
    pub(super) fn new(sid: Sid) -> SessionSpan {
        let span = SessionSpan::default();
        tracing::dispatcher::get_default(|dispatch| {
            let on_log = dispatch.downcast_ref::<SpanOnLog>().is_some_and(|l| l.on);
            // Registers the callsite once, so that filters know it (a span filter decides on
            // spans it registered); its cached interest mixes every subscriber of the process,
            // so this subscriber is asked itself.
            let _ = CALLSITE.interest();
            if !on_log && dispatch.enabled(&META) {
                let _ = span.made.set(Made::new(dispatch, sid));
            }
        });
        span
    }

    /// Runs `f` in the span of session `sid` (this span's session): entered if it exists,
    /// made by [`SpanOnLog`] if `f` logs.
    pub(super) fn scope<T>(&self, sid: Sid, f: impl FnOnce() -> T) -> T {
        if let Some(made) = self.made.get() {
            let _entered = made.enter();
            return f();
        }
        FRAMES.with(|frames| {
            frames.borrow_mut().push(Frame {
                sid,
                made: None,
                entered: false,
            })
        });
        let _frame = PopFrame(self);
        f()
    }

    /// `work`, polled in the span of session `sid` (this span's session).
    pub(super) fn run<F: Future>(&self, sid: Sid, work: F) -> InSpan<'_, F> {
        InSpan {
            span: self,
            sid,
            work,
        }
    }

    /// Whether the span was made (for tests: a session that logged nothing has none).
    #[cfg(test)]
    pub(super) fn is_made(&self) -> bool {
        self.made.get().is_some()
    }
}

pin_project_lite::pin_project! {
    /// A future polled in a session's span ([`SessionSpan::run`]): a struct, not an `async fn`,
    /// so that the work it wraps (a session's whole life) is kept once, not as an argument and
    /// again as a local.
    pub(super) struct InSpan<'a, F> {
        span: &'a SessionSpan,
        sid: Sid,
        #[pin]
        work: F,
    }
}

impl<F: Future> Future for InSpan<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let work = this.work;
        this.span.scope(*this.sid, || work.poll(cx))
    }
}

/// Ends a scope's frame: exits the span if an event in it made or entered it, and keeps it.
struct PopFrame<'a>(&'a SessionSpan);

impl Drop for PopFrame<'_> {
    fn drop(&mut self) {
        let Some(frame) = FRAMES.with(|frames| frames.borrow_mut().pop()) else {
            return;
        };
        let Some(made) = frame.made else {
            return;
        };
        if frame.entered {
            made.dispatch.exit(&made.id);
        }
        // An enclosing scope of the same session (a request served inside another of its
        // scopes) gets it too, so that its next line does not make a second one.
        let outer = made.clone();
        FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            if let Some(f) = frames.iter_mut().rev().find(|f| f.sid == frame.sid) {
                f.made.get_or_insert(outer);
            }
        });
        // Already set only if an inner scope kept one first: this one is then closed.
        let _ = self.0.made.set(made);
    }
}

/// The layer that makes a session's span when the session first logs: put it under the
/// formatting layer (nearer the registry), so that it sees each event first. Not inside an
/// `Option` layer: that one does not pass on the dispatcher it is registered with.
#[derive(Debug)]
pub(crate) struct SpanOnLog {
    /// Off: spans are made with their sessions (a span filter needs them before any event).
    on: bool,
    dispatch: OnceLock<WeakDispatch>,
}

impl SpanOnLog {
    pub(crate) fn new(on: bool) -> SpanOnLog {
        SpanOnLog {
            on,
            dispatch: OnceLock::new(),
        }
    }
}

impl<S: Subscriber> Layer<S> for SpanOnLog {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        if self.on {
            let _ = self.dispatch.set(subscriber.downgrade());
        }
    }

    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else {
            return;
        };
        // The innermost scope, if its span is not entered; nothing stays borrowed while the
        // subscriber makes and enters the span.
        let pending = FRAMES.with(|frames| {
            let mut frames = frames.borrow_mut();
            let frame = frames.last_mut().filter(|f| !f.entered)?;
            frame.entered = true;
            Some((frame.sid, frame.made.take()))
        });
        let Some((sid, made)) = pending else {
            return;
        };
        let made = made.unwrap_or_else(|| Made::new(&dispatch, sid));
        dispatch.enter(&made.id);
        FRAMES.with(|frames| {
            if let Some(frame) = frames.borrow_mut().last_mut() {
                frame.made = Some(made);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::engineio::SidGenerator;

    /// Counts the `session` spans the subscriber made.
    #[derive(Clone, Default)]
    struct CountSpans(Arc<Mutex<usize>>);

    impl<S: Subscriber> Layer<S> for CountSpans {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            if attrs.metadata().name() == "session" {
                *self.0.lock().unwrap() += 1;
            }
        }
    }

    impl CountSpans {
        fn get(&self) -> usize {
            *self.0.lock().unwrap()
        }
    }

    /// What the formatter wrote.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn lines(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(str::to_owned).collect()
        }
    }

    /// `init_tracing`'s stack (the layer under the formatter), writing to `lines`.
    fn with_subscriber<L>(formatter: L, spans: &CountSpans, f: impl FnOnce())
    where
        L: Layer<Layered> + Send + Sync,
    {
        let subscriber = tracing_subscriber::registry()
            .with(SpanOnLog::new(true))
            .with(spans.clone())
            .with(formatter);
        tracing::subscriber::with_default(subscriber, f);
    }

    type Layered = tracing_subscriber::layer::Layered<
        CountSpans,
        tracing_subscriber::layer::Layered<SpanOnLog, tracing_subscriber::Registry>,
    >;

    fn sids() -> (Sid, Sid) {
        let mut ids = SidGenerator::new(3);
        (ids.next_sid(), ids.next_sid())
    }

    #[test]
    fn a_session_that_logs_nothing_makes_no_span_and_one_that_logs_makes_one() {
        let lines = Lines::default();
        let writer = lines.clone();
        let formatter = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let spans = CountSpans::default();
        let (quiet, talking) = sids();
        with_subscriber(formatter, &spans, || {
            let quiet_span = SessionSpan::new(quiet);
            let talking_span = SessionSpan::new(talking);
            for _ in 0..3 {
                quiet_span.scope(quiet, || ());
            }
            assert!(!quiet_span.is_made());
            assert_eq!(spans.get(), 0, "a span for a session that logged nothing");

            tracing::info!("outside any session");
            talking_span.scope(talking, || tracing::info!("first"));
            assert!(talking_span.is_made());
            // Later scopes enter the same span; a scope inside another of the same session
            // too; a line after the inner scope still carries it.
            talking_span.scope(talking, || {
                talking_span.scope(talking, || tracing::info!("inner"));
                tracing::info!("after the inner scope");
            });
            tracing::info!("outside again");
            assert_eq!(spans.get(), 1, "one span per session");
        });
        let prefix = format!("session{{sid={talking} shard=3}}:");
        let lines = lines.lines();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        for (line, in_session) in lines.iter().zip([false, true, true, true, false]) {
            assert_eq!(line.contains(&prefix), in_session, "{line}");
            assert!(!line.contains(&quiet.to_string()), "{line}");
        }
    }

    #[test]
    fn nested_scopes_of_a_session_that_first_logs_inside_make_one_span() {
        let spans = CountSpans::default();
        let (sid, _) = sids();
        let formatter = tracing_subscriber::fmt::layer().with_writer(std::io::sink);
        with_subscriber(formatter, &spans, || {
            let span = SessionSpan::new(sid);
            span.scope(sid, || {
                span.scope(sid, || tracing::info!("inner first"));
                tracing::info!("then the outer scope");
            });
            span.scope(sid, || tracing::info!("a later scope"));
        });
        assert_eq!(spans.get(), 1);
    }

    #[test]
    fn the_process_s_subscriber_makes_spans_on_first_log_unless_rust_log_filters_by_span() {
        use crate::config::LogFormat;
        let (sid, _) = sids();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            crate::log_subscriber(LogFormat::Text, "info", false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = SessionSpan::new(sid);
            span.scope(sid, || tracing::debug!("filtered out"));
            assert!(!span.is_made(), "a span for a session that logged nothing");
            span.scope(sid, || tracing::info!("logged"));
            assert!(span.is_made());
        });
        let lines = lines.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains(&format!("session{{sid={sid} shard=3}}: ")));

        // A span directive: the span must exist before the event for the filter to see it.
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            crate::log_subscriber(LogFormat::Text, "warn,[session]=debug", false, move || {
                writer.clone()
            });
        tracing::subscriber::with_default(subscriber, || {
            let span = SessionSpan::new(sid);
            assert!(span.is_made());
            span.scope(sid, || tracing::debug!("in the session"));
            tracing::debug!("outside");
        });
        let lines = lines.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("in the session"), "{lines:#?}");
    }

    #[test]
    fn json_lines_carry_the_sid_and_shard_under_span() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            crate::log_subscriber(crate::config::LogFormat::Json, "info", false, move || {
                writer.clone()
            });
        let (sid, _) = sids();
        tracing::subscriber::with_default(subscriber, || {
            let span = SessionSpan::new(sid);
            span.scope(sid, || tracing::warn!(what = 1, "in the session"));
        });
        let lines = lines.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["span"]["name"], "session");
        assert_eq!(line["span"]["sid"], sid.to_string());
        assert_eq!(line["span"]["shard"], 3);
        assert_eq!(line["fields"]["message"], "in the session");
    }
}
