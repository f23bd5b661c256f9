//! Closing librdkafka clients off the async executor.
//!
//! Dropping a group consumer closes it: librdkafka commits, leaves the group and waits
//! for the coordinator's answers, and rdkafka's `BaseConsumer::drop` polls until that is
//! done, with no bound of its own: while the broker is down it waits until the broker
//! comes back. On the async executor that stalls every task of the thread; inside a
//! blocking task it holds up the runtime's shutdown (tokio waits for blocking tasks), so
//! a service stopped during a broker outage would never exit by itself. Seen in CI: a
//! test runtime that ended with its broker killed waited forever. [`ClosedOffExecutor`]
//! drops its client on a thread of its own, which holds up nothing.

use std::ops::Deref;
use std::time::Duration;

/// Owns a Kafka client and closes it on a thread of its own: when dropped (a task
/// cancelled, a runtime shut down) without waiting, or by [`close_within`] with a
/// bounded wait.
///
/// [`close_within`]: ClosedOffExecutor::close_within
pub struct ClosedOffExecutor<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> ClosedOffExecutor<T> {
    pub fn new(client: T) -> Self {
        Self(Some(client))
    }

    /// Runs `last` on the client (a final commit), then closes it, on a thread of its
    /// own, and waits at most `timeout` for both. `false` when they did not finish in
    /// time: they go on in the background, and the caller goes on stopping.
    pub async fn close_within(
        mut self,
        timeout: Duration,
        last: impl FnOnce(&T) + Send + 'static,
    ) -> bool {
        let Some(client) = self.0.take() else {
            return true;
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        on_own_thread(move || {
            last(&client);
            drop(client);
            let _ = done.send(());
        });
        matches!(tokio::time::timeout(timeout, finished).await, Ok(Ok(())))
    }
}

impl<T: Send + 'static> Deref for ClosedOffExecutor<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0
            .as_ref()
            .expect("the client is only taken by close_within, which consumes self")
    }
}

impl<T: Send + 'static> Drop for ClosedOffExecutor<T> {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            on_own_thread(move || drop(client));
        }
    }
}

/// Runs `work` on a new detached thread. Where no thread can be started, `work` (and
/// the client it owns) is leaked rather than run here, where it could block without
/// bound.
fn on_own_thread(work: impl FnOnce() + Send + 'static) {
    // The closure is moved into the builder only when the thread starts; keep it in an
    // Option so that a failure to start can still reach it.
    let work = std::sync::Arc::new(std::sync::Mutex::new(Some(work)));
    let theirs = work.clone();
    let started = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            if let Some(work) = theirs.lock().ok().and_then(|mut w| w.take()) {
                work();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no thread to close a Kafka client on: leaving it open");
        if let Some(work) = work.lock().ok().and_then(|mut w| w.take()) {
            std::mem::forget(work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Blocks in its drop until told to finish, as a consumer closing during an outage.
    struct SlowToClose(mpsc::Receiver<()>, mpsc::Sender<std::thread::ThreadId>);

    impl Drop for SlowToClose {
        fn drop(&mut self) {
            let _ = self.0.recv();
            let _ = self.1.send(std::thread::current().id());
        }
    }

    #[tokio::test]
    async fn a_close_that_does_not_finish_in_time_leaves_the_caller_free() {
        let (release, wait) = mpsc::channel();
        let (closed_on, closed) = mpsc::channel();
        let client = ClosedOffExecutor::new(SlowToClose(wait, closed_on));
        let (ran, last_ran) = mpsc::channel();
        let in_time = client
            .close_within(Duration::from_millis(50), move |_| {
                let _ = ran.send(());
            })
            .await;
        assert!(!in_time, "the close is still blocked");
        last_ran
            .recv_timeout(Duration::from_secs(5))
            .expect("the last step ran before the close");
        release.send(()).expect("release");
        let thread = closed.recv_timeout(Duration::from_secs(5)).expect("closed");
        assert_ne!(thread, std::thread::current().id());
    }

    #[tokio::test]
    async fn a_close_that_finishes_in_time_says_so() {
        let (release, wait) = mpsc::channel();
        let (closed_on, _closed) = mpsc::channel();
        release.send(()).expect("release");
        let client = ClosedOffExecutor::new(SlowToClose(wait, closed_on));
        assert!(client.close_within(Duration::from_secs(5), |_| {}).await);
    }

    #[test]
    fn a_dropped_client_closes_on_another_thread_without_blocking_the_dropper() {
        let (release, wait) = mpsc::channel();
        let (closed_on, closed) = mpsc::channel();
        let (dropped, drop_returned) = mpsc::channel();
        std::thread::spawn(move || {
            drop(ClosedOffExecutor::new(SlowToClose(wait, closed_on)));
            let _ = dropped.send(std::thread::current().id());
        });
        // The drop returns although the close is blocked.
        let dropper = drop_returned
            .recv_timeout(Duration::from_secs(5))
            .expect("the drop waited for the close");
        release.send(()).expect("release");
        let thread = closed.recv_timeout(Duration::from_secs(5)).expect("closed");
        assert_ne!(thread, dropper);
    }
}
