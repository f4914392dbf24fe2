//! The host's files as the guest sees them through hostfs: what a program reads and writes
//! must be what the host has, whatever the project kernel does to make it fast (its hostfs
//! patch lets path walks skip the host's permission check on directories it passes).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use sekexe_tests::*;

/// `stat` fields a program relies on, as the guest's coreutils prints them.
const STAT_FORMAT: &str = "%s %Y %h %a %u";

fn host_stat(path: &std::path::Path) -> String {
    let m = std::fs::symlink_metadata(path).unwrap();
    format!(
        "{} {} {} {:o} {}",
        m.size(),
        m.mtime(),
        m.nlink(),
        m.mode() & 0o7777,
        m.uid()
    )
}

#[test]
fn sizes_times_links_and_modes_are_the_hosts() {
    let dir = guest_visible_dir("files-stat-");
    let file = dir.path().join("data");
    std::fs::write(&file, vec![7u8; 12345]).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::hard_link(&file, dir.path().join("twin")).unwrap();
    let s = Scratch::new();
    let out = run(
        &s,
        &[
            "run",
            "--",
            "stat",
            "-c",
            STAT_FORMAT,
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_str().trim(), host_stat(&file));
    s.assert_clean();
}

#[test]
fn what_the_guest_writes_to_a_volume_is_on_the_host() {
    // Contents, a hard link, a sparse file and a mode, each read back on the host.
    let dir = guest_visible_dir("files-rw-");
    let host = dir.path().to_str().unwrap();
    for user in users() {
        let s = Scratch::for_user(user);
        if let Some(uid) = user {
            chown(dir.path(), uid);
        }
        let script = "cd /tmp/data && printf 'written in the guest\\n' > out && ln out out-link \
                      && truncate -s 1G sparse && printf x | dd of=sparse bs=1 seek=4096 conv=notrunc 2>/dev/null \
                      && chmod 0604 out && stat -c '%h' out";
        let out = run(
            &s,
            &[
                "run",
                "-v",
                &format!("{host}:/tmp/data:rw"),
                "--",
                "sh",
                "-c",
                script,
            ],
        );
        assert_eq!(out.code, 0, "{user:?}: {out:?}");
        assert_eq!(out.stdout_str(), "2\n", "{user:?}");
        let out_file = dir.path().join("out");
        assert_eq!(
            std::fs::read_to_string(&out_file).unwrap(),
            "written in the guest\n"
        );
        let m = std::fs::metadata(&out_file).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o604, "{user:?}");
        assert_eq!(m.nlink(), 2, "{user:?}");
        assert_eq!(
            m.ino(),
            std::fs::metadata(dir.path().join("out-link"))
                .unwrap()
                .ino()
        );
        let sparse = std::fs::metadata(dir.path().join("sparse")).unwrap();
        assert_eq!(sparse.len(), 1 << 30, "{user:?}");
        // 512-byte blocks: a few pages at most, not a gigabyte.
        assert!(
            sparse.blocks() < 1024,
            "{user:?}: {} blocks",
            sparse.blocks()
        );
        for name in ["out", "out-link", "sparse"] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        s.assert_clean();
    }
}

#[test]
fn a_host_change_during_a_run_is_seen_by_the_next_open() {
    // The guest waits for the host to rewrite a file and change its size, then reads it
    // again: a new open sees the new contents and size.
    let dir = guest_visible_dir("files-change-");
    let file = dir.path().join("state");
    std::fs::write(&file, "before\n").unwrap();
    let path = file.to_str().unwrap();
    let s = Scratch::new();
    let script = format!(
        "cat {path}; echo ready; read go; cat {path}; stat -c %s {path}; ls {dir}",
        dir = dir.path().display()
    );
    let mut r = sekexe(&s, ["run", "--", "sh", "-c", &script])
        .timeout(Duration::from_secs(60))
        .spawn();
    assert_eq!(r.read_until(b"ready\n"), b"before\nready\n");
    std::fs::write(&file, "after, and longer\n").unwrap();
    std::fs::write(dir.path().join("new-file"), "").unwrap();
    r.write_stdin(b"go\n");
    r.close_stdin();
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_str(), "after, and longer\n18\nnew-file\nstate\n");
    s.assert_clean();
}

#[test]
fn folders_the_host_user_may_not_search_stay_closed_in_the_guest() {
    // Guest root is root only in the guest: a folder the host user may not search stays
    // closed, for a path walk through it as for an explicit check.
    assert!(
        is_root(),
        "this test needs a folder the unprivileged user may not search: run the suite as root (CI does)"
    );
    let dir = guest_visible_dir("files-closed-");
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::write(closed.join("secret"), "secret\n").unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let c = closed.to_str().unwrap();
    let s = unprivileged();
    // Each probe prints its name only if it got through.
    let script = format!(
        "cat {c}/secret 2>/dev/null && echo READ; stat {c}/secret >/dev/null 2>&1 && echo STAT; \
         ls {c} >/dev/null 2>&1 && echo LISTED; cd {c} 2>/dev/null && echo ENTERED; \
         test -x {c} && echo SEARCHABLE; stat {c} >/dev/null && echo DONE"
    );
    let out = run(&s, &["run", "--", "sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_str(), "DONE\n", "{out:?}");
    s.assert_clean();
}
