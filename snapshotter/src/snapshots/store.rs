//! Snapshot records in sled: tree `snapshots` maps a snapshot key to its [`Record`]; the
//! next directory id is a counter in tree `counters`. Every change is one transaction, so a
//! crash leaves either the old or the new metadata, never half of it. This is the only file
//! that knows sled; swapping the store means rewriting it.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};

use super::{Info, Kind, Labels};
use crate::error::{Error, Result};
use crate::metadata;

/// Key of the snapshot id counter in the `counters` tree.
const NEXT_ID: &[u8] = b"snapshots.next-id";

/// What is stored per snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    /// Directory id: the snapshot lives in `<root>/snapshots/<id>`.
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
    pub created: SystemTime,
    pub updated: SystemTime,
    pub labels: Labels,
    /// Number of snapshots whose parent this is. Kept in the record, and changed in the
    /// same transaction that creates or removes a child, so "remove only without children"
    /// cannot race with a concurrent prepare on it.
    pub children: u64,
}

impl Record {
    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_string(),
            parent: self.parent.clone().unwrap_or_default(),
            kind: self.kind,
            created: self.created,
            updated: self.updated,
            labels: self.labels.clone(),
        }
    }
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("snapshot {key:?}"))
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::io(
            format!("decode snapshot record {:?}", String::from_utf8_lossy(key)),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

fn encode(rec: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(rec).map_err(|e| Error::io("encode snapshot record", e.into()))
}

fn abort<T>(e: Error) -> ConflictableTransactionResult<T, Error> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_get(
    tx: &TransactionalTree,
    key: &str,
) -> ConflictableTransactionResult<Option<Record>, Error> {
    match tx.get(key.as_bytes())? {
        None => Ok(None),
        Some(v) => decode(key.as_bytes(), &v).map(Some).or_else(abort),
    }
}

fn tx_put(
    tx: &TransactionalTree,
    key: &str,
    rec: &Record,
) -> ConflictableTransactionResult<(), Error> {
    let bytes = encode(rec).or_else(abort)?;
    tx.insert(key.as_bytes(), bytes)?;
    Ok(())
}

fn tx_result<T>(r: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Metadata(e),
    })
}

/// The snapshot records.
pub(super) struct Store {
    db: sled::Db,
    snapshots: sled::Tree,
    counters: sled::Tree,
}

impl Store {
    pub fn open(db: &sled::Db) -> Result<Self> {
        Ok(Store {
            db: db.clone(),
            snapshots: db.open_tree(metadata::SNAPSHOTS)?,
            counters: db.open_tree(metadata::COUNTERS)?,
        })
    }

    /// Makes the changes so far durable: a call that returned must survive a crash.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// A directory id never handed out before.
    pub fn next_id(&self) -> Result<u64> {
        tx_result(self.counters.transaction(|tx| {
            let next = match tx.get(NEXT_ID)? {
                // Never guess: a wrong id could hand out a directory that is in use.
                Some(v) => match <[u8; 8]>::try_from(v.as_ref()) {
                    Ok(b) => u64::from_be_bytes(b),
                    Err(_) => {
                        return abort(Error::io(
                            "read the snapshot id counter",
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                "counter is not 8 bytes",
                            ),
                        ))
                    }
                },
                None => 1,
            };
            tx.insert(NEXT_ID, &(next + 1).to_be_bytes())?;
            Ok(next)
        }))
    }

    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        match self.snapshots.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => decode(key.as_bytes(), &v).map(Some),
        }
    }

    pub fn get_required(&self, key: &str) -> Result<Record> {
        self.get(key)?.ok_or_else(|| not_found(key))
    }

    /// Records a new snapshot `key`: refused if the key is taken, or if its parent is
    /// missing or not committed. Counts it as a child of its parent.
    pub fn create(&self, key: &str, rec: &Record) -> Result<()> {
        tx_result(self.snapshots.transaction(|tx| {
            if tx_get(tx, key)?.is_some() {
                return abort(Error::AlreadyExists(format!("snapshot {key:?}")));
            }
            if let Some(parent) = &rec.parent {
                let Some(mut p) = tx_get(tx, parent)? else {
                    return abort(Error::NotFound(format!("parent snapshot {parent:?}")));
                };
                check_parent(parent, p.kind).or_else(abort)?;
                p.children += 1;
                tx_put(tx, parent, &p)?;
            }
            tx_put(tx, key, rec)
        }))
    }

    /// Turns active snapshot `key` into committed snapshot `name`.
    pub fn commit(&self, name: &str, key: &str, labels: &Labels) -> Result<Record> {
        let now = SystemTime::now();
        tx_result(self.snapshots.transaction(|tx| {
            let Some(rec) = tx_get(tx, key)? else {
                return abort(not_found(key));
            };
            if rec.kind != Kind::Active {
                return abort(Error::FailedPrecondition(format!(
                    "snapshot {key:?} is {}; only an active snapshot can be committed",
                    rec.kind
                )));
            }
            if tx_get(tx, name)?.is_some() {
                return abort(Error::AlreadyExists(format!("snapshot {name:?}")));
            }
            let committed = Record {
                kind: Kind::Committed,
                created: now,
                updated: now,
                labels: labels.clone(),
                ..rec
            };
            tx.remove(key.as_bytes())?;
            tx_put(tx, name, &committed)?;
            Ok(committed)
        }))
    }

    /// Deletes the record of `key`, refused while it has children. Returns the record.
    pub fn remove(&self, key: &str) -> Result<Record> {
        tx_result(self.snapshots.transaction(|tx| {
            let Some(rec) = tx_get(tx, key)? else {
                return abort(not_found(key));
            };
            if rec.children > 0 {
                return abort(Error::FailedPrecondition(format!(
                    "snapshot {key:?} has {} {}; remove {} first",
                    rec.children,
                    if rec.children == 1 {
                        "child"
                    } else {
                        "children"
                    },
                    if rec.children == 1 { "it" } else { "them" },
                )));
            }
            tx.remove(key.as_bytes())?;
            if let Some(parent) = &rec.parent {
                if let Some(mut p) = tx_get(tx, parent)? {
                    p.children = p.children.saturating_sub(1);
                    tx_put(tx, parent, &p)?;
                }
            }
            Ok(rec)
        }))
    }

    /// Applies `change` to the labels of `key`.
    pub fn update_labels(&self, key: &str, change: impl Fn(&mut Labels)) -> Result<Record> {
        let now = SystemTime::now();
        tx_result(self.snapshots.transaction(|tx| {
            let Some(mut rec) = tx_get(tx, key)? else {
                return abort(not_found(key));
            };
            change(&mut rec.labels);
            rec.updated = now;
            tx_put(tx, key, &rec)?;
            Ok(rec)
        }))
    }

    /// Every record, ordered by key.
    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        self.snapshots
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let rec = decode(&k, &v)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), rec))
            })
            .collect()
    }
}

/// A snapshot can only be built on a committed one.
pub(super) fn check_parent(parent: &str, kind: Kind) -> Result<()> {
    if kind == Kind::Committed {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "parent snapshot {parent:?} is {kind}, not committed"
        )))
    }
}
