//! Container records: what the engine keeps about each container, in its sled database.
//!
//! A record is a small protobuf message (prost-encoded, like the event log's entries): the
//! effective configuration and run state reuse the public API's messages, so Inspect and List
//! convert nothing twice, and new fields can be added without a migration. Names live in a
//! second tree (name → id) changed in the same transaction as the record, so a name is
//! unique and always points at an existing container.

use berth_proto::engine::v1::{ContainerConfig, ContainerState, ContainerStatus, ExitStatus};
use berth_proto::types::v1::Platform;
use prost::Message;
use prost_types::Timestamp;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::error::{Error, Result};
use crate::metadata::CONTAINERS;

/// Tree of container names → ids.
pub const NAMES: &str = "container-names";

/// One container as the engine keeps it.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    /// 64 hex characters.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Unique name, without Docker's leading "/".
    #[prost(string, tag = "2")]
    pub name: String,
    /// Creation time.
    #[prost(message, optional, tag = "3")]
    pub created: Option<Timestamp>,
    /// The image as the user gave it ("busybox").
    #[prost(string, tag = "4")]
    pub image: String,
    /// The image id, "sha256:<hex>".
    #[prost(string, tag = "5")]
    pub image_id: String,
    /// The effective configuration (options with the image's defaults filled in).
    #[prost(message, optional, tag = "6")]
    pub config: Option<ContainerConfig>,
    /// Run state.
    #[prost(message, optional, tag = "7")]
    pub state: Option<ContainerState>,
    /// The executable run (first word of entrypoint + cmd).
    #[prost(string, tag = "8")]
    pub path: String,
    /// Its arguments.
    #[prost(string, repeated, tag = "9")]
    pub args: Vec<String>,
    /// Chain id of the image's top layer: the parent of the container's snapshot.
    #[prost(string, tag = "10")]
    pub chain_id: String,
    /// Host path of the json-lines log; empty with the "none" log driver.
    #[prost(string, tag = "11")]
    pub log_path: String,
    /// Times the restart policy restarted it.
    #[prost(uint32, tag = "12")]
    pub restart_count: u32,
    /// Platform of the image.
    #[prost(message, optional, tag = "13")]
    pub platform: Option<Platform>,
    /// Resolved user: uid.
    #[prost(uint32, tag = "14")]
    pub uid: u32,
    /// Resolved user: gid.
    #[prost(uint32, tag = "15")]
    pub gid: u32,
    /// Stopped or killed by the user since its last start: its restart policy rests.
    #[prost(bool, tag = "16")]
    pub manually_stopped: bool,
}

impl Record {
    /// The status, CREATED when unset.
    pub fn status(&self) -> ContainerStatus {
        self.state
            .as_ref()
            .and_then(|s| ContainerStatus::try_from(s.status).ok())
            .filter(|s| *s != ContainerStatus::Unspecified)
            .unwrap_or(ContainerStatus::Created)
    }

    /// True while its main process runs (running or paused, as Docker's State.Running).
    pub fn is_running(&self) -> bool {
        matches!(
            self.status(),
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        )
    }

    /// The state, mutable, created when missing.
    pub fn state_mut(&mut self) -> &mut ContainerState {
        self.state.get_or_insert_with(|| ContainerState {
            status: ContainerStatus::Created as i32,
            ..Default::default()
        })
    }

    /// The configuration (empty when missing).
    pub fn config(&self) -> &ContainerConfig {
        static EMPTY: std::sync::OnceLock<ContainerConfig> = std::sync::OnceLock::new();
        self.config
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(ContainerConfig::default))
    }

    /// Records that the main process exited.
    pub fn set_exited(&mut self, exit: &ExitStatus) {
        let s = self.state_mut();
        s.status = ContainerStatus::Exited as i32;
        s.running = false;
        s.paused = false;
        s.restarting = false;
        s.pid = 0;
        s.exit_code = exit.exit_code;
        s.oom_killed = exit.oom_killed;
        s.error = exit.error.clone();
        s.finished_at = exit.finished_at;
    }

    /// The exit status of the last run, as Wait reports it.
    pub fn exit_status(&self) -> ExitStatus {
        let s = self.state.clone().unwrap_or_default();
        ExitStatus {
            exit_code: s.exit_code,
            oom_killed: s.oom_killed,
            finished_at: s.finished_at,
            error: s.error,
        }
    }

    /// Twelve characters of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

fn decode(bytes: &[u8]) -> Result<Record> {
    Record::decode(bytes).map_err(|e| {
        Error::io(
            "decode container record",
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// The container trees of the engine's database.
#[derive(Clone)]
pub struct Store {
    records: sled::Tree,
    names: sled::Tree,
}

/// Why [`Store::insert`] refused.
fn unwrap_tx<T>(r: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Metadata(e),
    })
}

impl Store {
    /// Opens the trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self> {
        Ok(Store {
            records: db.open_tree(CONTAINERS)?,
            names: db.open_tree(NAMES)?,
        })
    }

    /// The record with this full id.
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        self.records
            .get(id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The id a name belongs to.
    pub fn id_of_name(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .names
            .get(name.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// True when the name is in use.
    pub fn name_taken(&self, name: &str) -> Result<bool> {
        Ok(self.names.contains_key(name.as_bytes())?)
    }

    /// Ids starting with `prefix`, at most `max`.
    pub fn ids_with_prefix(&self, prefix: &str, max: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for k in self.records.scan_prefix(prefix.as_bytes()).keys().take(max) {
            out.push(String::from_utf8_lossy(&k?).into_owned());
        }
        Ok(out)
    }

    /// Every record, in id order. Undecodable records are logged and left out.
    pub fn all(&self) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(self.records.len());
        for kv in self.records.iter() {
            let (k, v) = kv?;
            match decode(&v) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(id = %String::from_utf8_lossy(&k), error = %e, "unreadable container record")
                }
            }
        }
        Ok(out)
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when there is no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Stores a new record and its name in one transaction; AlreadyExists when the name is
    /// taken.
    pub fn insert(&self, rec: &Record) -> Result<()> {
        let bytes = rec.encode_to_vec();
        unwrap_tx(
            (&self.records, &self.names).transaction(|(records, names)| {
                if names.get(rec.name.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(name_conflict(
                        &rec.name,
                    )));
                }
                names.insert(rec.name.as_bytes(), rec.id.as_bytes())?;
                records.insert(rec.id.as_bytes(), bytes.as_slice())?;
                Ok(())
            }),
        )
    }

    /// Changes the record `id` with `f` atomically; returns the new record. NotFound when
    /// it does not exist (any more).
    pub fn update(&self, id: &str, f: impl Fn(&mut Record)) -> Result<Record> {
        unwrap_tx(self.records.transaction(|records| {
            let Some(v) = records.get(id.as_bytes())? else {
                return Err(ConflictableTransactionError::Abort(no_such_container(id)));
            };
            let mut rec = decode(&v).map_err(ConflictableTransactionError::Abort)?;
            f(&mut rec);
            records.insert(id.as_bytes(), rec.encode_to_vec())?;
            Ok(rec)
        }))
    }

    /// Renames the container; AlreadyExists when the new name is taken.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<Record> {
        unwrap_tx(
            (&self.records, &self.names).transaction(|(records, names)| {
                let Some(v) = records.get(id.as_bytes())? else {
                    return Err(ConflictableTransactionError::Abort(no_such_container(id)));
                };
                let mut rec = decode(&v).map_err(ConflictableTransactionError::Abort)?;
                if rec.name == new_name {
                    return Ok(rec);
                }
                if names.get(new_name.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(name_conflict(new_name)));
                }
                names.remove(rec.name.as_bytes())?;
                names.insert(new_name.as_bytes(), id.as_bytes())?;
                rec.name = new_name.to_string();
                records.insert(id.as_bytes(), rec.encode_to_vec())?;
                Ok(rec)
            }),
        )
    }

    /// Deletes the record and frees its name.
    pub fn remove(&self, id: &str) -> Result<()> {
        unwrap_tx(
            (&self.records, &self.names).transaction(|(records, names)| {
                if let Some(v) = records.remove(id.as_bytes())? {
                    if let Ok(rec) = decode(&v) {
                        if names.get(rec.name.as_bytes())?.as_deref() == Some(id.as_bytes()) {
                            names.remove(rec.name.as_bytes())?;
                        }
                    }
                }
                Ok(())
            }),
        )
    }
}

/// Docker's error for a name in use.
pub fn name_conflict(name: &str) -> Error {
    Error::AlreadyExists(format!(
        "Conflict. The container name \"/{name}\" is already in use"
    ))
}

/// Docker's error for a container that does not exist.
pub fn no_such_container(id: &str) -> Error {
    Error::NotFound(format!("No such container: {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        (dir, Store::open(&db).unwrap())
    }

    fn rec(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_are_unique_and_freed_on_remove() {
        let (_d, s) = store();
        s.insert(&rec("aa11", "web")).unwrap();
        let err = s.insert(&rec("bb22", "web")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
        assert_eq!(
            err.to_string(),
            "Conflict. The container name \"/web\" is already in use"
        );
        assert!(s.get("bb22").unwrap().is_none());
        s.remove("aa11").unwrap();
        assert!(!s.name_taken("web").unwrap());
        s.insert(&rec("bb22", "web")).unwrap();
        assert_eq!(s.id_of_name("web").unwrap().as_deref(), Some("bb22"));
    }

    #[test]
    fn updates_are_atomic_and_prefixes_scan() {
        let (_d, s) = store();
        s.insert(&rec("abc1", "a")).unwrap();
        s.insert(&rec("abd2", "b")).unwrap();
        let r = s
            .update("abc1", |r| {
                r.set_exited(&ExitStatus {
                    exit_code: 3,
                    ..Default::default()
                })
            })
            .unwrap();
        assert_eq!(r.status(), ContainerStatus::Exited);
        assert_eq!(s.get("abc1").unwrap().unwrap().exit_status().exit_code, 3);
        assert_eq!(s.ids_with_prefix("ab", 10).unwrap().len(), 2);
        assert_eq!(s.ids_with_prefix("abd", 10).unwrap(), ["abd2"]);
        assert!(s.update("nope", |_| {}).is_err());
        let r = s.rename("abc1", "c").unwrap();
        assert_eq!(r.name, "c");
        assert!(!s.name_taken("a").unwrap());
        assert_eq!(
            s.rename("abd2", "c").unwrap_err().code(),
            tonic::Code::AlreadyExists
        );
    }
}
