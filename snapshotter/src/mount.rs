//! Mounting the `Mount` lists snapshots hand out, and unmounting them again.
//!
//! A snapshot's filesystem is described, not mounted, by the snapshotter (as containerd does):
//! whoever needs the files (the shim for a container's rootfs, the builder for a step, a test)
//! applies the list with [`mount_all`] or [`Mounted`]. Options follow mount(8): the flag words
//! (`ro`, `rbind`, `nosuid`, `rprivate`, …) become mount flags and everything else
//! (`lowerdir=…`, `upperdir=…`, `index=off`) is passed to the filesystem as data.
//!
//! Overlay option strings grow with the number of layers and the kernel refuses data longer
//! than one page. When they do not fit, the lower/upper/work paths are rewritten relative to
//! their common parent directory and the mount is made from a thread that has its own working
//! directory (`unshare(CLONE_FS)` + `chdir`), so the rest of the process is unaffected. If
//! even the relative form is longer than a page (several hundred layers), mounting fails with
//! [`Error::InvalidArgument`] naming the size; flatten the image in that case.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};

/// One mount of a snapshot's filesystem: what `mount(8)` would be given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// Filesystem type: `overlay`, `bind`, `tmpfs`, ….
    pub fs_type: String,
    /// Device, directory (bind mounts) or filesystem name.
    pub source: String,
    /// Where to mount, relative to the root the list is applied under; empty for the root.
    pub target: String,
    /// Options: flag words and filesystem data.
    pub options: Vec<String>,
}

impl From<berth_proto::types::v1::Mount> for Mount {
    fn from(m: berth_proto::types::v1::Mount) -> Self {
        Mount {
            fs_type: m.r#type,
            source: m.source,
            target: m.target,
            options: m.options,
        }
    }
}

impl From<Mount> for berth_proto::types::v1::Mount {
    fn from(m: Mount) -> Self {
        berth_proto::types::v1::Mount {
            r#type: m.fs_type,
            source: m.source,
            target: m.target,
            options: m.options,
        }
    }
}

/// Mount options split the way the kernel takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    /// Flags for the first `mount(2)` call.
    flags: MsFlags,
    /// Propagation flags, applied by a second call (the kernel refuses them mixed with others).
    propagation: MsFlags,
    /// Filesystem-specific options, in order.
    data: Vec<String>,
}

const PROPAGATION: MsFlags = MsFlags::MS_SHARED
    .union(MsFlags::MS_PRIVATE)
    .union(MsFlags::MS_SLAVE)
    .union(MsFlags::MS_UNBINDABLE);

/// The flag words of mount(8): `(word, clears, flags)`.
const FLAG_WORDS: &[(&str, bool, MsFlags)] = &[
    ("async", true, MsFlags::MS_SYNCHRONOUS),
    ("atime", true, MsFlags::MS_NOATIME),
    ("bind", false, MsFlags::MS_BIND),
    ("defaults", false, MsFlags::empty()),
    ("dev", true, MsFlags::MS_NODEV),
    ("diratime", true, MsFlags::MS_NODIRATIME),
    ("dirsync", false, MsFlags::MS_DIRSYNC),
    ("exec", true, MsFlags::MS_NOEXEC),
    ("noatime", false, MsFlags::MS_NOATIME),
    ("nodev", false, MsFlags::MS_NODEV),
    ("nodiratime", false, MsFlags::MS_NODIRATIME),
    ("noexec", false, MsFlags::MS_NOEXEC),
    ("norelatime", true, MsFlags::MS_RELATIME),
    ("nostrictatime", true, MsFlags::MS_STRICTATIME),
    ("nosuid", false, MsFlags::MS_NOSUID),
    ("rbind", false, MsFlags::MS_BIND.union(MsFlags::MS_REC)),
    ("relatime", false, MsFlags::MS_RELATIME),
    ("remount", false, MsFlags::MS_REMOUNT),
    ("ro", false, MsFlags::MS_RDONLY),
    ("rw", true, MsFlags::MS_RDONLY),
    ("strictatime", false, MsFlags::MS_STRICTATIME),
    ("suid", true, MsFlags::MS_NOSUID),
    ("sync", false, MsFlags::MS_SYNCHRONOUS),
];

const PROPAGATION_WORDS: &[(&str, MsFlags)] = &[
    ("private", MsFlags::MS_PRIVATE),
    ("rprivate", MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ("shared", MsFlags::MS_SHARED),
    ("rshared", MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ("slave", MsFlags::MS_SLAVE),
    ("rslave", MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("runbindable", MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
];

fn parse_options(options: &[String]) -> Options {
    let mut out = Options {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
    };
    for opt in options {
        if let Some((_, clear, flag)) = FLAG_WORDS.iter().find(|(w, _, _)| w == opt) {
            if *clear {
                out.flags.remove(*flag);
            } else {
                out.flags.insert(*flag);
            }
        } else if let Some((_, flag)) = PROPAGATION_WORDS.iter().find(|(w, _)| w == opt) {
            out.propagation.insert(*flag);
        } else {
            out.data.push(opt.clone());
        }
    }
    out
}

/// The kernel's limit on mount data: one page, including the terminating NUL.
fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

/// Overlay options whose values are paths.
const OVERLAY_PATH_KEYS: &[&str] = &["lowerdir", "upperdir", "workdir"];

/// Rewrites the overlay path options relative to their deepest common directory. Returns
/// that directory and the new options, or `None` when the paths share nothing but `/`.
fn relative_overlay_data(data: &[String]) -> Option<(PathBuf, Vec<String>)> {
    let mut paths: Vec<&Path> = Vec::new();
    for opt in data {
        if let Some((key, value)) = opt.split_once('=') {
            if OVERLAY_PATH_KEYS.contains(&key) {
                paths.extend(value.split(':').map(Path::new));
            }
        }
    }
    let first = paths.first()?;
    if !paths.iter().all(|p| p.is_absolute()) {
        return None;
    }
    // Deepest directory that is a proper ancestor of every path.
    let mut common: PathBuf = first.parent()?.to_path_buf();
    while !paths
        .iter()
        .all(|p| p.starts_with(&common) && *p != common.as_path())
    {
        common = common.parent()?.to_path_buf();
    }
    // Only "/" in common: nothing to shorten.
    common.parent()?;
    let rel = |p: &str| -> String {
        Path::new(p)
            .strip_prefix(&common)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|_| p.to_string())
    };
    let rewritten = data
        .iter()
        .map(|opt| match opt.split_once('=') {
            Some((key, value)) if OVERLAY_PATH_KEYS.contains(&key) => {
                let parts: Vec<String> = value.split(':').map(rel).collect();
                format!("{key}={}", parts.join(":"))
            }
            _ => opt.clone(),
        })
        .collect();
    Some((common, rewritten))
}

/// Joins a mount's relative target under `root`, refusing anything that would leave it.
fn target_under(root: &Path, target: &str) -> Result<PathBuf> {
    let rel = Path::new(target);
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(Error::InvalidArgument(format!(
                    "mount target {target:?} must be relative and stay under the root"
                )))
            }
        }
    }
    Ok(root.join(rel))
}

fn mount_err(what: &str, m: &Mount, target: &Path, e: Errno) -> Error {
    Error::io(
        format!(
            "{what} {} {:?} on {} (options {:?})",
            m.fs_type,
            m.source,
            target.display(),
            m.options
        ),
        e.into(),
    )
}

impl Mount {
    /// Mounts this one mount under `root` (at `root/target`).
    pub fn mount(&self, root: &Path) -> Result<()> {
        let target = target_under(root, &self.target)?;
        let mut opts = parse_options(&self.options);
        if self.fs_type == "bind" || self.fs_type == "rbind" {
            opts.flags.insert(MsFlags::MS_BIND);
            if self.fs_type == "rbind" {
                opts.flags.insert(MsFlags::MS_REC);
            }
        }
        let mut data = opts.data.join(",");
        let mut chdir = None;
        let limit = page_size();
        if data.len() >= limit {
            let relative = (self.fs_type == "overlay")
                .then(|| relative_overlay_data(&opts.data))
                .flatten();
            match relative {
                Some((dir, rewritten)) if rewritten.join(",").len() < limit => {
                    data = rewritten.join(",");
                    chdir = Some(dir);
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "{} mount options are {} bytes, more than the kernel's limit of {} \
                         even with relative paths; the image has too many layers to mount",
                        self.fs_type,
                        data.len(),
                        limit - 1
                    )))
                }
            }
        }
        // The target must not depend on the working directory, which `chdir` changes.
        let target = std::path::absolute(&target)
            .map_err(|e| Error::io(format!("resolve {}", target.display()), e))?;
        let fs_type = if opts.flags.contains(MsFlags::MS_BIND) {
            "none"
        } else {
            self.fs_type.as_str()
        };
        let first = opts.flags - MsFlags::MS_REMOUNT - PROPAGATION;
        // A remount without new data only changes flags; the bind/ro step below does that.
        if !opts.flags.contains(MsFlags::MS_REMOUNT) || !data.is_empty() {
            let flags = first | (opts.flags & MsFlags::MS_REMOUNT);
            let res = match &chdir {
                None => sys_mount(&self.source, &target, fs_type, flags, &data),
                Some(dir) => mount_from_dir(dir, &self.source, &target, fs_type, flags, &data),
            };
            res.map_err(|e| mount_err("mount", self, &target, e))?;
        }
        if !opts.propagation.is_empty() {
            nix::mount::mount(
                None::<&str>,
                &target,
                None::<&str>,
                opts.propagation | MsFlags::MS_SILENT,
                None::<&str>,
            )
            .map_err(|e| mount_err("set propagation of", self, &target, e))?;
        }
        // The kernel ignores MS_RDONLY on the first bind mount call: only a remount of the
        // bind makes it read-only.
        if first.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
            nix::mount::mount(
                None::<&str>,
                &target,
                None::<&str>,
                (first - MsFlags::MS_REC) | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(|e| {
                // Leave nothing writable behind if it cannot be made read-only.
                let _ = unmount(&target);
                mount_err("remount read-only", self, &target, e)
            })?;
        }
        tracing::debug!(fs_type = %self.fs_type, target = %target.display(), "mounted");
        Ok(())
    }
}

fn sys_mount(
    source: &str,
    target: &Path,
    fs_type: &str,
    flags: MsFlags,
    data: &str,
) -> std::result::Result<(), Errno> {
    nix::mount::mount(
        Some(source),
        target,
        Some(fs_type),
        flags,
        (!data.is_empty()).then_some(data),
    )
}

/// Mounts with `dir` as the working directory, in a thread of its own: after
/// `unshare(CLONE_FS)` the thread's working directory is private, so `chdir` there does not
/// move the rest of the process.
fn mount_from_dir(
    dir: &Path,
    source: &str,
    target: &Path,
    fs_type: &str,
    flags: MsFlags,
    data: &str,
) -> std::result::Result<(), Errno> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(dir)?;
            sys_mount(source, target, fs_type, flags, data)
        })
        .join()
        .unwrap_or(Err(Errno::EIO))
    })
}

/// Mounts `mounts` in order under `root`. If one fails, those already mounted are unmounted
/// again before the error is returned.
pub fn mount_all(mounts: &[Mount], root: &Path) -> Result<()> {
    Mounted::new(mounts, root).map(Mounted::forget)
}

/// How often a busy filesystem is retried before it is detached lazily.
const BUSY_RETRIES: u32 = 20;

/// Unmounts everything mounted at `target` (mounts may be stacked there). A filesystem that
/// stays busy is detached lazily (`MNT_DETACH`): it disappears from the tree at once and the
/// kernel frees it when its last user goes. Not mounted, or missing: nothing to do.
pub fn unmount(target: &Path) -> Result<()> {
    // Bounded: each round removes one mount from the stack.
    for _ in 0..64 {
        match unmount_one(target) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::io(format!("unmount {}", target.display()), e.into())),
        }
    }
    Err(Error::FailedPrecondition(format!(
        "{} still mounted after 64 unmounts",
        target.display()
    )))
}

fn unmount_one(target: &Path) -> std::result::Result<(), Errno> {
    for attempt in 0..BUSY_RETRIES {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Err(Errno::EBUSY) if attempt + 1 < BUSY_RETRIES => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(Errno::EBUSY) => {
                tracing::warn!(target = %target.display(), "filesystem busy; detaching it lazily");
                return nix::mount::umount2(target, MntFlags::MNT_DETACH);
            }
            other => return other,
        }
    }
    nix::mount::umount2(target, MntFlags::MNT_DETACH)
}

/// Mounts that are unmounted again when this is dropped (also when a test panics).
#[derive(Debug)]
#[must_use = "the mounts are undone when this is dropped"]
pub struct Mounted {
    /// Mount points in mount order.
    targets: Vec<PathBuf>,
}

impl Mounted {
    /// Mounts `mounts` in order under `root`; on failure, undoes what was mounted.
    pub fn new(mounts: &[Mount], root: &Path) -> Result<Self> {
        let mut done = Mounted {
            targets: Vec::with_capacity(mounts.len()),
        };
        for m in mounts {
            m.mount(root)?;
            done.targets.push(target_under(root, &m.target)?);
        }
        Ok(done)
    }

    /// Unmounts now, reporting the first error (all mounts are still attempted).
    pub fn unmount(mut self) -> Result<()> {
        self.unmount_all()
    }

    /// Keeps the mounts: nothing is unmounted on drop.
    pub fn forget(mut self) {
        self.targets.clear();
    }

    fn unmount_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        while let Some(target) = self.targets.pop() {
            if let Err(e) = unmount(&target) {
                tracing::warn!(target = %target.display(), error = %e, "unmount failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.unmount_all();
    }
}

/// Mount points at or below `dir`, from `/proc/self/mountinfo`.
pub fn mount_points_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    // Compare against the resolved path: mountinfo shows canonical paths.
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(&dir))
        .collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let (b'\\', Some(oct)) = (bytes[i], bytes.get(i + 1..i + 4)) {
            if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(b) = u8::try_from(v) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&[
            "ro".into(),
            "rbind".into(),
            "nosuid".into(),
            "rprivate".into(),
            "lowerdir=/a:/b".into(),
            "index=off".into(),
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, vec!["lowerdir=/a:/b", "index=off"]);
        // A later word undoes an earlier one, as in mount(8).
        assert_eq!(
            parse_options(&["ro".into(), "rw".into()]).flags,
            MsFlags::empty()
        );
    }

    #[test]
    fn overlay_paths_become_relative_to_their_common_parent() {
        let data = vec![
            "index=off".to_string(),
            "workdir=/var/lib/berth/snapshots/9/work".to_string(),
            "upperdir=/var/lib/berth/snapshots/9/fs".to_string(),
            "lowerdir=/var/lib/berth/snapshots/8/fs:/var/lib/berth/snapshots/7/fs".to_string(),
        ];
        let (dir, rel) = relative_overlay_data(&data).unwrap();
        assert_eq!(dir, Path::new("/var/lib/berth/snapshots"));
        assert_eq!(
            rel,
            vec![
                "index=off",
                "workdir=9/work",
                "upperdir=9/fs",
                "lowerdir=8/fs:7/fs"
            ]
        );
        // Nothing in common but "/": no rewrite.
        assert!(relative_overlay_data(&["lowerdir=/a/x:/b/y".to_string()]).is_none());
    }

    #[test]
    fn targets_stay_under_the_root() {
        let root = Path::new("/r");
        assert_eq!(target_under(root, "").unwrap(), Path::new("/r"));
        assert_eq!(target_under(root, "proc").unwrap(), Path::new("/r/proc"));
        assert!(target_under(root, "../x").is_err());
        assert!(target_under(root, "/etc").is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo(r"/tmp/a\040b\011c"),
            Path::new("/tmp/a b\tc")
        );
        assert_eq!(unescape_mountinfo(r"/x\"), Path::new(r"/x\"));
    }

    #[test]
    fn proto_round_trip() {
        let m = Mount {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            target: "".into(),
            options: vec!["lowerdir=/a:/b".into()],
        };
        let p: berth_proto::types::v1::Mount = m.clone().into();
        assert_eq!(Mount::from(p), m);
    }

    fn is_root() -> bool {
        crate::snapshots::testsuite::need_root()
    }

    /// Asserts that nothing stays mounted under `dir`.
    fn assert_no_mounts(dir: &Path) {
        let left = mount_points_under(dir).unwrap();
        assert!(left.is_empty(), "mounts left behind: {left:?}");
    }

    #[test]
    fn bind_read_only_and_unmount() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("f"), "x").unwrap();
        let m = Mount {
            fs_type: "bind".into(),
            source: src.to_string_lossy().into(),
            target: String::new(),
            options: vec!["ro".into(), "rbind".into()],
        };
        {
            let _g = Mounted::new(std::slice::from_ref(&m), &dst).unwrap();
            assert_eq!(std::fs::read_to_string(dst.join("f")).unwrap(), "x");
            let err = std::fs::write(dst.join("g"), "y").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc_erofs()));
            assert_eq!(mount_points_under(tmp.path()).unwrap().len(), 1);
        }
        assert_no_mounts(tmp.path());
        // Unmounting what is not mounted is not an error.
        unmount(&dst).unwrap();
        unmount(&tmp.path().join("missing")).unwrap();
    }

    #[test]
    fn overlay_with_many_long_lowerdirs() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        // A deep common parent makes the absolute option string exceed a page while the
        // relative one fits.
        let base = tmp
            .path()
            .join("a-rather-long-directory-name-for-snapshots".repeat(2));
        let mut lowers = Vec::new();
        for i in 0..60 {
            let d = base.join(format!("{i}")).join("fs");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("f{i}")), format!("{i}")).unwrap();
            lowers.push(d.to_string_lossy().into_owned());
        }
        let (upper, work) = (base.join("up/fs"), base.join("up/work"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let m = Mount {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("workdir={}", work.display()),
                format!("upperdir={}", upper.display()),
                format!("lowerdir={}", lowers.join(":")),
            ],
        };
        assert!(m.options.join(",").len() > page_size());
        let dst = tmp.path().join("merged");
        std::fs::create_dir(&dst).unwrap();
        let cwd = std::env::current_dir().unwrap();
        {
            let _g = Mounted::new(std::slice::from_ref(&m), &dst).unwrap();
            for i in [0, 31, 59] {
                assert_eq!(
                    std::fs::read_to_string(dst.join(format!("f{i}"))).unwrap(),
                    i.to_string()
                );
            }
            std::fs::write(dst.join("new"), "n").unwrap();
        }
        // The process's working directory did not move.
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(upper.join("new").exists());
        assert_no_mounts(tmp.path());

        // Far too many layers: a clear error, nothing mounted.
        let many: Vec<String> = (0..2000).map(|i| format!("/x/{i}/fs")).collect();
        let m = Mount {
            options: vec![format!("lowerdir={}", many.join(":"))],
            ..m
        };
        let err = Mounted::new(std::slice::from_ref(&m), &dst).unwrap_err();
        assert!(err.to_string().contains("too many layers"), "{err}");
        assert_no_mounts(tmp.path());
    }

    #[test]
    fn failed_mount_undoes_earlier_ones() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let mounts = vec![
            Mount {
                fs_type: "bind".into(),
                source: src.to_string_lossy().into(),
                target: String::new(),
                options: vec!["rbind".into()],
            },
            Mount {
                fs_type: "bind".into(),
                source: tmp.path().join("missing").to_string_lossy().into(),
                target: "sub".into(),
                options: vec!["rbind".into()],
            },
        ];
        assert!(mount_all(&mounts, &dst).is_err());
        assert_no_mounts(tmp.path());
    }

    fn libc_erofs() -> i32 {
        Errno::EROFS as i32
    }
}
