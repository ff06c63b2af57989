//! Every hostile-archive case, each its own test: apply must fail naming the entry, and
//! nothing beside the rootfs (the canary, the temp dir, the host's `/`) may change.

use std::io::Write;
use std::path::Path;

use super::{need_root, Layout, Tar, E};
use crate::layer::{apply, Compressor};

/// Applies the archive `build` makes for a fresh layout and checks it is refused with an
/// error mentioning `needle`, leaving everything outside the rootfs as it was.
fn refused(needle: &str, build: impl FnOnce(&Layout) -> Vec<u8>) {
    let l = Layout::new();
    let blob = build(&l);
    let before = l.outside();
    let err = apply(&l.rootfs, &blob[..]).expect_err("hostile layer must be refused");
    let msg = err.to_string();
    eprintln!("refused: {msg}");
    assert!(
        msg.contains(needle),
        "error {msg:?} should mention {needle:?}"
    );
    assert_eq!(
        l.outside(),
        before,
        "something outside the rootfs changed ({msg})"
    );
    assert_eq!(std::fs::read(l.canary.join("file")).unwrap(), b"canary\n");
}

/// A name under the host's `/` that no test run leaves behind.
fn host_name(tag: &str) -> String {
    format!("berth-layer-escape-{tag}-{}", std::process::id())
}

fn assert_absent_on_host(name: &str) {
    assert!(
        !Path::new("/").join(name).exists(),
        "/{name} was written on the host"
    );
}

#[test]
fn dotdot_escape() {
    if !need_root() {
        return;
    }
    refused("../escape", |_| Tar::new().file("../escape", b"x").finish());
}

#[test]
fn nested_dotdot_escape() {
    if !need_root() {
        return;
    }
    refused("a/../../escape", |_| {
        Tar::new().dir("a/").file("a/../../escape", b"x").finish()
    });
}

#[test]
fn dotdot_into_canary_overwrite() {
    if !need_root() {
        return;
    }
    refused("../canary/file", |_| {
        Tar::new().file("../canary/file", b"pwned").finish()
    });
}

#[test]
fn absolute_path() {
    if !need_root() {
        return;
    }
    refused("absolute", |l| {
        let target = l.canary.join("file");
        Tar::new().file(target.to_str().unwrap(), b"pwned").finish()
    });
}

#[test]
fn absolute_etc_path() {
    if !need_root() {
        return;
    }
    let name = host_name("etc");
    refused("absolute", |_| {
        Tar::new().file(&format!("/etc/{name}"), b"x").finish()
    });
    assert!(!Path::new("/etc").join(&name).exists());
}

#[test]
fn symlink_to_root_then_write_through() {
    if !need_root() {
        return;
    }
    let name = host_name("root");
    let entry = format!("link/{name}");
    refused(&entry, |_| {
        Tar::new().symlink("link", "/").file(&entry, b"x").finish()
    });
    assert_absent_on_host(&name);
}

#[test]
fn symlink_dotdot_then_write_through() {
    if !need_root() {
        return;
    }
    refused("link/escape", |_| {
        Tar::new()
            .symlink("link", "../..")
            .file("link/escape", b"x")
            .finish()
    });
}

#[test]
fn symlink_to_canary_then_write_through() {
    if !need_root() {
        return;
    }
    refused("link/file", |l| {
        Tar::new()
            .symlink("link", l.canary.to_str().unwrap())
            .file("link/file", b"pwned")
            .finish()
    });
}

#[test]
fn relative_symlink_to_canary_then_write_through() {
    if !need_root() {
        return;
    }
    refused("link/file", |_| {
        Tar::new()
            .symlink("link", "../canary")
            .file("link/file", b"pwned")
            .finish()
    });
}

#[test]
fn symlink_then_dir_through_it() {
    if !need_root() {
        return;
    }
    refused("link/newdir", |_| {
        Tar::new()
            .symlink("link", "../canary")
            .dir("link/newdir/")
            .finish()
    });
}

#[test]
fn symlink_then_symlink_through_it() {
    if !need_root() {
        return;
    }
    refused("link/evil", |_| {
        Tar::new()
            .symlink("link", "../canary")
            .symlink("link/evil", "/")
            .finish()
    });
}

#[test]
fn symlink_then_device_through_it() {
    if !need_root() {
        return;
    }
    refused("link/null", |_| {
        Tar::new()
            .symlink("link", "../canary")
            .entry(E::new("link/null", b'3').dev(1, 3))
            .finish()
    });
}

#[test]
fn hardlink_to_parent_canary() {
    if !need_root() {
        return;
    }
    refused("../canary/file", |_| {
        Tar::new().hardlink("h", "../canary/file").finish()
    });
}

#[test]
fn hardlink_to_absolute_path() {
    if !need_root() {
        return;
    }
    refused("absolute", |l| {
        Tar::new()
            .hardlink("h", l.canary.join("file").to_str().unwrap())
            .finish()
    });
}

#[test]
fn hardlink_to_etc_passwd() {
    if !need_root() {
        return;
    }
    refused("/etc/passwd", |_| {
        Tar::new().hardlink("h", "/etc/passwd").finish()
    });
}

#[test]
fn hardlink_through_symlinked_dir() {
    if !need_root() {
        return;
    }
    refused("symlink", |_| {
        Tar::new()
            .symlink("d", "../canary")
            .hardlink("h", "d/file")
            .finish()
    });
}

#[test]
fn hardlink_through_absolute_symlinked_dir() {
    if !need_root() {
        return;
    }
    refused("symlink", |l| {
        Tar::new()
            .symlink("d", l.canary.to_str().unwrap())
            .hardlink("h", "d/file")
            .finish()
    });
}

#[test]
fn hardlink_to_directory() {
    if !need_root() {
        return;
    }
    refused("directory", |_| {
        Tar::new().dir("d/").hardlink("h", "d").finish()
    });
}

#[test]
fn hardlink_to_missing_target() {
    if !need_root() {
        return;
    }
    refused("not in this layer", |_| {
        Tar::new().hardlink("h", "nope").finish()
    });
}

#[test]
fn whiteout_empty_name() {
    if !need_root() {
        return;
    }
    refused("empty name", |_| Tar::new().file("dir/.wh.", b"").finish());
}

#[test]
fn whiteout_dot() {
    if !need_root() {
        return;
    }
    refused(".wh..", |_| Tar::new().file(".wh..", b"").finish());
}

#[test]
fn whiteout_dotdot() {
    if !need_root() {
        return;
    }
    refused("a/.wh...", |_| Tar::new().file("a/.wh...", b"").finish());
}

#[test]
fn whiteout_aufs_meta() {
    if !need_root() {
        return;
    }
    refused(".wh..wh.x", |_| Tar::new().file(".wh..wh.x", b"").finish());
}

#[test]
fn whiteout_aufs_plink() {
    if !need_root() {
        return;
    }
    refused(".wh..wh.plnk", |_| Tar::new().dir(".wh..wh.plnk/").finish());
}

#[test]
fn whiteout_spelled_directory_component() {
    if !need_root() {
        return;
    }
    refused(".wh.d/file", |_| {
        Tar::new().file(".wh.d/file", b"x").finish()
    });
}

#[test]
fn whiteout_through_symlink_to_outside() {
    if !need_root() {
        return;
    }
    refused("link/.wh.file", |_| {
        Tar::new()
            .symlink("link", "../canary")
            .file("link/.wh.file", b"")
            .finish()
    });
}

#[test]
fn whiteout_through_absolute_symlink() {
    if !need_root() {
        return;
    }
    refused("link/.wh.file", |l| {
        Tar::new()
            .symlink("link", l.canary.to_str().unwrap())
            .file("link/.wh.file", b"")
            .finish()
    });
}

#[test]
fn opaque_through_symlink() {
    if !need_root() {
        return;
    }
    refused("link/.wh..wh..opq", |_| {
        Tar::new()
            .symlink("link", "../canary")
            .file("link/.wh..wh..opq", b"")
            .finish()
    });
}

#[test]
fn whiteout_dotdot_parent() {
    if !need_root() {
        return;
    }
    refused("../canary/.wh.file", |_| {
        Tar::new().file("../canary/.wh.file", b"").finish()
    });
}

#[test]
fn pax_path_smuggling() {
    if !need_root() {
        return;
    }
    refused("../escape", |_| {
        Tar::new()
            .pax(&[("path", b"../escape")])
            .file("innocent", b"x")
            .finish()
    });
}

#[test]
fn pax_path_smuggling_into_canary() {
    if !need_root() {
        return;
    }
    refused("../canary/file", |_| {
        Tar::new()
            .pax(&[("path", b"../canary/file")])
            .file("innocent", b"pwned")
            .finish()
    });
}

#[test]
fn pax_linkpath_smuggling() {
    if !need_root() {
        return;
    }
    refused("../canary/file", |_| {
        Tar::new()
            .file("innocent", b"x")
            .pax(&[("linkpath", b"../canary/file")])
            .hardlink("h", "innocent")
            .finish()
    });
}

#[test]
fn pax_duplicate_path() {
    if !need_root() {
        return;
    }
    refused("duplicate PAX", |_| {
        Tar::new()
            .pax(&[("path", b"ok"), ("path", b"../escape")])
            .file("innocent", b"x")
            .finish()
    });
}

#[test]
fn pax_unparsable_size() {
    if !need_root() {
        return;
    }
    refused("invalid PAX size", |_| {
        Tar::new()
            .pax(&[("size", b"12x")])
            .file("innocent", b"x")
            .finish()
    });
}

#[test]
fn gnu_longname_smuggling() {
    if !need_root() {
        return;
    }
    refused("../escape", |_| {
        Tar::new()
            .gnu_longname(b"../escape")
            .file("innocent", b"x")
            .finish()
    });
}

#[test]
fn truncated_in_file_data() {
    if !need_root() {
        return;
    }
    refused("big", |_| {
        let mut t = Tar::new();
        t.file("big", &[7u8; 5000]);
        let bytes = t.buf;
        bytes[..512 + 2000].to_vec()
    });
}

#[test]
fn truncated_between_entries() {
    if !need_root() {
        return;
    }
    // A cut exactly at an entry boundary still parses; only the missing end blocks say so.
    refused("truncated", |_| {
        Tar::new().file("a", b"x").file("b", b"y").buf.clone()
    });
}

#[test]
fn truncated_in_header() {
    if !need_root() {
        return;
    }
    refused("after a", |_| {
        let mut t = Tar::new();
        t.file("a", b"x").file("b", b"y");
        t.buf[..1024 + 300].to_vec()
    });
}

#[test]
fn empty_stream() {
    if !need_root() {
        return;
    }
    refused("truncated", |_| Vec::new());
}

#[test]
fn bad_header_checksum() {
    if !need_root() {
        return;
    }
    refused("checksum", |_| {
        let mut t = Tar::new();
        t.file("a", b"x").file("b", b"y");
        let mut bytes = t.finish();
        bytes[1024] = b'c'; // second header's name, checksum not updated
        bytes
    });
}

#[test]
fn huge_declared_size_with_short_data() {
    if !need_root() {
        return;
    }
    refused("huge", |_| {
        let mut t = Tar::new();
        t.entry(E::new("huge", b'0').data(b"only ten b").size(1 << 30));
        t.finish()
    });
}

fn layer_tar() -> Vec<u8> {
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    Tar::new()
        .dir("d/")
        .file("d/noise", &noise)
        .file("z", b"last")
        .finish()
}

#[test]
fn corrupt_gzip() {
    if !need_root() {
        return;
    }
    refused("truncated", |_| {
        let mut c = Compressor::gzip(Vec::new(), 6);
        c.write_all(&layer_tar()).unwrap();
        let mut blob = c.finish().unwrap();
        let mid = blob.len() / 2;
        for b in &mut blob[mid..mid + 16] {
            *b ^= 0x5a;
        }
        blob
    });
}

#[test]
fn corrupt_gzip_trailer() {
    if !need_root() {
        return;
    }
    refused("truncated", |_| {
        let mut c = Compressor::gzip(Vec::new(), 6);
        c.write_all(&layer_tar()).unwrap();
        let mut blob = c.finish().unwrap();
        let n = blob.len();
        blob[n - 6] ^= 0xff; // CRC32 of the data
        blob
    });
}

#[test]
fn truncated_gzip() {
    if !need_root() {
        return;
    }
    refused("truncated", |_| {
        let mut c = Compressor::gzip(Vec::new(), 6);
        c.write_all(&layer_tar()).unwrap();
        let blob = c.finish().unwrap();
        blob[..blob.len() * 2 / 3].to_vec()
    });
}

#[test]
fn truncated_zstd() {
    if !need_root() {
        return;
    }
    refused("truncated", |_| {
        let mut c = Compressor::new(Vec::new(), crate::layer::Compression::Zstd, 3).unwrap();
        c.write_all(&layer_tar()).unwrap();
        let blob = c.finish().unwrap();
        blob[..blob.len() * 2 / 3].to_vec()
    });
}

#[test]
fn gnu_sparse_refused() {
    if !need_root() {
        return;
    }
    refused("sparse", |_| {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..6].copy_from_slice(b"sparse");
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        if let Some(gnu) = h.as_gnu_mut() {
            gnu.realsize = [b'0'; 12];
            gnu.realsize[11] = 0;
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(&[0; 1024]);
        out
    });
}

#[test]
fn pax_sparse_refused() {
    if !need_root() {
        return;
    }
    refused("sparse", |_| {
        Tar::new()
            .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")])
            .file("sparse", b"x")
            .finish()
    });
}

#[test]
fn unsupported_entry_type() {
    if !need_root() {
        return;
    }
    refused("unsupported entry type", |_| {
        Tar::new().entry(E::new("label", b'V')).finish()
    });
}

#[test]
fn root_replaced_by_symlink() {
    if !need_root() {
        return;
    }
    refused("layer root", |_| {
        Tar::new().symlink("./", "../canary").finish()
    });
}

#[test]
fn oversized_pax_header() {
    if !need_root() {
        return;
    }
    // tar keeps PAX records in memory: a 2 MiB one must be refused, not buffered.
    refused("bytes of headers", |_| {
        let big = vec![b'a'; 2 << 20];
        Tar::new()
            .pax(&[("comment", &big)])
            .file("f", b"x")
            .finish()
    });
}

#[test]
fn oversized_gnu_long_name() {
    if !need_root() {
        return;
    }
    refused("bytes of headers", |_| {
        let big = vec![b'a'; 2 << 20];
        Tar::new().gnu_longname(&big).file("f", b"x").finish()
    });
}
