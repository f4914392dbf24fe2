//! The one way sekexe builds seccomp filters: deny-lists that fail some system calls with an
//! errno (a process that handles the error goes on) and allow the rest. Used for the kernel
//! process (file metadata calls Landlock does not cover) and for slirp4netns under
//! `--net-restrict` (no inet sockets).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

pub struct Deny {
    errno: i32,
    rules: BTreeMap<i64, Vec<SeccompRule>>,
}

impl Deny {
    /// A filter whose denied calls fail with `errno`.
    pub fn with_errno(errno: i32) -> Deny {
        Deny {
            errno,
            rules: BTreeMap::new(),
        }
    }

    /// Denies these calls whatever their arguments.
    pub fn calls(mut self, calls: &[i64]) -> Deny {
        for &nr in calls {
            self.rules.insert(nr, Vec::new());
        }
        self
    }

    /// Denies `nr` when all of `conditions` hold (`(argument index, mask, value)`: the
    /// argument's low 32 bits, masked, equal the value).
    pub fn call_when_all(mut self, nr: i64, conditions: &[(u8, u64, u64)]) -> Result<Deny> {
        let conditions = conditions
            .iter()
            .map(|&(arg, mask, value)| {
                SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(mask),
                    value,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.rules
            .entry(nr)
            .or_default()
            .push(SeccompRule::new(conditions)?);
        Ok(self)
    }

    /// Denies `nr` unless argument `arg` (as a 32-bit value) is `allowed`.
    pub fn call_unless_arg(mut self, nr: i64, arg: u8, allowed: u64) -> Result<Deny> {
        let other = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, allowed)?;
        self.rules
            .entry(nr)
            .or_default()
            .push(SeccompRule::new(vec![other])?);
        Ok(self)
    }

    /// Denies `nr` when its first argument (as a 32-bit value) is one of `values`.
    pub fn call_when_first_arg(mut self, nr: i64, values: &[u64]) -> Result<Deny> {
        let rules = values
            .iter()
            .map(|&v| {
                let is_v = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)?;
                Ok(SeccompRule::new(vec![is_v])?)
            })
            .collect::<Result<Vec<_>>>()?;
        self.rules.entry(nr).or_default().extend(rules);
        Ok(self)
    }

    pub fn build(self) -> Result<BpfProgram> {
        let filter = SeccompFilter::new(
            self.rules,
            SeccompAction::Allow,
            SeccompAction::Errno(self.errno as u32),
            std::env::consts::ARCH
                .try_into()
                .context("seccomp on this architecture")?,
        )?;
        let program: BpfProgram = filter.try_into()?;
        // x32 system calls carry the x86_64 architecture tag with bit 30 set in the number:
        // they would match none of the rules above and be allowed. Refuse them all first.
        let mut guarded = x32_guard(self.errno);
        guarded.extend(program);
        Ok(guarded)
    }
}

/// Fails every system call whose number has the x32 bit (it loads the number, compares, and
/// returns the errno; the rest of the program follows unchanged, its jumps being relative).
fn x32_guard(errno: i32) -> BpfProgram {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const NR_OFFSET: u32 = 0; // seccomp_data.nr
    const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
    const JGE_K: u16 = 0x35; // BPF_JMP (5) | BPF_JGE (0x30) | BPF_K (0)
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let insn = |code, jt, jf, k| seccompiler::sock_filter { code, jt, jf, k };
    vec![
        insn(LD_W_ABS, 0, 0, NR_OFFSET),
        // x32 number: fall through to the return; else skip it.
        insn(JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | (errno as u32 & 0xffff)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_of_rule_compile() {
        let a = Deny::with_errno(libc::EPERM)
            .calls(&[libc::SYS_chmod])
            .build()
            .unwrap();
        let b = Deny::with_errno(libc::EACCES)
            .call_when_first_arg(libc::SYS_socket, &[libc::AF_INET as u64])
            .unwrap()
            .build()
            .unwrap();
        // The conditional one tests the argument: a longer program.
        assert!(!a.is_empty() && b.len() > a.len());
    }
}
