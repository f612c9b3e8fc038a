//! The threads Argon2 runs on (issue 17, item 3): as many as the hashing permits, each under
//! Linux's `SCHED_IDLE` policy. A password storm then takes the CPU the light flows leave, not
//! the other way round: a TOTP step, a device sign-in or a refresh that wakes preempts a hash at
//! once, and the hashes wait. With the core otherwise idle a hash runs as fast as before; on a
//! core saturated by other requests, password checks (and PIN checks) slow down first.
//!
//! The idle policy ranks threads within the process only. The kernel's block-layer worker that
//! finishes each fsync is outside it and waits for the scheduler's tick while a hash runs, so
//! on SQLite a busy hashing thread slows every commit (docs/benchmarks.md, "What slows the
//! commits beside a storm"). So after each hash, while writes wait for SQLite's writer, a
//! hashing thread pauses — for at most as long as that hash took — and the commits in that gap
//! are flushed at once.

use latchkey_core::factors::password::Runner;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// The longest pause after one hash, and the step it is waited in.
const MAX_PAUSE: Duration = Duration::from_millis(50);
const PAUSE_STEP: Duration = Duration::from_micros(500);

/// Start `threads` low-priority hashing threads and return the runner that feeds them. With
/// `writes_waiting` (SQLite's writer queue), each pauses after a hash while writes wait.
pub fn low_priority_runner(threads: usize, writes_waiting: Option<Arc<AtomicUsize>>) -> std::io::Result<Runner> {
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..threads.max(1) {
        let (rx, writes_waiting) = (rx.clone(), writes_waiting.clone());
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
                let started = Instant::now();
                // A job that panics drops its reply (the caller gets an error); the thread lives on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                if let Some(waiting) = &writes_waiting {
                    pause_for_writes(waiting, started.elapsed(), std::thread::sleep);
                }
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

/// Sleep in `PAUSE_STEP`s while `waiting` counts writes, for at most `took` (the hash just
/// run) and `MAX_PAUSE`: hashes keep at least half of a thread's time however busy the writer
/// is. Returns how many steps were slept.
fn pause_for_writes(waiting: &AtomicUsize, took: Duration, mut sleep: impl FnMut(Duration)) -> u32 {
    let steps = (took.min(MAX_PAUSE).as_micros() / PAUSE_STEP.as_micros()) as u32;
    let mut slept = 0;
    while slept < steps && waiting.load(Ordering::Relaxed) > 0 {
        sleep(PAUSE_STEP);
        slept += 1;
    }
    slept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashing_thread_pauses_while_writes_wait_and_no_longer_than_its_hash() {
        let waiting = AtomicUsize::new(0);
        // No write waiting: no pause.
        assert_eq!(pause_for_writes(&waiting, Duration::from_millis(20), |_| panic!("slept")), 0);
        // Writes waiting throughout: as long as the hash took, in steps.
        waiting.store(3, Ordering::Relaxed);
        assert_eq!(pause_for_writes(&waiting, Duration::from_millis(20), |d| assert_eq!(d, PAUSE_STEP)), 40);
        // A very long hash: at most MAX_PAUSE.
        assert_eq!(pause_for_writes(&waiting, Duration::from_secs(2), |_| {}), 100);
        // The writes are answered after the third step: the pause ends there.
        let mut steps = 0;
        let slept = pause_for_writes(&waiting, Duration::from_millis(20), |_| {
            steps += 1;
            if steps == 3 {
                waiting.store(0, Ordering::Relaxed);
            }
        });
        assert_eq!(slept, 3);
    }

    #[test]
    fn jobs_run_on_hashing_threads_under_the_idle_policy() {
        let run = low_priority_runner(2, None).unwrap();
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
        let run = low_priority_runner(1, Some(Arc::new(AtomicUsize::new(1)))).unwrap();
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
