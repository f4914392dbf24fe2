//! How guest processes run on the host, and on how many CPUs. A pure decision from the
//! user's options, what the kernel takes, and whether the kernel process is confined.
//!
//! With ptrace userspace every guest system call and page fault is a round trip through
//! ptrace. With seccomp userspace (Linux 6.17+) a guest process traps its own system calls and
//! talks to the kernel through shared memory: faster, but upstream calls it insecure, since a
//! guest process can take the guest kernel over, and so run code in the kernel process on the
//! host. sekexe treats the guest kernel as hostile anyway: the host-side confinement of the
//! kernel process (confine/sandbox.rs) is the boundary in both modes, and where it is whole
//! (the sandbox on, Landlock ABI 6 on the host, and a network that leaves the kernel process
//! no socket of its own to name a host socket with) seccomp userspace is the default. Where it
//! is not, ptrace is, and seccomp userspace is the user's choice, with a warning.

use anyhow::{bail, Result};

/// `--userspace`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserspaceArg {
    // Doc comments here are `--help` text.
    /// seccomp where the kernel has it and the kernel process is fully confined, else ptrace
    Auto,
    /// faster (Linux 6.17+); a guest process can reach what the kernel process may
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
    pub note: Option<String>,
    /// For the user: seccomp userspace without the full confinement.
    pub warning: Option<String>,
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

/// Whether the kernel process gets the whole host-side confinement: `Err` says what is
/// missing, in words that fit "seccomp userspace needs ...".
pub type Confinement = std::result::Result<(), String>;

/// Decides.
pub fn choose(
    arg: UserspaceArg,
    cpus: u32,
    offers: KernelOffers,
    confined: Confinement,
) -> Result<Choice> {
    if cpus > 1 {
        if offers.max_cpus <= 1 {
            bail!("--cpus {cpus}: this kernel has no SMP (Linux 6.19+ with CONFIG_SMP, as sekexe kernel build makes): use --cpus 1 or another --kernel");
        }
        if cpus > offers.max_cpus {
            bail!(
                "--cpus {cpus}: this kernel has at most {} CPUs (CONFIG_NR_CPUS): use --cpus {}",
                offers.max_cpus,
                offers.max_cpus
            );
        }
        match (arg, &confined) {
            (UserspaceArg::Ptrace, _) => bail!("--cpus {cpus} needs seccomp userspace (UML has no SMP under ptrace): drop --userspace ptrace, or use --cpus 1"),
            (UserspaceArg::Auto, Err(why)) => bail!("--cpus {cpus} needs seccomp userspace, which this run does not choose on its own: seccomp userspace needs {why}; add --userspace seccomp to accept that (README: Kernels), or use --cpus 1"),
            _ => {}
        }
    }
    let (userspace, note) = match (arg, &confined) {
        (UserspaceArg::Ptrace, _) => (Userspace::Ptrace, None),
        (UserspaceArg::Seccomp, _) if !offers.seccomp => {
            bail!("--userspace seccomp: this kernel has no seccomp userspace (Linux 6.17+, as sekexe kernel build makes): use --userspace ptrace or another --kernel")
        }
        (UserspaceArg::Seccomp, _) => (Userspace::Seccomp, None),
        (UserspaceArg::Auto, _) if !offers.seccomp => (Userspace::Ptrace, None),
        (UserspaceArg::Auto, Ok(())) => (Userspace::Seccomp, None),
        (UserspaceArg::Auto, Err(why)) => (
            Userspace::Ptrace,
            Some(format!("ptrace userspace: this kernel also has the faster seccomp userspace, which needs {why} (--userspace seccomp takes it anyway)")),
        ),
    };
    let warning = match confined {
        Err(why) if userspace == Userspace::Seccomp => Some(format!(
            "--userspace seccomp without {why}: any guest process can reach the host with what the kernel process may do"
        )),
        _ => None,
    };
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

    const WHOLE: Confinement = Ok(());

    fn partial() -> Confinement {
        Err("the sandbox (no --no-sandbox)".into())
    }

    fn ok(arg: UserspaceArg, cpus: u32, offers: KernelOffers, confined: Confinement) -> Choice {
        choose(arg, cpus, offers, confined).unwrap()
    }

    fn err(arg: UserspaceArg, cpus: u32, offers: KernelOffers, confined: Confinement) -> String {
        choose(arg, cpus, offers, confined).unwrap_err().to_string()
    }

    #[test]
    fn auto_is_seccomp_only_where_the_kernel_has_it_and_the_confinement_is_whole() {
        assert_eq!(ok(Auto, 1, SECCOMP, WHOLE).userspace, Userspace::Seccomp);
        assert_eq!(ok(Auto, 1, SMP, WHOLE).userspace, Userspace::Seccomp);
        let c = ok(Auto, 1, SECCOMP, partial());
        assert_eq!(c.userspace, Userspace::Ptrace);
        assert!(c.note.unwrap().contains("needs the sandbox"));
        for confined in [WHOLE, partial()] {
            let c = ok(Auto, 1, OLD, confined);
            assert_eq!((c.userspace, c.note), (Userspace::Ptrace, None));
        }
        for offers in [OLD, SECCOMP, SMP] {
            for confined in [WHOLE, partial()] {
                assert!(ok(Auto, 1, offers, confined).warning.is_none());
            }
        }
    }

    #[test]
    fn explicit_modes_are_obeyed_or_refused_with_the_fix() {
        assert_eq!(ok(Ptrace, 1, SMP, WHOLE).userspace, Userspace::Ptrace);
        let c = ok(Seccomp, 1, SECCOMP, WHOLE);
        assert_eq!((c.userspace, c.warning), (Userspace::Seccomp, None));
        // Not wholly confined: obeyed, with a warning that says what is missing.
        let w = ok(Seccomp, 1, SECCOMP, partial()).warning.unwrap();
        assert!(w.contains("without the sandbox"), "{w}");
        assert!(err(Seccomp, 1, OLD, WHOLE).contains("use --userspace ptrace"));
    }

    #[test]
    fn more_cpus_need_smp_and_seccomp_userspace() {
        assert_eq!(ok(Seccomp, 2, SMP, WHOLE).cpus, 2);
        assert_eq!(ok(Auto, 2, SMP, WHOLE).userspace, Userspace::Seccomp);
        assert!(ok(Seccomp, 2, SMP, partial()).warning.is_some());
        assert!(err(Seccomp, 2, SECCOMP, WHOLE).contains("no SMP"));
        assert!(err(Auto, 2, OLD, WHOLE).contains("no SMP"));
        assert!(err(Seccomp, 17, SMP, WHOLE).contains("at most 16"));
        assert!(err(Ptrace, 2, SMP, WHOLE).contains("drop --userspace ptrace"));
        assert!(err(Auto, 2, SMP, partial()).contains("add --userspace seccomp"));
    }

    #[test]
    fn words_are_explicit_where_the_kernel_takes_them() {
        let on = ok(Auto, 1, SECCOMP, WHOLE);
        assert_eq!(on.words(SECCOMP), ["seccomp=on"]);
        assert_eq!(
            ok(Ptrace, 1, SECCOMP, WHOLE).words(SECCOMP),
            ["seccomp=off"]
        );
        assert!(ok(Auto, 1, OLD, WHOLE).words(OLD).is_empty());
        assert_eq!(
            ok(Seccomp, 4, SMP, WHOLE).words(SMP),
            ["seccomp=on", "ncpus=4"]
        );
    }
}
