//! How guest processes run on the host, and on how many CPUs. A pure decision from the
//! user's options, what the kernel takes, and whether the kernel process is confined.
//!
//! With ptrace userspace every guest system call and page fault is a round trip through
//! ptrace. With seccomp userspace (Linux 6.17+) a guest process traps its own system calls and
//! talks to the kernel through shared memory: faster, but upstream calls it insecure, since a
//! guest process can take the guest kernel over, and so run code in the kernel process on the
//! host. sekexe treats the guest kernel as hostile anyway, and the host-side confinement of
//! the kernel process (confine/sandbox.rs) is the boundary in both modes; but that confinement
//! still leaves a taken-over kernel process a few channels to the host (README, Security:
//! unix datagram and seqpacket sockets, /dev/pts), which seccomp userspace puts within reach
//! of any guest process. So seccomp userspace is opt-in.

use anyhow::{bail, Result};

/// `--userspace`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserspaceArg {
    // Doc comments here are `--help` text.
    /// ptrace, for now: seccomp userspace gives guest processes more of the host (README: Kernels)
    Auto,
    /// faster (Linux 6.17+); opt-in
    Seccomp,
    /// every guest system call and page fault through ptrace
    Ptrace,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Userspace {
    Ptrace,
    Seccomp,
}

/// What the kernel offers, from its configuration and `--help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffers {
    pub seccomp: bool,
    pub max_cpus: u32,
}

/// The decision, and the boot parameters that carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub userspace: Userspace,
    pub cpus: u32,
    /// Why auto chose ptrace on a kernel that offers seccomp, for --debug.
    pub note: Option<&'static str>,
    /// For the user: seccomp userspace without the full confinement.
    pub warning: Option<&'static str>,
}

impl Choice {
    /// `seccomp=on|off` when the kernel takes it (always explicit: the kernel's own default
    /// may change), `ncpus=N` when more than one.
    pub fn words(&self, offers: KernelOffers) -> Vec<String> {
        let mut w = Vec::new();
        if offers.seccomp {
            w.push(
                match self.userspace {
                    Userspace::Seccomp => "seccomp=on",
                    Userspace::Ptrace => "seccomp=off",
                }
                .to_string(),
            );
        }
        if self.cpus > 1 {
            w.push(format!("ncpus={}", self.cpus));
        }
        w
    }
}

/// Decides. `confined`: the kernel process gets the full host-side confinement (sandbox on,
/// Landlock ABI 6 or later, which scopes signals and abstract sockets).
pub fn choose(
    arg: UserspaceArg,
    cpus: u32,
    offers: KernelOffers,
    confined: bool,
) -> Result<Choice> {
    if cpus > 1 {
        if offers.max_cpus <= 1 {
            bail!("--cpus {cpus}: this kernel has no SMP (Linux 6.19+ with CONFIG_SMP, as scripts/build-kernel makes): use --cpus 1 or another --kernel");
        }
        if cpus > offers.max_cpus {
            bail!(
                "--cpus {cpus}: this kernel has at most {} CPUs (CONFIG_NR_CPUS): use --cpus {}",
                offers.max_cpus,
                offers.max_cpus
            );
        }
        if arg != UserspaceArg::Seccomp {
            bail!("--cpus {cpus} needs seccomp userspace (UML has no SMP under ptrace), which is opt-in: add --userspace seccomp (README: Kernels), or use --cpus 1");
        }
    }
    let (userspace, note) = match arg {
        UserspaceArg::Ptrace => (Userspace::Ptrace, None),
        UserspaceArg::Seccomp if !offers.seccomp => {
            bail!("--userspace seccomp: this kernel has no seccomp userspace (Linux 6.17+, as scripts/build-kernel makes): use --userspace ptrace or another --kernel")
        }
        UserspaceArg::Seccomp => (Userspace::Seccomp, None),
        UserspaceArg::Auto if offers.seccomp => (
            Userspace::Ptrace,
            Some("ptrace userspace; this kernel also has seccomp userspace, which is faster and opt-in (--userspace seccomp)"),
        ),
        UserspaceArg::Auto => (Userspace::Ptrace, None),
    };
    let warning = (userspace == Userspace::Seccomp && !confined).then_some(
        "--userspace seccomp without the full confinement of the kernel process (--no-sandbox, or no Landlock ABI 6 on this host): any guest process can reach the host with your rights",
    );
    Ok(Choice {
        userspace,
        cpus,
        note,
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use UserspaceArg::*;

    const OLD: KernelOffers = KernelOffers {
        seccomp: false,
        max_cpus: 1,
    };
    const SECCOMP: KernelOffers = KernelOffers {
        seccomp: true,
        max_cpus: 1,
    };
    const SMP: KernelOffers = KernelOffers {
        seccomp: true,
        max_cpus: 16,
    };

    fn ok(arg: UserspaceArg, cpus: u32, offers: KernelOffers, confined: bool) -> Choice {
        choose(arg, cpus, offers, confined).unwrap()
    }

    fn err(arg: UserspaceArg, cpus: u32, offers: KernelOffers, confined: bool) -> String {
        choose(arg, cpus, offers, confined).unwrap_err().to_string()
    }

    #[test]
    fn auto_is_ptrace_and_says_seccomp_is_there() {
        for offers in [OLD, SECCOMP, SMP] {
            for confined in [true, false] {
                let c = ok(Auto, 1, offers, confined);
                assert_eq!(c.userspace, Userspace::Ptrace);
                assert_eq!(c.note.is_some(), offers.seccomp);
                assert!(c.warning.is_none());
            }
        }
    }

    #[test]
    fn explicit_modes_are_obeyed_or_refused_with_the_fix() {
        assert_eq!(ok(Ptrace, 1, SMP, true).userspace, Userspace::Ptrace);
        let c = ok(Seccomp, 1, SECCOMP, true);
        assert_eq!((c.userspace, c.warning), (Userspace::Seccomp, None));
        // Unconfined: obeyed, with a warning.
        assert!(ok(Seccomp, 1, SECCOMP, false).warning.is_some());
        assert!(err(Seccomp, 1, OLD, true).contains("use --userspace ptrace"));
    }

    #[test]
    fn more_cpus_need_smp_and_seccomp_asked_for() {
        assert_eq!(ok(Seccomp, 2, SMP, true).cpus, 2);
        assert!(err(Seccomp, 2, SECCOMP, true).contains("no SMP"));
        assert!(err(Auto, 2, OLD, true).contains("no SMP"));
        assert!(err(Seccomp, 17, SMP, true).contains("at most 16"));
        assert!(err(Ptrace, 2, SMP, true).contains("add --userspace seccomp"));
        assert!(err(Auto, 2, SMP, true).contains("add --userspace seccomp"));
    }

    #[test]
    fn words_are_explicit_where_the_kernel_takes_them() {
        let on = ok(Seccomp, 1, SECCOMP, true);
        assert_eq!(on.words(SECCOMP), ["seccomp=on"]);
        assert_eq!(ok(Auto, 1, SECCOMP, true).words(SECCOMP), ["seccomp=off"]);
        assert!(ok(Auto, 1, OLD, true).words(OLD).is_empty());
        assert_eq!(
            ok(Seccomp, 4, SMP, true).words(SMP),
            ["seccomp=on", "ncpus=4"]
        );
    }
}
