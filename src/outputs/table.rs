//! The table itself: one [`Row`] per configured output, in config order,
//! kept across rounds and reloads; which instances are in a round; and
//! [`Outputs`], the table shared by the daemon's tasks and the endpoints.
//!
//! A round ends with [`Table::end_round`]: what it verified and left in
//! place becomes the row's [`LastVerified`] (what a restore writes back),
//! and what it saw or wrote becomes the row's observation. Rows of an
//! instance whose round is running are not offered for healing
//! ([`Table::candidates`]) until it ended.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::certcheck::Sha256Digest;
use crate::cloud::Service;
use crate::config::{Category, Config, Instance, Output, Perms};

use super::{Format, Observation, Owner, Readiness, look, readiness};

/// The bytes a round verified for an output and left on disk: what a
/// restore writes back (never bytes read from the disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastVerified {
    pub bytes: Arc<[u8]>,
    pub sha256: Sha256Digest,
    /// When the bundle keeps previous certificates (`keep_previous`): the
    /// earliest notAfter of its current ones, by which readiness and the
    /// expiry gauge judge a file holding these bytes. `None`: every
    /// certificate in it is current.
    pub current_not_after: Option<i64>,
    /// The format as the round used it ([`Format::resolved`]: a
    /// truststore's password as it was then), which a restore writes and
    /// judges with: a password changed since is the next round's change,
    /// with its hook, never a restore's.
    pub format: Format,
}

/// One configured output, and what is known of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub instance_id: String,
    pub service: Service,
    pub category: Category,
    pub path: PathBuf,
    pub format: Format,
    /// The mode and owner the config sets (`None`: keep the file's).
    pub perms: Perms,
    /// What a restore writes back; `None` until a round verified the
    /// output and left it in place (and in a dry run).
    pub verified: Option<LastVerified>,
    /// The file's mode and owner when its last round ended, for a restore
    /// after a deletion (where the config sets none).
    pub owner: Option<Owner>,
    /// The last observation of the path.
    pub seen: Option<Observation>,
}

impl Row {
    fn new(inst: &Instance, o: &Output) -> Row {
        Row {
            instance_id: inst.id.clone(),
            service: inst.service,
            category: o.category,
            path: o.path.clone(),
            format: Format::of(o),
            perms: inst.perms.clone(),
            verified: None,
            owner: None,
            seen: None,
        }
    }

    /// Its instance's ID and service: the labels of its series.
    pub fn who(&self) -> crate::metrics::Who<'_> {
        (&self.instance_id, self.service)
    }

    /// The key that configures the output (`international`, `national`,
    /// `truststore`), as [`crate::config::Output::name`].
    pub fn output(&self) -> &'static str {
        match self.format {
            Format::Truststore(_) => "truststore",
            Format::PemBundle => self.category.as_str(),
        }
    }

    /// The permissions a restore writes with: the configured ones, else the
    /// mode (minus special bits and others' write access) and owner the
    /// file had when its last round ended.
    pub fn restore_perms(&self) -> Perms {
        let mut p = self.perms.clone();
        if let Some(o) = self.owner {
            p.mode = p.mode.or(Some(crate::output::inherited_mode(o.mode)));
            p.uid = p.uid.or(Some(o.uid));
            p.gid = p.gid.or(Some(o.gid));
        }
        p
    }
}

/// What a round left at one output, for [`Table::end_round`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundEnd {
    pub path: PathBuf,
    /// The bytes it verified, if the file holds them now.
    pub verified: Option<LastVerified>,
    /// What it saw at the path, or wrote there; `None`: it did not look.
    pub seen: Option<Observation>,
}

/// The outputs of a config, and the instances whose round is running.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
    index: HashMap<PathBuf, usize>,
    /// Instance ID → its rows: a round's work with the table does not
    /// grow with the number of instances.
    by_instance: HashMap<String, Vec<usize>>,
    busy: HashSet<String>,
    warning: Duration,
}

impl Table {
    pub fn new(config: &Config) -> Table {
        let mut t = Table::default();
        t.set_config(config);
        t
    }

    /// Takes the outputs of a (new) config. A row whose path, instance,
    /// category and format stay keeps what is known of it (an instance whose
    /// settings changed syncs at once, and its round refreshes that).
    pub fn set_config(&mut self, config: &Config) {
        let mut old: HashMap<PathBuf, Row> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|r| (r.path.clone(), r))
            .collect();
        for inst in &config.instances {
            for o in &inst.outputs {
                let mut row = Row::new(inst, o);
                if let Some(prev) = old.remove(&o.path).filter(|p| {
                    (p.instance_id.as_str(), p.category, &p.format)
                        == (inst.id.as_str(), o.category, &row.format)
                }) {
                    row.verified = prev.verified;
                    row.owner = prev.owner;
                    row.seen = prev.seen;
                }
                self.rows.push(row);
            }
        }
        self.index = (self.rows.iter().enumerate())
            .map(|(i, r)| (r.path.clone(), i))
            .collect();
        self.by_instance.clear();
        for (i, r) in self.rows.iter().enumerate() {
            (self.by_instance.entry(r.instance_id.clone()))
                .or_default()
                .push(i);
        }
        self.warning = config.sync.expiry_warning;
    }

    /// `sync.expiry_warning` as configured now.
    pub fn warning(&self) -> Duration {
        self.warning
    }

    /// Every output, in config order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn row(&self, path: &Path) -> Option<&Row> {
        self.index.get(path).map(|&i| &self.rows[i])
    }

    /// The indices of one instance's rows, in config order.
    fn indices_of(&self, instance_id: &str) -> &[usize] {
        self.by_instance.get(instance_id).map_or(&[], Vec::as_slice)
    }

    /// The outputs of one instance.
    pub fn rows_of(&self, instance_id: &str) -> Vec<Row> {
        (self.indices_of(instance_id).iter())
            .map(|&i| self.rows[i].clone())
            .collect()
    }

    /// A round of `instance_id` starts: its outputs are not healed until it ends.
    pub fn begin_round(&mut self, instance_id: &str) {
        self.busy.insert(instance_id.to_string());
    }

    /// A round of `instance_id` ended and left `ends`. An output it did not
    /// verify is no longer restored (until a round does); the mode and owner
    /// of what it left are kept for a restore.
    pub fn end_round(&mut self, instance_id: &str, ends: Vec<RoundEnd>) {
        self.busy.remove(instance_id);
        let mut ends: HashMap<PathBuf, RoundEnd> =
            ends.into_iter().map(|e| (e.path.clone(), e)).collect();
        for &i in self
            .by_instance
            .get(instance_id)
            .map_or(&[][..], Vec::as_slice)
        {
            let row = &mut self.rows[i];
            let end = ends.remove(&row.path);
            let (verified, seen) = end.map(|e| (e.verified, e.seen)).unwrap_or_default();
            row.verified = verified;
            if let Some(seen) = seen {
                row.owner = seen.owner();
                row.seen = Some(seen);
            } else {
                row.owner = None;
            }
        }
    }

    /// The outputs with bytes to restore that an event on `event_path` may
    /// concern, except those of instances in a round.
    pub fn candidates(&self, event_path: &Path) -> Vec<Row> {
        (self.rows.iter())
            .filter(|r| {
                r.verified.is_some()
                    && !self.busy.contains(&r.instance_id)
                    && crate::watch::may_affect(event_path, &r.path)
            })
            .cloned()
            .collect()
    }

    /// Every output with bytes to restore, not in a round.
    pub fn all(&self) -> Vec<Row> {
        self.candidates(Path::new(""))
    }

    /// [`Table::candidates`] for a set of events, in one pass over the
    /// table, each row at most once: a burst of events in a directory of
    /// many outputs costs one pass, not one per event.
    pub fn candidates_for(&self, events: &HashSet<PathBuf>) -> Vec<Row> {
        if events.iter().any(|e| e.as_os_str().is_empty()) {
            return self.all();
        }
        // `watch::may_affect`, turned around: an event at the file or at its
        // directory, or at anything in that directory.
        let parents: HashSet<&Path> = events.iter().filter_map(|e| e.parent()).collect();
        (self.rows.iter())
            .filter(|r| r.verified.is_some() && !self.busy.contains(&r.instance_id))
            .filter(|r| {
                let dir = crate::output::parent_dir(&r.path);
                events.contains(&r.path) || events.contains(&dir) || parents.contains(dir.as_path())
            })
            .cloned()
            .collect()
    }

    /// The outputs of one instance with bytes to restore, unless it is in a
    /// round: what [`Table::all`] holds of it.
    pub fn candidates_of(&self, instance_id: &str) -> Vec<Row> {
        if self.busy.contains(instance_id) {
            return Vec::new();
        }
        (self.indices_of(instance_id).iter())
            .map(|&i| &self.rows[i])
            .filter(|r| r.verified.is_some())
            .cloned()
            .collect()
    }

    /// Whether the output is still to hold the bytes with this digest and
    /// its instance is not in a round (checked again just before writing).
    pub fn still_current(&self, path: &Path, sha: &Sha256Digest) -> bool {
        self.row(path).is_some_and(|r| {
            r.verified.as_ref().is_some_and(|v| &v.sha256 == sha)
                && !self.busy.contains(&r.instance_id)
        })
    }

    /// Records an observation made from `before` (the row's observation
    /// when the look began), unless the row has learnt something else since
    /// (a round or a restore wrote meanwhile).
    pub fn saw(&mut self, path: &Path, before: Option<&Observation>, seen: Observation) {
        if let Some(&i) = self.index.get(path)
            && self.rows[i].seen.as_ref() == before
        {
            self.rows[i].seen = Some(seen);
        }
    }

    /// Records what a restore wrote.
    pub fn wrote(&mut self, path: &Path, seen: Option<Observation>) {
        if let Some(&i) = self.index.get(path) {
            self.rows[i].seen = seen;
        }
    }
}

/// The table, shared by the daemon's tasks and the endpoints.
#[derive(Debug, Default)]
pub struct Outputs {
    table: Mutex<Table>,
}

impl Outputs {
    pub fn new(config: &Config) -> Outputs {
        Outputs {
            table: Mutex::new(Table::new(config)),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks at every output ([`look`]: only a file that changed since the
    /// last look is read), records what it saw, and judges them at Unix time
    /// `now`. Returns the rows as seen, and the judgement. Blocking.
    pub fn assess(&self, now: i64) -> (Vec<Row>, Readiness) {
        let (mut rows, warning) = {
            let t = self.lock();
            (t.rows().to_vec(), t.warning())
        };
        for row in &mut rows {
            let seen = look(&row.path, &row.format, row.seen.as_ref());
            self.lock().saw(&row.path, row.seen.as_ref(), seen.clone());
            row.seen = Some(seen);
        }
        let verdict = readiness(
            rows.iter().filter_map(|r| Some((r, r.seen.as_ref()?))),
            now,
            warning,
        );
        (rows, verdict)
    }
}
