//! What apply makes of legitimate archives.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::{need_root, Layout, Tar, E, MTIME};
use crate::digest::Digest;
use crate::layer::{apply, xattr};

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    xattr::list_nofollow(&c)
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| v)
}

fn is_whiteout(path: &Path) -> bool {
    let md = std::fs::symlink_metadata(path).unwrap();
    md.file_type().is_char_device() && md.rdev() == 0 && md.mode() & 0o7777 == 0
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        .entry(E::new(".wh.gone", b'0').owner(7, 8))
        .file("usr/bin/.wh.tool", b"")
        .dir("opq/")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/kept", b"new")
        .file("implicit/.wh..wh..opq", b"")
        .finish();
    let stats = apply(&l.rootfs, &tar[..]).unwrap();
    assert_eq!(stats.entries, 6);
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(stats.size, tar.len() as u64);
    let r = &l.rootfs;
    assert!(is_whiteout(&r.join("gone")));
    assert_eq!(std::fs::symlink_metadata(r.join("gone")).unwrap().uid(), 7);
    assert!(is_whiteout(&r.join("usr/bin/tool")));
    assert!(!r.join(".wh.gone").exists());
    assert_eq!(
        xattr_of(&r.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(std::fs::read(r.join("opq/kept")).unwrap(), b"new");
    assert_eq!(
        xattr_of(&r.join("implicit"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    // Implicit parents: 0755 root.
    let md = std::fs::metadata(r.join("usr/bin")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o755);
    assert_eq!((md.uid(), md.gid()), (0, 0));
}

#[test]
fn whiteout_removes_an_earlier_entry_of_the_layer() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        .dir("d/")
        .file("d/f", b"x")
        .dir("d/sub/")
        .file("d/sub/deep", b"y")
        .file("d/.wh.f", b"")
        .file("d/.wh.sub", b"")
        .finish();
    apply(&l.rootfs, &tar[..]).unwrap();
    assert!(is_whiteout(&l.rootfs.join("d/f")));
    assert!(is_whiteout(&l.rootfs.join("d/sub")));
}

#[test]
fn metadata_is_kept() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        .entry(
            E::new("suid", b'0')
                .mode(0o4755)
                .owner(1000, 1001)
                .data(b"#!"),
        )
        .entry(E::new("sgid", b'0').mode(0o2711).owner(5, 6))
        .entry(E::new("tmp/", b'5').mode(0o1777).mtime(1_500_000_000))
        .entry(E::new("private/", b'5').mode(0o700).owner(33, 33))
        .entry(
            E::new("link", b'2')
                .link("/nowhere")
                .owner(44, 45)
                .mtime(1_400_000_000),
        )
        .entry(E::new("null", b'3').dev(1, 3).mode(0o666))
        .entry(E::new("loop0", b'4').dev(7, 0).mode(0o660).owner(0, 6))
        .entry(E::new("fifo", b'6').mode(0o620))
        .pax(&[
            ("SCHILY.xattr.user.note", b"hello"),
            ("mtime", b"1700000000.25"),
            ("uid", b"3000000"),
        ])
        .file("xattr", b"data")
        .finish();
    apply(&l.rootfs, &tar[..]).unwrap();
    let md = |p: &str| std::fs::symlink_metadata(l.rootfs.join(p)).unwrap();
    assert_eq!(md("suid").mode() & 0o7777, 0o4755);
    assert_eq!((md("suid").uid(), md("suid").gid()), (1000, 1001));
    assert_eq!(md("suid").mtime(), MTIME as i64);
    assert_eq!(md("suid").atime(), MTIME as i64);
    assert_eq!(md("sgid").mode() & 0o7777, 0o2711);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("tmp").mtime(), 1_500_000_000);
    assert_eq!(md("private").permissions().mode() & 0o7777, 0o700);
    assert_eq!(md("private").uid(), 33);
    assert_eq!(
        std::fs::read_link(l.rootfs.join("link")).unwrap(),
        Path::new("/nowhere")
    );
    assert_eq!((md("link").uid(), md("link").gid()), (44, 45));
    assert_eq!(md("link").mtime(), 1_400_000_000);
    assert!(md("null").file_type().is_char_device());
    assert_eq!(md("null").rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(md("null").mode() & 0o7777, 0o666);
    assert!(md("loop0").file_type().is_block_device());
    assert_eq!(md("loop0").rdev(), rustix::fs::makedev(7, 0));
    assert_eq!(md("loop0").gid(), 6);
    assert!(md("fifo").file_type().is_fifo());
    assert_eq!(md("fifo").mode() & 0o7777, 0o620);
    assert_eq!(
        xattr_of(&l.rootfs.join("xattr"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        (md("xattr").mtime(), md("xattr").mtime_nsec()),
        (1_700_000_000, 250_000_000)
    );
    assert_eq!(md("xattr").uid(), 3_000_000);
}

#[test]
fn directory_times_survive_their_children() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        .entry(E::new("d/", b'5').mtime(1_000_000_000))
        .file("d/a", b"x")
        .entry(E::new("d/e/", b'5').mtime(1_100_000_000))
        .file("d/e/b", b"y")
        .file("d/.wh.gone", b"")
        .finish();
    apply(&l.rootfs, &tar[..]).unwrap();
    let mtime = |p: &Path| std::fs::symlink_metadata(p).unwrap().mtime();
    assert_eq!(mtime(&l.rootfs.join("d")), 1_000_000_000);
    assert_eq!(mtime(&l.rootfs.join("d/e")), 1_100_000_000);
}

#[test]
fn the_root_entry_changes_nothing() {
    if !need_root() {
        return;
    }
    // As Docker and containerd: a `./` entry (a layer tarred from a 0700 temporary
    // directory, say) does not make the container's `/` unreadable to other users.
    let l = Layout::new();
    let before = std::fs::metadata(&l.rootfs).unwrap();
    for root in ["./", "."] {
        let tar = Tar::new()
            .entry(
                E::new(root, b'5')
                    .mode(0o700)
                    .owner(9, 9)
                    .mtime(1_200_000_000),
            )
            .file("f", b"x")
            .finish();
        apply(&l.rootfs, &tar[..]).unwrap();
        let after = std::fs::metadata(&l.rootfs).unwrap();
        assert_eq!(after.mode(), before.mode(), "{root}");
        assert_eq!(
            (after.uid(), after.gid()),
            (before.uid(), before.gid()),
            "{root}"
        );
        assert_ne!(after.mtime(), 1_200_000_000, "{root}");
    }
}

#[test]
fn entries_in_any_order_and_replacements() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        // child before its directory: the directory entry later only sets metadata
        .file("late/child", b"c")
        .entry(E::new("late/", b'5').mode(0o711).owner(9, 9))
        // a directory entry over a file replaces it
        .file("was_file", b"f")
        .dir("was_file/")
        // a file over a directory (with contents) replaces it
        .dir("was_dir/")
        .file("was_dir/x", b"x")
        .file("was_dir", b"now a file")
        // a file over a symlink replaces the link, it does not write through it
        .symlink("was_link", "../canary/file")
        .file("was_link", b"mine")
        // a file written twice keeps the second
        .file("twice", b"one")
        .file("twice", b"two")
        // a directory over a symlink to outside replaces the link
        .symlink("dlink", "../canary")
        .dir("dlink/")
        .file("dlink/file", b"inside")
        .finish();
    let before = l.outside();
    apply(&l.rootfs, &tar[..]).unwrap();
    assert_eq!(l.outside(), before);
    let r = &l.rootfs;
    assert_eq!(std::fs::read(r.join("late/child")).unwrap(), b"c");
    let late = std::fs::metadata(r.join("late")).unwrap();
    assert_eq!((late.mode() & 0o7777, late.uid()), (0o711, 9));
    assert!(std::fs::symlink_metadata(r.join("was_file"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read(r.join("was_dir")).unwrap(), b"now a file");
    assert_eq!(std::fs::read(r.join("was_link")).unwrap(), b"mine");
    assert!(std::fs::symlink_metadata(r.join("was_link"))
        .unwrap()
        .is_file());
    assert_eq!(std::fs::read(r.join("twice")).unwrap(), b"two");
    assert!(std::fs::symlink_metadata(r.join("dlink")).unwrap().is_dir());
    assert_eq!(std::fs::read(r.join("dlink/file")).unwrap(), b"inside");
}

#[test]
fn metadata_never_follows_symlinks() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let target = l.canary.join("file");
    // Owner, times and xattrs of a symlink pointing at the canary land on the link.
    let tar = Tar::new()
        .pax(&[("SCHILY.xattr.trusted.note", b"on the link")])
        .entry(
            E::new("l", b'2')
                .link(target.to_str().unwrap())
                .owner(4321, 4321)
                .mode(0o777)
                .mtime(1),
        )
        .entry(
            E::new("r", b'2')
                .link("../canary/file")
                .owner(4321, 4321)
                .mtime(1),
        )
        .finish();
    let before = l.outside();
    apply(&l.rootfs, &tar[..]).unwrap();
    assert_eq!(l.outside(), before);
    let md = std::fs::symlink_metadata(l.rootfs.join("l")).unwrap();
    assert_eq!((md.uid(), md.mtime()), (4321, 1));
    assert_eq!(
        xattr_of(&l.rootfs.join("l"), "trusted.note").as_deref(),
        Some(&b"on the link"[..])
    );
}

#[test]
fn hardlinks_within_the_layer() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        .file("a/orig", b"shared")
        .hardlink("b/link", "a/orig")
        .hardlink("./b/link2", "./a/../a/orig")
        .symlink("sym", "a/orig")
        .hardlink("symlink-link", "sym")
        .finish();
    apply(&l.rootfs, &tar[..]).unwrap();
    let md = |p: &str| std::fs::symlink_metadata(l.rootfs.join(p)).unwrap();
    assert_eq!(md("a/orig").ino(), md("b/link").ino());
    assert_eq!(md("a/orig").ino(), md("b/link2").ino());
    assert_eq!(md("a/orig").nlink(), 3);
    // A hardlink to a symlink links the symlink itself.
    assert_eq!(md("sym").ino(), md("symlink-link").ino());
    assert!(md("symlink-link").file_type().is_symlink());
}

#[test]
fn overlay_xattrs_and_global_headers_are_ignored() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let tar = Tar::new()
        .pax_kind(b'g', &[("comment", b"commit abc")])
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
            ("SCHILY.xattr.com.apple.quarantine", b"q"),
            ("SCHILY.xattr.user.ok", b"1"),
        ])
        .dir("d/")
        // A big global header is data, not a header: it does not count against the
        // header budget.
        .pax_kind(b'g', &[("comment", &vec![b'c'; 3 << 20])])
        .finish();
    let stats = apply(&l.rootfs, &tar[..]).unwrap();
    assert_eq!(stats.entries, 1);
    let d = l.rootfs.join("d");
    assert_eq!(xattr_of(&d, "trusted.overlay.opaque"), None);
    assert_eq!(xattr_of(&d, "trusted.overlay.redirect"), None);
    assert_eq!(xattr_of(&d, "user.overlay.opaque"), None);
    assert_eq!(xattr_of(&d, "user.ok").as_deref(), Some(&b"1"[..]));
}

#[test]
fn empty_layer_and_old_style_dirs() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let empty = vec![0u8; 1024];
    let stats = apply(&l.rootfs, &empty[..]).unwrap();
    assert_eq!(stats.entries, 0);
    // The well-known digest of the empty layer.
    assert_eq!(
        stats.diff_id.as_str(),
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
    // Type NUL with a trailing slash is a directory in old tars; padding after the end
    // blocks (a 10 KiB record) is read and hashed.
    let mut tar = Tar::new().entry(E::new("olddir/", 0)).finish();
    tar.resize(10240, 0);
    let stats = apply(&l.rootfs, &tar[..]).unwrap();
    assert!(l.rootfs.join("olddir").is_dir());
    assert_eq!(stats.size, 10240);
    assert_eq!(stats.diff_id, Digest::of(&tar));
}

#[test]
fn long_names() {
    if !need_root() {
        return;
    }
    let l = Layout::new();
    let dir = "d".repeat(150);
    let file = format!("{dir}/{}", "f".repeat(200));
    let target = format!("/{}", "t".repeat(300));
    let tar = Tar::new()
        .file(&file, b"long")
        .symlink(&format!("{dir}/sym"), &target)
        .hardlink(&format!("{dir}/{}", "h".repeat(120)), &file)
        .finish();
    apply(&l.rootfs, &tar[..]).unwrap();
    assert_eq!(std::fs::read(l.rootfs.join(&file)).unwrap(), b"long");
    assert_eq!(
        std::fs::read_link(l.rootfs.join(&dir).join("sym")).unwrap(),
        Path::new(&target)
    );
    assert_eq!(
        std::fs::read(l.rootfs.join(&dir).join("h".repeat(120))).unwrap(),
        b"long"
    );
}
