//! A port forward's round trip, the same through `run -p` and through `start -p` + `exec`: a
//! Python server in the guest on port 80, and the host's side of the conversation.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

/// A port on the host's loopback that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    l.local_addr().unwrap().port()
}

/// Python for the guest: listens on port 80, prints `listening`, and answers one connection
/// with `from the guest:` and what it got.
pub const GUEST_SERVER: &str = "import socket\n\
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 80)); s.listen()\n\
    print('listening', flush=True)\n\
    c, _ = s.accept(); c.sendall(b'from the guest:' + c.recv(64))";

/// Sends `hello` to the host's `port` and returns the whole answer.
pub fn hello_through(port: u16) -> String {
    let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(b"hello").unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    reply
}
