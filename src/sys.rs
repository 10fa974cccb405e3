//! The only module with `unsafe`: thin wrappers over libc calls std does not offer.
#![allow(unsafe_code)]

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read just above; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // rlim_t is u32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(lim.rlim_cur))
}

/// The current (soft) open-file limit.
pub fn nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(lim.rlim_cur))
}

/// Fills `buf` from the kernel's random source (for `hookcast token new`).
pub fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// Resident set size of this process in kB, from /proc (for the status API).
pub fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Sends `signal` to every process in group `pgid` (a deploy's whole tree, grandchildren too).
/// A group that is already gone is not an error.
pub fn kill_group(pgid: u32, signal: i32) -> std::io::Result<()> {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    if pgid <= 1 {
        // Never signal group 0 (our own) or 1: a bug here must not take the machine down.
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    if unsafe { libc::killpg(pgid, signal) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

/// Whether any process is left in group `pgid`.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else { return false };
    // SAFETY: signal 0 only checks for existence; plain integers, no memory.
    pgid > 1 && unsafe { libc::killpg(pgid, 0) } == 0
}

/// `CLOCK_MONOTONIC` in microseconds: the clock systemd wants in `MONOTONIC_USEC=` next to
/// `RELOADING=1` (std's `Instant` reads the same clock but will not say its value).
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; CLOCK_MONOTONIC
    // always exists on Linux, so the call cannot fail (and `ts` stays zero if it did).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000).saturating_add(ts.tv_nsec as u64 / 1_000)
}

/// Takes ownership of a file descriptor the service manager passed at exec (`LISTEN_FDS`,
/// numbered from 3) and marks it close-on-exec, so deploy commands do not inherit our listener.
/// Only `notify::listen_fds` calls this, once per passed descriptor, after removing
/// `LISTEN_FDS` from the environment, so no second owner can come from there.
pub(crate) fn adopt_passed_fd(fd: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 3 {
        // 0, 1 and 2 are stdio, which std owns; sd_listen_fds(3) starts at 3.
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: F_GETFD and F_SETFD take and return plain integers and touch no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        // EBADF: the manager said there would be a descriptor here and there is none.
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above, plain integers.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (F_GETFD succeeded) and was inherited from the service manager, not
    // opened by anything in this process: the caller adopts only descriptors in the range
    // LISTEN_FDS announced for our pid, before opening any file of its own, and has removed
    // LISTEN_FDS from the environment, so this is the only OwnedFd for it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether `fd` is a stream socket in the listening state (`SO_TYPE`, `SO_ACCEPTCONN`).
pub fn is_listening_stream(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let get = |opt: libc::c_int| -> Option<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid and writable for the call, and `len` holds `v`'s size,
        // so getsockopt writes at most that many bytes into `v`.
        let r = unsafe {
            libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len)
        };
        (r == 0).then_some(v)
    };
    get(libc::SO_TYPE) == Some(libc::SOCK_STREAM) && get(libc::SO_ACCEPTCONN) == Some(1)
}

/// Takes an exclusive `flock` on `file` without waiting: `Ok(false)` when another open file
/// description holds it. (`File::try_lock` is newer than this crate's MSRV.)
pub fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor number, which `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// This machine's host name (`gethostname(2)`), if it is UTF-8; the default name of a cluster node.
pub fn hostname() -> Option<String> {
    // Linux's HOST_NAME_MAX is 64; a larger buffer always has room for the terminating NUL.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the duration of the call.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return None;
    }
    // A name cut at the buffer's end may lack its NUL: take none rather than a truncated one.
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok()
}

/// What the daemon asks `listen(2)` for: the kernel silently caps it at `net.core.somaxconn`
/// (4096 by default since Linux 5.4), so this means "as many as the system allows". std and mio
/// ask for 128, which a reconnect storm (every subscriber of a restarted daemon coming back
/// within a second) overflows while the loop is busy: the kernel then drops SYNs, and those
/// clients wait for a retransmission 1 s, 3 s, 7 s later.
pub const LISTEN_BACKLOG: libc::c_int = 65535;

/// A listening TCP socket on `addr` with [`LISTEN_BACKLOG`] and `SO_REUSEADDR` (a restarted
/// daemon binds at once, whatever its predecessor's connections left in TIME_WAIT), and with
/// `reuse_port` also `SO_REUSEPORT`: several processes bind the same port and the kernel spreads
/// new connections over them (hookcast nodes of one cluster on one box, one per core).
/// Non-blocking and close-on-exec, like std's.
pub fn tcp_listener(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket takes no pointers; a valid descriptor it returns is owned below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns; OwnedFd closes it on every path.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let opts: &[libc::c_int] =
        if reuse_port { &[libc::SO_REUSEADDR, libc::SO_REUSEPORT] } else { &[libc::SO_REUSEADDR] };
    for &opt in opts {
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `one` lives across the call and `len` is its size; setsockopt only reads it.
        if unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&one as *const libc::c_int).cast(), len) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY (both arms): the sockaddr is a fully initialised local of the length passed, and
    // bind only reads it.
    let r = match addr {
        std::net::SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len) }
        }
        std::net::SocketAddr::V6(a) => {
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in6).cast(), len) }
        }
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: listen takes no pointers.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(owned))
}

/// A non-blocking, close-on-exec inotify instance (for the `tail` sources).
pub fn inotify_init() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain flags in, a new descriptor (or -1) out.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by inotify_init1 and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Watches `path` on inotify instance `fd` for `mask`; returns the watch descriptor.
pub fn inotify_add_watch(fd: std::os::fd::BorrowedFd<'_>, path: &std::path::Path, mask: u32) -> std::io::Result<i32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call; the fd is borrowed, so open.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    if wd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(wd)
}

/// Removes watch `wd` from inotify instance `fd` (a watch already gone is not an error).
pub fn inotify_rm_watch(fd: std::os::fd::BorrowedFd<'_>, wd: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain integers; the fd is borrowed, so open.
    let _ = unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
}
