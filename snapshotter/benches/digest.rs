//! sha256 throughput of the content store's hasher (SHA-NI where the CPU has it).
//! `cargo bench -p berth-snapshotter --bench digest`

use std::time::Instant;

use berth_snapshotter::digest::Hasher;

fn main() {
    let block = vec![0x5au8; 8 << 20];
    let total: u64 = 1 << 30;
    // Warm up, then hash 1 GiB.
    let mut h = Hasher::new();
    h.update(&block);
    let start = Instant::now();
    let mut h = Hasher::new();
    let mut done = 0u64;
    while done < total {
        h.update(&block);
        done += block.len() as u64;
    }
    let d = h.finish();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sha256: {:.2} GB/s ({:.0} MiB in {:.3} s, {})",
        total as f64 / secs / 1e9,
        total as f64 / (1 << 20) as f64,
        secs,
        &d.as_str()[..19]
    );
}
