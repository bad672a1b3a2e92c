//! How intake asks glibc's allocator to give memory back: the peak RSS target (under 100 MB
//! whatever the mailbox size) is about memory the process holds, not only memory it uses.

/// Buffers of 1 MiB and more (raw messages, decoded attachments, their copies in the database
/// drivers) get their own mappings instead of being carved from glibc's per-thread heaps:
/// freed, they go back to the system at once. Without this, glibc raises its threshold to the
/// largest buffer freed, and each thread's heap keeps its own copy-sized hole: peak RSS with
/// 25 MB messages went from about 205 to 150 MB on SQLite and from 200 to 140 MB on PostgreSQL
/// (BENCHMARKS.md). Messages under 1 MiB, nearly all of them, are not affected.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc allocation parameter, and runs before any other thread
    // exists. Its result (1 on success) is ignored: without it intake only uses more memory.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Gives the free memory of every allocator arena back to the system. Called before a message
/// too large for a batch (over 4 MiB) is fetched: the batches before it leave freed small
/// buffers in the arenas of the runtime and parser threads, which glibc keeps. With 5,000
/// mixed messages and then three of 24.6 MB, peak RSS was 107-111 MB without this and 85 MB
/// with it (BENCHMARKS.md). It takes a few milliseconds, once per such message.
pub fn give_back_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns whole free pages of glibc's arenas to the system; it is
    // safe to call from any thread at any time. Its result (whether memory was released) is
    // of no use here.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn resident_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse().ok())
            .expect("resident pages");
        // SAFETY: sysconf only reads a system setting.
        let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        pages * u64::try_from(page_bytes).expect("a page size")
    }

    #[test]
    fn freed_small_buffers_go_back_to_the_system() {
        // 128 MiB in buffers below glibc's mmap threshold, so they come from an arena.
        let buffers: Vec<Vec<u8>> = (0..2048).map(|_| vec![1u8; 64 * 1024]).collect();
        // Allocated last, kept: the freed space is not at the arena's top, which glibc trims
        // by itself, but in its middle, as after a batch of messages.
        let guard = vec![1u8; 64 * 1024];
        drop(buffers);
        let before = resident_bytes();
        give_back_free_memory();
        let after = resident_bytes();
        assert!(
            before.saturating_sub(after) > 64 << 20,
            "resident {before} bytes before, {after} after"
        );
        drop(guard);
    }
}
