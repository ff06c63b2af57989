use super::*;
use crate::layer::{apply, diff};
#[test]
fn perf_tmp() {
    let mut t = Tar::new();
    for d in 0..200 {
        t.dir(&format!("usr/share/doc/pkg{d}/"));
        for f in 0..100 {
            t.file(
                &format!("usr/share/doc/pkg{d}/file{f}.txt"),
                &vec![b'x'; 2000],
            );
        }
    }
    let tar = t.finish();
    let big = vec![7u8; 64 << 20];
    let mut t2 = Tar::new();
    t2.file("big1", &big).file("big2", &big);
    let tar2 = t2.finish();
    let l2 = Layout::new();
    let start = std::time::Instant::now();
    apply(&l2.rootfs, &tar2[..]).unwrap();
    eprintln!("big only: {:?}", start.elapsed());
    let start = std::time::Instant::now();
    crate::digest::Digest::of(&tar2);
    eprintln!("hash only: {:?}", start.elapsed());
    let l = Layout::new();
    let start = std::time::Instant::now();
    let s = apply(&l.rootfs, &tar[..]).unwrap();
    let el = start.elapsed();
    eprintln!(
        "apply: {} entries {} MB in {:?} = {:.0} MB/s",
        s.entries,
        s.size >> 20,
        el,
        s.size as f64 / el.as_secs_f64() / 1e6
    );
    let start = std::time::Instant::now();
    let d = diff(&l.rootfs, std::io::sink()).unwrap();
    let el = start.elapsed();
    eprintln!(
        "diff: {} MB in {:?} = {:.0} MB/s",
        d.size >> 20,
        el,
        d.size as f64 / el.as_secs_f64() / 1e6
    );
}
