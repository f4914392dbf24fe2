//! Load: 16 runs at once, five rounds, each with its own command and input; every output and
//! status is right, nothing is left, and host memory (tmpfs in use) is back where it started.

use sekexe_tests::*;

fn shmem_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn sixteen_runs_at_once_five_times() {
    let s = Scratch::new();
    let before = shmem_kib();
    for round in 0..5u32 {
        let jobs: Vec<u32> = (0..16).collect();
        parallel(&jobs, 16, |&i| {
            let input: Vec<u8> = (0..(i * 1000 + round))
                .map(|b| (b * 31 + i) as u8)
                .collect();
            let (args, expect_out, expect_err, code): (Vec<String>, Vec<u8>, Vec<u8>, i32) =
                match i % 4 {
                    0 => (vec!["cat".into()], input.clone(), vec![], 0),
                    1 => (
                        vec![
                            "sh".into(),
                            "-c".into(),
                            "wc -c; echo oops >&2; exit 7".into(),
                        ],
                        format!("{}\n", input.len()).into_bytes(),
                        b"oops\n".to_vec(),
                        7,
                    ),
                    2 => (
                        vec![
                            "sh".into(),
                            "-c".into(),
                            format!("printf 'round %s job %s' {round} {i}; kill -TERM $$"),
                        ],
                        format!("round {round} job {i}").into_bytes(),
                        vec![],
                        143,
                    ),
                    _ => (
                        vec!["sh".into(), "-c".into(), "cat >&2".into()],
                        vec![],
                        input.clone(),
                        0,
                    ),
                };
            let mut all = vec!["run".to_string(), "--".into()];
            all.extend(args);
            let out = sekexe(&s, &all).stdin(input).run();
            assert_eq!(out.code, code, "round {round} job {i}: {out:?}");
            assert!(
                out.stdout == expect_out,
                "round {round} job {i}: stdout differs: {out:?}"
            );
            assert!(
                out.stderr == expect_err,
                "round {round} job {i}: stderr differs: {out:?}"
            );
        });
        s.assert_clean();
    }
    let after = shmem_kib();
    assert!(
        after < before + 64 * 1024,
        "tmpfs memory grew from {before} KiB to {after} KiB"
    );
}
