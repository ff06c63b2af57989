//! The engine's sled database: installation id, container records, events.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Tree of container records, keyed by container id.
pub const CONTAINERS: &str = "containers";
const META: &str = "meta";
const ID_KEY: &[u8] = b"engine-id";

/// Opens (creating) the database under `<root>/metadata/engine`.
pub fn open(root: &Path) -> Result<sled::Db> {
    let dir = root.join("metadata");
    berth_rpc::listen::create_dir(&dir, 0o700)?;
    // Small cache: the engine's records are few and idle memory matters more.
    Ok(sled::Config::new()
        .path(dir.join("engine"))
        .cache_capacity(8 << 20)
        .open()?)
}

/// The installation id, made on first start.
pub fn engine_id(db: &sled::Db) -> Result<String> {
    let meta = db.open_tree(META)?;
    if let Some(v) = meta.get(ID_KEY)? {
        return Ok(String::from_utf8_lossy(&v).into_owned());
    }
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    meta.insert(ID_KEY, id.as_bytes())?;
    Ok(id)
}
