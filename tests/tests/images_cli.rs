//! berthctl's image commands end to end, as a person types them: import, images, inspect,
//! tag, history, save, rmi, load, prune, system df — through the engine to the snapshotter.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_tests::image::{self, File};
use berth_tests::{bin, need_root, Engine};
use serde_json::Value;

const CMD: &str = r#"CMD ["/bin/busybox","sh"]"#;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs berthctl, asserts it succeeded, returns its standard output.
fn ok(engine: &Engine, args: &[&str]) -> String {
    let out = engine.ctl(args);
    assert!(
        out.status.success(),
        "berthctl {args:?} failed: {}\nengine log:\n{}",
        stderr(&out),
        engine.log_text()
    );
    stdout(&out)
}

/// Runs berthctl, asserts it failed with status 1, returns its standard error.
fn fails(engine: &Engine, args: &[&str]) -> String {
    let out = engine.ctl(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "berthctl {args:?}: stdout {} stderr {}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

/// Runs berthctl with `input` as its standard input.
fn ctl_with_stdin(engine: &Engine, args: &[&str], input: &Path) -> Output {
    Command::new(bin("berthctl"))
        .arg("-H")
        .arg(engine.host())
        .args(args)
        .env_remove("BERTH_HOST")
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Writes a small root filesystem tar (a static busybox when the host has one, plus
/// `marker`) and returns its path.
fn rootfs(dir: &Path, name: &str, marker: &str) -> PathBuf {
    let path = dir.join(name);
    let tar = image::busybox_rootfs(&[File::new("etc/marker", marker)]);
    std::fs::write(&path, tar).unwrap();
    path
}

/// `import --change CMD… FILE [NAME]`; returns the new image id.
fn import(engine: &Engine, file: &Path, name: Option<&str>) -> String {
    let file = file.to_str().unwrap();
    let mut args = vec!["import", "--change", CMD, "-m", "from the test", file];
    args.extend(name);
    let id = ok(engine, &args).trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import printed {id:?}"
    );
    id
}

fn short(id: &str) -> &str {
    &id[7..19]
}

/// Image ids `images -q --no-trunc` lists, sorted.
fn ids(engine: &Engine) -> Vec<String> {
    let mut ids: Vec<String> = ok(engine, &["images", "-q", "--no-trunc"])
        .lines()
        .map(String::from)
        .collect();
    ids.sort();
    ids
}

fn inspect(engine: &Engine, name: &str) -> Value {
    let out = ok(engine, &["image", "inspect", name]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    v[0].clone()
}

/// Names of the entries of a tar archive.
fn tar_entries(data: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(data);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The docker-archive `manifest.json` of a saved tar.
fn docker_manifest(data: &[u8]) -> Value {
    let mut a = tar::Archive::new(data);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == "manifest.json" {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            return serde_json::from_str(&s).unwrap();
        }
    }
    panic!("no manifest.json in {:?}", tar_entries(data));
}

#[tokio::test]
async fn import_then_list_inspect_tag_and_history() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let id = import(
        &engine,
        &rootfs(dir.path(), "rootfs.tar", "a"),
        Some("mybox:1.0"),
    );

    let table = ok(&engine, &["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{table}");
    }
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["mybox", "1.0", short(&id)], "{table}");
    assert!(table.contains(" ago "), "{table}");
    assert!(row.last().unwrap().ends_with('B'), "{table}");

    let rows = json_lines(&ok(&engine, &["image", "ls", "--format", "json"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["Repository"], "mybox");
    assert_eq!(rows[0]["Tag"], "1.0");
    assert_eq!(rows[0]["ID"], short(&id));
    assert_eq!(ok(&engine, &["images", "-q"]).trim(), short(&id));

    let info = inspect(&engine, "mybox:1.0");
    assert_eq!(info["Id"], id.as_str());
    assert_eq!(info["RepoTags"], serde_json::json!(["mybox:1.0"]));
    assert_eq!(
        info["Config"]["Cmd"],
        serde_json::json!(["/bin/busybox", "sh"])
    );
    assert_eq!(info["RootFS"]["Type"], "layers");
    assert_eq!(info["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(info["Os"], "linux");
    assert!(info["Size"].as_i64().unwrap() > 0, "{info}");
    // `inspect` is `image inspect` for images.
    let again: Value = serde_json::from_str(&ok(&engine, &["inspect", "mybox:1.0"])).unwrap();
    assert_eq!(again[0]["Id"], id.as_str());

    ok(&engine, &["tag", "mybox:1.0", "team/box:2"]);
    ok(&engine, &["image", "tag", short(&id), "mybox:latest"]);
    let by_id = inspect(&engine, short(&id));
    assert_eq!(
        by_id["RepoTags"],
        serde_json::json!(["mybox:1.0", "mybox:latest", "team/box:2"])
    );
    let team = json_lines(&ok(
        &engine,
        &["images", "--filter", "reference=team/*", "--format", "json"],
    ));
    assert_eq!(team.len(), 1, "{team:?}");
    assert_eq!(team[0]["Repository"], "team/box");
    let mine = json_lines(&ok(&engine, &["images", "mybox*", "--format", "json"]));
    let tags: Vec<&str> = mine.iter().map(|r| r["Tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["1.0", "latest"], "{mine:?}");
    assert!(ok(&engine, &["images", "--filter", "dangling=true", "-q"]).is_empty());
    assert_eq!(
        ok(&engine, &["images", "--filter", "dangling=false", "-q"]).trim(),
        short(&id)
    );
    let digests = ok(&engine, &["images", "--digests"]);
    assert!(
        digests.lines().next().unwrap().contains("DIGEST"),
        "{digests}"
    );

    let history = json_lines(&ok(&engine, &["history", "mybox:1.0", "--format", "json"]));
    assert!(!history.is_empty());
    assert_eq!(history[0]["ID"], short(&id));
    assert!(
        history.iter().any(|h| h["Comment"] == "from the test"),
        "{history:?}"
    );
    let full = ok(
        &engine,
        &["image", "history", "--no-trunc", "-q", "mybox:1.0"],
    );
    assert_eq!(full.lines().next(), Some(id.as_str()));
    let table = ok(&engine, &["history", "mybox:1.0"]);
    assert!(table.starts_with("IMAGE"), "{table}");

    let events = json_lines(&ok(
        &engine,
        &[
            "system",
            "events",
            "--since",
            "0",
            "--until",
            "1s",
            "--filter",
            "type=image",
            "--format",
            "json",
        ],
    ));
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["import", "tag", "tag"], "{events:?}");
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[1]["attributes"]["name"], "team/box:2");
}

#[tokio::test]
async fn save_rmi_load_round_trip_keeps_the_image_id() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let id = import(
        &engine,
        &rootfs(dir.path(), "rootfs.tar", "a"),
        Some("mybox:1.0"),
    );

    let archive = dir.path().join("mybox.tar");
    ok(
        &engine,
        &["save", "-o", archive.to_str().unwrap(), "mybox:1.0"],
    );
    let data = std::fs::read(&archive).unwrap();
    let entries = tar_entries(&data);
    for want in ["index.json", "oci-layout", "manifest.json"] {
        assert!(entries.iter().any(|e| e == want), "{want} in {entries:?}");
    }
    // No temporary file is left beside the archive.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    let out = ok(&engine, &["rmi", "mybox:1.0"]);
    assert!(out.contains("Untagged: mybox:1.0"), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(ids(&engine).is_empty());

    let out = ok(&engine, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: mybox:1.0");
    assert_eq!(inspect(&engine, "mybox:1.0")["Id"], id.as_str());

    // From standard input too.
    ok(&engine, &["image", "rm", "mybox:1.0"]);
    let out = ctl_with_stdin(&engine, &["image", "load", "-q"], &archive);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "Loaded image: mybox:1.0");
    assert_eq!(ids(&engine), std::slice::from_ref(&id));

    // An id saves without a name, and loads back as an unnamed image.
    let by_id = dir.path().join("by-id.tar");
    ok(
        &engine,
        &["save", "-o", by_id.to_str().unwrap(), short(&id)],
    );
    ok(&engine, &["rmi", "mybox:1.0"]);
    let out = ok(&engine, &["load", "-i", by_id.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image ID: {id}"));
    assert_eq!(ids(&engine), [id]);
}

#[tokio::test]
async fn save_of_two_images_loads_both_and_import_reads_stdin() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let one = import(
        &engine,
        &rootfs(dir.path(), "one.tar", "one"),
        Some("one:1"),
    );
    let two_tar = rootfs(dir.path(), "two.tar", "two");
    let out = ctl_with_stdin(&engine, &["image", "import", "-", "two:1"], &two_tar);
    assert!(out.status.success(), "{}", stderr(&out));
    let two = stdout(&out).trim().to_string();
    assert!(two.starts_with("sha256:") && two != one, "{two}");

    let both = dir.path().join("both.tar");
    ok(
        &engine,
        &[
            "image",
            "save",
            "--output",
            both.to_str().unwrap(),
            "one:1",
            "two:1",
        ],
    );
    let manifest = docker_manifest(&std::fs::read(&both).unwrap());
    assert_eq!(manifest.as_array().map(Vec::len), Some(2), "{manifest}");

    // To standard output when it is not a terminal.
    let piped = engine.ctl(&["save", "one:1"]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(tar_entries(&piped.stdout).iter().any(|e| e == "index.json"));

    let out = ok(&engine, &["rmi", "one:1", "two:1"]);
    assert_eq!(out.matches("Deleted: ").count(), 2, "{out}");
    assert!(ids(&engine).is_empty());

    let out = ok(&engine, &["load", "--input", both.to_str().unwrap()]);
    let mut loaded: Vec<&str> = out.lines().collect();
    loaded.sort();
    assert_eq!(loaded, ["Loaded image: one:1", "Loaded image: two:1"]);
    let mut want = vec![one, two];
    want.sort();
    assert_eq!(ids(&engine), want);
}

#[tokio::test]
async fn unknown_images_are_no_such_image_and_the_others_still_go() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let err = fails(&engine, &["rmi", "nosuch"]);
    assert_eq!(err.trim(), "berthctl: No such image: nosuch:latest");
    let out = engine.ctl(&["image", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).trim(), "[]");
    assert!(
        stderr(&out).contains("No such image: nosuch:latest"),
        "{}",
        stderr(&out)
    );
    assert!(fails(&engine, &["history", "nosuch"]).contains("No such image"));
    assert!(fails(&engine, &["tag", "nosuch", "other"]).contains("No such image"));
    assert!(fails(&engine, &["save", "-o", "/dev/null", "nosuch"]).contains("No such image"));

    let dir = tempfile::tempdir().unwrap();
    import(
        &engine,
        &rootfs(dir.path(), "rootfs.tar", "a"),
        Some("mybox:1.0"),
    );
    let out = engine.ctl(&["rmi", "nosuch", "mybox:1.0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("Untagged: mybox:1.0"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("No such image: nosuch:latest"),
        "{}",
        stderr(&out)
    );
    assert!(ids(&engine).is_empty());

    // An id named in two repositories needs -f, as in Docker.
    let id = import(&engine, &rootfs(dir.path(), "rootfs.tar", "a"), Some("a:1"));
    ok(&engine, &["tag", "a:1", "b:1"]);
    let err = fails(&engine, &["tag", "a:1", "UPPER"]);
    assert!(err.contains("invalid reference"), "{err}");
    let err = fails(&engine, &["rmi", short(&id)]);
    assert!(err.contains("referenced in multiple repositories"), "{err}");
    // Untagging one name keeps the image.
    let out = ok(&engine, &["rmi", "b:1"]);
    assert_eq!(out.trim(), "Untagged: b:1");
    ok(&engine, &["tag", "a:1", "b:1"]);
    let out = ok(&engine, &["rmi", "-f", short(&id)]);
    assert!(
        out.contains("Untagged: a:1") && out.contains("Untagged: b:1"),
        "{out}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(ids(&engine).is_empty());
}

#[tokio::test]
async fn prune_and_system_df() {
    if !need_root() {
        return;
    }
    let engine = Engine::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let named = import(
        &engine,
        &rootfs(dir.path(), "a.tar", "a"),
        Some("mybox:1.0"),
    );
    let unnamed = import(&engine, &rootfs(dir.path(), "b.tar", "b"), None);

    let df = json_lines(&ok(&engine, &["system", "df", "--format", "json"]));
    let images = df.iter().find(|e| e["Type"] == "Images").unwrap();
    assert_eq!(images["TotalCount"], "2", "{df:?}");
    assert_eq!(images["Active"], "0", "{df:?}");
    assert_ne!(images["Size"], "0B", "{df:?}");
    let table = ok(&engine, &["system", "df"]);
    assert!(table.starts_with("TYPE"), "{table}");
    for kind in ["Images", "Containers", "Local Volumes", "Build Cache"] {
        assert!(table.contains(kind), "{table}");
    }
    let verbose = ok(&engine, &["system", "df", "-v"]);
    assert!(verbose.contains("Images space usage:"), "{verbose}");
    assert!(verbose.contains("mybox"), "{verbose}");

    let dangling = ok(
        &engine,
        &["images", "--filter", "dangling=true", "--no-trunc", "-q"],
    );
    assert_eq!(dangling.trim(), unnamed);
    let table = ok(&engine, &["images"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("<none>") && l.contains(short(&unnamed))),
        "{table}"
    );

    // Nobody to ask for confirmation: refused.
    let err = fails(&engine, &["image", "prune"]);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(ids(&engine).len(), 2);

    let out = ok(&engine, &["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {unnamed}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(ids(&engine), std::slice::from_ref(&named));

    let out = ok(&engine, &["image", "prune", "-a", "-f"]);
    assert!(out.contains("untagged: mybox:1.0"), "{out}");
    assert!(out.contains(&format!("deleted: {named}")), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert!(ids(&engine).is_empty());

    let df = json_lines(&ok(&engine, &["system", "df", "--format", "json"]));
    let images = df.iter().find(|e| e["Type"] == "Images").unwrap();
    assert_eq!(images["TotalCount"], "0", "{df:?}");
    assert_eq!(images["Size"], "0B", "{df:?}");
    let out = ok(&engine, &["image", "prune", "-a", "-f"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
}
