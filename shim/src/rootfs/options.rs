//! fstab-style mount options → `mount(2)` flags, data and propagation (runc's table).

use nix::mount::MsFlags;

/// Mount options split the way `mount(2)` wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOptions {
    /// Flags for the mount call itself (includes `MS_BIND`/`MS_REC` for binds).
    pub flags: MsFlags,
    /// Propagation changes, applied with separate calls after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific options, comma-joined (`mode=755,size=65536k`).
    pub data: String,
}

impl Default for ParsedOptions {
    fn default() -> Self {
        ParsedOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
        }
    }
}

impl ParsedOptions {
    /// True for `bind`/`rbind`.
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The flags that need a remount after a bind (`MS_BIND` ignores them on the first
    /// call: the kernel applies per-mount flags to a bind only on remount).
    pub fn bind_remount_flags(&self) -> MsFlags {
        self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

/// The propagation flag for a propagation option name.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Parses options; anything that is not a known flag is passed to the filesystem as data.
pub fn parse(options: &[String]) -> ParsedOptions {
    let mut out = ParsedOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            // runc-specific; the shim does not copy image content up into tmpfs mounts.
            "tmpcopyup" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                if let Some(p) = propagation_flag(other) {
                    out.propagation.push(p);
                } else {
                    data.push(other);
                }
                continue;
            }
        };
        out.flags.insert(set);
        out.flags.remove(clear);
    }
    out.data = data.join(",");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> ParsedOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = p(&["rbind", "ro", "rprivate"]);
        assert!(o.is_bind());
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_options_win() {
        assert_eq!(p(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(p(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }
}
