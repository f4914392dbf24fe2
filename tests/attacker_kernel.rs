//! A kernel process taken over, for tests: what a guest gains when it exploits the guest
//! kernel (seccomp userspace makes that easier: upstream calls it insecure, because a guest
//! process can write the kernel's memory). Booted by sekexe as the kernel, under the very
//! confinement the real kernel gets, it tries what such a guest would try on the host, and
//! prints one line per attempt on its console (the kernel log, which `--debug` shows):
//! `ATTACK <name>: blocked (<errno>)` or `ATTACK <name>: SUCCEEDED`.
//!
//! sekexe gives the kernel no environment, so the test copies this binary and writes its
//! orders next to it, in `<binary>.attack`, as `KEY=VALUE` lines: `real` (the kernel whose
//! `--showconfig`, `--version` and `--help` it answers with, so sekexe configures the run as
//! for that kernel), `file` (an existing host file to write), `dir` (a host folder to create
//! a file in), `socket` (a listening unix stream socket), `dgram` (a bound unix datagram
//! socket), `seqpacket` (a listening unix seqpacket socket), `tty` (a host terminal), `pid`
//! (a host process to signal and trace).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;

fn report(name: &str, rc: i64) {
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        println!("ATTACK {name}: blocked ({e})");
    } else {
        println!("ATTACK {name}: SUCCEEDED");
    }
}

fn unix_address(path: &str) -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(path.as_bytes()) {
        *d = *s as libc::c_char;
    }
    addr
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;

/// Sends a datagram from `fd` to the socket at `path`; -1 when `fd` is.
///
/// # Safety
/// `fd` is -1 or a socket this process owns.
unsafe fn send_to(fd: libc::c_int, path: &str) -> i64 {
    if fd < 0 {
        return -1;
    }
    let addr = unix_address(path);
    libc::sendto(
        fd,
        b"owned".as_ptr().cast(),
        5,
        0,
        (&addr as *const libc::sockaddr_un).cast(),
        ADDR_LEN,
    ) as i64
}

fn orders() -> std::collections::HashMap<String, String> {
    let exe = std::env::current_exe().expect("/proc/self/exe");
    let path = format!("{}.attack", exe.display());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let orders = orders();
    let env = |key: &str| orders[key].clone();
    if args
        .iter()
        .any(|a| a == "--showconfig" || a == "--version" || a == "--help")
    {
        let err = Command::new(env("real")).args(&args).exec();
        panic!("exec the real kernel: {err}");
    }
    let file = CString::new(env("file")).unwrap();
    let new_file = CString::new(format!("{}/planted", env("dir"))).unwrap();
    let socket_path = env("socket");
    let seqpacket_path = env("seqpacket");
    let dgram_path = env("dgram");
    let tty = CString::new(env("tty")).unwrap();
    let pid: libc::pid_t = env("pid").parse().unwrap();

    // SAFETY: (every block below) plain system calls with integer arguments or pointers to
    // live, NUL-terminated or correctly sized local buffers; fds leak until exit, on purpose.
    unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
        report("write an existing host file", fd as i64);
        if fd >= 0 {
            libc::write(fd, b"owned\n".as_ptr().cast(), 6);
        }
        let fd = libc::open(
            new_file.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o644,
        );
        report("create a host file", fd as i64);
        report(
            "chmod a host file",
            libc::chmod(file.as_ptr(), 0o777) as i64,
        );
        let fd = libc::open(file.as_ptr(), libc::O_RDONLY);
        report("fchmod a host file", libc::fchmod(fd, 0o500) as i64);
        report(
            "open the TUN device",
            libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR) as i64,
        );

        for (name, family, kind) in [
            (
                "open an inet stream socket",
                libc::AF_INET,
                libc::SOCK_STREAM,
            ),
            (
                "open an inet datagram socket",
                libc::AF_INET,
                libc::SOCK_DGRAM,
            ),
            ("open an inet6 socket", libc::AF_INET6, libc::SOCK_DGRAM),
            ("open a packet socket", libc::AF_PACKET, libc::SOCK_RAW),
            ("open a netlink socket", libc::AF_NETLINK, libc::SOCK_RAW),
        ] {
            report(name, libc::socket(family, kind, 0) as i64);
        }

        for (name, kind, path) in [
            (
                "connect to a host unix socket",
                libc::SOCK_STREAM,
                &socket_path,
            ),
            (
                "connect to a host seqpacket socket",
                libc::SOCK_SEQPACKET,
                &seqpacket_path,
            ),
        ] {
            let fd = libc::socket(libc::AF_UNIX, kind, 0);
            let connected = if fd < 0 {
                -1
            } else {
                let addr = unix_address(path);
                libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), ADDR_LEN)
            };
            report(name, connected as i64);
        }
        report(
            "send a datagram to a host socket",
            send_to(
                libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0),
                &dgram_path,
            ),
        );
        // Unix sockets make a SOCK_RAW pair a datagram one.
        for (name, kind) in [
            (
                "send a datagram from a pair to a host socket",
                libc::SOCK_DGRAM,
            ),
            (
                "send a datagram from a raw pair to a host socket",
                libc::SOCK_RAW,
            ),
        ] {
            let mut pair = [-1; 2];
            libc::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr());
            report(name, send_to(pair[0], &dgram_path));
        }
        report(
            "read a host terminal",
            libc::open(tty.as_ptr(), libc::O_RDONLY | libc::O_NOCTTY) as i64,
        );
        let fd = libc::open(tty.as_ptr(), libc::O_WRONLY | libc::O_NOCTTY);
        report("write to a host terminal", fd as i64);
        if fd >= 0 {
            libc::write(fd, b"owned\n".as_ptr().cast(), 6);
        }
        report(
            "open a new host terminal",
            libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY) as i64,
        );
        report(
            "read the TUN device",
            libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDONLY) as i64,
        );

        report(
            "signal a host process",
            libc::kill(pid, libc::SIGTERM) as i64,
        );
        let one = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        report(
            "limit a host process's CPU time",
            libc::syscall(
                libc::SYS_prlimit64,
                pid,
                libc::RLIMIT_CPU,
                &one,
                std::ptr::null_mut::<libc::rlimit>(),
            ),
        );
        report(
            "renice a host process",
            libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, 19) as i64,
        );
        report(
            "read the user's keyring",
            libc::syscall(libc::SYS_keyctl, 0, -4, 0), // KEYCTL_GET_KEYRING_ID, @u
        );
        let mut info: libc::shmid_ds = std::mem::zeroed();
        report(
            "list host shared memory",
            libc::shmctl(0, 3 /* IPC_INFO */, &mut info) as i64,
        );
        report(
            "ptrace a host process",
            libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0),
        );
    }
    println!("ATTACK done");
    std::process::exit(0);
}
