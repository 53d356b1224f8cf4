//! Per-identity certificates, shared by every pod with that identity and renewed at
//! half-life by one tokio task per identity.
//!
//! Renewal only swaps the `Arc` inside [`IdentityCert`]; TLS resolvers call
//! [`IdentityCert::current`] per handshake, so connections already established keep the
//! certificate they started with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ca::{Ca, CaError};
use super::clock;
use super::spiffe::SpiffeId;
use super::workload::WorkloadCert;

/// First retry delay after a failed renewal; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Issues and renews workload certificates, one entry per identity. Cheap to clone.
#[derive(Clone)]
pub struct CertManager {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Arc<Ca>,
    lifetime: Duration,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
}

struct Entry {
    refs: usize,
    cert: IdentityCert,
    renewal: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// The certificate of one identity; always hands out the newest one.
#[derive(Clone)]
pub struct IdentityCert {
    slot: Arc<RwLock<Arc<WorkloadCert>>>,
}

impl IdentityCert {
    fn new(cert: WorkloadCert) -> Self {
        Self {
            slot: Arc::new(RwLock::new(Arc::new(cert))),
        }
    }

    /// The newest certificate.
    pub fn current(&self) -> Arc<WorkloadCert> {
        self.slot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, cert: WorkloadCert) {
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(cert);
    }
}

impl CertManager {
    /// Certificates will be issued by `ca` with `lifetime` (renewed at half of it).
    pub fn new(ca: Arc<Ca>, lifetime: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                ca,
                lifetime,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<SpiffeId, Entry>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a reference on `id`'s certificate. The first reference issues it (before
    /// returning, so a pod has it before its first connection) and starts its renewal;
    /// must be called inside a tokio runtime.
    pub fn acquire(&self, id: &SpiffeId) -> Result<IdentityCert, CaError> {
        if let Some(entry) = self.entries().get_mut(id) {
            entry.refs += 1;
            return Ok(entry.cert.clone());
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| CaError::NoRuntime { id: id.to_string() })?;
        // Issue without holding the lock; another caller may win the race (checked below).
        let cert = self.inner.ca.issue(id, self.inner.lifetime)?;
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(id) {
            entry.refs += 1;
            return Ok(entry.cert.clone());
        }
        let schedule = Schedule::after_issuing(&cert);
        tracing::info!(
            identity = %id,
            serial = %cert.serial,
            not_after = %clock::rfc3339(cert.not_after),
            "issued workload certificate"
        );
        let identity_cert = IdentityCert::new(cert);
        let renewal = runtime.spawn(renew_forever(
            self.inner.ca.clone(),
            self.inner.lifetime,
            id.clone(),
            identity_cert.clone(),
            schedule,
        ));
        entries.insert(
            id.clone(),
            Entry {
                refs: 1,
                cert: identity_cert.clone(),
                renewal,
            },
        );
        Ok(identity_cert)
    }

    /// Drops a reference on `id`; the last one forgets the certificate and stops renewing it.
    pub fn release(&self, id: &SpiffeId) {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(id) else {
            tracing::warn!(identity = %id, "release of an identity that holds no certificate");
            return;
        };
        entry.refs -= 1;
        if entry.refs == 0 {
            entries.remove(id);
            tracing::info!(identity = %id, "dropped workload certificate (no pods left)");
        }
    }

    /// The certificate of `id`, if some pod holds it; takes no reference.
    #[cfg(test)]
    pub fn get(&self, id: &SpiffeId) -> Option<IdentityCert> {
        self.entries().get(id).map(|e| e.cert.clone())
    }

    /// Identities that currently hold a certificate, with their reference counts.
    #[cfg(test)]
    pub fn identities(&self) -> Vec<(SpiffeId, usize)> {
        let mut list: Vec<_> = self
            .entries()
            .iter()
            .map(|(id, e)| (id.clone(), e.refs))
            .collect();
        list.sort();
        list
    }
}

/// When to renew a certificate and when it stops being valid, on tokio's clock.
#[derive(Clone, Copy)]
struct Schedule {
    renew_at: Instant,
    expires_at: Instant,
}

impl Schedule {
    /// Half-life measured from now (the moment of issuance) to the certificate's expiry.
    fn after_issuing(cert: &WorkloadCert) -> Self {
        let now = Instant::now();
        let remaining = cert
            .not_after
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self {
            renew_at: now + remaining / 2,
            expires_at: now + remaining,
        }
    }
}

/// How long to wait before retrying: the backoff, but never past the certificate's expiry
/// (once it has expired, the plain backoff).
fn retry_delay(backoff: Duration, until_expiry: Duration) -> Duration {
    if until_expiry.is_zero() {
        backoff
    } else {
        backoff.min(until_expiry)
    }
}

async fn renew_forever(
    ca: Arc<Ca>,
    lifetime: Duration,
    id: SpiffeId,
    cert: IdentityCert,
    mut schedule: Schedule,
) {
    loop {
        tokio::time::sleep_until(schedule.renew_at).await;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match ca.issue(&id, lifetime) {
                Ok(new) => {
                    schedule = Schedule::after_issuing(&new);
                    tracing::info!(
                        identity = %id,
                        serial = %new.serial,
                        not_after = %clock::rfc3339(new.not_after),
                        "renewed workload certificate"
                    );
                    cert.replace(new);
                    break;
                }
                Err(error) => {
                    let until_expiry = schedule
                        .expires_at
                        .saturating_duration_since(Instant::now());
                    let delay = retry_delay(backoff, until_expiry);
                    tracing::warn!(
                        identity = %id,
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        expired = until_expiry.is_zero(),
                        "certificate renewal failed; the current certificate stays in use"
                    );
                    tokio::time::sleep(delay).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ca_init::init_ca_dir;

    fn manager(lifetime: Duration) -> (tempfile::TempDir, CertManager) {
        let dir = tempfile::tempdir().unwrap();
        init_ca_dir(dir.path(), "cluster.local", 1, false).unwrap();
        let ca = Arc::new(Ca::load(dir.path()).unwrap());
        (dir, CertManager::new(ca, lifetime))
    }

    #[tokio::test]
    async fn shares_one_cert_per_identity_and_drops_it_at_zero() {
        let (_dir, certs) = manager(Duration::from_secs(3600));
        let id = SpiffeId::new("cluster.local", "shop", "cart");
        let a = certs.acquire(&id).unwrap();
        let b = certs.acquire(&id).unwrap();
        assert!(Arc::ptr_eq(&a.current(), &b.current()));
        assert_eq!(a.current().id, id);
        assert_eq!(certs.identities(), vec![(id.clone(), 2)]);

        let other = SpiffeId::new("cluster.local", "shop", "payments");
        let c = certs.acquire(&other).unwrap();
        assert_ne!(c.current().serial, a.current().serial);

        certs.release(&id);
        assert!(certs.get(&id).is_some(), "one reference left");
        certs.release(&id);
        assert!(certs.get(&id).is_none(), "dropped at zero");
        assert!(certs.get(&other).is_some());
        certs.release(&id); // an extra release is logged, not a panic
    }

    #[tokio::test]
    async fn renews_at_half_life() {
        let (_dir, certs) = manager(Duration::from_secs(2));
        let id = SpiffeId::new("cluster.local", "shop", "cart");
        let held = certs.acquire(&id).unwrap();
        let first = held.current();
        let deadline = Instant::now() + Duration::from_secs(3);
        while held.current().serial == first.serial {
            assert!(Instant::now() < deadline, "no renewal within 3s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let renewed = held.current();
        assert!(renewed.not_after >= first.not_after);
        assert_eq!(renewed.id, id);
        // The entry's handle sees the renewal too.
        assert_eq!(certs.get(&id).unwrap().current().serial, renewed.serial);
    }

    #[tokio::test]
    async fn release_to_zero_stops_renewal() {
        let (_dir, certs) = manager(Duration::from_secs(2));
        let id = SpiffeId::new("cluster.local", "shop", "cart");
        let kept = certs.acquire(&id).unwrap();
        let serial = kept.current().serial.clone();
        certs.release(&id);
        // Renewal would have happened after at most 1s.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(kept.current().serial, serial);
        // A new acquire starts afresh with a new certificate.
        let again = certs.acquire(&id).unwrap();
        assert_ne!(again.current().serial, serial);
    }

    #[test]
    fn acquire_outside_a_runtime_is_an_error() {
        let (_dir, certs) = manager(Duration::from_secs(60));
        let err = certs
            .acquire(&SpiffeId::new("cluster.local", "a", "b"))
            .err()
            .unwrap();
        assert!(matches!(err, CaError::NoRuntime { .. }), "{err}");
    }

    #[test]
    fn retry_never_waits_past_expiry() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(s(1), s(100)), s(1));
        assert_eq!(retry_delay(s(30), s(10)), s(10));
        assert_eq!(retry_delay(s(30), Duration::ZERO), s(30));
        let mut backoff = FIRST_BACKOFF;
        let mut seen = vec![];
        for _ in 0..7 {
            seen.push(backoff.as_secs());
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
    }
}
