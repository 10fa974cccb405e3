//! Talking to systemd: sd_notify(3) readiness messages and sd_listen_fds(3) socket activation.
//!
//! Both protocols are a few lines each, so they are written here rather than pulled in with
//! libsystemd or a crate (ntpd-rs does the same): a notification is one datagram of
//! `KEY=VALUE` lines sent to the `AF_UNIX` socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name when it starts with `@`); socket activation hands us descriptors 3, 4, … and
//! says how many in `$LISTEN_FDS`, for the process named in `$LISTEN_PID`.
//!
//! Messages we send (systemd.service(5), sd_notify(3)):
//! - `READY=1` once the listener is bound and the journal replayed, and again after a reload;
//! - `RELOADING=1` with `MONOTONIC_USEC=` (the clock systemd ≥ 253 requires for
//!   `Type=notify-reload`; older versions ignore the extra field) when SIGHUP starts a reload;
//! - `STOPPING=1` when the drain starts;
//! - `WATCHDOG=1` every [`Notifier::watchdog_interval`] (half of `WatchdogSec=`) from a loop
//!   timer, so a wedged loop gets the service restarted;
//! - `STATUS=…`, a free text line shown by `systemctl status`.
//!
//! Sending never blocks the loop: the socket is non-blocking, a full queue or a missing socket
//! drops the message, and only the first failure is logged.
//!
//! `NOTIFY_SOCKET` is deliberately left in the environment (sd_notify's `unset_environment`
//! is false here): deploy commands are spawned with an explicit environment, or one inherited
//! without it (`intake::DAEMON_ONLY_ENV`), so they never see it; removing variables while other threads may read the environment is unsound (it is
//! `unsafe` in Rust 2024); and a reload may build a new [`Notifier`] from the same variables.
//! The `LISTEN_*` variables, by contrast, are removed by [`listen_fds`], as sd_listen_fds(3)
//! recommends: the descriptors can be owned only once.

use crate::sys;
use std::cell::Cell;
use std::ffi::OsStr;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The first descriptor passed by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;
/// More passed descriptors than this is a broken environment, not a configuration.
const MAX_LISTEN_FDS: usize = 1024;

/// A handle on the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
    /// A send has failed and was logged; later failures are silent.
    warned: Cell<bool>,
}

impl Notifier {
    /// The notifier systemd asked for through `$NOTIFY_SOCKET`, or `None` when not run by a
    /// service manager (or when the variable is unusable, which is logged).
    pub fn from_env() -> Option<Notifier> {
        let target = std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = watchdog_interval_from(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        match Notifier::connect(&target, watchdog) {
            Ok(n) => Some(n),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET={target:?}: {e}; systemd will not be notified");
                None
            }
        }
    }

    /// A notifier sending to `target` (`/path` or `@abstract-name`), with the given watchdog
    /// interval.
    pub fn connect(target: &OsStr, watchdog: Option<Duration>) -> io::Result<Notifier> {
        let addr = notify_addr(target)?;
        let sock = UnixDatagram::unbound()?;
        sock.set_nonblocking(true)?;
        Ok(Notifier { sock, addr, watchdog, warned: Cell::new(false) })
    }

    /// `READY=1`: start-up (or a reload) is complete.
    pub fn ready(&self) {
        self.notify("READY=1");
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=`: a reload started; send [`Notifier::ready`] when it
    /// is over, whether or not the new configuration was taken.
    pub fn reloading(&self) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", sys::monotonic_usec()));
    }

    /// `STOPPING=1`: the drain started.
    pub fn stopping(&self) {
        self.notify("STOPPING=1");
    }

    /// `WATCHDOG=1`: the loop is alive.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }

    /// `STATUS=…`: one line for `systemctl status` (line breaks become spaces, since each line
    /// of a notification is a separate field).
    pub fn status(&self, text: &str) {
        self.notify(&format!("STATUS={}", text.replace(['\n', '\r'], " ")));
    }

    /// How often to send [`Notifier::watchdog`]: half of `WatchdogSec=` (`$WATCHDOG_USEC`),
    /// when the watchdog is on and meant for this process (`$WATCHDOG_PID` absent or ours).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (newline-separated `KEY=VALUE` fields). Never blocks; returns
    /// whether the datagram was sent. The first failure is logged, later ones are not.
    pub fn notify(&self, message: &str) -> bool {
        match self.sock.send_to_addr(message.as_bytes(), &self.addr) {
            Ok(_) => true,
            Err(e) => {
                if !self.warned.replace(true) {
                    log::warn!("sd_notify: cannot send to NOTIFY_SOCKET ({e}); further failures are not logged");
                }
                false
            }
        }
    }
}

/// The socket address named by `$NOTIFY_SOCKET`: a filesystem path, or an abstract name when it
/// starts with `@`. (`vsock:` addresses, for VMs, are not supported.)
fn notify_addr(target: &OsStr) -> io::Result<SocketAddr> {
    let bytes = target.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(target),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "neither an absolute path nor an @abstract name")),
    }
}

/// `WATCHDOG_USEC` / `WATCHDOG_PID` → ping interval: half the timeout, as sd_watchdog_enabled(3)
/// advises, when the watchdog is on and meant for `our_pid`.
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// `LISTEN_PID` / `LISTEN_FDS` → how many descriptors were passed to `our_pid`: 0 without
/// socket activation or when the variables are meant for another process (our parent's,
/// inherited), an error when they are malformed.
fn listen_count(pid: Option<&str>, fds: Option<&str>, our_pid: u32) -> Result<usize, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else { return Ok(0) };
    let pid: u32 = pid.trim().parse().map_err(|_| format!("LISTEN_PID is not a process id: {pid:?}"))?;
    if pid != our_pid {
        return Ok(0);
    }
    match fds.trim().parse::<usize>() {
        Ok(n) if n <= MAX_LISTEN_FDS => Ok(n),
        _ => Err(format!("LISTEN_FDS is not a descriptor count: {fds:?}")),
    }
}

/// The descriptors passed by socket activation (sd_listen_fds(3)), owned and close-on-exec,
/// in order; empty without socket activation. Removes `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` from the environment, so a second call returns nothing.
///
/// Call it once, early, before this process opens files or sockets of its own (in
/// `Server::bind`, before `Poll::new`), while no other thread runs.
pub fn listen_fds() -> Vec<OwnedFd> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let n = match listen_count(pid.as_deref(), fds.as_deref(), std::process::id()) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("socket activation ignored: {e}");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(n);
    for fd in (LISTEN_FDS_START..).take(n) {
        match sys::adopt_passed_fd(fd) {
            Ok(owned) => out.push(owned),
            Err(e) => log::warn!("socket activation: descriptor {fd}: {e}"),
        }
    }
    out
}

/// The listener systemd passed (the first descriptor of [`listen_fds`]) as a non-blocking std
/// listener, ready for `mio::net::TcpListener::from_std`; `None` without socket activation.
/// Further descriptors are closed with a warning. An error when the descriptor is not a
/// listening TCP socket (`ListenStream=` must be an address and port, with `Accept=no`).
pub fn listener_from_env() -> io::Result<Option<TcpListener>> {
    let mut fds = listen_fds().into_iter();
    let Some(fd) = fds.next() else { return Ok(None) };
    if fds.len() > 0 {
        log::warn!("socket activation passed {} sockets; only the first is used", fds.len() + 1);
    }
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the socket passed by systemd is {what} (hookcast.socket needs ListenStream=ADDR:PORT, Accept=no)"),
        )
    };
    if !sys::is_listening_stream(fd.as_fd()) {
        return Err(bad("not a listening stream socket"));
    }
    let listener = TcpListener::from(fd);
    // An AF_UNIX listener has no IP address: local_addr fails on it.
    listener.local_addr().map_err(|_| bad("not a TCP socket"))?;
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static N: AtomicUsize = AtomicUsize::new(0);

    /// A bound receiver on a fresh filesystem path, and that path (the directory is removed by
    /// the guard).
    struct Receiver {
        sock: UnixDatagram,
        dir: std::path::PathBuf,
        path: std::path::PathBuf,
    }

    impl Receiver {
        fn new() -> Receiver {
            let n = N.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!("hookcast-notify-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("notify.sock");
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Receiver { sock, dir, path }
        }

        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.sock.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn sends_each_message_to_a_path_socket() {
        let r = Receiver::new();
        let n = Notifier::connect(r.path.as_os_str(), None).unwrap();
        n.ready();
        assert_eq!(r.recv(), "READY=1");
        n.stopping();
        assert_eq!(r.recv(), "STOPPING=1");
        n.watchdog();
        assert_eq!(r.recv(), "WATCHDOG=1");
        n.status("2 hooks\nlistening");
        assert_eq!(r.recv(), "STATUS=2 hooks listening");
        assert!(!n.warned.get());
    }

    #[test]
    fn reloading_carries_the_monotonic_clock() {
        let r = Receiver::new();
        let n = Notifier::connect(r.path.as_os_str(), None).unwrap();
        let before = sys::monotonic_usec();
        n.reloading();
        let after = sys::monotonic_usec();
        let msg = r.recv();
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines.next().unwrap().strip_prefix("MONOTONIC_USEC=").unwrap().parse().unwrap();
        assert!(before <= usec && usec <= after, "{before} <= {usec} <= {after}");
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn abstract_socket_addresses() {
        let name = format!("hookcast-notify-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = Notifier::connect(OsStr::new(&format!("@{name}")), None).unwrap();
        n.ready();
        let mut buf = [0u8; 64];
        let got = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..got], b"READY=1");
    }

    #[test]
    fn unusable_targets_are_refused() {
        for bad in ["", "relative/path", "vsock:2:1234"] {
            assert!(Notifier::connect(OsStr::new(bad), None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn failures_never_block_or_panic_and_are_logged_once() {
        // Nobody listens at this path.
        let r = Receiver::new();
        let gone = r.dir.join("nobody.sock");
        let n = Notifier::connect(gone.as_os_str(), None).unwrap();
        assert!(!n.notify("READY=1"));
        assert!(n.warned.get());
        assert!(!n.notify("WATCHDOG=1"));

        // A receiver that never reads: its queue fills, and the sender gets WouldBlock at once
        // instead of waiting.
        let n = Notifier::connect(r.path.as_os_str(), None).unwrap();
        let t0 = std::time::Instant::now();
        let mut sent = 0;
        while n.notify("WATCHDOG=1") {
            sent += 1;
            assert!(sent < 1_000_000, "the queue never filled");
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(n.warned.get());
        assert_eq!(r.recv(), "WATCHDOG=1");
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_our_pid() {
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("30000000"), None, Some(Duration::from_secs(15))),
            (Some("30000000"), Some("42"), Some(Duration::from_secs(15))),
            (Some("30000000"), Some("43"), None),
            (Some("30000000"), Some("x"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (Some("1"), None, Some(Duration::ZERO)),
        ];
        for (usec, pid, want) in table {
            assert_eq!(watchdog_interval_from(*usec, *pid, 42), *want, "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn listen_count_follows_sd_listen_fds() {
        type Row<'a> = (Option<&'a str>, Option<&'a str>, Result<usize, ()>);
        let table: &[Row] = &[
            (None, None, Ok(0)),
            (Some("42"), None, Ok(0)),
            (None, Some("1"), Ok(0)),
            (Some("42"), Some("1"), Ok(1)),
            (Some("42"), Some("2"), Ok(2)),
            (Some("42"), Some("0"), Ok(0)),
            (Some("41"), Some("1"), Ok(0)),
            (Some("x"), Some("1"), Err(())),
            (Some("42"), Some("-1"), Err(())),
            (Some("42"), Some("100000"), Err(())),
        ];
        for (pid, fds, want) in table {
            assert_eq!(listen_count(*pid, *fds, 42).map_err(|_| ()), *want, "{pid:?} {fds:?}");
        }
    }

    #[test]
    fn passed_descriptors_are_checked() {
        assert_eq!(sys::adopt_passed_fd(1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // Far above any open-file limit: certainly not open.
        assert_eq!(sys::adopt_passed_fd(1 << 30).unwrap_err().raw_os_error(), Some(libc::EBADF));
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(sys::is_listening_stream(tcp.as_fd()));
        let conn = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
        assert!(!sys::is_listening_stream(conn.as_fd()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(!sys::is_listening_stream(udp.as_fd()));
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(!sys::is_listening_stream(file.as_fd()));
    }

    #[test]
    fn a_descriptor_handed_over_becomes_a_listener() {
        use std::os::fd::IntoRawFd;
        // Stand-in for an inherited descriptor: one whose ownership was given up.
        let raw = TcpListener::bind("127.0.0.1:0").unwrap().into_raw_fd();
        let owned = sys::adopt_passed_fd(raw).unwrap();
        let l = TcpListener::from(owned);
        let addr = l.local_addr().unwrap();
        std::net::TcpStream::connect(addr).unwrap();
        assert!(l.accept().is_ok());
    }
}
