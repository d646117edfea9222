//! A long-lived thread that runs the replay buffer's disk work (segment files, commits) in the
//! order it is given, off the worker threads.
//!
//! A thread started per segment or per commit cost more than starting it: each one's allocator
//! heap was set up, filled with pages and collected again when it ended (a tenth of the commit
//! thread's samples in the bench). One thread per kind of work keeps its heap warm.

use std::sync::mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A named thread running jobs one after another; dropping it lets queued jobs finish, then
/// ends the thread.
pub struct Background {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// The result of one job, once it has run.
pub struct Task<T> {
    result: mpsc::Receiver<std::thread::Result<T>>,
    done: Option<std::thread::Result<T>>,
}

impl Background {
    /// Starts the thread `name`.
    pub fn new(name: &str) -> std::io::Result<Background> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })?;
        Ok(Background {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Queues `f`; its result (or its panic) comes back through the task.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Task<T> {
        let (tx, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // The task may have been dropped unread; nothing then waits for the result.
            let _ = tx.send(r);
        });
        let jobs = self.jobs.as_ref().expect("the queue lives until drop");
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            // The thread is gone (it only ends on drop): run the job here rather than lose it.
            job();
        }
        Task { result, done: None }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("finished", &self.done.is_some())
            .finish()
    }
}

impl<T> Task<T> {
    /// Whether the job has run (its result is then ready).
    pub fn is_finished(&mut self) -> bool {
        if self.done.is_none() {
            match self.result.try_recv() {
                Ok(r) => self.done = Some(r),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.done = Some(Err(Box::new("the background job was dropped unrun")))
                }
            }
        }
        true
    }

    /// Waits for the job's result; `Err` if it panicked.
    pub fn join(mut self) -> std::thread::Result<T> {
        match self.done.take() {
            Some(r) => r,
            None => self
                .result
                .recv()
                .unwrap_or_else(|_| Err(Box::new("the background job was dropped unrun"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_and_report_results_and_panics() {
        let bg = Background::new("test-background").unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<Task<usize>> = (0..20)
            .map(|i| {
                let log = log.clone();
                bg.run(move || {
                    log.lock().unwrap().push(i);
                    i * 2
                })
            })
            .collect();
        let failed = bg.run(|| -> usize { panic!("a failing job") });
        let mut last = tasks
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(last.pop(), Some(38));
        assert!(failed.join().is_err());
        let mut after = bg.run(|| 7);
        while !after.is_finished() {
            std::thread::yield_now();
        }
        assert_eq!(after.join().unwrap(), 7);
        assert_eq!(*log.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }
}
