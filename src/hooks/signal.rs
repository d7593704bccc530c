//! `reload_signal`: the pidfile read on every delivery (off the runtime
//! thread, bounded, never through a symlink at its own path), the process
//! held by a pidfd across the owner check, and the signal sent through it.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::HookError;
use crate::config::ReloadSignal;
use crate::readfile::{self, Links};

/// A pidfile larger than this is refused.
pub const PIDFILE_LIMIT: u64 = 64;

/// Sends the configured signal to the process named by the pidfile, which is
/// read now, not cached. Blocking (reads files): call it off the runtime
/// thread, as [`super::run_action`] does.
pub fn send_signal(r: &ReloadSignal) -> Result<(), HookError> {
    use std::os::unix::fs::MetadataExt;
    let fail = |reason: String| HookError::Signal {
        signal: r.signal.as_str().to_string(),
        pidfile: r.pidfile.clone(),
        reason,
    };
    // Owner and content from one open file: no race with a replacement. A
    // symlink at the path is refused: its target's owner would pass the
    // owner rule for whoever planted the link.
    let (bytes, meta) = readfile::read_regular_with_meta(&r.pidfile, PIDFILE_LIMIT, Links::Refuse)
        .and_then(|f| f.ok_or_else(|| std::io::Error::other("it does not exist")))
        .map_err(|e| {
            let e = if readfile::is_too_large(&e) {
                format!("it {e}")
            } else {
                e.to_string()
            };
            fail(format!("cannot read the pidfile: {e}"))
        })?;
    let owner = meta.uid();
    let text = String::from_utf8_lossy(&bytes);
    let pid = parse_pid(&text).map_err(fail)?;
    // Hold the process first: while a pidfd is held, its PID cannot pass to
    // another process unnoticed between the owner check and the signal.
    let target = Target::open(pid).map_err(|e| fail(process_error(pid, e)))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    let process_uid = match status {
        Ok(s) => real_uid(&s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(format!("process {pid} is not running")));
        }
        Err(e) => return Err(fail(format!("process {pid}: cannot read its owner: {e}"))),
    };
    let process_uid =
        process_uid.ok_or_else(|| fail(format!("process {pid}: cannot read its owner")))?;
    check_target(pid, owner, process_uid, r.any_owner).map_err(fail)?;
    // Still the process whose owner was read? (An exited one, zombie or
    // not, may have left its PID to another.)
    if target.exited().map_err(|e| fail(process_error(pid, e)))? {
        return Err(fail(format!("process {pid} is not running")));
    }
    target
        .signal(r.signal)
        .map_err(|e| fail(process_error(pid, e)))
}

/// A system call's failure on process `pid`, in words.
fn process_error(pid: i32, e: std::io::Error) -> String {
    if e.raw_os_error() == Some(nix::libc::ESRCH) {
        format!("process {pid} is not running")
    } else {
        format!("process {pid}: {e}")
    }
}

/// A process to signal: held by a pidfd (Linux 5.3 and later), or by its
/// bare PID where the kernel (or a seccomp filter) offers no pidfd.
enum Target {
    Fd(std::os::fd::OwnedFd),
    Pid(i32),
}

impl Target {
    fn open(pid: i32) -> std::io::Result<Target> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a PID and flags and returns a new
        // descriptor or -1; no memory is passed.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor; nothing else owns it.
            return Ok(Target::Fd(unsafe {
                std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd)
            }));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // No pidfd here (old kernel; EPERM from a seccomp filter that
            // does not know the call): a bare PID, as before pidfds.
            Some(nix::libc::ENOSYS) | Some(nix::libc::EPERM) => {
                tracing::debug!(pid, "no pidfd ({e}); signalling by PID");
                Ok(Target::Pid(pid))
            }
            _ => Err(e),
        }
    }

    /// Whether the process has exited (a pidfd polls readable then).
    /// Unknown with a bare PID: `false`.
    fn exited(&self) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Target::Fd(fd) = self else {
            return Ok(false);
        };
        let mut p = nix::libc::pollfd {
            fd: fd.as_raw_fd(),
            events: nix::libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout.
        let n = unsafe { nix::libc::poll(&mut p, 1, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n > 0 && p.revents & nix::libc::POLLIN != 0)
    }

    fn signal(&self, signal: Signal) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        match self {
            Target::Fd(fd) => {
                // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
                let r = unsafe {
                    nix::libc::syscall(
                        nix::libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as nix::libc::c_int,
                        std::ptr::null::<nix::libc::siginfo_t>(),
                        0,
                    )
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
            Target::Pid(pid) => {
                nix::sys::signal::kill(Pid::from_raw(*pid), signal).map_err(std::io::Error::from)
            }
        }
    }
}

/// The PID a pidfile's text names. Pure.
fn parse_pid(text: &str) -> Result<i32, String> {
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{:?} is not a process ID", text.trim()))
}

/// The real user ID in the text of `/proc/PID/status`. Pure.
pub(super) fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// Whether the signal may go to `pid`, run by `process_uid`, named by a
/// pidfile owned by `pidfile_uid`: never to PID 1 or less (init, or a group),
/// and only to a process of the pidfile's owner unless `any_owner`. Pure.
pub fn check_target(
    pid: i32,
    pidfile_uid: u32,
    process_uid: u32,
    any_owner: bool,
) -> Result<(), String> {
    if pid <= 1 {
        return Err(format!(
            "refusing to signal PID {pid}: it is not the process of an application"
        ));
    }
    if process_uid != pidfile_uid && !any_owner {
        return Err(format!(
            "refusing to signal process {pid}: it runs as uid {process_uid}, but the pidfile is owned by uid {pidfile_uid} \
             (set reload_signal_any_owner = true to allow this)"
        ));
    }
    Ok(())
}
