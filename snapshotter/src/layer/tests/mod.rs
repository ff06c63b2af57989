//! Tests of layer apply and diff: hostile archives, apply semantics, round trips.
//!
//! Most need root (chown, mknod, `trusted.*` xattrs): see [`need_root`].

mod hostile;
mod roundtrip;
mod semantics;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::xattr;

/// True when running as root. Otherwise the test is skipped with a note, except under CI
/// (`CI` set), where a skipped security test would be a silent gap: then it panics.
pub(super) fn need_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("layer tests need root, and CI must run them as root");
    }
    eprintln!("skipping: this test needs root");
    false
}

/// Default mtime of test entries.
pub(super) const MTIME: u64 = 1_600_000_000;

/// One raw tar entry, written exactly as given (no path checks, unlike `tar::Builder`).
#[derive(Clone)]
pub(super) struct E {
    pub name: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    /// Size to declare, when it should differ from `data.len()`.
    pub size: Option<u64>,
    pub dev: (u32, u32),
}

impl E {
    pub fn new(name: impl AsRef<[u8]>, kind: u8) -> Self {
        E {
            name: name.as_ref().to_vec(),
            kind,
            mode: if kind == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: MTIME,
            link: Vec::new(),
            data: Vec::new(),
            size: None,
            dev: (0, 0),
        }
    }
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }
    pub fn link(mut self, link: impl AsRef<[u8]>) -> Self {
        self.link = link.as_ref().to_vec();
        self
    }
    pub fn data(mut self, data: impl AsRef<[u8]>) -> Self {
        self.data = data.as_ref().to_vec();
        self
    }
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }
    pub fn dev(mut self, major: u32, minor: u32) -> Self {
        self.dev = (major, minor);
        self
    }
}

/// A tar built block by block, so tests can write what `tar::Builder` refuses to.
#[derive(Default, Clone)]
pub(super) struct Tar {
    pub buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes an entry; names and link names longer than the ustar fields go into a PAX
    /// header first.
    pub fn entry(&mut self, e: E) -> &mut Self {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if e.name.len() > 100 {
            pax.push(("path".into(), e.name.clone()));
        }
        if e.link.len() > 100 {
            pax.push(("linkpath".into(), e.link.clone()));
        }
        if !pax.is_empty() {
            let refs: Vec<(&str, &[u8])> = pax
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            self.pax(&refs);
        }
        let mut h = tar::Header::new_ustar();
        let n = e.name.len().min(100);
        h.as_old_mut().name[..n].copy_from_slice(&e.name[..n]);
        let l = e.link.len().min(100);
        h.as_old_mut().linkname[..l].copy_from_slice(&e.link[..l]);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.size.unwrap_or(e.data.len() as u64));
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        // The raw type byte: `EntryType` would turn an old-style NUL into '0'.
        h.as_mut_bytes()[156] = e.kind;
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.data(&e.data);
        self
    }

    fn data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let rem = data.len() % 512;
        if rem != 0 {
            self.buf.extend(std::iter::repeat_n(0, 512 - rem));
        }
    }

    /// A PAX extended header ('x') for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.pax_kind(b'x', records)
    }

    /// A PAX header of the given type ('x' local, 'g' global).
    pub fn pax_kind(&mut self, kind: u8, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut digits = 1;
            while (rest + digits).to_string().len() != digits {
                digits += 1;
            }
            data.extend_from_slice(format!("{} {}=", rest + digits, k).as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.data(&data);
        self
    }

    /// A GNU long-name entry ('L') for the next entry.
    pub fn gnu_longname(&mut self, name: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        let mut data = name.to_vec();
        data.push(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.data(&data);
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(E::new(name, b'0').data(data))
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(E::new(name, b'5'))
    }
    pub fn symlink(&mut self, name: &str, target: impl AsRef<[u8]>) -> &mut Self {
        self.entry(E::new(name, b'2').link(target).mode(0o777))
    }
    pub fn hardlink(&mut self, name: &str, target: impl AsRef<[u8]>) -> &mut Self {
        self.entry(E::new(name, b'1').link(target))
    }

    /// The archive with its two end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

/// `tmp/rootfs` (where layers go) beside `tmp/canary` (which must never change).
pub(super) struct Layout {
    pub tmp: TempDir,
    pub rootfs: PathBuf,
    pub canary: PathBuf,
}

impl Layout {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        let canary = tmp.path().join("canary");
        std::fs::create_dir(&rootfs).unwrap();
        std::fs::create_dir_all(canary.join("sub")).unwrap();
        std::fs::write(canary.join("file"), b"canary\n").unwrap();
        std::fs::write(canary.join("sub/inner"), b"inner canary\n").unwrap();
        Layout {
            tmp,
            rootfs,
            canary,
        }
    }

    /// Everything under `tmp` except `rootfs`, with metadata and content.
    pub fn outside(&self) -> BTreeMap<PathBuf, Node> {
        tree(self.tmp.path(), Some(&self.rootfs))
    }
}

/// What a test compares of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Whole seconds: that is what a layer diff keeps.
    pub mtime: i64,
    pub rdev: u64,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For an inode with several links: the first path (in walk order) that has it.
    pub same_as: Option<PathBuf>,
}

/// All paths below `dir` (not `dir` itself), relative, without following symlinks.
pub(super) fn tree(dir: &Path, skip: Option<&Path>) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    walk(dir, dir, skip, &mut out, &mut inodes);
    out
}

fn walk(
    base: &Path,
    dir: &Path,
    skip: Option<&Path>,
    out: &mut BTreeMap<PathBuf, Node>,
    inodes: &mut BTreeMap<(u64, u64), PathBuf>,
) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if Some(path.as_path()) == skip {
            continue;
        }
        let md = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(base).unwrap().to_path_buf();
        let ft = md.file_type();
        let same_as = if !ft.is_dir() && md.nlink() > 1 {
            let first = inodes
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone());
            (first != &rel).then(|| first.clone())
        } else {
            None
        };
        let cpath = CString::new(path.as_os_str().as_bytes()).unwrap();
        let node = Node {
            kind: md.mode() & 0o170000,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            rdev: md.rdev(),
            content: ft.is_file().then(|| std::fs::read(&path).unwrap()),
            link: ft.is_symlink().then(|| std::fs::read_link(&path).unwrap()),
            xattrs: xattr::list_nofollow(&cpath).unwrap(),
            same_as,
        };
        out.insert(rel, node);
        if ft.is_dir() {
            walk(base, &path, skip, out, inodes);
        }
    }
}

/// Lists a tar's entries as (type, path) with `tar` (for checking what diff wrote).
pub(super) fn entries(tar_bytes: &[u8]) -> Vec<(char, String)> {
    let mut ar = tar::Archive::new(tar_bytes);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                char::from(e.header().entry_type().as_byte()),
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            )
        })
        .collect()
}
