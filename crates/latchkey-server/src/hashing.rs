//! The threads Argon2 runs on (issue 17, item 3): as many as the hashing permits, each under
//! Linux's `SCHED_IDLE` policy. A password storm then takes the CPU the light flows leave, not
//! the other way round: a TOTP step, a device sign-in or a refresh that wakes preempts a hash at
//! once, and the hashes wait. With the core otherwise idle a hash runs as fast as before; on a
//! core saturated by other requests, password checks (and PIN checks) slow down first.

use latchkey_core::factors::password::Runner;
use std::sync::{Arc, Mutex, mpsc};

type Job = Box<dyn FnOnce() + Send>;

/// Start `threads` low-priority hashing threads and return the runner that feeds them.
pub fn low_priority_runner(threads: usize) -> std::io::Result<Runner> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads.max(1) {
        let rx = rx.clone();
        std::thread::Builder::new().name(format!("latchkey-hash-{i}")).spawn(move || {
            let idle = thread_priority::ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle);
            let native = thread_priority::thread_native_id();
            if let Err(e) =
                thread_priority::set_thread_priority_and_policy(native, thread_priority::ThreadPriority::Min, idle)
            {
                tracing::warn!(error = ?e, "a hashing thread keeps the normal priority");
            }
            loop {
                // One thread waits for the next job while the others wait for the queue.
                let job = match rx.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                // A job that panics drops its reply (the caller gets an error); the thread lives on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
    }
    let tx = Mutex::new(tx);
    Ok(Arc::new(move |job: Job| {
        if let Ok(tx) = tx.lock() {
            // Only fails once every thread is gone; the dropped job's caller then gets an error.
            let _ = tx.send(job);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_hashing_threads_under_the_idle_policy() {
        let run = low_priority_runner(2).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            run(Box::new(move || {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((name, thread_priority::thread_schedule_policy()));
            }));
        }
        for _ in 0..4 {
            let (name, policy) = rx.recv().unwrap();
            assert!(name.unwrap().starts_with("latchkey-hash-"));
            let idle = thread_priority::ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle);
            assert_eq!(policy.unwrap(), idle);
        }
        // A job that panics leaves its thread serving: one thread, so a dead one would never answer.
        let run = low_priority_runner(1).unwrap();
        run(Box::new(|| panic!("a bug in a job")));
        let (tx2, rx2) = mpsc::channel();
        for _ in 0..4 {
            let tx2 = tx2.clone();
            run(Box::new(move || {
                let _ = tx2.send(());
            }));
        }
        for _ in 0..4 {
            rx2.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        }
    }
}
