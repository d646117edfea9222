//! Early writeback of changelog files: as a file's appended bytes pile up, a thread of its own
//! asks the kernel to start writing them out, so that a commit's fsync finds little left to do.
//!
//! Without it the page cache held everything appended since the last commit (the kernel's own
//! writeback starts at 10 % of memory or after 30 s), and each commit's fsync wrote it at once:
//! about 100 MB per 5-minute segment in `tidemark bench --kafka`. ext4 held the workers' own
//! appends while it did, and every update after a segment boundary waited (BENCHMARKS.md,
//! eighteenth look). Databases do the same: RocksDB's `bytes_per_sync`, PostgreSQL's
//! `backend_flush_after`.

use std::fs::File;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock};

/// Bytes appended between two writeback requests.
const CHUNK: u64 = 8 << 20;

/// A request: start writing `len` bytes of `file` from `offset`.
type Request = (Arc<File>, u64, u64);

/// One file's writeback: what has been requested so far.
pub struct Writeback {
    file: Arc<File>,
    requested: u64,
}

impl Writeback {
    /// Writeback for `file`, whose first `len` bytes are already written; `None` if the file
    /// cannot be shared with the writeback thread (then the commit's fsync does it all).
    pub fn new(file: &File, len: u64) -> Option<Writeback> {
        Some(Writeback {
            file: Arc::new(file.try_clone().ok()?),
            requested: len,
        })
    }

    /// Notes that the file's first `len` bytes have reached the kernel; requests their
    /// writeback once a chunk has piled up.
    pub fn written(&mut self, len: u64) {
        if len < self.requested + CHUNK {
            return;
        }
        if let Some(tx) = requests() {
            let _ = tx.send((self.file.clone(), self.requested, len - self.requested));
        }
        self.requested = len;
    }
}

/// The writeback thread's queue, started on first use; `None` if it could not start.
fn requests() -> Option<&'static Sender<Request>> {
    static QUEUE: OnceLock<Option<Sender<Request>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Request>();
            crate::replay::background::spawn("tidemark-writeback", move || {
                for (file, offset, len) in rx {
                    start(&file, offset, len);
                }
            })
            .ok()?;
            Some(tx)
        })
        .as_ref()
}

/// Starts writing out `len` bytes of `file` from `offset` without waiting for them. A failure
/// is ignored: this only schedules work early, and the commit's fsync reports any error.
fn start(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range reads no memory of ours; the descriptor is open for as long
        // as `file` lives.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}
