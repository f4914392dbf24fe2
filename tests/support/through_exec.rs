//! Runs made through warm guests, so that the run tests also check that `sekexe exec` behaves
//! exactly as `sekexe run`: a run's command line split into `start`'s guest options and
//! `exec`'s per-command ones, and the fresh guest started for each command.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use crate::*;

/// `run`'s options that belong to each command, which `start` refuses and `exec` takes (and
/// whether a value follows). `--debug` shapes the guest too in a run, but exec only shows
/// guest-init's steps with it.
const PER_COMMAND: &[(&str, bool)] = &[
    ("-c", true),
    ("-e", true),
    ("--env", true),
    ("--clear-env", false),
    ("-w", true),
    ("--workdir", true),
    ("-u", true),
    ("--user", true),
    ("-t", false),
    ("--tty", false),
    ("--timeout", true),
    ("--kill-after", true),
    ("--debug", false),
];

/// `run`'s options that shape the guest: `start` takes them.
const GUEST: &[(&str, bool)] = &[
    ("--mem", true),
    ("--kernel", true),
    ("--userspace", true),
    ("--cpus", true),
    ("--fs-cache", true),
    ("--no-pin", false),
    ("-v", true),
    ("--volume", true),
    ("--overlay", false),
    ("--overlay-dir", true),
    ("--root", true),
    ("--disk", true),
    ("--net", true),
    ("-p", true),
    ("--publish", true),
    ("--net-restrict", false),
    ("--ip", true),
    ("--gateway", true),
    ("--dns", true),
    ("--cgroup", true),
    ("--hostname", true),
    ("--kernel-arg", true),
    ("--full-boot", false),
    ("--no-sandbox", false),
];

/// Guest options naming host paths: `start` runs from `/` (so that exec alone must carry the
/// caller's folder), where a relative path would name something else than in the run.
const GUEST_PATHS: &[&str] = &[
    "--kernel",
    "-v",
    "--volume",
    "--overlay-dir",
    "--root",
    "--disk",
];

/// `run`'s options exec has no equivalent of: tests that use them stay run-only.
const RUN_ONLY: &[&str] = &["--keep", "--result", "--debug-shell"];

/// [`sekexe`] made through a warm guest: the `sekexe` of the test targets that run the run
/// tests through exec.
pub fn sekexe_through_exec<I, S>(scratch: &Scratch, args: I) -> Sekexe
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    sekexe(scratch, args).through_exec()
}

/// A `sekexe run` command line, split for `start` and `exec`.
#[derive(Debug, Default, PartialEq)]
pub struct SplitRun {
    pub guest: Vec<OsString>,
    pub per_command: Vec<OsString>,
    /// The command and its arguments (with `-c`, its `$0`, `$1`, ...); empty for a shell.
    pub command: Vec<OsString>,
}

/// Splits `run [OPTIONS] [--] [COMMAND...]` as sekexe's own parser reads it: options until
/// `--` or the first word that is not one, which starts the command.
pub fn split_run<S: AsRef<OsStr>>(args: &[S]) -> SplitRun {
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
    assert_eq!(
        shown.first().map(OsString::as_os_str),
        Some(OsStr::new("run")),
        "only `sekexe run` can go through exec: {shown:?}"
    );
    let mut split = SplitRun::default();
    let mut rest = shown[1..].iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_str().unwrap_or("");
        if text == "--" {
            split.command.extend(rest.cloned());
            break;
        }
        if !text.starts_with('-') || text == "-" {
            split.command.push(arg.clone());
            split.command.extend(rest.cloned());
            break;
        }
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (text, None),
        };
        assert!(
            !RUN_ONLY.contains(&name),
            "{name} has no equivalent in exec: a test that gives it stays run-only ({shown:?})"
        );
        let (to, takes_value) = if let Some(&(_, v)) = PER_COMMAND.iter().find(|o| o.0 == name) {
            (&mut split.per_command, v)
        } else if let Some(&(_, v)) = GUEST.iter().find(|o| o.0 == name) {
            (&mut split.guest, v)
        } else {
            panic!("{name}: an option of run that tests/support/through_exec.rs does not know");
        };
        to.push(arg.clone());
        if takes_value && inline.is_none() {
            let value = rest
                .next()
                .unwrap_or_else(|| panic!("{name} without its value: {shown:?}"));
            to.push(value.clone());
        }
        if GUEST_PATHS.contains(&name) {
            let value = inline.map(OsStr::new).unwrap_or(to.last().unwrap());
            assert!(
                value.as_encoded_bytes().starts_with(b"/"),
                "{name} {value:?}: give guest options absolute paths, `start` runs from /"
            );
        }
    }
    split
}

/// Whether an environment variable configures sekexe itself (which kernel, where guests
/// live), and so goes to `start` and `stop` as well as to `exec`; the others are the
/// command's environment, which only exec passes on, as run does.
fn configures_sekexe(key: &OsStr) -> bool {
    key == "TMPDIR" || key.as_encoded_bytes().starts_with(b"SEKEXE_")
}

/// A name no other guest of this test process has.
fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "exec-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// The warm guest started for one command run through exec: stopped after it, or when
/// dropped (a test that failed halfway).
pub struct WarmGuest {
    name: String,
    /// sekexe as the run would have been started (user, TMPDIR, kernel, wrapper), without
    /// arguments.
    base: Sekexe,
    stopped: bool,
}

impl WarmGuest {
    /// Stops the guest; fails the test unless `stop` succeeds, as it must after any command.
    pub fn stop(mut self) {
        self.stopped = true;
        let out = self.stop_command().run();
        assert_eq!(out.code, 0, "sekexe stop {}: {out:?}", self.name);
    }

    fn stop_command(&self) -> Sekexe {
        let mut stop = self.base.clone();
        stop.args = vec!["stop".into(), self.name.clone().into()];
        stop
    }
}

impl Drop for WarmGuest {
    fn drop(&mut self) {
        if !self.stopped {
            let stop = self.stop_command().timeout(Duration::from_secs(40));
            // Already failing: a second panic here would abort the whole test binary.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stop.run()));
        }
    }
}

impl Sekexe {
    /// Starts the guest for this run and returns it with the exec that runs its command.
    pub(crate) fn into_warm(self) -> (WarmGuest, Sekexe) {
        let split = split_run(&self.args);
        let name = unique_name();
        let base = Sekexe {
            args: Vec::new(),
            stdin: None,
            stdin_null: true,
            env: self
                .env
                .iter()
                .filter(|(k, _)| configures_sekexe(k))
                .cloned()
                .collect(),
            timeout: RUN_TIMEOUT,
            cwd: Some("/".into()),
            through_exec: false,
            ..self.clone()
        };
        let mut start = base.clone();
        start.args = ["start", "--name", &name].map(OsString::from).to_vec();
        start.args.extend(split.guest);
        let out = start.run();
        assert!(
            out.code == 0 && out.stdout_str() == format!("{name}\n"),
            "sekexe start for {:?}: {out:?}",
            self.args
        );
        let guest = WarmGuest {
            name: name.clone(),
            base,
            stopped: false,
        };
        let mut exec = self;
        exec.through_exec = false;
        exec.args = vec!["exec".into()];
        exec.args.extend(split.per_command);
        exec.args.push(name.into());
        if !split.command.is_empty() {
            exec.args.push("--".into());
            exec.args.extend(split.command);
        }
        (guest, exec)
    }
}

/// [`sekexe_shell_command`] through a warm guest: shell text that starts a fresh guest with
/// the run's guest options, execs the command in it, stops it, and exits with exec's status.
/// `args` is `run`, options as plain words, then optionally `--` and the command as shell
/// text. One simple command (an `sh -c`), so that assignments before it still apply.
pub fn sekexe_shell_command_through_exec(scratch: &Scratch, args: &str) -> String {
    let (options, command) = match args.split_once(" -- ") {
        Some((options, command)) => (options, Some(command)),
        None => (args.strip_suffix(" --").unwrap_or(args), None),
    };
    let words: Vec<&str> = options.split_whitespace().collect();
    assert!(
        words.iter().all(|w| !w.contains(['\'', '"', '\\', '$'])),
        "options as plain words: {args}"
    );
    let split = split_run(&words);
    assert!(split.command.is_empty(), "the command after --: {args}");
    let name = unique_name();
    let plain = |words: &[OsString]| -> String {
        words
            .iter()
            .map(|w| format!(" {}", w.to_str().unwrap()))
            .collect()
    };
    let start = sekexe_shell_command(
        scratch,
        &format!("start --name {name}{}", plain(&split.guest)),
    );
    let exec = sekexe_shell_command(
        scratch,
        &format!(
            "exec{} {name}{}",
            plain(&split.per_command),
            command.map(|c| format!(" -- {c}")).unwrap_or_default()
        ),
    );
    let stop = sekexe_shell_command(scratch, &format!("stop {name}"));
    // A stop that fails leaves the guest, which the scratch folder's checks then find.
    let script = format!(
        "(cd / && {start}) >/dev/null && {{ {exec}; status=$?; (cd / && {stop}); exit $status; }}"
    );
    format!("sh -c {}", sh_quote(&script))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_go_where_they_belong() {
        let split = split_run(&[
            "run",
            "-e",
            "A=1",
            "--mem=512M",
            "-v",
            "/x:/y",
            "--timeout",
            "2s",
            "--overlay",
            "-t",
            "--",
            "sh",
            "-c",
            "-e",
        ]);
        assert_eq!(split.guest, os(&["--mem=512M", "-v", "/x:/y", "--overlay"]));
        assert_eq!(
            split.per_command,
            os(&["-e", "A=1", "--timeout", "2s", "-t"])
        );
        assert_eq!(split.command, os(&["sh", "-c", "-e"]));
    }

    #[test]
    fn the_first_word_that_is_no_option_starts_the_command() {
        let split = split_run(&["run", "-c", "echo $0", "zero", "--mem", "1G"]);
        assert_eq!(split.per_command, os(&["-c", "echo $0"]));
        assert_eq!(split.command, os(&["zero", "--mem", "1G"]));
        assert_eq!(split_run(&["run"]), SplitRun::default());
    }

    #[test]
    #[should_panic(expected = "stays run-only")]
    fn keep_has_no_exec_equivalent() {
        split_run(&["run", "--keep", "--", "true"]);
    }
}
