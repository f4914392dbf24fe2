//! cgroups at /sys/fs/cgroup: v2 with every controller delegated (the default), or one v1
//! hierarchy per controller the way Docker and systemd expect them (`--cgroup v1`).

use std::path::Path;

use anyhow::{Context, Result};
use rustix::mount::{mount, MountFlags};
use sekexe_wire::Cgroups;

use crate::log::Log;
use crate::mounts::ensure_dir;

const ROOT: &str = "/sys/fs/cgroup";

/// v1 controllers that share one hierarchy, with a link under each single name.
const JOINED: &[&[&str]] = &[&["cpu", "cpuacct"], &["net_cls", "net_prio"]];

pub fn mount_cgroups(mode: Cgroups, log: &mut Log) -> Result<()> {
    match mode {
        Cgroups::None => Ok(()),
        Cgroups::V2 => v2(log),
        Cgroups::V1 => v1(log),
    }
}

fn flags() -> MountFlags {
    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC
}

fn v2(log: &mut Log) -> Result<()> {
    mount("cgroup2", ROOT, "cgroup2", flags(), c"")
        .context("mount cgroup2 (CONFIG_CGROUPS missing?)")?;
    let root = Path::new(ROOT);
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    // One at a time: a controller the kernel refuses should not take the others down.
    let mut enabled = Vec::new();
    for c in available.split_whitespace() {
        if std::fs::write(root.join("cgroup.subtree_control"), format!("+{c}")).is_ok() {
            enabled.push(c);
        }
    }
    log.step(&format!("cgroup v2: delegated {}", enabled.join(" ")));
    Ok(())
}

fn v1(log: &mut Log) -> Result<()> {
    mount("tmpfs", ROOT, "tmpfs", flags(), c"mode=0755")
        .context("mount tmpfs on /sys/fs/cgroup")?;
    let table = std::fs::read_to_string("/proc/cgroups").context("read /proc/cgroups")?;
    let hierarchies = v1_hierarchies(&table);
    let mut mounted = Vec::new();
    for h in &hierarchies {
        let name = h.join(",");
        let dir = Path::new(ROOT).join(&name);
        ensure_dir(&dir)?;
        let options = std::ffi::CString::new(name.clone()).unwrap();
        match mount("cgroup", &dir, "cgroup", flags(), options.as_c_str()) {
            Ok(()) => {
                if h.len() > 1 {
                    for single in h {
                        let _ = std::os::unix::fs::symlink(&name, Path::new(ROOT).join(single));
                    }
                }
                mounted.push(name);
            }
            Err(e) => log.error(&format!("cgroup v1 {name}: {e}")),
        }
    }
    log.step(&format!("cgroup v1: {}", mounted.join(" ")));
    Ok(())
}

/// The v1 hierarchies to mount, from /proc/cgroups's text: the enabled controllers, the
/// JOINED ones together when the kernel has all of their members, each other one alone.
fn v1_hierarchies(proc_cgroups: &str) -> Vec<Vec<String>> {
    let mut controllers: Vec<String> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect();
    let mut hierarchies: Vec<Vec<String>> = Vec::new();
    for group in JOINED {
        if group.iter().all(|c| controllers.iter().any(|x| x == c)) {
            controllers.retain(|c| !group.contains(&c.as_str()));
            hierarchies.push(group.iter().map(|s| s.to_string()).collect());
        }
    }
    hierarchies.extend(controllers.into_iter().map(|c| vec![c]));
    hierarchies
}

#[cfg(test)]
mod tests {
    #[test]
    fn v1_hierarchies_are_the_ones_docker_expects() {
        // /proc/cgroups as a UML kernel prints it (net_prio missing, pids disabled).
        let table = "#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t0\t1\t1
cpu\t0\t1\t1
cpuacct\t0\t1\t1
memory\t0\t1\t1
net_cls\t0\t1\t1
pids\t0\t1\t0
";
        let names: Vec<String> = super::v1_hierarchies(table)
            .iter()
            .map(|h| h.join(","))
            .collect();
        // cpu and cpuacct share one; net_cls stays alone without net_prio; pids is off.
        assert_eq!(names, ["cpu,cpuacct", "cpuset", "memory", "net_cls"]);
    }
}
