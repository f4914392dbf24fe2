//! The documentation generated from the command-line definitions, so it cannot drift from
//! them: shell completions (`sekexe completions SHELL`) and manual pages (`sekexe man DIR`,
//! which scripts/package runs).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;
use crate::units;

pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sekexe", &mut script);
    std::io::stdout()
        .write_all(&script)
        .and_then(|_| std::io::stdout().flush())
        .context("write the completion script")?;
    Ok(0)
}

/// sekexe.1, and sekexe-run.1, sekexe-kernel.1, ... for each subcommand (and theirs).
pub fn man_pages(dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", units::shown(dir)))?;
    let mut cmd = Cli::command();
    cmd.build();
    write_pages(&cmd, "sekexe", dir)?;
    Ok(0)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> Result<()> {
    let page = dir.join(format!("{name}.1"));
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_string())
        .render(&mut text)
        .context("render the manual page")?;
    std::fs::write(&page, text).with_context(|| format!("write {}", units::shown(&page)))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_visible_subcommand_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        super::man_pages(dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for page in [
            "sekexe.1",
            "sekexe-run.1",
            "sekexe-kernel.1",
            "sekexe-kernel-build.1",
            "sekexe-doctor.1",
        ] {
            assert!(names.contains(&page.to_string()), "{names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("help") || n == "sekexe-man.1"),
            "{names:?}"
        );
        let run = std::fs::read_to_string(dir.path().join("sekexe-run.1")).unwrap();
        assert!(
            run.contains("\\-\\-result") && run.contains("SEKEXE_KERNEL"),
            "{run}"
        );
    }
}
