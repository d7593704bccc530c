//! The mutable world of the stand-in: instances and their certificates, the
//! download links issued, the fault rules and the request log; credentials
//! live in [`Credentials`], shared with the auth checks.
//!
//! [`Shared`] is owned jointly by the [`crate::StandIn`] handle and the server
//! tasks. Every operation is fallible here (the admin API feeds it untrusted
//! input); the public handle turns misuse into panics with clear messages.
//! Certificates are generated outside the lock.
//!
//! Each instance also has a TLS listener standing in for its nodes
//! ([`crate::node`]); the `international` CAs minted for the instance are kept
//! with the server certificate each one issued, and which of them the
//! listener presents is switched on its own (`server_*`, `link_follow_server`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::auth::AuthCheck;
use crate::certs::{self, CertError, INTERNATIONAL, NATIONAL};
use crate::creds::Credentials;
use crate::fault::{self, Fault, FaultRule};
use crate::node::{Handshakes, MintedCa, Node, NodeCell};
use crate::record::{Listener, Recorded};
use crate::zips::Form;

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
    /// The link serves an `international` certificate the stand-in did not
    /// mint (set as raw bytes), so no server certificate chains to it.
    NotMinted(String),
    /// The instance's TLS listener could not be bound.
    Listen(String),
    /// Not a service name of [`crate::services::SERVICES`].
    UnknownService(String),
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::UnknownInstance(i) => write!(f, "unknown instance {i:?}"),
            OpError::UnknownCategory { instance, category } => {
                write!(f, "instance {instance:?} has no {category:?} certificate")
            }
            OpError::Cert(e) => e.fmt(f),
            OpError::NotMinted(i) => write!(
                f,
                "instance {i:?}: the link serves an international certificate the stand-in did not mint, so no server certificate chains to it"
            ),
            OpError::Listen(e) => write!(f, "cannot bind the instance's TLS listener: {e}"),
            OpError::UnknownService(s) => write!(
                f,
                "unknown service {s:?}; use one of {}",
                crate::services::SERVICES.join(", ")
            ),
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
    /// The instance's service and its `(category, link)` pairs, in listing
    /// order.
    Found(String, Vec<(String, String)>),
    /// No such instance.
    NotFound,
    /// The instance exists under another project.
    WrongProject,
}

struct Slot {
    body: Bytes,
    generation: u32,
    /// How the download host serves `body`.
    form: Form,
}

struct Instance {
    project: String,
    /// The service it belongs to ([`crate::services`]); `dds` unless set.
    service: String,
    categories: Vec<String>,
    slots: BTreeMap<String, Slot>,
    /// Every `international` CA minted for the instance, oldest first.
    cas: Vec<MintedCa>,
    /// Index in `cas` of the CA whose certificate the listener presents.
    serving: usize,
    node_addr: SocketAddr,
    node: Arc<NodeCell>,
}

impl Instance {
    /// Serves `body` for `category` from now on, in the form the slot had
    /// (PEM for a new slot): a rotation keeps how a slot is served.
    fn put_slot(&mut self, category: &str, body: Bytes, generation: u32) {
        let form = self.slots.get(category).map_or(Form::Pem, |s| s.form);
        self.slots.insert(
            category.to_owned(),
            Slot {
                body,
                generation,
                form,
            },
        );
    }

    /// The generation after every one minted or served so far.
    fn next_generation(&self, category: &str) -> u32 {
        let served = self.slots.get(category).map_or(0, |s| s.generation);
        let minted = if category == INTERNATIONAL {
            self.cas.iter().map(|c| c.generation).max().unwrap_or(0)
        } else {
            0
        };
        served.max(minted).saturating_add(1)
    }
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
    /// Where the instances' TLS listeners run.
    runtime: tokio::runtime::Handle,
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
        runtime: tokio::runtime::Handle,
    ) -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            auth,
            creds,
            link_ttl,
            download_port,
            runtime,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a
        // way that matters to a test double, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or re-registers) an instance with fresh certificates in
    /// both categories, both listed, and its TLS listener presenting a
    /// certificate issued by the `international` CA. A re-registered
    /// instance keeps its listener's address.
    pub(crate) fn add_instance(&self, project: &str, instance: &str) -> Result<(), OpError> {
        let ca = MintedCa::new(1, certs::international_ca(instance, 1)?)?;
        let mut slots = BTreeMap::new();
        slots.insert(
            INTERNATIONAL.to_owned(),
            Slot {
                body: ca.pem.clone(),
                generation: 1,
                form: Form::Pem,
            },
        );
        slots.insert(
            NATIONAL.to_owned(),
            Slot {
                body: generate(instance, NATIONAL, 1)?,
                generation: 1,
                form: Form::Pem,
            },
        );
        let existing = self
            .lock()
            .instances
            .get(instance)
            .map(|e| (e.node_addr, Arc::clone(&e.node)));
        let (node_addr, node) = match existing {
            Some(n) => n,
            None => {
                let n = Node::start(&self.runtime).map_err(|e| OpError::Listen(e.to_string()))?;
                (n.addr, n.cell)
            }
        };
        node.present(&ca);
        let service = self
            .lock()
            .instances
            .get(instance)
            .map_or_else(|| "dds".to_owned(), |e| e.service.clone());
        let entry = Instance {
            project: project.to_owned(),
            service,
            categories: vec![INTERNATIONAL.to_owned(), NATIONAL.to_owned()],
            slots,
            cas: vec![ca],
            serving: 0,
            node_addr,
            node,
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
        self.with_instance(instance, |e| {
            e.categories = categories.iter().map(|c| (*c).to_owned()).collect();
            Ok(())
        })
    }

    /// Sets the service an instance belongs to (a name of
    /// [`crate::services::SERVICES`]): which request reaches it and the shape
    /// of its answer.
    pub(crate) fn set_service(&self, instance: &str, service: &str) -> Result<(), OpError> {
        if !crate::services::SERVICES.contains(&service) {
            return Err(OpError::UnknownService(service.to_owned()));
        }
        self.with_instance(instance, |e| {
            e.service = service.to_owned();
            Ok(())
        })
    }

    /// The service an instance belongs to, if it exists.
    pub(crate) fn service_of(&self, instance: &str) -> Option<String> {
        self.lock()
            .instances
            .get(instance)
            .map(|e| e.service.clone())
    }

    /// Replaces a slot's certificate with a freshly generated one. The
    /// instance's TLS listener keeps presenting what it did ("link first").
    pub(crate) fn rotate(&self, instance: &str, category: &str) -> Result<String, OpError> {
        let generation = self.with_instance(instance, |e| Ok(e.next_generation(category)))?;
        if category != INTERNATIONAL {
            let body = generate(instance, category, generation)?;
            let pem = String::from_utf8_lossy(&body).into_owned();
            self.set_slot(instance, category, body, generation)?;
            return Ok(pem);
        }
        let ca = MintedCa::new(generation, certs::international_ca(instance, generation)?)?;
        let pem = String::from_utf8_lossy(&ca.pem).into_owned();
        self.with_instance(instance, |e| {
            e.put_slot(INTERNATIONAL, ca.pem.clone(), generation);
            e.cas.push(ca);
            Ok(())
        })?;
        Ok(pem)
    }

    /// Runs `f` on an instance under the lock.
    fn with_instance<T>(
        &self,
        instance: &str,
        f: impl FnOnce(&mut Instance) -> Result<T, OpError>,
    ) -> Result<T, OpError> {
        let mut state = self.lock();
        let entry = state
            .instances
            .get_mut(instance)
            .ok_or_else(|| OpError::UnknownInstance(instance.to_owned()))?;
        f(entry)
    }

    /// The instance's TLS listener switches to a certificate issued by the
    /// CA the link serves now (the second step of "link first").
    pub(crate) fn server_follow_link(&self, instance: &str) -> Result<(), OpError> {
        self.with_instance(instance, |e| {
            let served = e.slots.get(INTERNATIONAL).map(|s| s.body.clone());
            let index = e
                .cas
                .iter()
                .position(|c| Some(&c.pem) == served.as_ref())
                .ok_or_else(|| OpError::NotMinted(instance.to_owned()))?;
            e.serving = index;
            e.node.present(&e.cas[index]);
            Ok(())
        })
    }

    /// The instance's TLS listener switches to a certificate issued by a new
    /// CA that the link does not serve yet (the first step of "server
    /// first"); answers that CA's PEM.
    pub(crate) fn server_rotate_first(&self, instance: &str) -> Result<String, OpError> {
        let generation = self.with_instance(instance, |e| Ok(e.next_generation(INTERNATIONAL)))?;
        let ca = MintedCa::new(generation, certs::international_ca(instance, generation)?)?;
        let pem = String::from_utf8_lossy(&ca.pem).into_owned();
        self.with_instance(instance, |e| {
            e.node.present(&ca);
            e.cas.push(ca);
            e.serving = e.cas.len() - 1;
            Ok(())
        })?;
        Ok(pem)
    }

    /// The link serves the CA the instance's TLS listener chains to (the
    /// second step of "server first").
    pub(crate) fn link_follow_server(&self, instance: &str) -> Result<(), OpError> {
        self.with_instance(instance, |e| {
            let ca = &e.cas[e.serving];
            let slot = Slot {
                body: ca.pem.clone(),
                generation: ca.generation,
                form: e.slots.get(INTERNATIONAL).map_or(Form::Pem, |s| s.form),
            };
            e.slots.insert(INTERNATIONAL.to_owned(), slot);
            Ok(())
        })
    }

    /// The address of the instance's TLS listener.
    pub(crate) fn node_addr(&self, instance: &str) -> Result<SocketAddr, OpError> {
        self.with_instance(instance, |e| Ok(e.node_addr))
    }

    /// The PEM of the CA the instance's TLS listener chains to.
    pub(crate) fn server_ca(&self, instance: &str) -> Result<Bytes, OpError> {
        self.with_instance(instance, |e| Ok(e.cas[e.serving].pem.clone()))
    }

    /// What the instance's TLS listener has seen.
    pub(crate) fn handshakes(&self, instance: &str) -> Result<Handshakes, OpError> {
        self.with_instance(instance, |e| Ok(e.node.handshakes()))
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
        self.with_instance(instance, |e| {
            e.put_slot(category, body, generation);
            Ok(())
        })
    }

    /// Sets how the download host serves a slot (kept across rotations).
    pub(crate) fn set_form(
        &self,
        instance: &str,
        category: &str,
        form: Form,
    ) -> Result<(), OpError> {
        self.with_instance(instance, |e| {
            let slot = e
                .slots
                .get_mut(category)
                .ok_or_else(|| OpError::UnknownCategory {
                    instance: instance.to_owned(),
                    category: category.to_owned(),
                })?;
            slot.form = form;
            Ok(())
        })
    }

    /// What the download host sends for a slot: its certificate in the
    /// slot's [`Form`].
    pub(crate) fn served_body(&self, instance: &str, category: &str) -> Result<Bytes, OpError> {
        let form = {
            let state = self.lock();
            state
                .instances
                .get(instance)
                .and_then(|e| e.slots.get(category))
                .map_or(Form::Pem, |s| s.form)
        };
        let pem = self.cert_body(instance, category)?;
        Ok(match form {
            Form::Pem => pem,
            other => Bytes::from(other.render(&pem)),
        })
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
        let (service, categories) = match state.instances.get(instance) {
            None => return LinkLookup::NotFound,
            Some(entry) if entry.project != project => return LinkLookup::WrongProject,
            Some(entry) => (entry.service.clone(), entry.categories.clone()),
        };
        state.links.retain(|_, link| link.expires > now);
        let mut out = Vec::with_capacity(categories.len());
        for category in categories {
            let signature = random_hex(20);
            let link = format!(
                "https://localhost:{port}/dds-cert/{instance}/{category}/ca-dds.crt?{query}",
                port = self.download_port,
                query = crate::services::link_query(&service, expires_unix, &signature),
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
        LinkLookup::Found(service, out)
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
