//! File descriptors a berth process inherits from whoever started it.

/// Marks every descriptor above stdio close-on-exec. Whatever a caller left open without
/// close-on-exec (a shell's pipe, a supervisor's socket) would otherwise pass to every
/// process berth starts — and a container's shim lives long after its caller. Call first in
/// `main`, before anything of the process's own is open.
pub fn cloexec_inherited() {
    // SAFETY: close_range only changes descriptor flags; CLOSE_RANGE_CLOEXEC (Linux 5.11)
    // closes nothing. On an older kernel it fails with EINVAL and nothing changes.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}
