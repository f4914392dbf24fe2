//! Names both sides agree on: kernel parameters, exchange-folder files, guest paths, devices.

/// The kernel parameter that tells guest-init where the run's exchange folder is on the host.
/// It has no dot, so the kernel hands it to PID 1 as an environment variable.
pub const EXCHANGE_PARAM: &str = "sekexe_run";

/// Present (`=1`) on the kernel command line with `--debug-shell`: guest-init opens a shell
/// when a step or the command fails. On the command line, not in the request, so that steps
/// taken before the request is read are covered too.
pub const DEBUG_SHELL_PARAM: &str = "sekexe_debug_shell";

/// In the exchange folder: the run request, written by the launcher before boot.
pub const REQUEST_FILE: &str = "request";

/// Where guest-init mounts the exchange folder inside the guest, read-only: only the launcher
/// writes there (the request and bulk stdin), and the host enforces that on the kernel
/// process. The guest's answer, the status record, travels on the channel.
pub const GUEST_EXCHANGE_DIR: &str = "/run/sekexe";

/// Folders the guest covers with its own fresh tmpfs: what the host has there is not seen
/// (guest-init shows the working directory again when it lies beneath one).
pub const GUEST_TMPFS_DIRS: &[&str] = &["/run", "/tmp", "/dev/shm", "/var/tmp"];

/// The folder of [`GUEST_TMPFS_DIRS`] that `path` lies beneath, if any: where the guest sees
/// its own tmpfs instead of the host's files (and where guest-init can make folders).
pub fn guest_tmpfs_over(path: &std::path::Path) -> Option<&'static str> {
    GUEST_TMPFS_DIRS
        .iter()
        .find(|d| path.starts_with(d) && path != std::path::Path::new(d))
        .copied()
}

/// UML console index that carries the framed channel (`con1=fd:N`); con0 is the kernel log.
pub const CHANNEL_CONSOLE: u32 = 1;
/// The guest device of that console.
pub const CHANNEL_TTY: &str = "/dev/tty1";

/// A warm guest's session lines: UML consoles `con2` on, each a channel of its own that one
/// `sekexe exec` session at a time speaks over directly, as a run speaks over `con1` (no hop
/// through PID 1 and the guest's launcher). UML has 16 consoles.
pub const SESSION_LINES: u8 = 8;
/// The UML console of session line 0.
pub const FIRST_SESSION_CONSOLE: u32 = 2;

/// The guest device of session line `line`.
pub fn session_line_tty(line: u8) -> String {
    format!("/dev/tty{}", FIRST_SESSION_CONSOLE + u32::from(line))
}

/// Where Debian's UML kernel package keeps each release's modules (the launcher checks for
/// them; guest-init shows them at `/lib/modules/<release>`).
pub const UML_MODULES_DIR: &str = "/usr/lib/uml/modules";
/// PATH for `--clear-env`, and for looking up commands when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Encodes a host path for the kernel command line: the command line splits on spaces and
/// knows no escapes, so every byte outside a safe set becomes `%XX`.
pub fn encode_param(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() || b"/-_.,:+@~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_param`]; `None` for a malformed escape.
pub fn decode_param(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // from_str_radix alone would also take "+0".
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guest_tmpfs_covers_what_lies_beneath_it_not_itself() {
        use std::path::Path;
        assert_eq!(
            super::guest_tmpfs_over(Path::new("/tmp/w/s.sh")),
            Some("/tmp")
        );
        assert_eq!(
            super::guest_tmpfs_over(Path::new("/var/tmp/x")),
            Some("/var/tmp")
        );
        assert_eq!(super::guest_tmpfs_over(Path::new("/tmp")), None);
        assert_eq!(super::guest_tmpfs_over(Path::new("/tmpx/s.sh")), None);
        assert_eq!(super::guest_tmpfs_over(Path::new("/usr/bin/true")), None);
    }

    use super::*;

    #[test]
    fn param_encoding_round_trips_any_bytes_and_is_one_word() {
        let cases: [&[u8]; 5] = [
            b"/tmp/sekexe-0/run-abc",
            b"/tmp/with space/and\ttab\nnewline",
            b"/t\xc3\xa9st/%41/\"q\"",
            b"",
            b"\xff\x00",
        ];
        for case in cases {
            let enc = encode_param(case);
            assert!(
                !enc.contains(|c: char| c.is_whitespace() || c == '"'),
                "{enc}"
            );
            assert_eq!(decode_param(&enc).as_deref(), Some(case));
        }
        assert_eq!(encode_param(b"/tmp/a b"), "/tmp/a%20b");
    }

    #[test]
    fn malformed_escapes_are_rejected() {
        assert_eq!(decode_param("%4"), None);
        assert_eq!(decode_param("%zz"), None);
        assert_eq!(decode_param("%"), None);
        assert_eq!(decode_param("%+0"), None);
    }
}
