//! Where intake's threads run: the runtime thread and SQLite's connection threads share one
//! CPU; the blocking threads (the parser) and the checkpointer's connection use the others.
//!
//! Every sqlx statement on SQLite is a hand-off from the runtime thread to the connection's
//! own thread and back. When the two sit on different CPUs, each hand-off wakes a sleeping CPU
//! (an inter-processor interrupt; on a virtual machine an exit to the host): a 5,000-message
//! text-only run on the 2-core VM took 2.9 s, and 1.4 s with the two on one CPU
//! (BENCHMARKS.md). They never need two CPUs at once: one waits while the other works. The
//! parser does, so it goes elsewhere.
//!
//! Only the daemon on SQLite does this, and only within the CPUs it was given (systemd's
//! `CPUAffinity=`, `taskset`); with one CPU there is nothing to arrange. A thread inherits its
//! creator's CPUs, which is how the arrangement reaches threads intake does not create itself:
//! sqlx's connection threads are started from the runtime thread, and the checkpointer's from
//! a blocking thread.

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::sync::OnceLock;

    /// The CPUs the blocking threads go to, once the runtime thread has claimed its own.
    static OTHERS: OnceLock<libc::cpu_set_t> = OnceLock::new();

    /// A libc call's result: 0 is success, anything else leaves the reason in errno.
    fn checked(code: libc::c_int) -> io::Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn allowed() -> io::Result<libc::cpu_set_t> {
        // SAFETY: `cpu_set_t` is a plain bit set, valid zeroed.
        let mut set: libc::cpu_set_t = unsafe { zeroed() };
        // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into `set`; 0 names
        // the calling thread.
        checked(unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) })?;
        Ok(set)
    }

    fn restrict(set: &libc::cpu_set_t) -> io::Result<()> {
        // SAFETY: `set` is a valid bit set of the size given; 0 names the calling thread.
        checked(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) })
    }

    fn cpus(set: &libc::cpu_set_t) -> Vec<usize> {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE, inside the set.
            .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, set) })
            .collect()
    }

    /// The CPUs the calling thread may run on.
    #[cfg(test)]
    pub fn current() -> Vec<usize> {
        cpus(&allowed().expect("sched_getaffinity"))
    }

    pub fn share_with_sqlite() -> io::Result<Option<usize>> {
        let allowed = allowed()?;
        let choices = cpus(&allowed);
        if choices.len() < 2 {
            return Ok(None);
        }
        // The CPU the thread is on now: several instances on one machine spread out.
        // SAFETY: sched_getcpu takes nothing and returns a CPU number or -1.
        let now = unsafe { libc::sched_getcpu() };
        let cpu = usize::try_from(now)
            .ok()
            .filter(|cpu| choices.contains(cpu))
            .unwrap_or(choices[0]);
        // SAFETY: plain bit sets, valid zeroed; `cpu` is below CPU_SETSIZE.
        let (one, others) = unsafe {
            let mut one: libc::cpu_set_t = zeroed();
            libc::CPU_SET(cpu, &mut one);
            let mut others = allowed;
            libc::CPU_CLR(cpu, &mut others);
            (one, others)
        };
        restrict(&one)?;
        // Set once per process; a second call keeps the first arrangement's other CPUs.
        let _ = OTHERS.set(others);
        Ok(Some(cpu))
    }

    pub fn on_blocking_thread_start() {
        if let Some(others) = OTHERS.get() {
            // Failing leaves the thread beside the runtime: slower, not wrong.
            let _ = restrict(others);
        }
    }
}

#[cfg(target_os = "linux")]
use linux as imp;

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn share_with_sqlite() -> std::io::Result<Option<usize>> {
        Ok(None)
    }
    pub fn on_blocking_thread_start() {}
}

/// Pins the calling thread (the runtime's) to the CPU it is on, so that the SQLite connection
/// threads it starts from now on share that CPU, and sends blocking threads started afterwards
/// to the other CPUs. The CPU chosen, or `None` when there is one CPU to run on (or not Linux);
/// an error when the system refuses (a sandbox denying `sched_setaffinity`), and then nothing
/// has changed.
pub fn share_with_sqlite() -> std::io::Result<Option<usize>> {
    imp::share_with_sqlite()
}

/// For `tokio::runtime::Builder::on_thread_start`: a blocking thread started after
/// [`share_with_sqlite`] runs on the other CPUs.
pub fn on_blocking_thread_start() {
    imp::on_blocking_thread_start()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::linux::current;
    use super::*;

    #[test]
    fn the_runtime_and_what_it_starts_share_a_cpu_and_blocking_threads_take_the_rest() {
        // On a thread of its own: the arrangement pins the thread that makes it.
        std::thread::spawn(|| {
            let given = current();
            let Some(cpu) = share_with_sqlite().expect("placement") else {
                assert!(given.len() < 2, "{given:?} is more than one CPU");
                return;
            };
            assert!(given.contains(&cpu));
            assert_eq!(current(), vec![cpu]);
            // A thread started here (as sqlx starts a connection's) inherits the one CPU.
            let inherited = std::thread::spawn(current).join().expect("thread");
            assert_eq!(inherited, vec![cpu]);
            // A blocking thread of a runtime built with the hook gets all the others.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .on_thread_start(on_blocking_thread_start)
                .build()
                .expect("runtime");
            let blocking = runtime
                .block_on(async { tokio::task::spawn_blocking(current).await })
                .expect("blocking thread");
            let others: Vec<usize> = given.into_iter().filter(|other| *other != cpu).collect();
            assert_eq!(blocking, others);
            assert!(!blocking.contains(&cpu));
        })
        .join()
        .expect("the test thread");
    }
}
