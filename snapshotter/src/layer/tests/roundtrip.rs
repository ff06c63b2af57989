//! apply → diff → apply gives the same tree; diff is deterministic; compression does not
//! change the diff ID.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{entries, need_root, tree, Layout, Tar, E};
use crate::digest::Digest;
use crate::layer::{apply, diff, Compression, Compressor};

/// A layer with one of everything.
fn rich_layer() -> Vec<u8> {
    let long_dir = "long-".repeat(30); // 150 bytes
    let long_file = format!("{long_dir}/{}", "n".repeat(120));
    Tar::new()
        .entry(E::new("etc/", b'5').mode(0o755).mtime(1_000))
        .entry(
            E::new("etc/passwd", b'0')
                .data(b"root:x:0:0::/root:/bin/sh\n")
                .mtime(2_000),
        )
        .entry(
            E::new("etc/shadow", b'0')
                .mode(0o640)
                .owner(0, 42)
                .data(b"root:*::0:::::\n"),
        )
        .entry(E::new("tmp/", b'5').mode(0o1777))
        .entry(E::new("home/user/", b'5').mode(0o700).owner(1000, 1000))
        .pax(&[
            ("SCHILY.xattr.user.mime", b"text/plain"),
            ("SCHILY.xattr.trusted.t", b"\x00\x01bin"),
        ])
        .entry(
            E::new("home/user/notes", b'0')
                .mode(0o600)
                .owner(1000, 1000)
                .data(b"notes"),
        )
        .pax(&[("SCHILY.xattr.user.dir", b"yes")])
        .entry(E::new("srv/", b'5').mode(0o2775).owner(0, 50))
        .entry(
            E::new("usr/bin/su", b'0')
                .mode(0o4755)
                .data(vec![0x7f, b'E', b'L', b'F']),
        )
        .entry(E::new("usr/bin/sh", b'2').link("busybox"))
        .entry(
            E::new("usr/bin/abs", b'2')
                .link("/usr/bin/busybox")
                .owner(3, 3),
        )
        .entry(E::new("usr/bin/dangling", b'2').link("../../nowhere"))
        .entry(
            E::new("usr/bin/busybox", b'0')
                .mode(0o755)
                .data(vec![1u8; 70_000]),
        )
        .entry(E::new("usr/bin/[", b'1').link("usr/bin/busybox"))
        .entry(E::new("usr/sbin/init", b'1').link("usr/bin/busybox"))
        .entry(E::new("dev/null", b'3').dev(1, 3).mode(0o666))
        .entry(E::new("dev/loop0", b'4').dev(7, 0).mode(0o660).owner(0, 6))
        .entry(E::new("dev/big", b'3').dev(4095, 1_048_575).mode(0o600))
        .entry(E::new("run/fifo", b'6').mode(0o600))
        .pax(&[("uid", b"3000000"), ("gid", b"3000001")])
        .entry(E::new("bigids", b'0').data(b"ids"))
        .file("empty", b"")
        .file(".wh.deleted", b"")
        .file("var/lib/.wh.old", b"")
        .dir("opaque/")
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/new", b"fresh")
        .file(&long_file, b"long name")
        .entry(E::new(format!("{long_dir}/link"), b'2').link(format!("/{}", "t".repeat(200))))
        .hardlink(&format!("{long_dir}/{}", "h".repeat(101)), &long_file)
        .entry(E::new("old/", b'5').mtime(0))
        .finish()
}

fn apply_ok(root: &Path, blob: &[u8]) -> crate::layer::ApplyStats {
    apply(root, blob).unwrap_or_else(|e| panic!("apply failed: {e}"))
}

fn diff_of(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = diff(root, &mut out).unwrap_or_else(|e| panic!("diff failed: {e}"));
    assert_eq!(stats.diff_id, Digest::of(&out));
    assert_eq!(stats.size, out.len() as u64);
    out
}

#[test]
fn apply_diff_apply_is_identity() {
    if !need_root() {
        return;
    }
    let layer = rich_layer();
    let a = Layout::new();
    let stats = apply_ok(&a.rootfs, &layer);
    assert_eq!(stats.diff_id, Digest::of(&layer));

    let tar1 = diff_of(&a.rootfs);
    let b = Layout::new();
    apply_ok(&b.rootfs, &tar1);
    let (ta, tb) = (tree(&a.rootfs, None), tree(&b.rootfs, None));
    for (path, node) in &ta {
        assert_eq!(tb.get(path), Some(node), "{}", path.display());
    }
    assert_eq!(ta, tb);

    // Deterministic: the same tree gives the same bytes.
    assert_eq!(diff_of(&b.rootfs), tar1);

    // What the layer says, spot-checked.
    let list = entries(&tar1);
    let has = |kind: char, name: &str| list.iter().any(|(k, n)| *k == kind && n == name);
    assert!(has('0', ".wh.deleted"), "{list:?}");
    assert!(has('0', "var/lib/.wh.old"));
    assert!(has('5', "opaque/"));
    assert!(has('0', "opaque/.wh..wh..opq"));
    assert!(has('1', "usr/bin/[") || has('1', "usr/bin/busybox"));
    assert!(has('3', "dev/null"));
    assert!(has('4', "dev/loop0"));
    assert!(has('6', "run/fifo"));
    // Directory first, then its marker, then its children, names sorted.
    let pos = |name: &str| list.iter().position(|(_, n)| n == name).unwrap();
    assert!(pos("opaque/") < pos("opaque/.wh..wh..opq"));
    assert!(pos("opaque/.wh..wh..opq") < pos("opaque/new"));
    assert!(pos("etc/") < pos("etc/passwd") && pos("etc/passwd") < pos("etc/shadow"));
}

#[test]
fn compression_does_not_change_the_diff_id() {
    if !need_root() {
        return;
    }
    let layer = rich_layer();
    let plain = Layout::new();
    let want = apply_ok(&plain.rootfs, &layer);
    let want_tree = tree(&plain.rootfs, None);
    for (c, level) in [(Compression::Gzip, 6), (Compression::Zstd, 3)] {
        let mut comp = Compressor::new(Vec::new(), c, level).unwrap();
        comp.write_all(&layer).unwrap();
        let blob = comp.finish().unwrap();
        assert_eq!(Compression::detect(&blob), c);
        let l = Layout::new();
        let got = apply_ok(&l.rootfs, &blob);
        assert_eq!(got, want, "{c:?}");
        assert_eq!(tree(&l.rootfs, None), want_tree, "{c:?}");
    }
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    rustix::fs::lsetxattr(&c, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// An upper directory as overlayfs leaves it (not made by apply) diffs to OCI whiteouts
/// and applies back to the same tree.
#[test]
fn overlay_upper_round_trips() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let u = &l.rootfs;
    std::fs::create_dir_all(u.join("etc/opq")).unwrap();
    std::fs::write(u.join("etc/opq/file"), b"f").unwrap();
    setxattr(&u.join("etc/opq"), "trusted.overlay.opaque", b"y");
    setxattr(&u.join("etc"), "trusted.overlay.origin", b"\x00\xfb");
    setxattr(&u.join("etc"), "user.kept", b"1");
    let wh = |p: &Path| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap()
    };
    wh(&u.join("etc/removed"));
    // overlayfs may share one whiteout inode between several whiteouts.
    std::fs::hard_link(u.join("etc/removed"), u.join("gone")).unwrap();
    std::fs::write(u.join("a"), b"1").unwrap();
    std::fs::hard_link(u.join("a"), u.join("b")).unwrap();
    std::os::unix::net::UnixListener::bind(u.join("sock")).unwrap();

    let tar = diff_of(u);
    let list = entries(&tar);
    let names: Vec<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "a",
            "b",
            "etc/",
            "etc/opq/",
            "etc/opq/.wh..wh..opq",
            "etc/opq/file",
            "etc/.wh.removed",
            ".wh.gone",
        ],
        "{list:?}"
    );
    assert_eq!(list[1].0, '1');
    assert_eq!(list[6].0, '0');
    assert_eq!(list[7].0, '0');

    let b = Layout::new();
    apply_ok(&b.rootfs, &tar);
    let mut want = tree(u, None);
    want.remove(Path::new("sock"));
    let etc = want.get_mut(Path::new("etc")).unwrap();
    etc.xattrs.retain(|(n, _)| n != b"trusted.overlay.origin");
    // The shared whiteout inode comes back as two whiteouts.
    for node in want.values_mut() {
        if node.kind == 0o020000 {
            node.same_as = None;
        }
    }
    assert_eq!(tree(&b.rootfs, None), want);
}

#[test]
fn diff_refuses_what_a_layer_cannot_say() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    std::fs::write(l.rootfs.join("meta"), b"").unwrap();
    setxattr(&l.rootfs.join("meta"), "trusted.overlay.metacopy", b"");
    let err = diff(&l.rootfs, std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("metacopy"), "{err}");

    let l = Layout::new();
    std::fs::write(l.rootfs.join(".wh.x"), b"").unwrap();
    let err = diff(&l.rootfs, std::io::sink()).unwrap_err();
    assert!(err.to_string().contains(".wh.x"), "{err}");
}
