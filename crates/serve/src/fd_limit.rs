//! The open-file limit: every connection holds a file descriptor, and the common soft limit of
//! 1,024 is reached by about a thousand idle clients. The server raises the soft limit to the
//! hard one at start, where the system allows.

/// The soft limit before and after [`raise_to_hard`], and the hard limit (`None`: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    pub before: Option<u64>,
    pub after: Option<u64>,
    pub hard: Option<u64>,
}

fn from_rlim(v: libc::rlim_t) -> Option<u64> {
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    (v != libc::RLIM_INFINITY).then_some(v as u64)
}

/// Raises `RLIMIT_NOFILE`'s soft limit to its hard limit (`after` is unchanged when that is
/// refused).
pub fn raise_to_hard() -> std::io::Result<NofileLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = from_rlim(lim.rlim_cur);
    let hard = from_rlim(lim.rlim_max);
    if lim.rlim_cur == lim.rlim_max {
        return Ok(NofileLimit {
            before,
            after: before,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(NofileLimit {
        before,
        after: hard,
        hard,
    })
}

/// Descriptors kept free of connections for everything else (the listener, tokenizer files,
/// stdio, the runtime's own).
pub const RESERVED_FDS: u64 = 64;

/// The default connection limit for an open-file limit: all descriptors but
/// [`RESERVED_FDS`], and no more than `cap`.
pub fn connections_for(nofile: Option<u64>, cap: usize) -> usize {
    match nofile {
        None => cap,
        Some(n) => (n.saturating_sub(RESERVED_FDS) as usize).clamp(1, cap),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_keeps_the_soft_limit_at_most_the_hard_one() {
        let l = raise_to_hard().unwrap();
        assert!(l.after >= l.before || l.after.is_none());
        if let (Some(a), Some(h)) = (l.after, l.hard) {
            assert!(a <= h);
        }
    }

    #[test]
    fn connection_limit_leaves_descriptors_free() {
        assert_eq!(connections_for(Some(1024), 65536), 960);
        assert_eq!(connections_for(Some(1 << 20), 65536), 65536);
        assert_eq!(connections_for(None, 65536), 65536);
        assert_eq!(connections_for(Some(10), 65536), 1);
    }
}
