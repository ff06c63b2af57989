//! Links the berth-shim executable as a position-dependent (non-PIE) executable.
//!
//! A PIE is relocated when it is loaded: every page of `.data.rel.ro` (vtables, tables of
//! `&'static str`, tracing call sites: ~400 KiB here) holds addresses the loader rewrites,
//! so each process gets private, dirty copies of them. There is one shim per container,
//! hundreds on a host: at a fixed address those pages need no relocation and stay shared
//! with the file, which is most of the difference between ~1.1 MiB and ~0.7 MiB of PSS
//! per shim. What it costs is ASLR of the executable's own image (its libraries, heap and
//! stacks stay randomized); the shim serves a socket only root can reach and reads its
//! container's output as opaque bytes. The rest of the workspace stays PIE.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo::rustc-link-arg-bin=berth-shim=-no-pie");
    }
}
