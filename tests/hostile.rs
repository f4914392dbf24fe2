//! A hostile guest: an init that speaks garbage on the channel, writes a forged status, floods
//! output, or never powers off. The launcher must end the run (125, or 124 under --timeout),
//! never hang or crash. The init is a shell script given as SEKEXE_INIT, so the real kernel
//! runs it as PID 1.

use std::time::Duration;

use sekexe_tests::*;

const QUICK: Duration = Duration::from_secs(60);

/// Shell lines that put the channel console in raw mode, as guest-init would.
const RAW_CHANNEL: &str = "stty -F /dev/tty1 raw -echo -opost";

fn run_with_init(s: &Scratch, body: &str, args: &[&str]) -> Output {
    let dir = guest_visible_dir("hostile-");
    let init = script(dir.path(), "init", &format!("#!/bin/sh\n{body}\n"));
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "true"]);
    sekexe(s, all)
        .env("SEKEXE_INIT", &init)
        .timeout(QUICK)
        .run()
}

#[test]
fn garbage_on_the_channel_is_125() {
    let s = Scratch::new();
    // An unknown tag, then a real frame's header claiming 4 GiB.
    let unknown = vec![0xff, 0, 0, 0, 0];
    let mut huge = Vec::new();
    sekexe_wire::GuestFrame::Stdout(b"").encode_into(&mut huge);
    huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    for bytes in [unknown, huge] {
        let out = run_with_init(
            &s,
            &format!(
                "{RAW_CHANNEL}\nprintf '{}' > /dev/tty1\nsleep 100",
                printf_escapes(&bytes)
            ),
            &[],
        );
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr_str().contains("malformed frame"), "{out:?}");
    }
    s.assert_clean();
}

/// `printf` octal escapes for these bytes.
fn printf_escapes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

#[test]
fn a_forged_status_record_is_125() {
    let s = Scratch::new();
    let mut frame = Vec::new();
    sekexe_wire::GuestFrame::Status(b"SEKEXEST\x03\0\0\0\xffgarbage").encode_into(&mut frame);
    sekexe_wire::GuestFrame::End.encode_into(&mut frame);
    let body = format!(
        "{RAW_CHANNEL}\nprintf '{}' > /dev/tty1\nsleep 100",
        printf_escapes(&frame)
    );
    let out = run_with_init(&s, &body, &[]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr_str().contains("malformed"), "{out:?}");
    s.assert_clean();
}

#[test]
fn a_second_status_record_is_125() {
    let s = Scratch::new();
    let status = sekexe_wire::Status {
        outcome: sekexe_wire::Outcome::Exited(0),
        timeline: Default::default(),
        lpj: 0,
    }
    .encode();
    let mut frame = Vec::new();
    for _ in 0..2 {
        sekexe_wire::GuestFrame::Status(&status).encode_into(&mut frame);
    }
    let body = format!(
        "{RAW_CHANNEL}\nprintf '{}' > /dev/tty1\nsleep 100",
        printf_escapes(&frame)
    );
    let out = run_with_init(&s, &body, &[]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr_str().contains("second status"), "{out:?}");
    s.assert_clean();
}

#[test]
fn an_endless_flood_of_output_ends_at_the_timeout() {
    let s = Scratch::new();
    // A valid Hello, then stdout frames forever, ignoring every request to stop.
    let body = format!(
        "{RAW_CHANNEL}\nprintf '\\001\\000\\000\\000\\000' > /dev/tty1\n\
         while :; do printf '\\003\\004\\000\\000\\000spam' ; done > /dev/tty1"
    );
    let dir = guest_visible_dir("hostile-");
    let init = script(dir.path(), "init", &format!("#!/bin/sh\n{body}\n"));
    let mut r = sekexe(
        &s,
        ["run", "--timeout", "2s", "--kill-after", "1s", "--", "true"],
    )
    .env("SEKEXE_INIT", &init)
    .timeout(QUICK)
    .spawn();
    // Read (and drop) what comes, so the flood is not throttled by a full pipe.
    let mut stdout = r.child.stdout.take().unwrap();
    let reader =
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()).unwrap_or(0));
    let out = r.finish();
    let flooded = reader.join().unwrap();
    assert_eq!(out.code, 124, "{out:?}");
    assert!(out.stderr_str().contains("stopped responding"), "{out:?}");
    assert!(flooded > 0);
    s.assert_clean();
}

#[test]
fn a_guest_that_ends_but_never_powers_off() {
    let s = Scratch::new();
    // Hello, then End, then nothing: the launcher stops waiting after a few seconds.
    let body = format!(
        "{RAW_CHANNEL}\nprintf '\\001\\000\\000\\000\\000\\010\\000\\000\\000\\000' > /dev/tty1\nsleep 1000"
    );
    let out = run_with_init(&s, &body, &[]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr_str().contains("without reporting"), "{out:?}");
    s.assert_clean();
}
