//! The host's files as the guest sees them through hostfs: what a program reads and writes
//! must be what the host has, whatever the project kernel does to make it fast (its hostfs
//! patches let path walks skip the host's permission check on directories it passes, and
//! keep names, attributes and data for `--fs-cache`, checked again at every open).

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

/// Starts `sekexe run OPTIONS -- sh -c SCRIPT`, where SCRIPT prints `ready` and then waits for
/// a line on stdin (`read go`) while the test changes the host; returns what the guest printed
/// up to and with `ready`, and the run, to be sent its `go` line.
fn until_ready(s: &Scratch, options: &[&str], script: &str, limit: u64) -> (String, Running) {
    let mut args = vec!["run"];
    args.extend_from_slice(options);
    args.extend(["--", "sh", "-c", script]);
    let mut r = sekexe(s, args).timeout(Duration::from_secs(limit)).spawn();
    let printed = String::from_utf8_lossy(&r.read_until(b"ready\n")).into_owned();
    (printed, r)
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
    let (printed, mut r) = until_ready(&s, &[], &script, 60);
    assert_eq!(printed, "before\nready\n");
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

/// The project kernel's hostfs keeps what it learned for `--fs-cache`: these checks fail on it
/// if an open trusts the cache, or a stat trusts it for longer.
#[test]
fn host_changes_reach_a_caching_guest_at_the_next_open_and_after_the_timeout() {
    for cache in ["300ms", "0"] {
        let dir = guest_visible_dir("files-cache-");
        let d = dir.path();
        std::fs::write(d.join("f"), "one\n").unwrap();
        std::fs::write(d.join("g"), "gee\n").unwrap();
        std::fs::write(d.join("gone"), "here\n").unwrap();
        std::os::unix::fs::symlink("f", d.join("l")).unwrap();
        // The guest reads everything once (names, attributes and pages now cached), waits for
        // the host, and looks again.
        let script = format!(
            "cd {d} && cat f l gone && stat -c %s f && (cat new 2>/dev/null; true) && \
             echo ready && read go && \
             cat f l && (cat gone 2>/dev/null || echo gone) && cat new && echo ready && read go && \
             {wait} stat -c %s f && cat f",
            d = d.display(),
            wait = if cache == "0" { "" } else { "sleep 1 &&" },
        );
        let s = Scratch::new();
        let (printed, mut r) = until_ready(&s, &["--fs-cache", cache], &script, 60);
        assert_eq!(printed, "one\none\nhere\n4\nready\n", "{cache}");
        // The same size, in place (same inode, new mtime): only the data changed.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join("f"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"two\n").unwrap();
        drop(f);
        std::fs::remove_file(d.join("l")).unwrap();
        std::os::unix::fs::symlink("g", d.join("l")).unwrap();
        std::fs::remove_file(d.join("gone")).unwrap();
        std::fs::write(d.join("new"), "new\n").unwrap();
        r.write_stdin(b"go\n");
        let text = String::from_utf8_lossy(&r.read_until(b"ready\n")).into_owned();
        assert_eq!(text, "two\ngee\ngone\nnew\nready\n", "{cache}");
        // A stat trusts the cache for at most the timeout.
        std::fs::write(d.join("f"), "two\nand more\n").unwrap();
        r.write_stdin(b"go\n");
        r.close_stdin();
        let out = r.finish();
        assert_eq!(out.code, 0, "{cache}: {out:?}");
        assert_eq!(out.stdout_str(), "13\ntwo\nand more\n", "{cache}");
        s.assert_clean();
    }
}

/// Links the guest makes on an rw volume are there at once, whatever the cache.
#[test]
fn links_made_in_the_guest_are_seen_at_once() {
    let dir = guest_visible_dir("files-links-");
    let host = dir.path().to_str().unwrap();
    let s = Scratch::new();
    let script = "cd /tmp/data && echo hi > a && ls -l a >/dev/null && ls b 2>/dev/null; \
                  ln -s a b && readlink b && cat b && ln a c && stat -c %h a && \
                  mv c d && stat -c %h d && cat d && rm a && stat -c %h d && ls";
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
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_str(), "a\nhi\n2\n2\nhi\n1\nb\nd\n");
    assert_eq!(
        std::fs::read_link(dir.path().join("b")).unwrap(),
        std::path::Path::new("a")
    );
    s.assert_clean();
}

/// hostfs keeps inodes for `--fs-cache`, but not the host files behind them: the kernel
/// process holds no more host files than the guest has open, whatever it read before.
#[test]
fn the_kernel_holds_no_host_file_the_guest_closed() {
    let dir = guest_visible_dir("files-fds-");
    for i in 0..400 {
        std::fs::write(dir.path().join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    let s = Scratch::new();
    let script = format!(
        "cd {} && for f in f*; do read x < $f; done && echo ready && read go",
        dir.path().display()
    );
    let (printed, mut r) = until_ready(&s, &[], &script, 120);
    assert_eq!(printed, "ready\n");
    let kernel = kernel_pid(&s, r.pid()).expect("the kernel process");
    let held = std::fs::read_dir(format!("/proc/{kernel}/fd"))
        .unwrap()
        .count();
    r.write_stdin(b"go\n");
    r.close_stdin();
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    // A few dozen of its own (memory, consoles, channels); 400 if it kept what it read.
    assert!(held < 100, "the kernel process holds {held} files");
    s.assert_clean();
}

/// Under `--overlay` the host's files are the overlay's lower layer, which overlayfs expects
/// never to change: a file the host replaces during the run must still read (the old or the
/// new contents), never fail with "Stale file handle" (what the project kernel's hostfs cache
/// would cause there, so the lower layer is a mount without it).
#[test]
fn a_file_the_host_replaces_under_an_overlay_still_reads() {
    let dir = guest_visible_dir("files-overlay-");
    let file = dir.path().join("f");
    std::fs::write(&file, "old\n").unwrap();
    let path = file.to_str().unwrap();
    let s = Scratch::new();
    let script = format!("cat {path} && echo ready && read go && cat {path}");
    let (printed, mut r) = until_ready(&s, &["--overlay"], &script, 60);
    assert_eq!(printed, "old\nready\n");
    let tmp = dir.path().join("f.tmp");
    std::fs::write(&tmp, "new, and longer\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    r.write_stdin(b"go\n");
    r.close_stdin();
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    let text = out.stdout_str();
    assert!(text == "old\n" || text == "new, and longer\n", "{out:?}");
    s.assert_clean();
}

/// What large reads check in a file: the whole file in 1 MiB reads, a vectored read into two
/// buffers that start mid-page at an odd offset, and a read that runs past the end. The same
/// script runs on the host and in the guest; their lines must be equal.
const LARGE_READS: &str = r#"
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
h = hashlib.sha256()
while True:
    b = os.read(fd, 1 << 20)
    if not b:
        break
    h.update(b)
print("whole", h.hexdigest())
a, b = bytearray(70001), bytearray(100000)
n = os.preadv(fd, [memoryview(a)[3:], b], 12345)
print("vectored", n, hashlib.sha256((bytes(a[3:]) + bytes(b))[:n]).hexdigest())
size = os.fstat(fd).st_size
tail = os.pread(fd, 1 << 20, size - 1000)
print("tail", len(tail), hashlib.sha256(tail).hexdigest())
"#;

/// Large reads of host files the guest does not cache go straight from the host into the
/// reader's memory on the project kernel: the bytes must be the host's, however the buffers
/// lie, and the guest keeps no copy of what it read once (its page cache holds no page of the
/// file afterwards but in its last 64 KiB), while a small file stays cached. Other kernels
/// read through the page cache: the bytes are checked there.
#[test]
fn large_reads_return_the_hosts_bytes_and_keep_no_copy_in_the_guest() {
    let dir = guest_visible_dir("files-large-");
    let file = dir.path().join("big");
    // 3 MiB and a bit of bytes that differ from page to page.
    let data: Vec<u8> = (0..(3u32 << 20) + 4321)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let path = file.to_str().unwrap();
    let host = std::process::Command::new("python3")
        .args(["-c", LARGE_READS, path])
        .output()
        .unwrap();
    assert!(host.status.success(), "{host:?}");
    let expected = String::from_utf8(host.stdout).unwrap();
    assert!(
        expected.contains("vectored 169998 ") && expected.contains("tail 1000 "),
        "{expected}"
    );
    let direct = check_says_ok(&kernel_check(), "large reads of host files");
    let s = Scratch::new();
    // A small file read with a large buffer stays in the page cache (--fs-cache).
    let small = dir.path().join("small");
    std::fs::write(&small, vec![b's'; 10_000]).unwrap();
    let small = small.to_str().unwrap();
    let script = format!(
        "python3 -c '{LARGE_READS}' '{path}' && cat '{small}' > /dev/null && \
         fincore --noheadings --output PAGES '{small}' '{path}'"
    );
    let out = run(&s, &["run", "--net", "none", "--", "sh", "-c", &script]);
    assert_eq!(out.code, 0, "{out:?}");
    let printed = out.stdout_str();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 5, "{out:?}");
    assert_eq!(format!("{}\n", lines[..3].join("\n")), expected, "{out:?}");
    if direct {
        assert_eq!(
            lines[3].trim(),
            "3",
            "the small file is not cached: {out:?}"
        );
        // Only reads that start within 64 KiB of the end go through the page cache: at most
        // 17 pages of 770.
        let pages: u32 = lines[4].trim().parse().unwrap();
        assert!(
            pages <= 17,
            "the guest cached {pages} pages of a file read in large reads: {out:?}"
        );
    }
    s.assert_clean();
}

/// What the guest wrote and the host may not have yet, read back in large reads through a
/// second file: while a writer has the file open, through a shared mapping written and not
/// synced, and after both are closed.
const READ_BACK: &str = r#"
import mmap, os
p = "/tmp/data/f"
w = os.open(p, os.O_RDWR)
os.pwrite(w, b"A" * 300000, 100000)
r = os.open(p, os.O_RDONLY)
d = os.pread(r, 2 << 20, 0)
print("writer open", d[100000:400000] == b"A" * 300000 and d[:100000] == bytes(100000))
m = mmap.mmap(w, 2 << 20)
os.close(w)
m[1000000:1200000] = b"B" * 200000
d = os.pread(r, 2 << 20, 0)
print("mapped", d[1000000:1200000] == b"B" * 200000)
m.close()
d = os.pread(r, 2 << 20, 0)
print("closed", d[100000:400000] == b"A" * 300000 and d[1000000:1200000] == b"B" * 200000)
"#;

/// A large read must not go around the guest's own writes: the project kernel reads straight
/// from the host only where the guest has nothing cached and nothing open for writing.
#[test]
fn large_reads_see_what_the_guest_wrote() {
    for user in users() {
        let dir = guest_visible_dir("files-large-rw-");
        let file = dir.path().join("f");
        std::fs::write(&file, vec![0u8; 2 << 20]).unwrap();
        if let Some(uid) = user {
            chown(dir.path(), uid);
            chown(&file, uid);
        }
        let s = Scratch::for_user(user);
        let volume = format!("{}:/tmp/data:rw", dir.path().display());
        let out = run(
            &s,
            &[
                "run", "--net", "none", "-v", &volume, "--", "python3", "-c", READ_BACK,
            ],
        );
        assert_eq!(out.code, 0, "{user:?}: {out:?}");
        assert_eq!(
            out.stdout_str(),
            "writer open True\nmapped True\nclosed True\n",
            "{user:?}: {out:?}"
        );
        let host = std::fs::read(&file).unwrap();
        assert_eq!(host.len(), 2 << 20, "{user:?}");
        assert!(host[100000..400000].iter().all(|&b| b == b'A'), "{user:?}");
        assert!(
            host[1000000..1200000].iter().all(|&b| b == b'B'),
            "{user:?}"
        );
        assert!(host[..100000].iter().all(|&b| b == 0), "{user:?}");
        s.assert_clean();
    }
}

/// A large read stops where a small one does: at the size the guest knows. The guest opens a
/// file, the host appends to it, and the guest reads it once in one large read and once in
/// 4 KiB reads: the same bytes (the project kernel's large reads come from the host, its small
/// ones from the page cache, which ends at the size the guest knows).
#[test]
fn a_large_read_and_small_reads_agree_on_a_file_the_host_grows() {
    let dir = guest_visible_dir("files-grow-");
    let file = dir.path().join("log");
    std::fs::write(&file, vec![b'a'; 200_000]).unwrap();
    let script = format!(
        r#"python3 -c '
import os, sys
fd = os.open("{path}", os.O_RDONLY)
print("ready", flush=True)
sys.stdin.readline()
big = os.pread(fd, 1 << 20, 0)
small = b"".join(os.pread(fd, 4096, off) for off in range(0, 1 << 20, 4096))
print(len(big), len(small), big == small)
'"#,
        path = file.display()
    );
    let s = Scratch::new();
    let (printed, mut r) = until_ready(&s, &["--net", "none"], &script, 60);
    assert_eq!(printed, "ready\n");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, &vec![b'b'; 300_000]).unwrap();
    drop(f);
    r.write_stdin(b"go\n");
    r.close_stdin();
    let out = r.finish();
    assert_eq!(out.code, 0, "{out:?}");
    let text = out.stdout_str();
    let fields: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{out:?}");
    assert_eq!(fields[0], fields[1], "{out:?}");
    assert_eq!(fields[2], "True", "{out:?}");
    s.assert_clean();
}
