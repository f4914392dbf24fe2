//! What a UML kernel can do, read from its `--showconfig` output. Pure: it takes the text, so
//! it is tested with any configuration.

use std::collections::{HashMap, HashSet};

/// A kernel's configuration: option name (without `CONFIG_`) to value; `n` for unset ones.
/// Also the boot parameters sekexe may use that the kernel's `--help` lists.
#[derive(Debug, Clone, Default)]
pub struct Kconfig {
    values: HashMap<String, String>,
    params: HashSet<String>,
}

/// Boot parameters that tell kernels of different generations apart: `seccomp=` (seccomp
/// userspace, Linux 6.17+) and `ncpus=` (SMP, 6.19+).
pub const PARAMS: &[&str] = &["seccomp", "ncpus"];

/// How the cached configuration records a boot parameter the kernel takes.
const PARAM_MARK: &str = "# sekexe-param: ";

/// The lines recording which of `PARAMS` a kernel's `--help` text lists (each appears there as
/// `NAME=<...>` at the start of a line).
pub fn param_lines(help: &str) -> String {
    PARAMS
        .iter()
        .filter(|p| help.lines().any(|l| l.starts_with(&format!("{p}="))))
        .map(|p| format!("{PARAM_MARK}{p}\n"))
        .collect()
}

impl Kconfig {
    pub fn parse(text: &str) -> Kconfig {
        let mut values = HashMap::new();
        let mut params = HashSet::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(param) = line.strip_prefix(PARAM_MARK) {
                params.insert(param.to_string());
            } else if let Some(rest) = line.strip_prefix("# CONFIG_") {
                if let Some(name) = rest.strip_suffix(" is not set") {
                    values.insert(name.to_string(), "n".to_string());
                }
            } else if let Some(rest) = line.strip_prefix("CONFIG_") {
                if let Some((name, value)) = rest.split_once('=') {
                    values.insert(name.to_string(), value.trim_matches('"').to_string());
                }
            }
        }
        Kconfig { values, params }
    }

    /// The kernel takes boot parameter `name=` (one of `PARAMS`).
    pub fn takes(&self, name: &str) -> bool {
        self.params.contains(name)
    }

    /// Guest processes can run under seccomp instead of ptrace (`seccomp=on`).
    pub fn seccomp_userspace(&self) -> bool {
        self.takes("seccomp")
    }

    /// hostfs can keep names, attributes and data for a while (`hostfs.cache_ms=`, the
    /// project's patch).
    pub fn hostfs_cache(&self) -> bool {
        self.builtin("SEKEXE_FIX_HOSTFS_CACHE")
    }

    /// The guest can have more than one CPU (`ncpus=`, with seccomp userspace only).
    pub fn smp(&self) -> bool {
        self.builtin("SMP") && self.takes("ncpus")
    }

    /// The most CPUs the guest can have.
    pub fn max_cpus(&self) -> u32 {
        if self.smp() {
            self.get("NR_CPUS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
        } else {
            1
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Built in (`=y`).
    pub fn builtin(&self, name: &str) -> bool {
        self.get(name) == Some("y")
    }

    /// Built in or a module.
    pub fn available(&self, name: &str) -> bool {
        matches!(self.get(name), Some("y") | Some("m"))
    }

    /// A User Mode Linux kernel at all.
    pub fn is_uml(&self) -> bool {
        self.builtin("UML")
    }

    /// The cgroup v1 hierarchies `--cgroup v1` would lack (the features' names without the
    /// "cgroup v1: " prefix).
    pub fn missing_v1_hierarchies(&self) -> Vec<&'static str> {
        FEATURES
            .iter()
            .filter_map(|f| Some((f.name.strip_prefix("cgroup v1: ")?, f)))
            .filter(|(_, f)| !f.present(self))
            .map(|(name, _)| name)
            .collect()
    }

    /// The required features this kernel lacks.
    pub fn missing_required(&self) -> Vec<&'static Feature> {
        FEATURES
            .iter()
            .filter(|f| f.required && !f.present(self))
            .collect()
    }

    /// Initcalls that only slow the boot down (benchmarks, self-tests, allocators for swap),
    /// which sekexe skips with `initcall_blacklist=`.
    pub fn slow_initcalls(&self) -> Vec<&'static str> {
        SLOW_INITCALLS
            .iter()
            .filter(|(_, option)| self.builtin(option))
            .map(|(initcall, _)| *initcall)
            .collect()
    }
}

/// A feature sekexe uses, the options that provide it, and what breaks without it.
pub struct Feature {
    pub name: &'static str,
    /// All of these must be available (built in, or a module the guest can load); one ending
    /// in `?` only where the kernel has that option at all (e.g. `MEMCG_V1?`: Linux 6.11 made
    /// cgroup v1 memory an option of its own, which older kernels have with `MEMCG`).
    pub options: &'static [&'static str],
    /// Must be built in, not a module (needed before any module could be loaded).
    pub builtin: bool,
    pub required: bool,
    pub breaks: &'static str,
}

impl Feature {
    pub fn present(&self, k: &Kconfig) -> bool {
        self.options.iter().all(|o| {
            if let Some(o) = o.strip_suffix('?') {
                return k.get(o).is_none() || k.available(o);
            }
            if self.builtin {
                k.builtin(o)
            } else {
                k.available(o)
            }
        })
    }
}

/// Everything `sekexe kernel check` reports, required ones first.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "hostfs",
        options: &["HOSTFS"],
        builtin: true,
        required: true,
        breaks: "the host's / cannot be the guest's root",
    },
    Feature {
        name: "proc",
        options: &["PROC_FS"],
        builtin: true,
        required: true,
        breaks: "guest-init cannot mount /proc",
    },
    Feature {
        name: "sysfs",
        options: &["SYSFS"],
        builtin: true,
        required: true,
        breaks: "guest-init cannot mount /sys",
    },
    Feature {
        name: "tmpfs",
        options: &["TMPFS"],
        builtin: true,
        required: true,
        breaks: "no writable /tmp, /run or /dev/shm",
    },
    Feature {
        name: "devtmpfs",
        options: &["DEVTMPFS"],
        builtin: true,
        required: true,
        breaks: "no device nodes in /dev",
    },
    Feature {
        name: "unix98 ptys",
        options: &["UNIX98_PTYS"],
        builtin: true,
        required: true,
        breaks: "no terminals for -t and shell mode",
    },
    Feature {
        name: "console channels",
        options: &["NULL_CHAN"],
        builtin: true,
        required: true,
        breaks: "unused consoles would open xterms (con=null)",
    },
    Feature {
        name: "ELF binaries",
        options: &["BINFMT_ELF"],
        builtin: true,
        required: true,
        breaks: "nothing can be executed",
    },
    Feature {
        name: "scripts (#!)",
        options: &["BINFMT_SCRIPT"],
        builtin: false,
        required: false,
        breaks: "scripts cannot be executed directly",
    },
    Feature {
        name: "network: vector transports (fd, tap, raw, vde, bess)",
        options: &["UML_NET_VECTOR"],
        builtin: true,
        required: false,
        breaks: "--net user, vde and tap (future-proof transports)",
    },
    Feature {
        name: "network: legacy slirp transport",
        options: &["UML_NET_SLIRP"],
        builtin: true,
        required: false,
        breaks: "--net slirp",
    },
    Feature {
        name: "network: legacy tuntap transport",
        options: &["UML_NET_TUNTAP"],
        builtin: true,
        required: false,
        breaks: "tap on kernels without the vector driver",
    },
    Feature {
        name: "network: multipath TCP",
        options: &["MPTCP"],
        builtin: false,
        required: false,
        breaks: "socket(..., IPPROTO_MPTCP) fails with EPROTONOSUPPORT",
    },
    Feature {
        name: "cgroup v2 / v1 core",
        options: &["CGROUPS"],
        builtin: true,
        required: false,
        breaks: "no cgroups at all",
    },
    Feature {
        name: "cgroup: memory",
        options: &["MEMCG"],
        builtin: true,
        required: false,
        breaks: "no memory limits",
    },
    Feature {
        name: "cgroup v1: memory",
        options: &["MEMCG", "MEMCG_V1?"],
        builtin: true,
        required: false,
        breaks: "--cgroup v1 has no memory hierarchy (Linux 6.11+ needs CONFIG_MEMCG_V1)",
    },
    Feature {
        name: "cgroup: pids",
        options: &["CGROUP_PIDS"],
        builtin: true,
        required: false,
        breaks: "no pids.max limits",
    },
    Feature {
        name: "cgroup: cpu",
        options: &["CGROUP_SCHED"],
        builtin: true,
        required: false,
        breaks: "no cpu controller",
    },
    Feature {
        name: "cgroup: freezer",
        options: &["CGROUP_FREEZER"],
        builtin: true,
        required: false,
        breaks: "no v1 freezer (docker pause)",
    },
    Feature {
        name: "cgroup: devices",
        options: &["CGROUP_DEVICE"],
        builtin: true,
        required: false,
        breaks: "no device controller (Docker needs it)",
    },
    Feature {
        name: "cgroup: cpuset",
        options: &["CPUSETS"],
        builtin: true,
        required: false,
        breaks: "no cpuset controller (needs SMP, Linux 6.19+)",
    },
    Feature {
        name: "cgroup v1: cpuset",
        options: &["CPUSETS", "CPUSETS_V1?"],
        builtin: true,
        required: false,
        breaks: "--cgroup v1 has no cpuset hierarchy (Linux 6.12+ needs CONFIG_CPUSETS_V1)",
    },
    Feature {
        name: "swap accounting",
        options: &["SWAP", "MEMCG"],
        builtin: true,
        required: false,
        breaks: "no memory.swap.* files, which container runtimes write",
    },
    Feature {
        name: "kcmp and pidfd_getfd",
        options: &["CHECKPOINT_RESTORE"],
        builtin: true,
        required: false,
        breaks: "kcmp(2), pidfd_getfd(2) and CRIU-style tools fail",
    },
    Feature {
        name: "namespaces",
        options: &[
            "NAMESPACES",
            "UTS_NS",
            "IPC_NS",
            "PID_NS",
            "NET_NS",
            "USER_NS",
        ],
        builtin: true,
        required: false,
        breaks: "unshare and containers",
    },
    Feature {
        name: "overlayfs",
        options: &["OVERLAY_FS"],
        builtin: false,
        required: false,
        breaks: "--overlay and Docker's overlay2",
    },
    Feature {
        name: "loop devices",
        options: &["BLK_DEV_LOOP"],
        builtin: false,
        required: false,
        breaks: "losetup and mount -o loop",
    },
    Feature {
        name: "ubd block devices",
        options: &["BLK_DEV_UBD"],
        builtin: true,
        required: false,
        breaks: "--disk",
    },
    Feature {
        name: "ext4",
        options: &["EXT4_FS"],
        builtin: false,
        required: false,
        breaks: "mkfs.ext4 images and disks",
    },
    Feature {
        name: "seccomp",
        options: &["SECCOMP", "SECCOMP_FILTER"],
        builtin: true,
        required: false,
        breaks: "seccomp filters in the guest (Docker profiles)",
    },
    Feature {
        name: "landlock",
        options: &["SECURITY_LANDLOCK"],
        builtin: true,
        required: false,
        breaks: "Landlock sandboxes in the guest",
    },
    Feature {
        name: "netfilter for Docker",
        options: &["NETFILTER", "NF_CONNTRACK", "NF_NAT", "BRIDGE", "VETH"],
        builtin: false,
        required: false,
        breaks: "Docker's bridge network and iptables",
    },
];

/// Initcall names and the option that builds them in.
const SLOW_INITCALLS: &[(&str, &str)] = &[
    ("raid6_select_algo", "RAID6_PQ_BENCHMARK"),
    ("init_btrfs_fs", "BTRFS_FS"),
    ("calibrate_xor_blocks", "XOR_BLOCKS"),
    ("init_zswap", "ZSWAP"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
CONFIG_UML=y
CONFIG_HOSTFS=y
CONFIG_PROC_FS=y
CONFIG_SYSFS=y
CONFIG_TMPFS=y
CONFIG_DEVTMPFS=y
CONFIG_UNIX98_PTYS=y
CONFIG_NULL_CHAN=y
CONFIG_BINFMT_ELF=y
CONFIG_OVERLAY_FS=m
CONFIG_LSM=\"landlock,yama\"
# CONFIG_BTRFS_FS is not set
";

    #[test]
    fn cgroup_v1_hierarchies_count_only_where_the_kernel_has_their_options() {
        // Linux 6.1: v1 memory comes with MEMCG, no option of its own.
        let old = Kconfig::parse("CONFIG_MEMCG=y\nCONFIG_CPUSETS=y\n");
        assert!(old.missing_v1_hierarchies().is_empty());
        // Debian 13's 6.12: the option exists and is off.
        let trixie = Kconfig::parse(
            "CONFIG_MEMCG=y\n# CONFIG_MEMCG_V1 is not set\nCONFIG_CPUSETS=y\nCONFIG_CPUSETS_V1=y\n",
        );
        assert_eq!(trixie.missing_v1_hierarchies(), ["memory"]);
        let none = Kconfig::parse("# CONFIG_MEMCG is not set\n");
        assert_eq!(none.missing_v1_hierarchies(), ["memory", "cpuset"]);
    }

    #[test]
    fn parses_values_modules_strings_and_unset_options() {
        let k = Kconfig::parse(GOOD);
        assert!(k.is_uml());
        assert!(k.builtin("HOSTFS"));
        assert!(k.available("OVERLAY_FS") && !k.builtin("OVERLAY_FS"));
        assert_eq!(k.get("LSM"), Some("landlock,yama"));
        assert_eq!(k.get("BTRFS_FS"), Some("n"));
        assert_eq!(k.get("NOPE"), None);
    }

    #[test]
    fn a_complete_kernel_misses_nothing_required() {
        assert!(Kconfig::parse(GOOD).missing_required().is_empty());
    }

    #[test]
    fn missing_or_modular_required_options_are_reported() {
        let text = GOOD
            .replace("CONFIG_HOSTFS=y", "CONFIG_HOSTFS=m")
            .replace("CONFIG_DEVTMPFS=y\n", "");
        let missing: Vec<_> = Kconfig::parse(&text)
            .missing_required()
            .iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(missing, ["hostfs", "devtmpfs"]);
    }

    #[test]
    fn boot_parameters_come_from_the_help_text() {
        let help = "mem=<Amount of desired ram>\n    ...\nseccomp=<on/auto/off>\n    Configure\n";
        let k = Kconfig::parse(&format!("{GOOD}{}", param_lines(help)));
        assert!(k.seccomp_userspace() && !k.takes("ncpus"));
        // SMP needs both the option and the parameter.
        let smp = format!(
            "{GOOD}CONFIG_SMP=y\nCONFIG_NR_CPUS=8\n{}",
            param_lines("ncpus=<# of desired CPUs>\nseccomp=<on>\n")
        );
        assert_eq!(Kconfig::parse(&smp).max_cpus(), 8);
        assert_eq!(
            Kconfig::parse(&format!("{GOOD}CONFIG_SMP=y\nCONFIG_NR_CPUS=8\n")).max_cpus(),
            1
        );
        // A word merely mentioned in prose is not a parameter.
        assert!(param_lines("  use seccomp=on to ...\n").is_empty());
    }

    #[test]
    fn not_uml_without_config_uml() {
        assert!(!Kconfig::parse("CONFIG_X86=y\n").is_uml());
        assert!(!Kconfig::parse("").is_uml());
    }

    #[test]
    fn slow_initcalls_follow_the_options_built_in() {
        let stock =
            "CONFIG_RAID6_PQ_BENCHMARK=y\nCONFIG_BTRFS_FS=y\nCONFIG_XOR_BLOCKS=y\nCONFIG_ZSWAP=y\n";
        assert_eq!(
            Kconfig::parse(stock).slow_initcalls(),
            [
                "raid6_select_algo",
                "init_btrfs_fs",
                "calibrate_xor_blocks",
                "init_zswap"
            ]
        );
        assert!(Kconfig::parse(GOOD).slow_initcalls().is_empty());
    }
}
