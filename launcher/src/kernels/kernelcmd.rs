//! `sekexe kernel check`, `sekexe kernel list` and `sekexe kernel build`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Result};

use crate::kconfig::{Feature, Kconfig, FEATURES};
use crate::kernel::{self, NOT_FOUND_HINT};
use crate::paths;

/// The fixes scripts/build-kernel applies, as the kernel names them in its configuration, and
/// what an unpatched kernel does instead.
const FIXES: &[(&str, &str, &str)] = &[
    (
        "SEKEXE_FIX_USER_TIME",
        "CPU time of guest processes counted as user time",
        "unpatched UML kernels since 6.12 or earlier count it all as system time (Debian's 6.1 counts it right)",
    ),
    (
        "SEKEXE_FIX_ALTSTACK",
        "sigaltstack with SS_AUTODISARM re-armed after a handler",
        "UML leaves the alternate stack disarmed after the first handler",
    ),
    (
        "SEKEXE_FIX_HOSTFS_WALK",
        "path walks through hostfs without a host call per folder",
        "unpatched hostfs asks the host for every folder a path walk passes (slower)",
    ),
    (
        "SEKEXE_FIX_HOSTFS_CACHE",
        "hostfs keeps names, attributes and data for --fs-cache, and reads large blocks",
        "unpatched hostfs asks the host for every path component of every walk, and reads a page per host call",
    ),
    (
        "SEKEXE_FIX_HOSTFS_DIRECT_READ",
        "large reads of host files straight into the reader's memory",
        "without this fix hostfs copies every read through the guest's page cache (several times slower for large files)",
    ),
    (
        "SEKEXE_FIX_SMP_ONE_CPU",
        "a one-CPU guest on an SMP kernel without two host calls per interrupt toggle",
        "unpatched UML kernels with SMP (6.19+) mask the IPI signal at every interrupt toggle, even with one CPU (slower boots and system calls)",
    ),
    (
        "SEKEXE_FIX_CPUINFO",
        "/proc/cpuinfo's entries end with an empty line, so ps shows start times",
        "UML's /proc/cpuinfo has no empty line after an entry: ps of procps 4.0.2 (Debian 12) fails with \"Unable to get system boot time\"",
    ),
    (
        "SEKEXE_FIX_VECTOR_TAP_SMP",
        "--net tap on an SMP kernel",
        "unpatched UML kernels with SMP (6.19+) panic when a tap transport comes up",
    ),
];

/// `sekexe kernel build`: runs the build script that ships with sekexe (installed beside it
/// in lib/sekexe, or in the checkout it was built from), which prints the kernel's path.
pub fn build(system: bool, force: bool) -> Result<u8> {
    let exe = std::env::current_exe()?;
    let script = build_script(&exe).ok_or_else(|| {
        anyhow!(
            "the kernel build script is not installed beside {} (lib/sekexe/scripts/build-kernel): \
             install the sekexe package, or run scripts/build-kernel from a checkout",
            exe.display()
        )
    })?;
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if force {
        cmd.arg("--force");
    }
    if system {
        if !rustix::process::geteuid().is_root() {
            anyhow::bail!(
                "--system writes {}, which needs root: sudo sekexe kernel build --system",
                paths::SYSTEM_CACHE
            );
        }
        cmd.env("SEKEXE_CACHE", paths::SYSTEM_CACHE);
    }
    let status = cmd
        .status()
        .map_err(|e| anyhow!("run {}: {e}", script.display()))?;
    if !status.success() {
        anyhow::bail!(
            "the kernel build failed ({}): the lines above say why",
            crate::uml::describe(status)
        );
    }
    Ok(0)
}

/// The build script: installed at `<prefix>/lib/sekexe/scripts/build-kernel` beside
/// `<prefix>/bin/sekexe`, or in the checkout whose `target/<profile>/sekexe` this is.
fn build_script(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    let installed = dir.join("../lib/sekexe/scripts/build-kernel");
    let checkout = dir.ancestors().nth(2)?.join("scripts/build-kernel");
    [installed, checkout].into_iter().find(|p| {
        p.is_file()
            && p.parent()
                .and_then(Path::parent)
                .is_some_and(|root| root.join("kernel-config/series").is_file())
    })
}

/// Exit status of `kernel check` when a required feature is missing.
pub const MISSING_REQUIRED: u8 = 1;

pub fn check(path: Option<&Path>) -> Result<u8> {
    let (path, source) = kernel::candidates(path)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no UML kernel found: {NOT_FOUND_HINT}"))?;
    let config = kernel::load_config(&path)?;
    let version = version(&path);
    let modules = version.as_deref().and_then(modules_dir);
    println!("kernel: {} ({})", path.display(), source.describe());
    if let Some(v) = &version {
        println!("version: {v}");
    }
    match &modules {
        Some(dir) if host_has_modprobe() => {
            println!("modules: {} (modprobe works in the guest)", dir.display())
        }
        Some(dir) => println!(
            "modules: {} (but no modprobe in this root for the guest to run: apt install kmod)",
            dir.display()
        ),
        None => println!("modules: none (features built as modules are unavailable)"),
    }
    let report = report(&config, modules.is_some());
    print!("{report}");
    Ok(if config.missing_required().is_empty() {
        0
    } else {
        MISSING_REQUIRED
    })
}

/// The feature table, one line each: required ones first, then what the kernel lacks and
/// what breaks without it, then the slow initcalls.
pub fn report(config: &Kconfig, have_modules: bool) -> String {
    let mut out = String::new();
    for (title, required) in [("required", true), ("optional", false)] {
        out.push_str(&format!("\n{title}:\n"));
        for f in FEATURES.iter().filter(|f| f.required == required) {
            out.push_str(&feature_line(f, config, have_modules));
            out.push('\n');
        }
    }
    out.push_str("\nuserspace and CPUs:\n");
    out.push_str(&if config.seccomp_userspace() {
        "  ok       seccomp userspace (seccomp=): the faster mode, sekexe's default where the kernel process is confined\n".to_string()
    } else {
        "  missing  seccomp userspace: guest processes run under ptrace, the slower mode (Linux 6.17+ has seccomp)\n".to_string()
    });
    out.push_str(&if config.smp() {
        format!("  ok       SMP: --cpus up to {}\n", config.max_cpus())
    } else {
        "  missing  SMP: one guest CPU, no cpuset controller (Linux 6.19+ with CONFIG_SMP)\n"
            .to_string()
    });
    out.push_str(&if config.get("PGTABLE_LEVELS") == Some("4") {
        "  ok       a 47-bit user address space (4-level page tables): AddressSanitizer works\n"
            .to_string()
    } else {
        "  missing  a 47-bit user address space: 512 GiB (3-level page tables), too small for AddressSanitizer's shadow (Linux 7.x has 4 levels)\n".to_string()
    });
    out.push_str("\nfixes beyond upstream (kernel-config/patches):\n");
    for (option, what, without) in FIXES {
        if config.builtin(option) {
            out.push_str(&format!("  ok       {what}\n"));
        } else {
            out.push_str(&format!("  unknown  {what}: {without}\n"));
        }
    }
    out.push_str("\nboot time:\n");
    let slow = config.slow_initcalls();
    if slow.is_empty() {
        out.push_str(
            "  ok       no slow boot-time initcalls (RAID6/XOR benchmarks, btrfs, zswap)\n",
        );
    } else {
        out.push_str(&format!(
            "  skipped  slow initcalls {}: sekexe skips them at boot (--full-boot runs them)\n",
            slow.join(", ")
        ));
    }
    out
}

fn feature_line(f: &Feature, config: &Kconfig, have_modules: bool) -> String {
    // `X?` (an option only some kernels have) reads as X, where this kernel has it at all.
    let names: Vec<&str> = f
        .options
        .iter()
        .filter_map(|o| match o.strip_suffix('?') {
            Some(o) => config.get(o).is_some().then_some(o),
            None => Some(*o),
        })
        .collect();
    let options = names.join(", ");
    let modular = names.iter().any(|o| config.get(o) == Some("m"));
    let usable = f.present(config) && (have_modules || !modular);
    let (state, note) = if usable {
        if modular {
            (
                "module",
                format!("{} ({options}; loaded with modprobe)", f.name),
            )
        } else {
            ("ok", format!("{} ({options})", f.name))
        }
    } else {
        let missing: Vec<&str> = names
            .iter()
            .filter(|o| !config.builtin(o))
            .copied()
            .collect();
        let mark = if f.required { "MISSING" } else { "missing" };
        (
            mark,
            format!(
                "{}: without CONFIG_{}, {}",
                f.name,
                missing.join(", CONFIG_"),
                f.breaks
            ),
        )
    };
    format!("  {state:<8} {note}")
}

/// Where Debian's packaging keeps the modules of kernel release `version`, if it ships any.
pub fn modules_dir(version: &str) -> Option<PathBuf> {
    Some(Path::new(sekexe_wire::names::UML_MODULES_DIR).join(version)).filter(|d| d.is_dir())
}

/// The guest runs the host root's modprobe (kmod), which minimal hosts and containers lack.
pub fn host_has_modprobe() -> bool {
    crate::paths::find_program("modprobe").is_some()
}

/// `KERNEL --version`: the release, for the modules folder.
pub fn version(path: &Path) -> Option<String> {
    let out = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!v.is_empty() && v.len() < 64 && !v.contains(char::is_whitespace)).then_some(v)
}

pub fn list() -> Result<u8> {
    let found = kernel::candidates(None);
    if found.is_empty() {
        println!("no UML kernel found: {NOT_FOUND_HINT}");
        return Ok(MISSING_REQUIRED);
    }
    for (i, (path, source)) in found.iter().enumerate() {
        let state = match kernel::load_config(path) {
            Ok(c) if c.missing_required().is_empty() => "usable".to_string(),
            Ok(c) => format!(
                "lacks {}",
                c.missing_required()
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => format!("unusable: {e:#}"),
        };
        let default = if i == 0 { "  (default)" } else { "" };
        println!(
            "{}  [{}; {state}]{default}",
            path.display(),
            source.describe()
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK_LIKE: &str = "CONFIG_UML=y\nCONFIG_HOSTFS=y\nCONFIG_PROC_FS=y\nCONFIG_SYSFS=y\n\
        CONFIG_TMPFS=y\nCONFIG_DEVTMPFS=y\nCONFIG_UNIX98_PTYS=y\nCONFIG_NULL_CHAN=y\n\
        CONFIG_BINFMT_ELF=y\nCONFIG_OVERLAY_FS=m\nCONFIG_RAID6_PQ_BENCHMARK=y\n";

    #[test]
    fn report_lists_required_then_optional_with_what_breaks() {
        let r = report(&Kconfig::parse(STOCK_LIKE), true);
        let required = r.find("required:").unwrap();
        let optional = r.find("optional:").unwrap();
        assert!(required < optional);
        assert!(r.contains("  ok       hostfs (HOSTFS)"), "{r}");
        assert!(r.contains("  module   overlayfs"), "{r}");
        assert!(
            r.contains("  missing  loop devices: without CONFIG_BLK_DEV_LOOP, losetup"),
            "{r}"
        );
        assert!(
            r.contains("skipped  slow initcalls raid6_select_algo"),
            "{r}"
        );
    }

    #[test]
    fn report_says_userspace_modes_smp_and_fixes() {
        let old = report(&Kconfig::parse(STOCK_LIKE), true);
        assert!(old.contains("  missing  seccomp userspace"), "{old}");
        assert!(old.contains("  missing  SMP"), "{old}");
        assert!(
            old.contains("  missing  a 47-bit user address space"),
            "{old}"
        );
        assert!(old.contains("  unknown  CPU time"), "{old}");
        let new = format!(
            "{STOCK_LIKE}CONFIG_SMP=y\nCONFIG_NR_CPUS=16\nCONFIG_SEKEXE_FIX_USER_TIME=y\n\
             CONFIG_PGTABLE_LEVELS=4\n\
             CONFIG_SEKEXE_FIX_ALTSTACK=y\nCONFIG_SEKEXE_FIX_VECTOR_TAP_SMP=y\nCONFIG_SEKEXE_FIX_HOSTFS_WALK=y\n\
             CONFIG_SEKEXE_FIX_HOSTFS_CACHE=y\nCONFIG_SEKEXE_FIX_SMP_ONE_CPU=y\n\
             CONFIG_SEKEXE_FIX_HOSTFS_DIRECT_READ=y\nCONFIG_SEKEXE_FIX_CPUINFO=y\n{}",
            crate::kconfig::param_lines("seccomp=<on/auto/off>\nncpus=<# of CPUs>\n")
        );
        let r = report(&Kconfig::parse(&new), true);
        assert!(r.contains("  ok       seccomp userspace"), "{r}");
        assert!(r.contains("  ok       SMP: --cpus up to 16"), "{r}");
        assert!(r.contains("  ok       a 47-bit user address space"), "{r}");
        assert!(r.contains("  ok       CPU time"), "{r}");
        assert!(r.contains("  ok       sigaltstack"), "{r}");
        assert!(r.contains("  ok       --net tap on an SMP kernel"), "{r}");
        assert!(r.contains("  ok       path walks through hostfs"), "{r}");
        assert!(r.contains("  ok       hostfs keeps names"), "{r}");
        assert!(!old.contains("  ok       hostfs keeps names"), "{old}");
        assert!(r.contains("  ok       large reads of host files"), "{r}");
        assert!(!old.contains("  ok       large reads"), "{old}");
        assert!(
            r.contains("  ok       a one-CPU guest on an SMP kernel"),
            "{r}"
        );
    }

    #[test]
    fn modules_without_a_module_folder_count_as_missing() {
        let r = report(&Kconfig::parse(STOCK_LIKE), false);
        assert!(r.contains("  missing  overlayfs"), "{r}");
    }

    #[test]
    fn a_missing_required_feature_is_shouted() {
        let text = STOCK_LIKE.replace("CONFIG_DEVTMPFS=y\n", "");
        let r = report(&Kconfig::parse(&text), true);
        assert!(
            r.contains("  MISSING  devtmpfs: without CONFIG_DEVTMPFS, no device nodes in /dev"),
            "{r}"
        );
    }
}
