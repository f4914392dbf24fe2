//! Networking without root: user-mode NAT (slirp4netns) with DHCP from guest-init, the host's
//! loopback through the gateway, port forwards, --net-restrict, a static address, --net none,
//! a vde_switch with slirpvde, and a TAP device in a network namespace with dnsmasq. Every
//! peer is on this machine: the host's loopback or namespaces the test makes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use sekexe_tests::*;

/// A TCP server on the host's loopback that answers each connection with its input reversed.
fn tcp_echo() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        for c in l.incoming().take(1) {
            let mut c = c.unwrap();
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).unwrap_or(0);
            buf[..n].reverse();
            let _ = c.write_all(&buf[..n]);
        }
    });
    (port, h)
}

fn udp_echo() -> u16 {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            buf[..n].reverse();
            let _ = s.send_to(&buf[..n], from);
        }
    });
    port
}

/// A python3 one-liner for the guest (python3 is the host's, seen through the guest root).
fn py(code: &str) -> Vec<String> {
    vec!["python3".into(), "-c".into(), code.into()]
}

fn run(s: &Scratch, pre: &[&str], cmd: &[String]) -> Output {
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(pre.iter().map(|a| a.to_string()));
    args.push("--".into());
    args.extend(cmd.iter().cloned());
    sekexe(s, &args).timeout(Duration::from_secs(120)).run()
}

#[test]
fn user_mode_reaches_host_loopback_over_tcp_and_udp() {
    let s = unprivileged();
    let (tcp, server) = tcp_echo();
    let udp = udp_echo();
    let code = format!(
        "import socket\n\
         t = socket.create_connection(('10.0.2.2', {tcp}), timeout=10); t.sendall(b'tcp-ok'); print(t.recv(64).decode())\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10); u.sendto(b'udp-ok', ('10.0.2.2', {udp})); print(u.recv(64).decode())"
    );
    let out = run(&s, &[], &py(&code));
    assert_eq!(out.ok(), "ko-pct\nko-pdu\n");
    server.join().unwrap();
    s.assert_clean();
}

#[test]
fn legacy_slirp_reaches_host_loopback() {
    let s = unprivileged();
    let (tcp, server) = tcp_echo();
    let code = format!(
        "import socket, subprocess\n\
         print(subprocess.run(['ip', '-4', '-o', 'addr', 'show', 'eth0'], capture_output=True, text=True).stdout.split()[3])\n\
         t = socket.create_connection(('10.0.2.2', {tcp}), timeout=10); t.sendall(b'slirp'); print(t.recv(64).decode())"
    );
    let out = run(&s, &["--net", "slirp"], &py(&code));
    if !check_says_ok(&kernel_check(), "legacy slirp transport") {
        // Linux 6.16+ has no legacy transport: a one-line error naming the replacement.
        assert_eq!(out.code, 125, "{out:?}");
        assert!(out.stderr_str().contains("use --net user"), "{out:?}");
        assert_eq!(out.stderr_str().lines().count(), 1, "{out:?}");
        s.assert_clean();
        return;
    }
    assert_eq!(out.ok(), "10.0.2.15/24\nprils\n");
    server.join().unwrap();
    s.assert_clean();
}

#[test]
fn the_dhcp_lease_matches_the_user_mode_stack() {
    let s = unprivileged();
    let out = run(&s, &["--debug"], &["sh".into(), "-c".into(), "ip -4 -o addr show vec0 | awk '{print $4}'; ip route | awk '/default/ {print $3}'; grep nameserver /etc/resolv.conf".into()]);
    assert_eq!(out.ok(), "10.0.2.15/24\n10.0.2.2\nnameserver 10.0.2.3\n");
    let err = out.stderr_str();
    assert!(
        err.contains("DHCP lease 10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3"),
        "{err}"
    );
    // The host's resolv.conf is untouched (the guest's is its own).
    assert!(!std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .contains("# written by sekexe-init"));
}

#[test]
fn a_guest_server_is_reached_through_a_port_forward() {
    let s = unprivileged();
    let port = free_port();
    let mut args: Vec<String> = vec!["run".into(), "-p".into(), format!("{port}:80"), "--".into()];
    args.extend(py(GUEST_SERVER));
    let mut r = sekexe(&s, &args).timeout(Duration::from_secs(120)).spawn();
    r.read_until(b"listening\n");
    assert_eq!(hello_through(port), "from the guest:hello");
    assert_eq!(r.finish().code, 0);
    // Only on the host's loopback unless asked: nothing on other addresses.
    s.assert_clean();
}

#[test]
fn a_port_already_in_use_is_a_clear_error() {
    let s = unprivileged();
    let busy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = run(&s, &["-p", &format!("{port}:80")], &["true".into()]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr_str().contains(&format!("{port}")) && out.stderr_str().contains("in use"),
        "{out:?}"
    );
    s.assert_clean();
}

#[test]
fn net_restrict_keeps_the_host_loopback_out() {
    let s = unprivileged();
    let (tcp, _server) = tcp_echo();
    let code = format!(
        "import socket\n\
         try:\n  socket.create_connection(('10.0.2.2', {tcp}), timeout=5); print('REACHED')\n\
         except OSError: print('blocked')"
    );
    let out = run(&s, &["--net-restrict"], &py(&code));
    assert_eq!(out.ok(), "blocked\n");
    // The guest still has its address: the network is up, it just leads nowhere.
    let out = run(
        &s,
        &["--net-restrict"],
        &[
            "sh".into(),
            "-c".into(),
            "ip -4 -o addr show vec0 | awk '{print $4}'".into(),
        ],
    );
    assert_eq!(out.ok(), "10.0.2.15/24\n");
    let out = run(&s, &["--net-restrict", "-p", "8080:80"], &["true".into()]);
    assert_eq!(out.code, 125);
    s.assert_clean();
}

#[test]
fn a_static_address() {
    let s = unprivileged();
    let out = run(&s, &["--ip", "10.0.2.42/24", "--gateway", "10.0.2.2", "--dns", "10.0.2.3"], &["sh".into(), "-c".into(), "ip -4 -o addr show vec0 | awk '{print $4}'; ip route | awk '/default/ {print $3}'; grep nameserver /etc/resolv.conf".into()]);
    assert_eq!(out.ok(), "10.0.2.42/24\n10.0.2.2\nnameserver 10.0.2.3\n");
}

#[test]
fn net_none_is_only_lo_and_starts_no_helper() {
    let s = unprivileged();
    let mut r = sekexe(&s, ["run", "--net", "none", "--", "sh", "-c", "ip -o link | awk -F': ' '{print $2}'; cat /sys/class/net/lo/operstate; echo done; sleep 2"]).spawn();
    let out = r.read_until(b"done\n");
    assert!(!s
        .leftover_processes()
        .iter()
        .any(|p| p.contains("slirp4netns")));
    assert_eq!(String::from_utf8_lossy(&out), "lo\nunknown\ndone\n");
    assert_eq!(r.finish().code, 0);
    for bad in [
        &["--net", "none", "-p", "8080:80"][..],
        &["--net", "none", "--ip", "10.0.2.9/24"][..],
        &["--net", "bogus"][..],
    ] {
        let out = run(&s, bad, &["true".into()]);
        assert_eq!(out.code, 125, "{bad:?}: {out:?}");
        assert_eq!(out.stderr_str().lines().count(), 1, "{bad:?}: {out:?}");
    }
}

#[test]
fn vde_with_a_switch_and_slirpvde() {
    let s = unprivileged();
    let switch = s.path().join("switch");
    let switch_s = switch.to_str().unwrap().to_string();
    let sw = Daemon(
        Command::new("vde_switch")
            .args(["-s", &switch_s])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("vde_switch (scripts/setup --tests installs vde2)"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !switch.join("ctl").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "vde_switch did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if is_root() {
        // The switch is root's; let the unprivileged user plug in.
        let _ = Command::new("chmod")
            .args(["-R", "a+rwX", &switch_s])
            .status();
    }
    let nat = Daemon(
        Command::new("slirpvde")
            .args(["--dhcp", "-s", &switch_s])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slirpvde"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (tcp, server) = tcp_echo();
    let code = format!(
        "import socket, subprocess\n\
         print(subprocess.run(['ip', '-4', '-o', 'addr', 'show', 'vec0'], capture_output=True, text=True).stdout.split()[3].startswith('10.0.2.'))\n\
         t = socket.create_connection(('10.0.2.2', {tcp}), timeout=10); t.sendall(b'vde'); print(t.recv(64).decode())"
    );
    let out = run(&s, &["--net", &format!("vde:{switch_s}")], &py(&code));
    assert_eq!(out.ok(), "True\nedv\n");
    server.join().unwrap();
    drop((nat, sw));
    s.assert_clean();
}

#[test]
fn tap_in_a_network_namespace_with_dnsmasq() {
    assert!(
        is_root(),
        "this test makes a network namespace and a TAP device: run the suite as root (CI does)"
    );
    let ns = format!("sekexe-t{}", std::process::id());
    let sh = |cmd: &str| {
        let ok = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{cmd}");
    };
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    sh(&format!("ip netns add {ns}"));
    let _cleanup = Netns(ns.clone());
    let ex = format!("ip netns exec {ns}");
    sh(&format!("{ex} ip link set lo up"));
    sh(&format!(
        "{ex} ip tuntap add dev sktap0 mode tap user {NOBODY}"
    ));
    sh(&format!("{ex} ip addr add 10.77.0.1/24 dev sktap0"));
    sh(&format!("{ex} ip link set sktap0 up"));
    let s = Scratch::new();
    let leases = s.path().join("leases");
    let dnsmasq = Daemon(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--port=0",
                "--interface=sktap0",
                "--bind-interfaces",
                "--dhcp-range=10.77.0.50,10.77.0.60,1h",
                "--dhcp-option=6,10.77.0.1",
            ])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg("--pid-file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (scripts/setup --tests installs dnsmasq-base)"),
    );
    // A service inside the namespace, for the guest to reach.
    let service = Daemon(
        Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('10.77.0.1', 7777)); s.listen()\nwhile True:\n c,_=s.accept(); c.sendall(b'namespace-ok'); c.close()"])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let code = "import socket, subprocess\n\
                print(subprocess.run(['ip', '-4', '-o', 'addr', 'show', 'vec0'], capture_output=True, text=True).stdout.split()[3].rsplit('.', 1)[0])\n\
                print(open('/etc/resolv.conf').read().split()[-1])\n\
                print(socket.create_connection(('10.77.0.1', 7777), timeout=10).recv(64).decode())";
    let mut args: Vec<String> = vec![
        "run".into(),
        "--net".into(),
        "tap:sktap0".into(),
        "--".into(),
    ];
    args.extend(py(code));
    let out = sekexe(&s, &args)
        .in_netns(&ns)
        .timeout(Duration::from_secs(120))
        .run();
    assert_eq!(out.ok(), "10.77.0\n10.77.0.1\nnamespace-ok\n");
    drop((dnsmasq, service));
    s.assert_clean();
}
