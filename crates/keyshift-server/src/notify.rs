//! Notifications: every phase change of a rotation, published to webhooks
//! (JSON, HMAC-signed, retried with backoff) and to the NATS subjects
//! `keyshift.rotation.<phase>`, so deployment pipelines and other tools can
//! react.
//!
//! ```text
//!  driver ── phase entered ──► Notifier::phase(&rotation)     never waits
//!                                 │ try_send: one queue per receiver
//!               ┌─────────────────┼──────────────────┐
//!               ▼                 ▼                  ▼
//!        webhook worker     webhook worker      NATS worker
//!        in order; each notice tried up to      one connection,
//!        8 times, 1 s doubling to 60 s          reconnecting by itself
//! ```
//!
//! A receiver that fails or is slow delays only its own queue. When its
//! queue is full ([`QUEUE`] notices) further notices to it are dropped
//! with a warning: a receiver never blocks a rotation. Delivery is at least
//! once (a server restarted mid-rotation may send a phase again); receivers
//! deduplicate on `event_id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyshift_core::api::PhaseNotice;
use keyshift_core::rotation::Rotation;
use keyshift_core::{Label, NotifyWebhook, SecretValue};
use keyshift_store::{Store, VersionSelector};
use keyshift_targets::{sign, MIN_HMAC_KEY_LEN, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Notices queued per receiver before new ones are dropped.
pub const QUEUE: usize = 1024;
/// Header naming the notice's NATS subject (`keyshift.rotation.<phase>`).
pub const EVENT_HEADER: &str = "X-Keyshift-Event";
/// Header carrying the notice's `event_id`.
pub const EVENT_ID_HEADER: &str = "X-Keyshift-Event-Id";

/// Where every rotation's phase changes go, whatever the secret; each
/// secret's policy may add webhooks (`notify`). Its `Debug` shows no URL
/// query and no NATS URL (either may hold credentials).
#[derive(Clone, Default)]
pub struct NotifyConfig {
    /// Webhooks told of every rotation.
    pub webhooks: Vec<NotifyWebhook>,
    /// A NATS server URL (`nats://127.0.0.1:4222`).
    pub nats: Option<String>,
    /// How webhook deliveries are retried.
    pub retry: Retry,
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hooks: Vec<&str> = self.webhooks.iter().map(NotifyWebhook::shown).collect();
        f.debug_struct("NotifyConfig")
            .field("webhooks", &hooks)
            .field("nats", &self.nats.as_ref().map(|_| "<set>"))
            .field("retry", &self.retry)
            .finish()
    }
}

/// How a webhook delivery is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts per notice, the first included.
    pub attempts: u32,
    /// The wait after the first failure, doubled after each.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Each attempt's timeout.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Publishes phase changes. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    global: Vec<NotifyWebhook>,
    retry: Retry,
    http: reqwest::Client,
    nats: Option<mpsc::Sender<PhaseNotice>>,
    webhooks: Mutex<HashMap<NotifyWebhook, mpsc::Sender<PhaseNotice>>>,
    shutdown: CancellationToken,
}

impl Notifier {
    /// A notifier for `config`; its workers stop at `shutdown`.
    ///
    /// # Errors
    ///
    /// A global webhook URL is invalid, or the HTTP client cannot be built.
    pub fn new(
        store: Arc<dyn Store>,
        config: NotifyConfig,
        shutdown: CancellationToken,
    ) -> Result<Notifier, String> {
        for hook in &config.webhooks {
            hook.validate().map_err(|e| e.to_string())?;
        }
        let http = reqwest::Client::builder()
            .timeout(config.retry.timeout)
            .connect_timeout(config.retry.timeout)
            // A redirect would send the notice somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        let nats = config.nats.map(|url| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(nats_worker(url, rx, shutdown.clone()));
            tx
        });
        Ok(Notifier {
            inner: Arc::new(Inner {
                store,
                global: config.webhooks,
                retry: config.retry,
                http,
                nats,
                webhooks: Mutex::new(HashMap::new()),
                shutdown,
            }),
        })
    }

    /// Publishes the phase `rotation` has just entered to every receiver:
    /// the server's, and those of the rotation's policy. Never waits.
    pub fn phase(&self, rotation: &Rotation) {
        let notice = PhaseNotice::of(rotation);
        let mut hooks: Vec<&NotifyWebhook> = self.inner.global.iter().collect();
        for hook in &rotation.policy.notify {
            if !hooks.contains(&hook) {
                hooks.push(hook);
            }
        }
        for hook in hooks {
            let queue = self.queue(hook);
            enqueue(&queue, notice.clone(), hook.shown());
        }
        if let Some(nats) = &self.inner.nats {
            enqueue(nats, notice, "NATS");
        }
    }

    /// The queue of `hook`, its worker started on first use.
    fn queue(&self, hook: &NotifyWebhook) -> mpsc::Sender<PhaseNotice> {
        // A poisoned lock only means a panic elsewhere; the map is intact.
        let mut map = self
            .inner
            .webhooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(hook.clone())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let worker = WebhookWorker {
                    store: self.inner.store.clone(),
                    http: self.inner.http.clone(),
                    retry: self.inner.retry,
                    hook: hook.clone(),
                };
                tokio::spawn(worker.run(rx, self.inner.shutdown.clone()));
                tx
            })
            .clone()
    }
}

fn enqueue(queue: &mpsc::Sender<PhaseNotice>, notice: PhaseNotice, receiver: &str) {
    if let Err(e) = queue.try_send(notice) {
        tracing::warn!(receiver, error = %e, "notification dropped: the receiver's queue is full or closed");
    }
}

struct WebhookWorker {
    store: Arc<dyn Store>,
    http: reqwest::Client,
    retry: Retry,
    hook: NotifyWebhook,
}

impl WebhookWorker {
    /// Delivers the queue in order, each notice retried with backoff.
    async fn run(self, mut queue: mpsc::Receiver<PhaseNotice>, shutdown: CancellationToken) {
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = queue.recv() => match n {
                    Some(n) => n,
                    None => return,
                },
            };
            let mut wait = self.retry.first;
            for attempt in 1..=self.retry.attempts {
                let error = match self.deliver(&notice).await {
                    Ok(()) => break,
                    Err(e) => e,
                };
                if attempt == self.retry.attempts {
                    tracing::error!(url = %self.hook.shown(), event_id = %notice.event_id, attempts = attempt, %error, "webhook notification given up");
                    break;
                }
                tracing::warn!(url = %self.hook.shown(), event_id = %notice.event_id, attempt, %error, retry_in = ?wait, "webhook notification failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(self.retry.max);
            }
        }
    }

    /// One attempt: signs with the HMAC secret's current value and POSTs.
    async fn deliver(&self, notice: &PhaseNotice) -> Result<(), String> {
        let key = self.key().await?;
        let body = serde_json::to_vec(notice).map_err(|e| format!("encoding: {e}"))?;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = sign(&key, timestamp, &body);
        let response = self
            .http
            .post(&self.hook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_HEADER, notice.subject())
            .header(EVENT_ID_HEADER, &notice.event_id)
            .body(body)
            .send()
            .await
            // The URL (and its query) stays out of the message.
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    async fn key(&self) -> Result<SecretValue, String> {
        let name = &self.hook.hmac_secret;
        let (_, key) = self
            .store
            .get_value(name, &VersionSelector::Label(Label::Current))
            .await
            .map_err(|e| format!("reading the HMAC secret {name}: {e}"))?;
        if key.expose().len() < MIN_HMAC_KEY_LEN {
            return Err(format!(
                "the HMAC secret {name} is shorter than {MIN_HMAC_KEY_LEN} bytes"
            ));
        }
        Ok(key)
    }
}

/// Publishes the queue on one NATS connection, made in the background and
/// kept up by the client (it reconnects by itself).
async fn nats_worker(
    url: String,
    mut queue: mpsc::Receiver<PhaseNotice>,
    shutdown: CancellationToken,
) {
    let connect = async_nats::ConnectOptions::new()
        .name("keyshift")
        .retry_on_initial_connect()
        .connect(url.as_str());
    let client = tokio::select! {
        _ = shutdown.cancelled() => return,
        c = connect => match c {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the NATS connection; rotation notifications will not be published there");
                return;
            }
        },
    };
    loop {
        let notice = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = queue.recv() => match n {
                Some(n) => n,
                None => break,
            },
        };
        let payload = match serde_json::to_vec(&notice) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a notification");
                continue;
            }
        };
        if let Err(e) = client.publish(notice.subject(), payload.into()).await {
            tracing::warn!(event_id = %notice.event_id, error = %e, "NATS notification not published");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
}
