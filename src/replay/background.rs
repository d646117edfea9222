//! The replay buffer's background threads: they run below the workers' CPU priority.
//!
//! Encoding a 5-minute segment takes a core for about a tenth of a second; at the workers'
//! priority it took that core from them at every boundary, and updates waited (spikes at each
//! segment boundary in `tidemark bench --kafka`; BENCHMARKS.md, seventeenth look). Nothing
//! waits for these threads but the commit, which is durability, not latency.

use std::thread::JoinHandle;

/// The niceness of the buffer's background threads: on a saturated machine the scheduler
/// gives them about a tenth of a core beside each worker, enough to keep up, and hands the
/// rest to the dataflow.
const NICE: i32 = 10;

/// Starts `f` on a thread named `name` that yields the CPU to the dataflow's workers.
pub fn spawn<T, F>(name: &str, f: F) -> std::io::Result<JoinHandle<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            lower_priority();
            f()
        })
}

/// Lowers the calling thread's priority; a failure leaves it as it was (it only orders work).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads no memory of ours; on Linux, PRIO_PROCESS with a thread id
    // changes that thread alone.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE);
    }
}
