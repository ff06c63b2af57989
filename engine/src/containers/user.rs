//! `-u name|uid[:group|gid]` resolved to numeric ids, with the user's supplementary groups
//! and home directory, from the image's `/etc/passwd` and `/etc/group`.
//!
//! The files are read straight from the snapshot's layer directories (the overlay's upper
//! directory first, then each lower one, top-down), without mounting anything: each lookup
//! is an `openat2(RESOLVE_IN_ROOT)` below one layer directory, so a symlink in the image can
//! never make the engine read a host file.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::PathBuf;

use berth_proto::types::v1::Mount;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// Largest passwd/group file read.
const MAX_FILE: u64 = 4 << 20;

/// Largest uid/gid accepted (see `berth_shim::spec::MAX_ID`).
pub const MAX_ID: u32 = berth_shim::spec::MAX_ID;

/// The process identity the container runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the user's in /etc/group, then `--group-add`).
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd; "/" when unknown (runc's default), "/root" for root.
    pub home: String,
}

/// Layer directories of a snapshot's mounts, topmost first.
pub fn layer_dirs(mounts: &[Mount]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for m in mounts {
        match m.r#type.as_str() {
            "bind" | "rbind" => out.push(PathBuf::from(&m.source)),
            "overlay" => {
                let opt = |k: &str| {
                    m.options
                        .iter()
                        .find_map(|o| o.strip_prefix(k).map(str::to_string))
                };
                if let Some(upper) = opt("upperdir=") {
                    out.push(PathBuf::from(upper));
                }
                if let Some(lower) = opt("lowerdir=") {
                    out.extend(lower.split(':').map(PathBuf::from));
                }
            }
            _ => {}
        }
    }
    out
}

/// Reads `rel` (e.g. "etc/passwd") from the topmost layer that has it. A whiteout (a
/// character device) hides the file of the layers below.
fn read_from_layers(layers: &[PathBuf], rel: &str) -> Option<String> {
    for dir in layers {
        let Ok(root) = nix::fcntl::open(
            dir.as_path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match nix::fcntl::openat2(root.as_fd(), rel, how) {
            Ok(fd) => {
                let file = std::fs::File::from(fd);
                let meta = file.metadata().ok()?;
                if !meta.is_file() {
                    // A whiteout, or something that is not a file: nothing below counts.
                    return None;
                }
                let mut text = String::new();
                file.take(MAX_FILE).read_to_string(&mut text).ok()?;
                return Some(text);
            }
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => continue,
            Err(_) => return None,
        }
    }
    None
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn numeric(s: &str, what: &str) -> Result<Option<u32>> {
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() {
        return Ok(None);
    }
    let n: u64 = s
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("{what} id {s} is out of range")))?;
    if n > MAX_ID as u64 {
        return Err(Error::InvalidArgument(format!(
            "{what} id {n} is above {MAX_ID}: refusing rather than wrapping it"
        )));
    }
    Ok(Some(n as u32))
}

/// Resolves `user` ("", "name", "uid", "name:group", "uid:gid", …) and `group_add` with
/// the given passwd and group texts (absent files read as empty).
pub fn resolve_with(
    user: &str,
    group_add: &[String],
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Resolved> {
    let users = parse_passwd(passwd.unwrap_or_default());
    let groups = parse_group(group.unwrap_or_default());
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entry = match numeric(u, "user")? {
        Some(uid) => users.iter().find(|e| e.uid == uid),
        None => Some(users.iter().find(|e| e.name == u).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        })?),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => numeric(u, "user")?.unwrap_or(0),
    };
    if uid > MAX_ID {
        return Err(Error::InvalidArgument(format!(
            "user id {uid} is above {MAX_ID}"
        )));
    }
    let find_group = |g: &str| -> Result<u32> {
        match numeric(g, "group")? {
            Some(gid) => Ok(gid),
            None => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                }),
        }
    };
    let gid = match g.filter(|g| !g.is_empty()) {
        Some(g) => find_group(g)?,
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    if gid > MAX_ID {
        return Err(Error::InvalidArgument(format!(
            "group id {gid} is above {MAX_ID}"
        )));
    }
    // As Docker: the primary group is also a supplementary one (`id` shows
    // `groups=0(root)`), so dropping to it with setgroups elsewhere keeps its access.
    let mut additional = vec![gid];
    // With an explicit group, Docker (runc) does not add the user's other groups.
    if g.is_none() {
        if let Some(e) = entry {
            for grp in &groups {
                if grp.members.contains(&e.name) && grp.gid != gid {
                    additional.push(grp.gid);
                }
            }
        }
    }
    for g in group_add {
        let gid = find_group(g)?;
        if !additional.contains(&gid) {
            additional.push(gid);
        }
    }
    let home = match entry {
        Some(e) if !e.home.is_empty() => e.home.clone(),
        _ if uid == 0 => "/root".to_string(),
        _ => "/".to_string(),
    };
    Ok(Resolved {
        uid,
        gid,
        additional_gids: additional,
        home,
    })
}

/// Resolves against the image files found in `layers` (topmost first).
pub fn resolve(user: &str, group_add: &[String], layers: &[PathBuf]) -> Result<Resolved> {
    let passwd = read_from_layers(layers, "etc/passwd");
    let group = read_from_layers(layers, "etc/group");
    resolve_with(user, group_add, passwd.as_deref(), group.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\nuser:x:1000:\nwheel:x:10:user,other\nnogroup:x:65534:\n";

    fn r(user: &str) -> Result<Resolved> {
        resolve_with(user, &[], Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers_resolve() {
        assert_eq!(
            r("").unwrap(),
            Resolved {
                uid: 0,
                gid: 0,
                additional_gids: vec![0],
                home: "/root".into()
            }
        );
        let u = r("user").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/user"));
        assert_eq!(u.additional_gids, [1000, 10]);
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = r("1234").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 0, "/"));
        let u = r("user:nogroup").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 65534));
        assert_eq!(u.additional_gids, [65534]);
        let u = r("1000:5").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 5));
        assert!(r("nosuch")
            .unwrap_err()
            .to_string()
            .contains("unable to find user nosuch"));
        assert!(r("user:nosuch").is_err());
        assert!(r("4294967295").is_err());
        assert!(r("2147483648").is_err());
        let u = resolve_with(
            "0",
            &["wheel".into(), "77".into()],
            Some(PASSWD),
            Some(GROUP),
        )
        .unwrap();
        assert_eq!(u.additional_gids, [0, 10, 77]);
    }

    #[test]
    fn files_come_from_the_topmost_layer_and_never_leave_it() {
        let top = tempfile::tempdir().unwrap();
        let low = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(low.path().join("etc")).unwrap();
        std::fs::write(low.path().join("etc/passwd"), "app:x:42:42::/app:/bin/sh\n").unwrap();
        std::fs::create_dir_all(top.path().join("etc")).unwrap();
        // A symlink out of the layer resolves inside it, and finds nothing there.
        std::os::unix::fs::symlink("/etc/shadow", top.path().join("etc/group")).unwrap();
        let layers = vec![top.path().to_path_buf(), low.path().to_path_buf()];
        let u = resolve("app", &[], &layers).unwrap();
        assert_eq!((u.uid, u.gid), (42, 42));
        assert_eq!(read_from_layers(&layers, "etc/group"), None);
        let m = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "workdir=/w".into(),
                "upperdir=/u".into(),
                "lowerdir=/l1:/l2".into(),
            ],
        };
        assert_eq!(
            layer_dirs(&[m]),
            [
                PathBuf::from("/u"),
                PathBuf::from("/l1"),
                PathBuf::from("/l2")
            ]
        );
    }
}
