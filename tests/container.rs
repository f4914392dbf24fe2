//! sekexe inside an unprivileged Docker container: Debian's `docker.io`, its default seccomp
//! profile and capabilities, no `--privileged`, as root and as another user in the container.
//! The container cannot give sekexe user namespaces (the scratch tmpfs) nor, as root, a mount
//! namespace: sekexe must say once which layers are missing and run, and what is left of the
//! confinement must still keep the guest's writes off the container's files.
//!
//! The test starts a Docker daemon of its own (root only), with an image made from the host's
//! own files: a few folders and links, with the host's /usr and /etc bound in read-only. No
//! registry, no network.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sekexe_tests::*;

/// A private Docker daemon, stopped (with its containers) when dropped.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    /// dockerd before 23 makes /etc/docker/key.json (0600) whatever its other folders: gone
    /// with the daemon when it made it, or a guest run as another user could not read it.
    made_key: bool,
}

const DOCKER_KEY: &str = "/etc/docker/key.json";

impl Daemon {
    fn start() -> Daemon {
        // On disk: overlay2 wants a file system that is not itself an overlay.
        let dir = tempfile::Builder::new()
            .prefix("sekexe-docker-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let made_key = !Path::new(DOCKER_KEY).exists();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--iptables=false")
            .arg("--bridge=none")
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("--host")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start dockerd: scripts/setup --tests installs docker.io");
        let d = Daemon {
            child,
            dir,
            made_key,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn command(&self) -> Command {
        let mut c = Command::new("docker");
        c.env(
            "DOCKER_HOST",
            format!("unix://{}", self.dir.path().join("docker.sock").display()),
        );
        c
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker: scripts/setup --tests installs it")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containers and its containerd, and unmounts its layers.
        kill(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.made_key {
            let _ = std::fs::remove_file(DOCKER_KEY);
        }
    }
}

/// An image of the host's own system: the links and empty folders of a root, into which the
/// host's /usr and /etc are bound read-only at run time.
fn import_host_image(daemon: &Daemon) -> (String, Vec<String>) {
    let tree = tempfile::tempdir().unwrap();
    let mut binds = vec!["/usr:/usr:ro".to_string(), "/etc:/etc:ro".to_string()];
    for dir in [
        "proc", "sys", "dev", "etc", "usr", "root", "run", "var/tmp", "tmp",
    ] {
        std::fs::create_dir_all(tree.path().join(dir)).unwrap();
    }
    for dir in ["tmp", "var/tmp"] {
        std::fs::set_permissions(
            tree.path().join(dir),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
    }
    for top in ["bin", "sbin", "lib", "lib64"] {
        let host = Path::new("/").join(top);
        match std::fs::read_link(&host) {
            // Merged /usr: the same link.
            Ok(target) => std::os::unix::fs::symlink(target, tree.path().join(top)).unwrap(),
            Err(_) if host.is_dir() => {
                std::fs::create_dir(tree.path().join(top)).unwrap();
                binds.push(format!("{}:{}:ro", host.display(), host.display()));
            }
            Err(_) => {}
        }
    }
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(tree.path())
        .args(["--numeric-owner", "-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let imported = daemon
        .command()
        .args(["import", "-", "sekexe-host:test"])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of the image tree");
    assert!(imported.status.success(), "docker import: {imported:?}");
    (String::from("sekexe-host:test"), binds)
}

/// Bind arguments that show `path`'s folder in the container at the same place, read-only.
fn bind_same(path: &Path) -> String {
    format!("{}:{}:ro", path.display(), path.display())
}

/// The kernel the suite tests, by its real path (a link's target folder is bound in).
fn kernel() -> PathBuf {
    let k = test_kernel()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/linux.uml"));
    std::fs::canonicalize(&k).unwrap_or_else(|e| panic!("kernel {}: {e}", k.display()))
}

/// Runs `script` in a fresh container, as `user` (None: the container's root), with
/// Docker's defaults but for no network: `script` is a shell script that runs "$SEKEXE".
fn in_container(
    daemon: &Daemon,
    image: &str,
    binds: &[String],
    user: Option<u32>,
    extra: &[&str],
    stdin: &[u8],
    script: &str,
) -> Output {
    let bin = std::fs::canonicalize(sekexe_bin()).unwrap();
    let kernel = kernel();
    let mut c = daemon.command();
    c.args(["run", "--rm", "-i", "--network", "none"]);
    for b in binds {
        c.arg("-v").arg(b);
    }
    c.arg("-v").arg(bind_same(&workspace().join("target")));
    c.arg("-v").arg(bind_same(kernel.parent().unwrap()));
    if let Some(uid) = user {
        c.arg("--user").arg(format!("{uid}:{uid}"));
    }
    c.args(extra);
    c.arg("-e")
        .arg(format!("SEKEXE_KERNEL={}", kernel.display()));
    c.arg("-e").arg(format!("SEKEXE={}", bin.display()));
    c.arg(image).args(["sh", "-c", script]);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Output::from(out)
}

#[test]
fn runs_inside_an_unprivileged_docker_container() {
    // Promise: in a container with Docker's default seccomp profile and capabilities, as root
    // and as another user, sekexe runs the command with its exact argv, stdin, separate
    // streams and exit status; it warns once, naming the layers the container withholds; and
    // the guest still cannot write to the container's files.
    if !is_root() {
        skipped("a Docker daemon of the test's own");
        return;
    }
    let daemon = Daemon::start();
    let (image, binds) = import_host_image(&daemon);
    let run = |user: Option<u32>, extra: &[&str], stdin: &[u8], script: &str| {
        in_container(&daemon, &image, &binds, user, extra, stdin, script)
    };
    for user in [None, Some(NOBODY)] {
        let who = user.map_or("root".to_string(), |u| format!("uid {u}"));
        let out = run(
            user,
            &[],
            b"in\x00put\n",
            r#""$SEKEXE" run -- sh -c 'printf "[%s]" "$@"; cat; echo oops >&2; exit 7' sh 'a b' '' '*'"#,
        );
        assert_eq!(out.code, 7, "{who}: {out:?}");
        assert_eq!(out.stdout, b"[a b][][*]in\x00put\n", "{who}: {out:?}");
        let err = out.stderr_str();
        assert!(err.contains("oops\n"), "{who}: {out:?}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(warnings.len(), 1, "{who}: one warning: {out:?}");
        assert!(
            warnings[0].contains("without a private tmpfs for the kernel's files"),
            "{who}: {out:?}"
        );
        assert_eq!(
            warnings[0].contains("without a mount namespace (no CAP_SYS_ADMIN"),
            user.is_none(),
            "{who}: {out:?}"
        );

        // Attack: guest root mounts the container's / through hostfs and writes to it.
        // Without the mount namespace, Landlock alone keeps the write out.
        let out = run(
            user,
            &[],
            b"",
            r#""$SEKEXE" run -- sh -c 'mkdir -p /tmp/h && LIBMOUNT_FORCE_MOUNT2=always mount -t hostfs none /tmp/h -o / || exit 90
                echo pwned > /tmp/h/var/tmp/pwned && exit 91; echo blocked'
               echo "sekexe: $?"; ls /var/tmp/pwned 2>/dev/null || echo "no file""#,
        );
        assert_eq!(
            out.stdout_str(),
            "blocked\nsekexe: 0\nno file\n",
            "{who}: {out:?}"
        );

        // The user's network: the guest reaches a server in the container through the NAT.
        let out = run(
            user,
            &[],
            b"",
            r#"echo served > /tmp/index.html
               cd /tmp && python3 -m http.server -b 127.0.0.1 8123 >/dev/null 2>&1 &
               for i in $(seq 300); do
                 python3 -c 'import socket; socket.create_connection(("127.0.0.1", 8123))' 2>/dev/null && break
                 sleep 0.1
               done
               "$SEKEXE" run -- python3 -c 'import urllib.request; print(urllib.request.urlopen("http://10.0.2.2:8123/index.html").read().decode(), end="")'"#,
        );
        assert_eq!(out.stdout_str(), "served\n", "{who}: {out:?}");
    }

    // A profile that also forbids Landlock (older Docker's did): as root, nothing would keep
    // the kernel process's writes out of the container's files, so sekexe refuses and names
    // the way out; as another user it runs, saying what is missing and why.
    let profile = daemon.dir.path().join("no-landlock.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["landlock_create_ruleset","landlock_add_rule","landlock_restrict_self"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let no_landlock = ["--security-opt", opt.as_str()];
    let script = r#""$SEKEXE" run -- echo ran"#;
    let out = run(None, &no_landlock, b"", script);
    assert_eq!(out.code, 125, "{out:?}");
    let err = out.stderr_str();
    assert!(
        err.contains("neither Landlock (a seccomp filter") && err.contains("--no-sandbox"),
        "{out:?}"
    );
    assert_eq!(err.lines().count(), 1, "{out:?}");
    let out = run(Some(NOBODY), &no_landlock, b"", script);
    assert_eq!(out.stdout_str(), "ran\n", "{out:?}");
    assert!(
        out.stderr_str()
            .contains("without Landlock (a seccomp filter"),
        "{out:?}"
    );
}
