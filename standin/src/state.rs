//! The mutable world of the stand-in: instances and their certificates, the
//! download links issued, the fault rules and the request log; credentials
//! live in [`Credentials`], shared with the auth checks.
//!
//! [`Shared`] is owned jointly by the [`crate::StandIn`] handle and the server
//! tasks. Every operation is fallible here (the admin API feeds it untrusted
//! input); the public handle turns misuse into panics with clear messages.
//! Certificates are generated outside the lock.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::auth::AuthCheck;
use crate::certs::{self, CertError, INTERNATIONAL, NATIONAL};
use crate::creds::Credentials;
use crate::fault::{self, Fault, FaultRule};
use crate::record::{Listener, Recorded};

/// Why an operation on the stand-in's state failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// No instance with this id was added.
    UnknownInstance(String),
    /// The instance has no certificate in this category.
    UnknownCategory {
        /// Instance id.
        instance: String,
        /// Category asked for.
        category: String,
    },
    /// Certificate generation failed.
    Cert(CertError),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::UnknownInstance(i) => write!(f, "unknown instance {i:?}"),
            OpError::UnknownCategory { instance, category } => {
                write!(f, "instance {instance:?} has no {category:?} certificate")
            }
            OpError::Cert(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpError {}

impl From<CertError> for OpError {
    fn from(e: CertError) -> Self {
        OpError::Cert(e)
    }
}

/// Result of looking an instance up for an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkLookup {
    /// `(category, link)` pairs, in listing order.
    Found(Vec<(String, String)>),
    /// No such instance.
    NotFound,
    /// The instance exists under another project.
    WrongProject,
}

struct Slot {
    body: Bytes,
    generation: u32,
}

struct Instance {
    project: String,
    categories: Vec<String>,
    slots: BTreeMap<String, Slot>,
}

struct IssuedLink {
    instance: String,
    category: String,
    expires: Instant,
}

#[derive(Default)]
struct State {
    instances: HashMap<String, Instance>,
    links: HashMap<String, IssuedLink>,
    faults: Vec<FaultRule>,
    requests: Vec<Recorded>,
}

/// State shared between the handle and the servers.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) auth: Vec<Box<dyn AuthCheck>>,
    /// Keys, users and tokens (IAM, AK/SK, metadata).
    pub(crate) creds: Arc<Credentials>,
    link_ttl: Duration,
    download_port: u16,
}

/// Makes the certificate for a slot: SM2 for `national`, ECDSA otherwise.
fn generate(instance: &str, category: &str, generation: u32) -> Result<Bytes, CertError> {
    let pem = if category == NATIONAL {
        certs::national_cert(instance, generation)?
    } else {
        certs::international_cert(instance, generation)?
    };
    Ok(Bytes::from(pem))
}

/// Random lowercase hex of `n` bytes.
pub(crate) fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| fastrand::u8(..)).collect();
    hex::encode(bytes)
}

impl Shared {
    pub(crate) fn new(
        auth: Vec<Box<dyn AuthCheck>>,
        creds: Arc<Credentials>,
        link_ttl: Duration,
        download_port: u16,
    ) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            auth,
            creds,
            link_ttl,
            download_port,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a
        // way that matters to a test double, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or re-registers) an instance with fresh certificates in
    /// both categories, both listed.
    pub(crate) fn add_instance(&self, project: &str, instance: &str) -> Result<(), OpError> {
        let mut slots = BTreeMap::new();
        for category in [INTERNATIONAL, NATIONAL] {
            let body = generate(instance, category, 1)?;
            slots.insert(
                category.to_owned(),
                Slot {
                    body,
                    generation: 1,
                },
            );
        }
        let entry = Instance {
            project: project.to_owned(),
            categories: vec![INTERNATIONAL.to_owned(), NATIONAL.to_owned()],
            slots,
        };
        self.lock().instances.insert(instance.to_owned(), entry);
        Ok(())
    }

    /// Sets which categories the API lists for an instance. A listed
    /// category without a certificate yields a link that answers 404.
    pub(crate) fn set_categories(
        &self,
        instance: &str,
        categories: &[&str],
    ) -> Result<(), OpError> {
        let mut state = self.lock();
        let entry = state
            .instances
            .get_mut(instance)
            .ok_or_else(|| OpError::UnknownInstance(instance.to_owned()))?;
        entry.categories = categories.iter().map(|c| (*c).to_owned()).collect();
        Ok(())
    }

    /// Replaces a slot's certificate with a freshly generated one.
    pub(crate) fn rotate(&self, instance: &str, category: &str) -> Result<String, OpError> {
        let generation = {
            let state = self.lock();
            let entry = state
                .instances
                .get(instance)
                .ok_or_else(|| OpError::UnknownInstance(instance.to_owned()))?;
            entry
                .slots
                .get(category)
                .map_or(1, |s| s.generation.saturating_add(1))
        };
        let body = generate(instance, category, generation)?;
        let pem = String::from_utf8_lossy(&body).into_owned();
        self.set_slot(instance, category, body, generation)?;
        Ok(pem)
    }

    /// Serves arbitrary bytes as a slot's certificate.
    pub(crate) fn set_cert(
        &self,
        instance: &str,
        category: &str,
        body: &[u8],
    ) -> Result<(), OpError> {
        let generation = {
            let state = self.lock();
            state
                .instances
                .get(instance)
                .and_then(|e| e.slots.get(category))
                .map_or(1, |s| s.generation.saturating_add(1))
        };
        self.set_slot(instance, category, Bytes::copy_from_slice(body), generation)
    }

    fn set_slot(
        &self,
        instance: &str,
        category: &str,
        body: Bytes,
        generation: u32,
    ) -> Result<(), OpError> {
        let mut state = self.lock();
        let entry = state
            .instances
            .get_mut(instance)
            .ok_or_else(|| OpError::UnknownInstance(instance.to_owned()))?;
        entry
            .slots
            .insert(category.to_owned(), Slot { body, generation });
        Ok(())
    }

    /// The bytes currently served for a slot.
    pub(crate) fn cert_body(&self, instance: &str, category: &str) -> Result<Bytes, OpError> {
        let state = self.lock();
        let entry = state
            .instances
            .get(instance)
            .ok_or_else(|| OpError::UnknownInstance(instance.to_owned()))?;
        entry
            .slots
            .get(category)
            .map(|s| s.body.clone())
            .ok_or_else(|| OpError::UnknownCategory {
                instance: instance.to_owned(),
                category: category.to_owned(),
            })
    }

    pub(crate) fn push_fault(&self, rule: FaultRule) {
        self.lock().faults.push(rule);
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub(crate) fn take_fault(
        &self,
        listener: Listener,
        instance: Option<&str>,
        category: Option<&str>,
    ) -> Option<Fault> {
        fault::take(&mut self.lock().faults, listener, instance, category)
    }

    pub(crate) fn record(&self, request: Recorded) {
        self.lock().requests.push(request);
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub(crate) fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Issues fresh download links for an instance, as the API would.
    pub(crate) fn issue_links(&self, project: &str, instance: &str) -> LinkLookup {
        let now = Instant::now();
        let expires_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_add(self.link_ttl.as_secs());
        let mut state = self.lock();
        let categories = match state.instances.get(instance) {
            None => return LinkLookup::NotFound,
            Some(entry) if entry.project != project => return LinkLookup::WrongProject,
            Some(entry) => entry.categories.clone(),
        };
        state.links.retain(|_, link| link.expires > now);
        let mut out = Vec::with_capacity(categories.len());
        for category in categories {
            let signature = random_hex(20);
            let link = format!(
                "https://localhost:{port}/dds-cert/{instance}/{category}/ca-dds.crt\
                 ?AccessKeyId=STANDINACCESSKEY&Expires={expires_unix}&Signature={signature}",
                port = self.download_port,
            );
            state.links.insert(
                signature,
                IssuedLink {
                    instance: instance.to_owned(),
                    category: category.clone(),
                    expires: now + self.link_ttl,
                },
            );
            out.push((category, link));
        }
        LinkLookup::Found(out)
    }

    /// Whether `signature` was issued for this instance and category and has
    /// not expired yet.
    pub(crate) fn link_is_valid(&self, instance: &str, category: &str, signature: &str) -> bool {
        let state = self.lock();
        state.links.get(signature).is_some_and(|link| {
            link.instance == instance && link.category == category && link.expires > Instant::now()
        })
    }
}
