//! How guest processes run on the host, and on how many CPUs. A pure decision from the
//! user's options, what the kernel takes, and whether the kernel process is confined.
//!
//! With ptrace userspace every guest system call and page fault is a round trip through
//! ptrace. With seccomp userspace (Linux 6.17+) a guest process traps its own system calls and
//! talks to the kernel through shared memory: faster, but upstream calls it insecure, since a
//! guest process can take the guest kernel over, and so run code in the kernel process on the
//! host. sekexe treats the guest kernel as hostile anyway: the host-side confinement of the
//! kernel process (confine/sandbox.rs) is the boundary in both modes, so seccomp userspace is
//! the default only where that confinement is complete.

use anyhow::{bail, Result};

/// `--userspace`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserspaceArg {
    /// seccomp where the kernel has it and the kernel process is confined, else ptrace.
    Auto,
    Seccomp,
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
/// Landlock available).
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
        if arg == UserspaceArg::Ptrace {
            bail!("--cpus {cpus} needs seccomp userspace (UML has no SMP under ptrace): drop --userspace ptrace or use --cpus 1");
        }
    }
    let (userspace, note) = match arg {
        UserspaceArg::Ptrace => (Userspace::Ptrace, None),
        UserspaceArg::Seccomp if !offers.seccomp => {
            bail!("--userspace seccomp: this kernel has no seccomp userspace (Linux 6.17+, as scripts/build-kernel makes): use --userspace ptrace or another --kernel")
        }
        UserspaceArg::Seccomp => (Userspace::Seccomp, None),
        UserspaceArg::Auto if !offers.seccomp => (Userspace::Ptrace, None),
        UserspaceArg::Auto if !confined && cpus > 1 => {
            bail!("--cpus {cpus} needs seccomp userspace, which sekexe uses only when the kernel process is confined (no --no-sandbox, Landlock available): add --userspace seccomp to accept the risk, or use --cpus 1")
        }
        UserspaceArg::Auto if !confined => (
            Userspace::Ptrace,
            Some("ptrace userspace: seccomp userspace is used only when the kernel process is confined (--no-sandbox, or no Landlock)"),
        ),
        UserspaceArg::Auto => (Userspace::Seccomp, None),
    };
    Ok(Choice {
        userspace,
        cpus,
        note,
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
    fn auto_takes_seccomp_only_where_offered_and_confined() {
        let table = [
            (OLD, true, Userspace::Ptrace),
            (OLD, false, Userspace::Ptrace),
            (SECCOMP, true, Userspace::Seccomp),
            (SECCOMP, false, Userspace::Ptrace),
            (SMP, true, Userspace::Seccomp),
        ];
        for (offers, confined, want) in table {
            assert_eq!(
                ok(Auto, 1, offers, confined).userspace,
                want,
                "{offers:?} {confined}"
            );
        }
        assert!(ok(Auto, 1, SECCOMP, false).note.is_some());
    }

    #[test]
    fn explicit_modes_are_obeyed_or_refused_with_the_fix() {
        assert_eq!(ok(Ptrace, 1, SMP, true).userspace, Userspace::Ptrace);
        assert_eq!(ok(Seccomp, 1, SECCOMP, false).userspace, Userspace::Seccomp);
        assert!(err(Seccomp, 1, OLD, true).contains("use --userspace ptrace"));
    }

    #[test]
    fn more_cpus_need_smp_and_seccomp() {
        assert_eq!(ok(Auto, 2, SMP, true).cpus, 2);
        assert!(err(Auto, 2, SECCOMP, true).contains("no SMP"));
        assert!(err(Auto, 2, OLD, true).contains("no SMP"));
        assert!(err(Auto, 17, SMP, true).contains("at most 16"));
        assert!(err(Ptrace, 2, SMP, true).contains("needs seccomp userspace"));
        assert!(err(Auto, 2, SMP, false).contains("--userspace seccomp"));
        assert_eq!(ok(Seccomp, 2, SMP, false).cpus, 2);
    }

    #[test]
    fn words_are_explicit_where_the_kernel_takes_them() {
        let on = ok(Auto, 1, SECCOMP, true);
        assert_eq!(on.words(SECCOMP), ["seccomp=on"]);
        assert_eq!(ok(Ptrace, 1, SECCOMP, true).words(SECCOMP), ["seccomp=off"]);
        assert!(ok(Auto, 1, OLD, true).words(OLD).is_empty());
        assert_eq!(ok(Auto, 4, SMP, true).words(SMP), ["seccomp=on", "ncpus=4"]);
    }
}
