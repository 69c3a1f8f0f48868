//! The global allocator's settings, shared by both binaries.
//!
//! The binaries use mimalloc: the event pipeline allocates an event on the thread that
//! parses it and frees it on the sink or audit-writer thread, which glibc's allocator
//! handles slowly (BENCHMARKS.md has the numbers). It is built with `no_thp` (no
//! transparent huge pages for its arenas) and told here to return freed pages to the OS
//! at once, so peak RSS stays as low and flat as with glibc.

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay` in mimalloc 3.x (`libmimalloc-sys` 0.1.49, pinned), which the
/// crate does not name. The test below checks that it still is the purge delay.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Call first thing in `main`. `MIMALLOC_PURGE_DELAY` in the environment still wins.
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only stores a value for a valid option index.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge delay's default is 1000 ms; its neighbours default to 1 and 0.
    #[test]
    fn the_option_index_is_the_purge_delay() {
        // SAFETY: reading options has no preconditions.
        let (before, it, after) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY - 1),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY + 1),
            )
        };
        assert_eq!((before, it, after), (1, 1000, 0));
    }
}
