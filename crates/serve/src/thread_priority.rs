//! The engine thread's claim on the CPU.
//!
//! A step ends when the engine thread wakes at its deadline; on a machine whose cores are busy
//! with HTTP workers, load clients or other programs, an ordinary thread waits in the run queue
//! for milliseconds before it runs, and every such wait is a late step. A real-time thread
//! (`SCHED_FIFO`) preempts ordinary ones as soon as its timer fires. It sleeps between deadlines
//! and works about a millisecond per step at thousands of running requests, so it takes only a
//! small share of a core, and Linux caps real-time threads at 95 % of each second anyway.

use std::fmt;

/// What the engine thread asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum PriorityRequest {
    /// Real time if the OS allows it (root or `CAP_SYS_NICE`), else the highest nice level
    /// allowed, else ordinary.
    #[default]
    Auto,
    /// An ordinary thread.
    Normal,
}

/// What the engine thread got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriorityGranted {
    /// `SCHED_FIFO` at this priority (1–99).
    Realtime(i32),
    /// An ordinary thread at this nice level (below 0: ahead of other threads).
    Nice(i32),
    /// An ordinary thread; the reason the others were not had (empty if none was asked for).
    Normal(String),
}

impl fmt::Display for PriorityGranted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriorityGranted::Realtime(p) => write!(f, "real-time (SCHED_FIFO {p})"),
            PriorityGranted::Nice(n) => write!(f, "nice {n}"),
            PriorityGranted::Normal(why) if why.is_empty() => write!(f, "ordinary"),
            PriorityGranted::Normal(why) => write!(f, "ordinary ({why})"),
        }
    }
}

/// `SCHED_FIFO` priority asked for: low among real-time priorities, so that kernel threads
/// that run at real-time priority (interrupt threads at 50) still come first.
const FIFO_PRIORITY: i32 = 10;
/// Nice level asked for when real time is refused.
const NICE_LEVEL: i32 = -10;

/// Raises the calling thread as `req` asks. Never fails: what was had is returned.
pub fn raise_current_thread(req: PriorityRequest) -> PriorityGranted {
    match req {
        PriorityRequest::Normal => PriorityGranted::Normal(String::new()),
        PriorityRequest::Auto => raise_auto(),
    }
}

#[cfg(target_os = "linux")]
fn raise_auto() -> PriorityGranted {
    // SAFETY: sched_setscheduler and setpriority with pid/who 0 and a valid, initialised
    // sched_param act on the calling thread only and read nothing else.
    let param = libc::sched_param {
        sched_priority: FIFO_PRIORITY,
    };
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        return PriorityGranted::Realtime(FIFO_PRIORITY);
    }
    let rt_err = std::io::Error::last_os_error();
    // On Linux, the nice level of PRIO_PROCESS with who = 0 is the calling thread's.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE_LEVEL) } == 0 {
        return PriorityGranted::Nice(NICE_LEVEL);
    }
    PriorityGranted::Normal(format!("real time and nice {NICE_LEVEL} refused: {rt_err}"))
}

#[cfg(not(target_os = "linux"))]
fn raise_auto() -> PriorityGranted {
    PriorityGranted::Normal("thread priorities are only raised on Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_asks_for_nothing() {
        assert_eq!(
            raise_current_thread(PriorityRequest::Normal),
            PriorityGranted::Normal(String::new())
        );
    }

    #[test]
    fn auto_reports_what_the_thread_has() {
        let got = std::thread::spawn(|| {
            let got = raise_current_thread(PriorityRequest::Auto);
            #[cfg(target_os = "linux")]
            {
                // SAFETY: reads the calling thread's policy / nice level.
                let policy = unsafe { libc::sched_getscheduler(0) };
                match &got {
                    PriorityGranted::Realtime(_) => assert_eq!(policy, libc::SCHED_FIFO),
                    PriorityGranted::Nice(n) => {
                        assert_eq!(policy, libc::SCHED_OTHER);
                        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, *n);
                    }
                    PriorityGranted::Normal(why) => {
                        assert_eq!(policy, libc::SCHED_OTHER);
                        assert!(!why.is_empty());
                    }
                }
            }
            got
        })
        .join()
        .unwrap();
        assert!(!got.to_string().is_empty());
    }
}
