//! Test images built in memory: root filesystems, and archives in the OCI layout and
//! `docker save` formats (no registry, no Docker Hub needed).

use std::io::Write;

use serde_json::json;
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A file of a test layer.
pub struct File<'a> {
    /// Path inside the image, without a leading `/`.
    pub path: &'a str,
    /// Contents.
    pub data: Vec<u8>,
    /// Mode bits.
    pub mode: u32,
}

impl<'a> File<'a> {
    /// A regular file with mode 0644.
    pub fn new(path: &'a str, data: impl Into<Vec<u8>>) -> Self {
        File {
            path,
            data: data.into(),
            mode: 0o644,
        }
    }
}

/// An uncompressed layer tar holding `files` (parent directories are added).
pub fn layer_tar(files: &[File<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let mut parent = std::path::Path::new(f.path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_uid(0);
                h.set_gid(0);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(1_700_000_000);
                b.append_data(&mut h, &d, std::io::empty()).unwrap();
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(f.mode);
        h.set_size(f.data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, f.path, f.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// A root filesystem with a static busybox (when the host has one) and `extra` files.
pub fn busybox_rootfs(extra: &[File<'_>]) -> Vec<u8> {
    let mut files = Vec::new();
    if let Ok(bb) = std::fs::read("/bin/busybox") {
        files.push(File {
            path: "bin/busybox",
            data: bb,
            mode: 0o755,
        });
    }
    files.push(File::new("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"));
    for f in extra {
        files.push(File {
            path: f.path,
            data: f.data.clone(),
            mode: f.mode,
        });
    }
    layer_tar(&files)
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An image made of layers (uncompressed tars, bottom first).
pub struct TestImage {
    /// Names, e.g. "docker.io/library/app:v1"; empty: unnamed.
    pub names: Vec<String>,
    /// Uncompressed layer tars.
    pub layers: Vec<Vec<u8>>,
    /// Extra `config` section of the image configuration.
    pub config: serde_json::Value,
}

/// The blobs of an image: (layer blobs gzip-compressed, config, manifest).
pub struct Built {
    /// (digest, bytes) of every blob.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// Manifest digest.
    pub manifest: String,
    /// Manifest size.
    pub manifest_size: usize,
    /// Config digest (the image id).
    pub config: String,
    /// Layer blob digests.
    pub layers: Vec<String>,
}

/// Builds the blobs of `img` with gzip layers.
pub fn build(img: &TestImage) -> Built {
    let diff_ids: Vec<String> = img.layers.iter().map(|l| digest(l)).collect();
    let layer_blobs: Vec<Vec<u8>> = img.layers.iter().map(|l| gzip(l)).collect();
    let config = serde_json::to_vec(&json!({
        "created": "2026-01-01T00:00:00Z",
        "architecture": host_arch(),
        "os": "linux",
        "config": img.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": img.layers.iter().map(|_| json!({"created_by": "test layer"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": layer_blobs.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest(l), "size": l.len(),
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let mut blobs = vec![(digest(&config), config.clone())];
    let layers: Vec<String> = layer_blobs.iter().map(|l| digest(l)).collect();
    for l in layer_blobs {
        blobs.push((digest(&l), l));
    }
    blobs.push((digest(&manifest), manifest.clone()));
    Built {
        manifest: digest(&manifest),
        manifest_size: manifest.len(),
        config: digest(&config),
        layers,
        blobs,
    }
}

/// GOARCH of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

/// An OCI image layout tar holding `images` (blobs shared between them stored once).
pub fn oci_archive(images: &[TestImage]) -> (Vec<u8>, Vec<Built>) {
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let built: Vec<Built> = images.iter().map(build).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut manifests = Vec::new();
    for (img, bl) in images.iter().zip(&built) {
        for (d, data) in &bl.blobs {
            if seen.insert(d.clone()) {
                append(&mut b, &format!("blobs/sha256/{}", &d[7..]), data);
            }
        }
        let entry = |name: Option<&String>| {
            let mut e = json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": bl.manifest, "size": bl.manifest_size,
            });
            if let Some(n) = name {
                e["annotations"] = json!({"io.containerd.image.name": n});
            }
            e
        };
        if img.names.is_empty() {
            manifests.push(entry(None));
        }
        for n in &img.names {
            manifests.push(entry(Some(n)));
        }
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap();
    append(&mut b, "index.json", &index);
    (b.into_inner().unwrap(), built)
}

/// A `docker save` archive in the old layout: `<id>/layer.tar` directories (uncompressed),
/// `<config hex>.json`, `manifest.json`; a second reference to a layer is a symlink, as
/// Docker writes it.
pub fn legacy_docker_archive(img: &TestImage, repo_tag: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = img.layers.iter().map(|l| digest(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": host_arch(), "os": "linux", "config": img.config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_name = format!("{}.json", &digest(&config)[7..]);
    let mut b = tar::Builder::new(Vec::new());
    let mut layer_paths = Vec::new();
    let mut first_dir_for: std::collections::BTreeMap<String, String> = Default::default();
    for (i, l) in img.layers.iter().enumerate() {
        let dir = format!("{:064x}", i + 1);
        let path = format!("{dir}/layer.tar");
        match first_dir_for.get(&digest(l)) {
            Some(existing) => {
                let mut h = tar::Header::new_gnu();
                h.set_uid(0);
                h.set_gid(0);
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, &path, format!("../{existing}/layer.tar"))
                    .unwrap();
            }
            None => {
                append(&mut b, &path, l);
                append(&mut b, &format!("{dir}/VERSION"), b"1.0");
                first_dir_for.insert(digest(l), dir.clone());
            }
        }
        layer_paths.push(path);
    }
    append(&mut b, &config_name, &config);
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_paths,
    }]))
    .unwrap();
    append(&mut b, "manifest.json", &manifest);
    b.into_inner().unwrap()
}

/// `tar` (a layer without an end-of-archive gap) with directories (mode 1777) and
/// symlinks (path → target) appended, all owned by root.
pub fn with_dirs_and_links(tar: &[u8], dirs: &[&str], links: &[(&str, &str)]) -> Vec<u8> {
    let header = |kind: tar::EntryType, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut h = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        b.append_data(&mut h, path, &mut entry).unwrap();
    }
    for d in dirs {
        let mut h = header(tar::EntryType::Directory, 0o1777);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    for (path, target) in links {
        let mut h = header(tar::EntryType::Symlink, 0o777);
        b.append_link(&mut h, path, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// A busybox root filesystem as a shell user expects it: `/bin/<applet>` links for every
/// applet of the host's busybox, `/tmp`, and `extra` files.
pub fn busybox_applets_rootfs(extra: &[File<'_>]) -> Vec<u8> {
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let links: Vec<(String, &str)> = list
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
        .map(|a| (format!("bin/{a}"), "busybox"))
        .collect();
    let links: Vec<(&str, &str)> = links.iter().map(|(p, t)| (p.as_str(), *t)).collect();
    with_dirs_and_links(&busybox_rootfs(extra), &["tmp"], &links)
}
