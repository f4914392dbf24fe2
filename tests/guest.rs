//! The guest system: cgroups, modules, a writable root (thrown away or kept), volumes, another
//! root, disks and loop images, identity and memory, and real root-only work done by an
//! unprivileged host user, Docker included.

use std::path::Path;
use std::time::Duration;

use sekexe_tests::*;

fn run(s: &Scratch, args: &[&str]) -> Output {
    sekexe(s, args).timeout(Duration::from_secs(120)).run()
}

#[test]
fn cgroup_v2_delegates_every_controller_and_limits_work() {
    let s = unprivileged();
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "
        cat /sys/fs/cgroup/cgroup.controllers; cat /sys/fs/cgroup/cgroup.subtree_control
        mkdir /sys/fs/cgroup/limited && echo 4 > /sys/fs/cgroup/limited/pids.max
        sh -c 'echo $$ > /sys/fs/cgroup/limited/cgroup.procs; grep -c limited /proc/self/cgroup
               for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait' 2>/dev/null
        awk '/max/ {print $2}' /sys/fs/cgroup/limited/pids.events",
        ],
    );
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], lines[1], "every controller delegated: {text}");
    assert!(
        lines[0].contains("pids") && lines[0].contains("memory"),
        "{text}"
    );
    assert_eq!(lines[2], "1", "moved into the group: {text}");
    assert!(
        lines[3].parse::<u32>().unwrap() > 0,
        "pids.max was never hit: {text}"
    );
}

#[test]
fn cgroup_v1_mounts_every_controller_hierarchy() {
    let s = unprivileged();
    let out = run(
        &s,
        &[
            "run",
            "--cgroup",
            "v1",
            "--",
            "sh",
            "-c",
            "
        awk 'NR>1 && $4==1 {print $1}' /proc/cgroups | sort | tr '\\n' ' '; echo
        for c in $(awk 'NR>1 && $4==1 {print $1}' /proc/cgroups); do
            grep -qw \"$c\" /proc/self/mountinfo && [ -e /sys/fs/cgroup/$c ] || echo MISSING $c
        done
        grep -c ' - cgroup ' /proc/self/mountinfo
        for h in memory cpuset; do [ -e /sys/fs/cgroup/$h/tasks ] && echo HAS-$h; done; true",
        ],
    );
    // What the guest lacks for v1, sekexe says, and only that.
    let mut lacking = Vec::new();
    for h in ["memory", "cpuset"] {
        let has = out.stdout_str().contains(&format!("HAS-{h}\n"));
        let said = out
            .stderr_str()
            .lines()
            .any(|l| l.contains("--cgroup v1 without the") && l.contains(&format!(" {h} ")));
        assert_eq!(has, !said, "{h}: {out:?}");
        if said {
            lacking.push(h);
        }
    }
    let text = out.ok();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("MISSING ") {
            assert!(lacking.contains(&c), "{text}");
        }
    }
    for c in [
        "cpu", "cpuacct", "memory", "devices", "freezer", "pids", "blkio", "net_cls",
    ]
    .into_iter()
    .filter(|c| !lacking.contains(c))
    {
        assert!(
            text.lines().next().unwrap().split(' ').any(|x| x == c),
            "{c} missing from the kernel's list: {text}"
        );
    }
    let none = run(
        &s,
        &[
            "run",
            "--cgroup",
            "none",
            "--",
            "sh",
            "-c",
            "grep -c cgroup /proc/self/mountinfo || true",
        ],
    );
    assert_eq!(none.ok().trim(), "0");
}

#[test]
fn modules_load_with_modprobe_when_the_kernel_ships_them() {
    let s = unprivileged();
    let out = run(
        &s,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "
        if [ -d /usr/lib/uml/modules/$(uname -r) ]; then
            modprobe loop && modprobe overlay && lsmod | grep -E '^(loop|overlay) ' | wc -l
        else
            [ -d /sys/module/loop ] && grep -qw overlay /proc/filesystems && echo 2
        fi",
        ],
    );
    assert_eq!(out.ok().trim(), "2", "{out:?}");
}

#[test]
fn overlay_gives_a_writable_root_and_forgets_it() {
    let s = unprivileged();
    let marker = format!("/etc/sekexe-overlay-{}", std::process::id());
    let script = format!("echo changed > {marker} && cat {marker} && rm /etc/hostname && ls /etc/hostname 2>/dev/null; echo done");
    let before = std::fs::read("/etc/hostname").unwrap();
    let out = run(&s, &["run", "--overlay", "--", "sh", "-c", &script]);
    assert_eq!(out.ok(), "changed\ndone\n");
    assert!(!Path::new(&marker).exists());
    assert_eq!(std::fs::read("/etc/hostname").unwrap(), before);
    // The next run starts from the host again.
    let out = run(
        &s,
        &[
            "run",
            "--overlay",
            "--",
            "sh",
            "-c",
            &format!("cat {marker} 2>/dev/null || echo gone"),
        ],
    );
    assert_eq!(out.ok(), "gone\n");
    s.assert_clean();
}

#[test]
fn overlay_dir_keeps_changes_for_the_next_run() {
    let s = unprivileged();
    let dir = s.path().join("overlay state");
    let dir_s = dir.to_str().unwrap().to_string();
    let marker = "/etc/sekexe-kept";
    let out = run(
        &s,
        &[
            "run",
            "--overlay-dir",
            &dir_s,
            "--",
            "sh",
            "-c",
            &format!("echo first > {marker}; rm /etc/hostname"),
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!Path::new(marker).exists());
    assert!(dir.join("overlay.img").is_file());
    let out = run(
        &s,
        &[
            "run",
            "--overlay-dir",
            &dir_s,
            "--",
            "sh",
            "-c",
            &format!("cat {marker}; ls /etc/hostname 2>/dev/null || echo deleted"),
        ],
    );
    assert_eq!(out.ok(), "first\ndeleted\n");
    assert!(Path::new("/etc/hostname").exists());

    // One run at a time per folder.
    let mut first = sekexe(
        &s,
        [
            "run",
            "--overlay-dir",
            &dir_s,
            "--",
            "sh",
            "-c",
            "echo up; sleep 30",
        ],
    )
    .spawn();
    first.read_until(b"up\n");
    let second = run(&s, &["run", "--overlay-dir", &dir_s, "--", "true"]);
    assert_eq!(second.code, 125);
    assert!(second.stderr_str().contains("in use"), "{second:?}");
    first.signal(libc::SIGTERM);
    let _ = first.finish();
    s.assert_clean();
}

#[test]
fn volumes_are_read_only_unless_rw() {
    let s = unprivileged();
    let shared = s.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("in"), "from the host\n").unwrap();
    if is_root() {
        chown(&shared, NOBODY);
        chown(&shared.join("in"), NOBODY);
    }
    let host = shared.to_str().unwrap();
    let out = run(&s, &["run", "-v", &format!("{host}:/tmp/ro"), "-v", &format!("{host}:/tmp/rw:rw"), "--", "sh", "-c",
        "cat /tmp/ro/in; echo no > /tmp/ro/out 2>/dev/null || echo refused; echo yes > /tmp/rw/out && echo written"]);
    assert_eq!(out.ok(), "from the host\nrefused\nwritten\n");
    assert_eq!(
        std::fs::read_to_string(shared.join("out")).unwrap(),
        "yes\n"
    );
    // GUEST defaults to HOST.
    let out = run(&s, &["run", "-v", host, "--", "cat", &format!("{host}/in")]);
    assert_eq!(out.ok(), "from the host\n");
    let out = run(
        &s,
        &[
            "run",
            "--overlay",
            "-v",
            &format!("{host}:/no/such/place"),
            "--",
            "cat",
            "/no/such/place/in",
        ],
    );
    assert_eq!(out.ok(), "from the host\n");
    s.assert_clean();
}

#[test]
fn a_volume_where_the_root_has_no_folder_gets_a_mount_point() {
    // Promise: as with `docker run -v`, -v HOST:GUEST works where the host's read-only root
    // has no GUEST (at the top and deep down), and -w into it; what the guest writes lands in
    // HOST, the host's / is unchanged, and the rest of the root is still the host's, read-only.
    let s = unprivileged();
    let shared = s.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    if is_root() {
        chown(&shared, NOBODY);
    }
    let host = shared.to_str().unwrap();
    let top = "/sekexe-test-mount-point";
    let deep = "/usr/share/sekexe-test/deep/point";
    for p in [top, "/usr/share/sekexe-test"] {
        assert!(!Path::new(p).exists(), "{p} exists on the host");
    }
    let listing = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names.join(" ")
    };
    let (root_before, share_before) = (listing("/"), listing("/usr/share"));
    let script = format!(
        "pwd; echo top > note; echo deep > {deep}/note
         ls -A / | LC_ALL=C sort | tr '\\n' ' '; echo
         ls -A /usr/share | LC_ALL=C sort | tr '\\n' ' '; echo
         touch /usr/share/x 2>/dev/null && echo root-writable; touch /x 2>/dev/null && echo top-writable
         ls /sys/class/net | grep -qx lo && echo own-sysfs
         cat /etc/os-release | head -1"
    );
    let out = run(
        &s,
        &[
            "run",
            "-v",
            &format!("{host}:{top}:rw"),
            "-v",
            &format!("{host}:{deep}:rw"),
            "-w",
            top,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], top, "{text}");
    let expected_root = format!("{root_before} {}", &top[1..]);
    let mut expected_root: Vec<&str> = expected_root.split(' ').collect();
    expected_root.sort();
    assert_eq!(lines[1].trim_end(), expected_root.join(" "), "{text}");
    let expected_share = format!("{share_before} sekexe-test");
    let mut expected_share: Vec<&str> = expected_share.split(' ').collect();
    expected_share.sort();
    assert_eq!(lines[2].trim_end(), expected_share.join(" "), "{text}");
    assert_eq!(
        lines[3], "own-sysfs",
        "the guest's /sys, not the host's: {text}"
    );
    assert_eq!(
        lines[4],
        std::fs::read_to_string("/etc/os-release")
            .unwrap()
            .lines()
            .next()
            .unwrap()
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        std::fs::read_to_string(shared.join("note")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        (listing("/"), listing("/usr/share")),
        (root_before, share_before)
    );
    s.assert_clean();
}

#[test]
fn another_root_without_guest_init_in_it() {
    let s = unprivileged();
    let dir = guest_visible_dir("root-");
    let root = busybox_root(dir.path());
    let r = root.to_str().unwrap();
    assert!(!walk(&root)
        .iter()
        .any(|p| p.to_string_lossy().contains("sekexe-init")));
    let out = run(
        &s,
        &[
            "run",
            "--root",
            r,
            "--",
            "sh",
            "-c",
            "cat /etc/os-release; ls /; only-in-this-root; pwd",
        ],
    );
    assert_eq!(
        out.ok(),
        "NAME=\"sekexe test root\"\nbin\ndev\netc\nproc\nrun\nsys\ntmp\nfound in the root\n/\n"
    );
    // Commands are looked up in the root: the host's are not there.
    let out = run(&s, &["run", "--root", r, "--", "apt-get", "--version"]);
    assert_eq!(out.code, 127, "{out:?}");
    // The root itself stays read-only, unless overlaid.
    let out = run(
        &s,
        &[
            "run",
            "--root",
            r,
            "--",
            "sh",
            "-c",
            "echo x > /etc/new 2>/dev/null || echo refused",
        ],
    );
    assert_eq!(out.ok(), "refused\n");
    let out = run(
        &s,
        &[
            "run",
            "--root",
            r,
            "--overlay",
            "--",
            "sh",
            "-c",
            "echo x > /etc/new && cat /etc/new",
        ],
    );
    assert_eq!(out.ok(), "x\n");
    assert!(!root.join("etc/new").exists());
}

#[test]
fn disks_and_loop_images() {
    let s = unprivileged();
    let img = s.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    if is_root() {
        chown(&img, NOBODY);
    }
    let img_s = img.to_str().unwrap();
    let out = run(&s, &["run", "--disk", img_s, "--", "sh", "-c",
        "mkfs.ext4 -q /dev/ubda && mount /dev/ubda /mnt && echo on-disk > /mnt/f && umount /mnt && echo made"]);
    assert_eq!(out.ok(), "made\n");
    let out = run(&s, &["run", "--disk", &format!("{img_s}:ro"), "--", "sh", "-c",
        "mount -o ro /dev/ubda /mnt && cat /mnt/f; echo x > /mnt/g 2>/dev/null || echo read-only"]);
    assert_eq!(out.ok(), "on-disk\nread-only\n");
    let out = run(&s, &["run", "--", "sh", "-c",
        "truncate -s 32M /tmp/img && mkfs.ext4 -q /tmp/img && mount -o loop /tmp/img /mnt && echo loop > /mnt/f && cat /mnt/f && losetup -a | grep -c /tmp/img"]);
    assert_eq!(out.ok(), "loop\n1\n");
    s.assert_clean();
}

#[test]
fn hostname_and_memory() {
    let s = unprivileged();
    let out = run(
        &s,
        &[
            "run",
            "--hostname",
            "box-1.test",
            "--mem",
            "512M",
            "--",
            "sh",
            "-c",
            "hostname; awk '/MemTotal/ {print $2}' /proc/meminfo",
        ],
    );
    let text = out.ok();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("box-1.test"));
    let kib: u64 = lines.next().unwrap().parse().unwrap();
    assert!(
        kib > 400 * 1024 && kib <= 512 * 1024,
        "MemTotal {kib} kB for --mem 512M"
    );
}

#[test]
fn root_only_work_as_an_unprivileged_host_user() {
    let s = unprivileged();
    let dir = guest_visible_dir("chroot-");
    let root = busybox_root(dir.path());
    let script = format!(
        "set -e
         mount -t tmpfs none /mnt && echo tmpfs
         outer=$(readlink /proc/self/ns/net)
         unshare --net --mount sh -c \"[ \\$(readlink /proc/self/ns/net) != $outer ] && ip link show lo >/dev/null && echo netns\"
         ip link add d0 type dummy && ip link show d0 >/dev/null && echo dummy
         truncate -s 32M /tmp/i && mkfs.ext4 -q /tmp/i && mkdir -p /tmp/m && mount -o loop /tmp/i /tmp/m && echo loop-ext4
         mkdir /sys/fs/cgroup/g && echo 2 > /sys/fs/cgroup/g/pids.max && sh -c 'echo $$ > /sys/fs/cgroup/g/cgroup.procs; (sleep 1 & sleep 1 & sleep 1 & wait) 2>/dev/null' || echo cgroup-limited
         chroot {} /bin/only-in-this-root",
        root.display()
    );
    let out = run(&s, &["run", "--", "sh", "-c", &script]);
    assert_eq!(
        out.ok(),
        "tmpfs\nnetns\ndummy\nloop-ext4\ncgroup-limited\nfound in the root\n",
        "{out:?}"
    );
}

#[test]
fn docker_runs_a_container_in_the_guest() {
    let s = unprivileged();
    let dir = guest_visible_dir("docker-");
    let tarball = docker_image_tarball(dir.path());
    let script = format!(
        "mkdir -p /var/lib/docker && mount -t tmpfs tmpfs /var/lib/docker
         mkdir -p /etc/docker && mount -t tmpfs tmpfs /etc/docker
         dockerd --iptables=false --bridge=none > /tmp/dockerd.log 2>&1 &
         for i in $(seq 1 600); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
         docker import {} local/tiny >/dev/null || {{ tail -20 /tmp/dockerd.log; exit 1; }}
         docker run --rm --network none local/tiny /bin/only-in-this-root | sed 's/found in the root/ok/'",
        tarball.display()
    );
    let out = sekexe(
        &s,
        ["run", "--overlay", "--mem", "1G", "--", "sh", "-c", &script],
    )
    .timeout(Duration::from_secs(300))
    .run();
    assert_eq!(out.ok(), "ok\n", "{out:?}");
    s.assert_clean();
}
