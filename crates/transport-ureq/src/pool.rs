//! A small pool of threads for token requests and store operations: at most `max` at once,
//! started on demand, stopped with the client. Requests never run on a caller's thread.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Pool {
    state: Mutex<State>,
    ready: Condvar,
    max: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    stopped: bool,
}

impl Pool {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            max: max.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `job` on a pool thread, starting one if all are busy and there are fewer than
    /// `max`. A job submitted after [`stop`](Self::stop) is dropped unrun (its own drop guard
    /// reports it).
    pub(crate) fn submit(self: &Arc<Self>, job: Job) {
        let mut state = self.lock();
        if state.stopped {
            drop(state);
            drop(job);
            return;
        }
        state.jobs.push_back(job);
        if state.idle > 0 {
            drop(state);
            self.ready.notify_one();
            return;
        }
        if state.threads < self.max {
            state.threads += 1;
            drop(state);
            let pool = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("token-requests".into())
                .spawn(move || pool.run());
            if spawned.is_err() {
                // No thread: run what is queued here rather than leave it waiting.
                let mut state = self.lock();
                state.threads -= 1;
                let jobs: Vec<Job> = state.jobs.drain(..).collect();
                drop(state);
                for job in jobs {
                    job();
                }
            }
        }
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                drop(state);
                // A panicking job reports itself (its drop guard); the thread lives on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                state = self.lock();
                continue;
            }
            if state.stopped {
                state.threads -= 1;
                return;
            }
            state.idle += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle -= 1;
        }
    }

    /// Stops the pool: queued jobs are dropped unrun (reporting themselves), threads exit once
    /// their current job is done.
    pub(crate) fn stop(&self) {
        let jobs: Vec<Job> = {
            let mut state = self.lock();
            state.stopped = true;
            state.jobs.drain(..).collect()
        };
        self.ready.notify_all();
        drop(jobs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_up_to_max_jobs_at_once_and_survives_a_panic() {
        let pool = Arc::new(Pool::new(4));
        let barrier = Arc::new(Barrier::new(5));
        let done = Arc::new(AtomicUsize::new(0));
        pool.submit(Box::new(|| panic!("a job panics")));
        for _ in 0..4 {
            let (barrier, done) = (Arc::clone(&barrier), Arc::clone(&done));
            pool.submit(Box::new(move || {
                // All four run at once, or this never returns.
                barrier.wait();
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        barrier.wait();
        let (tx, rx) = std::sync::mpsc::channel();
        pool.submit(Box::new(move || tx.send(()).unwrap()));
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the pool still runs jobs");
        assert!(pool.lock().threads <= 4);
        pool.stop();
    }

    #[test]
    fn a_stopped_pool_drops_jobs_unrun() {
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let pool = Arc::new(Pool::new(1));
        pool.stop();
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = Flag(Arc::clone(&dropped));
        let ran = Arc::new(AtomicUsize::new(0));
        let ran2 = Arc::clone(&ran);
        pool.submit(Box::new(move || {
            let _flag = flag;
            ran2.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
