//! The calls into the C library that the example programs make: the one
//! module of this crate allowed `unsafe` code.

/// Makes this process's allocator (glibc's) map every block of `bytes` and
/// more afresh and unmap it when freed, rather than keep freed blocks for
/// reuse; returns whether it accepted the setting.
pub fn map_blocks_afresh_from(bytes: usize) -> bool {
    let Ok(threshold) = i32::try_from(bytes) else {
        return false;
    };
    // SAFETY: mallopt only changes the allocator's thresholds, which it
    // reads under its own lock.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1 }
}
