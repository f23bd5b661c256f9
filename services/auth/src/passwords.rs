//! bcrypt on a pool of its own: `BCRYPT_THREADS` threads (one per core by default) at a
//! lower CPU priority (nice 10), so a login storm uses the CPU the rest of the service
//! leaves and never makes token checks wait behind hashing; never on the async
//! executor. The queue is bounded: past it, a hash is refused with 503 rather than
//! piling up. An unknown email is checked against a dummy hash of the same cost, so it
//! takes as long as a wrong password.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use http_kit::ApiError;
use thread_priority::{ThreadPriority, ThreadPriorityValue};

/// Longest password bcrypt hashes without silently truncating.
pub const MAX_PASSWORD_BYTES: usize = 72;
/// Hashes waiting for a thread before new ones are refused.
const QUEUE_BOUND: usize = 1024;
/// Maps to nice 10 (thread-priority's 0–99 scale, reversed onto niceness).
const PRIORITY: u8 = 25;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Passwords {
    cost: u32,
    jobs: SyncSender<Job>,
    /// Made on first use.
    dummy_hash: Arc<tokio::sync::OnceCell<String>>,
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>) {
    let lowered = ThreadPriorityValue::try_from(PRIORITY)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "could not lower the priority of a bcrypt thread");
    }
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            // Every sender is gone: the service is shutting down.
            Err(_) => return,
        }
    }
}

impl Passwords {
    pub fn new(cost: u32, threads: usize) -> std::io::Result<Self> {
        let (jobs, receiver) = sync_channel::<Job>(QUEUE_BOUND);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || worker(receiver))?;
        }
        Ok(Self {
            cost,
            jobs,
            dummy_hash: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::ServiceUnavailable(
                    "Too many password checks in progress".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal(anyhow::anyhow!(
                    "bcrypt threads are gone"
                )))
            }
        }
        answer
            .await
            .map_err(|_| ApiError::internal(anyhow::anyhow!("a bcrypt thread panicked")))
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let cost = self.cost;
        self.run(move || bcrypt::hash(password, cost))
            .await?
            .map_err(ApiError::internal)
    }

    async fn dummy(&self) -> Result<String, ApiError> {
        self.dummy_hash
            .get_or_try_init(|| self.hash("not-a-real-password-0".to_owned()))
            .await
            .cloned()
    }

    /// Whether `password` matches `hash`; with no hash (unknown user, SSO-only user)
    /// the dummy is checked and the answer is false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => self.dummy().await?,
        };
        let matches = self
            .run(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await?;
        Ok(known && matches)
    }
}
