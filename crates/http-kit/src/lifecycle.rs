//! What a service runs besides its HTTP server, and how it all stops.
//!
//! A service's `start` returns [`Running`]: the server and the [`Background`] tasks it
//! spawned (the outbox relay, sweeps, refresh jobs, consumers, the role-cache
//! listener). [`crate::cli::serve`] waits for SIGTERM or SIGINT, stops accepting and
//! drains the requests in flight, then asks every background task to stop and waits for
//! them, all within `SHUTDOWN_TIMEOUT_SECS` (docs/OPERATIONS.md, "Stopping").
//!
//! A task either watches its [`CancellationToken`] and returns once it has finished
//! what it was doing ([`Background::spawn`]: a consumer commits its batch, a sweep
//! finishes the database it is on), or has nothing to finish and is simply dropped at
//! its next `.await` ([`Background::spawn_cancellable`]). What is still running when
//! the time is up is aborted and named in the log.

use std::future::Future;
use std::time::Duration;

use actix_web::dev::Server;
use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;

/// Runs `job` now and every `period` after (a run that overran delays the next) until
/// `stop` is cancelled; a run under way is finished first. For sweeps that log their
/// own failures.
pub async fn every<F, Fut>(period: Duration, stop: CancellationToken, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        job().await;
    }
}

/// A service started: its HTTP server and its background tasks.
pub struct Running {
    pub server: Server,
    pub background: Background,
}

/// The background tasks of a service, stopped together.
pub struct Background {
    stop: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Background {
    fn default() -> Self {
        Self::new()
    }
}

/// How [`Background::stop`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks that returned (or were cancelled) in time.
    pub finished: Vec<&'static str>,
    /// Tasks still running at the deadline, aborted.
    pub aborted: Vec<&'static str>,
}

impl Background {
    pub fn new() -> Self {
        Self {
            stop: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// The token cancelled when stopping begins (for a task to watch).
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Spawns `task`, which watches [`Self::token`] and returns once it is cancelled.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name, tokio::spawn(task)));
    }

    /// Spawns `task`, dropped at its next `.await` when stopping begins: for a loop
    /// with nothing to finish (a periodic check, a listener).
    pub fn spawn_cancellable(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let stop = self.stop.clone();
        self.spawn(name, async move {
            tokio::select! {
                () = task => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Takes over a task spawned elsewhere that watches [`Self::token`].
    pub fn adopt(&mut self, name: &'static str, task: JoinHandle<()>) {
        self.tasks.push((name, task));
    }

    /// Takes over a task spawned elsewhere that has nothing to finish: aborted when
    /// stopping begins.
    pub fn adopt_cancellable(&mut self, name: &'static str, mut task: JoinHandle<()>) {
        let stop = self.stop.clone();
        self.spawn(name, async move {
            tokio::select! {
                _ = &mut task => {}
                () = stop.cancelled() => {
                    task.abort();
                    let _ = task.await;
                }
            }
        });
    }

    /// The names of the tasks, in the order they were added.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Cancels the token and waits for every task until `deadline`; what is still
    /// running then is aborted. Logs the outcome.
    pub async fn stop(self, within: Duration) -> Stopped {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + within;
        let mut stopped = Stopped {
            finished: Vec::new(),
            aborted: Vec::new(),
        };
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => stopped.finished.push(name),
                Ok(Err(e)) => {
                    // A panic was logged where it happened; the task is over either way.
                    tracing::error!(task = name, error = %e, "background task failed");
                    stopped.finished.push(name);
                }
                Err(_) => {
                    task.abort();
                    stopped.aborted.push(name);
                }
            }
        }
        if stopped.aborted.is_empty() {
            tracing::info!(tasks = ?stopped.finished, "background tasks stopped");
        } else {
            tracing::warn!(
                finished = ?stopped.finished,
                aborted = ?stopped.aborted,
                ?within,
                "background tasks did not stop in time and were aborted"
            );
        }
        stopped
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened to from the moment this is made: install it
/// before the server starts accepting, so a signal that comes early stops the service
/// gracefully too instead of killing it (the default action).
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the next SIGTERM or SIGINT, naming it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Serves `running` until SIGTERM or SIGINT (or until the server stops by itself), then
/// stops it: no new connections, the requests in flight finished, then the background
/// tasks, everything within `grace`.
pub async fn serve_until_signalled(
    running: Running,
    mut signals: Signals,
    service: &'static str,
    grace: Duration,
) -> anyhow::Result<Stopped> {
    let Running { server, background } = running;
    let handle = server.handle();
    let mut server = tokio::spawn(server);
    let started_stopping = tokio::select! {
        served = &mut server => {
            // The server ended without a signal (it failed): stop the rest and report.
            let stopped = background.stop(grace).await;
            served??;
            return Ok(stopped);
        }
        signal = signals.recv() => {
            tracing::info!(service, signal, ?grace, "stopping: draining requests in flight");
            tokio::time::Instant::now()
        }
    };
    // Graceful: the listeners close, requests in flight get until SHUTDOWN_TIMEOUT_SECS
    // (the server's own shutdown timeout) to finish.
    handle.stop(true).await;
    server.await??;
    let left = grace.saturating_sub(started_stopping.elapsed());
    Ok(background.stop(left.max(MIN_TASK_GRACE)).await)
}

/// What the background tasks get at least, when draining the requests took the whole
/// grace period.
const MIN_TASK_GRACE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_waits_for_watching_tasks_and_aborts_the_stuck_ones() {
        let mut background = Background::new();
        let token = background.token();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        background.spawn("finishes", async move {
            token.cancelled().await;
            // Finishing its work after the signal (yielding to the runtime meanwhile).
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            let _ = done_tx.send(());
        });
        background.spawn_cancellable("loop", std::future::pending());
        background.spawn("stuck", std::future::pending());
        assert_eq!(background.names(), ["finishes", "loop", "stuck"]);
        let stopped = background.stop(Duration::from_millis(500)).await;
        assert_eq!(stopped.finished, ["finishes", "loop"]);
        assert_eq!(stopped.aborted, ["stuck"]);
        done_rx.await.expect("the watching task finished its work");
    }
}
