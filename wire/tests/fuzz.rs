//! Fuzzing of every decoder that reads data crossing the host/guest boundary: the run request,
//! the status record, the frames of both directions and the kernel-parameter escape.
//!
//! Each decoder gets hostile input (arbitrary bytes, and valid encodings truncated, flipped,
//! spliced or given huge lengths) and must answer `Ok` or `Err`, never panic, and never
//! allocate more than a small multiple of its input. Every valid value must come back unchanged
//! from an encode and a decode, whatever a decoder accepts must be exactly what the encoder
//! writes, and frames must reassemble from a stream cut anywhere. The byte queue both ends'
//! channels write from is checked against a model too.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256, when unset). To fuzz for
//! longer:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test -p sekexe-wire --release --test fuzz
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

use sekexe_wire::frame::{HEADER_LEN, MAX_INLINE_STDIN, MAX_PAYLOAD};
use sekexe_wire::names::{decode_param, encode_param, SESSION_LINES};
use sekexe_wire::queue::ByteQueue;
use sekexe_wire::status::Timeline;
use sekexe_wire::Net;
use sekexe_wire::{
    Cgroups, FrameError, GuestFrame, HostFrame, Outcome, Overlay, Request, Status, Volume,
};

// ---- Counting allocations ----------------------------------------------------------------

/// Counts the bytes each thread allocates, so a property can bound what one decode takes.
struct CountingAlloc;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: every method forwards to the system allocator with the caller's own arguments, so
// the GlobalAlloc contract holds as it does for System; counting touches only a thread-local.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's arguments meet GlobalAlloc's contract, which System shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's arguments meet GlobalAlloc's contract, which System shares.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller's arguments meet GlobalAlloc's contract, which System shares.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's arguments meet GlobalAlloc's contract, which System shares.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f`, returning its result and the bytes it allocated.
fn allocated_by<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = f();
    (result, ALLOCATED.with(Cell::get) - before)
}

/// What decoding a request or status record of `len` bytes may allocate: each list reserves
/// at most about 6 times the input (a 24-byte `Vec<u8>` per 4 input bytes, a 56-byte `Volume`
/// per 9), and the items copy at most the input. Linear, unlike trusting a hostile count.
fn record_alloc_limit(len: usize) -> usize {
    16 * len + 64
}

// ---- Hostile input ---------------------------------------------------------------------

/// One damage done to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    /// Remove up to this many bytes.
    Delete(Index, usize),
    /// Overwrite what looks like a length or count (see [`length_field`]).
    SetLength(Index, u32),
    /// Add to what looks like a length or count.
    BumpLength(Index, i8),
    Append(Vec<u8>),
}

fn length_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(u32::MAX),
        Just(u32::MAX - 3),
        Just(0x8000_0000),
        Just(0x7fff_ffff),
        Just(MAX_PAYLOAD as u32),
        Just(MAX_PAYLOAD as u32 + 1),
        Just(MAX_INLINE_STDIN as u32 + 1),
        0..4096u32,
        any::<u32>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..=u8::MAX).prop_map(|(i, mask)| Mutation::Flip(i, mask)),
        (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), length_value()).prop_map(|(i, v)| Mutation::SetLength(i, v)),
        (any::<Index>(), any::<i8>()).prop_map(|(i, d)| Mutation::BumpLength(i, d)),
        vec(any::<u8>(), 1..64).prop_map(Mutation::Append),
    ]
}

/// Picks the offset of a little-endian u32 that could be a length or a count (no larger than
/// the bytes after it), or of any u32 when none could; `None` when there is no room for one.
fn length_field(data: &[u8], pick: &Index) -> Option<usize> {
    let last = data.len().checked_sub(4)?;
    let plausible: Vec<usize> = (0..=last)
        .filter(|&at| read_u32(data, at) as usize <= data.len() - at - 4)
        .collect();
    if plausible.is_empty() {
        Some(pick.index(last + 1))
    } else {
        Some(plausible[pick.index(plausible.len())])
    }
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = data.len();
        match m {
            Mutation::Truncate(i) => data.truncate(i.index(len + 1)),
            Mutation::Flip(i, mask) if len > 0 => data[i.index(len)] ^= mask,
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i.index(len);
                data.drain(at..(at + n).min(len));
            }
            Mutation::SetLength(i, value) => {
                if let Some(at) = length_field(&data, i) {
                    data[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            Mutation::BumpLength(i, delta) => {
                if let Some(at) = length_field(&data, i) {
                    let value = read_u32(&data, at).wrapping_add_signed(i32::from(*delta));
                    data[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            Mutation::Append(bytes) => data.extend_from_slice(bytes),
            Mutation::Flip(..) | Mutation::Delete(..) => {}
        }
    }
    data
}

/// Arbitrary bytes, or (more often) valid encodings damaged a few times.
fn hostile(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..4096),
        3 => (valid, vec(mutation(), 1..6)).prop_map(|(data, ms)| mutate(data, &ms)),
    ]
}

// ---- Run request -----------------------------------------------------------------------

/// Bytes without NUL, which exec cannot take.
fn no_nul(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(1..=u8::MAX, 0..=max)
}

/// `KEY=VALUE`: a non-empty key (which may itself hold `=`), then `=` and any value.
fn env_entry() -> impl Strategy<Value = Vec<u8>> {
    (vec(1..=u8::MAX, 1..16), no_nul(32)).prop_map(|(mut entry, value)| {
        entry.push(b'=');
        entry.extend(value);
        entry
    })
}

fn absolute_path() -> impl Strategy<Value = Vec<u8>> {
    no_nul(64).prop_map(|path| [b"/".as_slice(), &path].concat())
}

fn cgroups() -> impl Strategy<Value = Cgroups> {
    // Fails to compile when a choice is added, until it gets a strategy below.
    let _every_choice_is_generated = |c: &Cgroups| match c {
        Cgroups::None | Cgroups::V2 | Cgroups::V1 => {}
    };
    prop_oneof![Just(Cgroups::None), Just(Cgroups::V2), Just(Cgroups::V1)]
}

fn overlay() -> impl Strategy<Value = Overlay> {
    let _every_choice_is_generated = |o: &Overlay| match o {
        Overlay::None | Overlay::Tmpfs | Overlay::Disk(_) => {}
    };
    prop_oneof![
        Just(Overlay::None),
        Just(Overlay::Tmpfs),
        "[a-zA-Z0-9]{1,8}".prop_map(|dev| Overlay::Disk(dev.into_bytes())),
    ]
}

fn net() -> impl Strategy<Value = Net> {
    prop_oneof![
        Just(Net::None),
        Just(Net::Dhcp),
        (
            any::<[u8; 4]>(),
            0u8..=32,
            proptest::option::of(any::<[u8; 4]>()),
            vec(any::<[u8; 4]>(), 0..4)
        )
            .prop_map(|(address, prefix, gateway, dns)| Net::Static {
                address: address.into(),
                prefix,
                gateway: gateway.map(Into::into),
                dns: dns.into_iter().map(Into::into).collect(),
            }),
    ]
}

fn volume() -> impl Strategy<Value = Volume> {
    (absolute_path(), absolute_path(), any::<bool>()).prop_map(|(host, guest, writable)| Volume {
        host,
        guest,
        writable,
    })
}

/// Any request that `Request::validate` accepts.
fn request() -> impl Strategy<Value = Request> {
    let command = (
        vec(no_nul(64), 1..8),
        vec(env_entry(), 0..8),
        absolute_path(),
        any::<(u32, u32)>(),
        any::<bool>(),
        any::<(u16, u16)>(),
    );
    let guest = (
        no_nul(64),
        any::<bool>(),
        cgroups(),
        overlay(),
        prop_oneof![Just(Vec::new()), absolute_path()],
        vec(volume(), 0..4),
        net(),
        any::<(bool, bool)>(),
    );
    (command, guest).prop_map(
        |(
            (argv, env, cwd, (uid, gid), tty, (rows, cols)),
            (
                hostname,
                debug,
                cgroups,
                overlay,
                root,
                volumes,
                net,
                (wait_for_network, measure_lpj),
            ),
        )| Request {
            argv,
            env,
            cwd,
            uid,
            gid,
            tty,
            rows,
            cols,
            hostname,
            debug,
            cgroups,
            overlay,
            root,
            volumes,
            net,
            wait_for_network,
            measure_lpj,
            serve: false,
        },
    )
}

proptest! {
    #[test]
    fn request_decoding_survives_hostile_input(
        data in hostile(request().prop_map(|r| r.encode()))
    ) {
        let (decoded, bytes) = allocated_by(|| Request::decode(&data));
        prop_assert!(bytes <= record_alloc_limit(data.len()), "{} bytes allocated", bytes);
        if let Ok(req) = decoded {
            prop_assert_eq!(req.encode(), data, "accepted a non-canonical encoding");
        }
    }

    #[test]
    fn request_round_trips(req in request()) {
        let data = req.encode();
        prop_assert_eq!(Request::decode(&data), Ok(req));
    }
}

// ---- Status record ---------------------------------------------------------------------

fn outcome() -> impl Strategy<Value = Outcome> {
    // Fails to compile when an outcome is added, until it gets a strategy below.
    let _every_outcome_is_generated = |o: &Outcome| match o {
        Outcome::Exited(_)
        | Outcome::Signaled { .. }
        | Outcome::NotFound
        | Outcome::CannotExecute { .. }
        | Outcome::GuestFailed { .. } => {}
    };
    prop_oneof![
        any::<u8>().prop_map(Outcome::Exited),
        (1..=64u8, any::<bool>()).prop_map(|(signal, core_dumped)| Outcome::Signaled {
            signal,
            core_dumped
        }),
        Just(Outcome::NotFound),
        any::<i32>().prop_map(|errno| Outcome::CannotExecute { errno }),
        any::<String>().prop_map(|message| Outcome::GuestFailed { message }),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    (outcome(), any::<[u64; 5]>()).prop_map(
        |(outcome, [init_ns, exec_ns, exit_ns, report_ns, lpj])| Status {
            outcome,
            timeline: Timeline {
                init_ns,
                exec_ns,
                exit_ns,
                report_ns,
            },
            lpj,
        },
    )
}

proptest! {
    #[test]
    fn status_decoding_survives_hostile_input(data in hostile(status().prop_map(|s| s.encode()))) {
        let (decoded, bytes) = allocated_by(|| Status::decode(&data));
        prop_assert!(bytes <= record_alloc_limit(data.len()), "{} bytes allocated", bytes);
        if let Ok(status) = decoded {
            prop_assert_eq!(status.encode(), data, "accepted a non-canonical encoding");
        }
    }

    #[test]
    fn status_round_trips(status in status()) {
        let data = status.encode();
        prop_assert_eq!(Status::decode(&data), Ok(status));
    }
}

// ---- Frames ----------------------------------------------------------------------------

/// A frame payload: mostly small, sometimes up to `max` (which is reached now and then).
fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        16 => vec(any::<u8>(), 0..=max.min(64)),
        4 => vec(any::<u8>(), 0..=max.min(1024)),
        1 => (0..=max, any::<u8>()).prop_map(|(len, b)| vec![b; len]),
        1 => Just(vec![0xa5; max]),
    ]
}

/// A frame of either direction, owning its payload so that strategies can produce it.
trait OwnedFrame: Sized + Clone + fmt::Debug + PartialEq {
    fn encode_into(&self, out: &mut Vec<u8>);
    /// The decoder under test, its frame made owned, and the bytes the decoder allocated.
    fn parse(buf: &[u8]) -> (Result<Option<(Self, usize)>, FrameError>, usize);
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Guest {
    Hello,
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    StdinCredit(u32),
    StdinClosed,
    Log(Vec<u8>),
    End,
    ChannelCredit(u32),
    DebugShell(Vec<u8>),
    Status(Vec<u8>),
    StdinFileRead(u32),
    Session { id: u32, frame: Vec<u8> },
    SessionGone(u32),
    LineFree(u8),
    Lost(Vec<u8>),
}

impl Guest {
    fn frame(&self) -> GuestFrame<'_> {
        match self {
            Guest::Hello => GuestFrame::Hello,
            Guest::Started => GuestFrame::Started,
            Guest::Stdout(d) => GuestFrame::Stdout(d),
            Guest::Stderr(d) => GuestFrame::Stderr(d),
            Guest::StdinCredit(n) => GuestFrame::StdinCredit(*n),
            Guest::StdinClosed => GuestFrame::StdinClosed,
            Guest::Log(d) => GuestFrame::Log(d),
            Guest::End => GuestFrame::End,
            Guest::ChannelCredit(n) => GuestFrame::ChannelCredit(*n),
            Guest::DebugShell(d) => GuestFrame::DebugShell(d),
            Guest::Status(d) => GuestFrame::Status(d),
            Guest::StdinFileRead(n) => GuestFrame::StdinFileRead(*n),
            Guest::Session { id, frame } => GuestFrame::Session { id: *id, frame },
            Guest::SessionGone(id) => GuestFrame::SessionGone(*id),
            Guest::LineFree(n) => GuestFrame::LineFree(*n),
            Guest::Lost(d) => GuestFrame::Lost(d),
        }
    }

    /// Exhaustive: a new frame fails to compile here until it gets a strategy.
    fn from_frame(frame: GuestFrame<'_>) -> Guest {
        match frame {
            GuestFrame::Hello => Guest::Hello,
            GuestFrame::Started => Guest::Started,
            GuestFrame::Stdout(d) => Guest::Stdout(d.to_vec()),
            GuestFrame::Stderr(d) => Guest::Stderr(d.to_vec()),
            GuestFrame::StdinCredit(n) => Guest::StdinCredit(n),
            GuestFrame::StdinClosed => Guest::StdinClosed,
            GuestFrame::Log(d) => Guest::Log(d.to_vec()),
            GuestFrame::End => Guest::End,
            GuestFrame::ChannelCredit(n) => Guest::ChannelCredit(n),
            GuestFrame::DebugShell(d) => Guest::DebugShell(d.to_vec()),
            GuestFrame::Status(d) => Guest::Status(d.to_vec()),
            GuestFrame::StdinFileRead(n) => Guest::StdinFileRead(n),
            GuestFrame::Session { id, frame } => Guest::Session {
                id,
                frame: frame.to_vec(),
            },
            GuestFrame::SessionGone(id) => Guest::SessionGone(id),
            GuestFrame::LineFree(n) => Guest::LineFree(n),
            GuestFrame::Lost(d) => Guest::Lost(d.to_vec()),
        }
    }
}

impl OwnedFrame for Guest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.frame().encode_into(out);
    }

    fn parse(buf: &[u8]) -> (Result<Option<(Self, usize)>, FrameError>, usize) {
        let (parsed, bytes) = allocated_by(|| GuestFrame::parse(buf));
        let parsed = parsed.map(|f| f.map(|(frame, used)| (Guest::from_frame(frame), used)));
        (parsed, bytes)
    }
}

fn guest_frame() -> impl Strategy<Value = Guest> {
    prop_oneof![
        Just(Guest::Hello),
        Just(Guest::Started),
        payload(MAX_PAYLOAD).prop_map(Guest::Stdout),
        payload(MAX_PAYLOAD).prop_map(Guest::Stderr),
        any::<u32>().prop_map(Guest::StdinCredit),
        Just(Guest::StdinClosed),
        payload(MAX_PAYLOAD).prop_map(Guest::Log),
        Just(Guest::End),
        any::<u32>().prop_map(Guest::ChannelCredit),
        payload(MAX_PAYLOAD).prop_map(Guest::DebugShell),
        payload(MAX_PAYLOAD).prop_map(Guest::Status),
        any::<u32>().prop_map(Guest::StdinFileRead),
        (any::<u32>(), payload(MAX_PAYLOAD)).prop_map(|(id, data)| {
            let mut frame = Vec::new();
            GuestFrame::Stdout(&data).encode_into(&mut frame);
            Guest::Session { id, frame }
        }),
        any::<u32>().prop_map(Guest::SessionGone),
        (0..SESSION_LINES).prop_map(Guest::LineFree),
        payload(MAX_PAYLOAD).prop_map(Guest::Lost),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Stdin(Vec<u8>),
    StdinFile { seq: u32, len: u32 },
    StdinEof,
    Signal(u8),
    Winsize { rows: u16, cols: u16 },
    CloseStdout,
    CloseStderr,
    EndAck,
    Shutdown,
    NetReady,
    Nudge,
    Exec(u32, Option<u8>),
    Session { id: u32, frame: Vec<u8> },
}

impl Host {
    fn frame(&self) -> HostFrame<'_> {
        match *self {
            Host::Stdin(ref d) => HostFrame::Stdin(d),
            Host::StdinFile { seq, len } => HostFrame::StdinFile { seq, len },
            Host::StdinEof => HostFrame::StdinEof,
            Host::Signal(s) => HostFrame::Signal(s),
            Host::Winsize { rows, cols } => HostFrame::Winsize { rows, cols },
            Host::CloseStdout => HostFrame::CloseStdout,
            Host::CloseStderr => HostFrame::CloseStderr,
            Host::EndAck => HostFrame::EndAck,
            Host::Shutdown => HostFrame::Shutdown,
            Host::NetReady => HostFrame::NetReady,
            Host::Nudge => HostFrame::Nudge,
            Host::Exec(id, line) => HostFrame::Exec { id, line },
            Host::Session { id, ref frame } => HostFrame::Session { id, frame },
        }
    }

    /// Exhaustive: a new frame fails to compile here until it gets a strategy.
    fn from_frame(frame: HostFrame<'_>) -> Host {
        match frame {
            HostFrame::Stdin(d) => Host::Stdin(d.to_vec()),
            HostFrame::StdinFile { seq, len } => Host::StdinFile { seq, len },
            HostFrame::StdinEof => Host::StdinEof,
            HostFrame::Signal(s) => Host::Signal(s),
            HostFrame::Winsize { rows, cols } => Host::Winsize { rows, cols },
            HostFrame::CloseStdout => Host::CloseStdout,
            HostFrame::CloseStderr => Host::CloseStderr,
            HostFrame::EndAck => Host::EndAck,
            HostFrame::Shutdown => Host::Shutdown,
            HostFrame::NetReady => Host::NetReady,
            HostFrame::Nudge => Host::Nudge,
            HostFrame::Exec { id, line } => Host::Exec(id, line),
            HostFrame::Session { id, frame } => Host::Session {
                id,
                frame: frame.to_vec(),
            },
        }
    }
}

impl OwnedFrame for Host {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.frame().encode_into(out);
    }

    fn parse(buf: &[u8]) -> (Result<Option<(Self, usize)>, FrameError>, usize) {
        let (parsed, bytes) = allocated_by(|| HostFrame::parse(buf));
        let parsed = parsed.map(|f| f.map(|(frame, used)| (Host::from_frame(frame), used)));
        (parsed, bytes)
    }
}

fn host_frame() -> impl Strategy<Value = Host> {
    prop_oneof![
        payload(MAX_INLINE_STDIN).prop_map(Host::Stdin),
        any::<(u32, u32)>().prop_map(|(seq, len)| Host::StdinFile { seq, len }),
        Just(Host::StdinEof),
        (1..=64u8).prop_map(Host::Signal),
        any::<(u16, u16)>().prop_map(|(rows, cols)| Host::Winsize { rows, cols }),
        Just(Host::CloseStdout),
        Just(Host::CloseStderr),
        Just(Host::EndAck),
        Just(Host::Shutdown),
        Just(Host::NetReady),
        Just(Host::Nudge),
        (any::<u32>(), proptest::option::of(0..SESSION_LINES))
            .prop_map(|(id, line)| Host::Exec(id, line)),
        (any::<u32>(), payload(MAX_INLINE_STDIN)).prop_map(|(id, data)| {
            let mut frame = Vec::new();
            HostFrame::Stdin(&data).encode_into(&mut frame);
            Host::Session { id, frame }
        }),
    ]
}

fn encode_all<F: OwnedFrame>(frames: &[F]) -> Vec<u8> {
    let mut wire = Vec::new();
    for frame in frames {
        frame.encode_into(&mut wire);
    }
    wire
}

/// Where a stream is cut into the reads that deliver it.
#[derive(Debug, Clone)]
enum Chunking {
    At(Vec<Index>),
    Every(usize),
}

fn chunking() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        vec(any::<Index>(), 0..32).prop_map(Chunking::At),
        (1..=16usize).prop_map(Chunking::Every),
    ]
}

impl Chunking {
    fn split<'a>(&self, data: &'a [u8]) -> Vec<&'a [u8]> {
        match self {
            Chunking::At(cuts) => {
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
                at.extend([0, data.len()]);
                at.sort_unstable();
                at.dedup();
                at.windows(2).map(|w| &data[w[0]..w[1]]).collect()
            }
            Chunking::Every(n) => data.chunks(*n).collect(),
        }
    }
}

/// Parses frame after frame until the input needs more bytes or is rejected, checking that
/// the parser allocates nothing, uses no more than its input, accepts only what the encoder
/// writes, and asks for more bytes (never fails) on every prefix of a complete frame.
fn check_hostile_stream<F: OwnedFrame>(data: &[u8]) -> Result<(), TestCaseError> {
    let mut rest = data;
    loop {
        let (parsed, bytes) = F::parse(rest);
        prop_assert_eq!(bytes, 0, "frame parsing allocated");
        let Ok(Some((frame, used))) = parsed else {
            return Ok(());
        };
        prop_assert!(
            (HEADER_LEN..=rest.len()).contains(&used),
            "used {} of {}",
            used,
            rest.len()
        );
        let mut again = Vec::new();
        frame.encode_into(&mut again);
        prop_assert_eq!(&again[..], &rest[..used], "accepted a non-canonical frame");
        for len in (0..used.min(HEADER_LEN + 8)).chain([used / 2, used - 1]) {
            prop_assert_eq!(
                F::parse(&rest[..len]).0,
                Ok(None),
                "prefix of {} bytes",
                len
            );
        }
        rest = &rest[used..];
    }
}

fn check_round_trip<F: OwnedFrame>(frame: &F) -> Result<Vec<u8>, TestCaseError> {
    let wire = encode_all(std::slice::from_ref(frame));
    prop_assert_eq!(F::parse(&wire).0, Ok(Some((frame.clone(), wire.len()))));
    Ok(wire)
}

/// Feeds the encoded `frames` in the reads `chunking` makes, as the channel's readers do.
fn check_reassembly<F: OwnedFrame>(frames: &[F], chunking: &Chunking) -> Result<(), TestCaseError> {
    let wire = encode_all(frames);
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for chunk in chunking.split(&wire) {
        buf.extend_from_slice(chunk);
        loop {
            let parsed = F::parse(&buf).0;
            let parsed = parsed
                .map_err(|e| TestCaseError::fail(format!("{e} after {} frames", got.len())))?;
            let Some((frame, used)) = parsed else { break };
            prop_assert!(
                (1..=buf.len()).contains(&used),
                "used {used} of {}",
                buf.len()
            );
            got.push(frame);
            buf.drain(..used);
        }
    }
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    prop_assert_eq!(got, frames);
    Ok(())
}

proptest! {
    #[test]
    fn guest_frame_parsing_survives_hostile_input(
        data in hostile(vec(guest_frame(), 1..6).prop_map(|f| encode_all(&f)))
    ) {
        check_hostile_stream::<Guest>(&data)?;
    }

    #[test]
    fn guest_frames_round_trip_and_are_rejected_by_the_host(frame in guest_frame()) {
        let wire = check_round_trip(&frame)?;
        prop_assert!(matches!(HostFrame::parse(&wire), Err(FrameError::UnknownTag(_))));
    }

    #[test]
    fn guest_frames_reassemble_from_any_reads(
        frames in vec(guest_frame(), 0..16),
        chunking in chunking()
    ) {
        check_reassembly(&frames, &chunking)?;
    }

    #[test]
    fn host_frame_parsing_survives_hostile_input(
        data in hostile(vec(host_frame(), 1..6).prop_map(|f| encode_all(&f)))
    ) {
        check_hostile_stream::<Host>(&data)?;
    }

    #[test]
    fn host_frames_round_trip_and_are_rejected_by_the_guest(frame in host_frame()) {
        let wire = check_round_trip(&frame)?;
        prop_assert!(matches!(GuestFrame::parse(&wire), Err(FrameError::UnknownTag(_))));
    }

    #[test]
    fn host_frames_reassemble_from_any_reads(
        frames in vec(host_frame(), 0..16),
        chunking in chunking()
    ) {
        check_reassembly(&frames, &chunking)?;
    }
}

// ---- Kernel-parameter escape -----------------------------------------------------------

/// The grammar `encode_param` writes: `%` then exactly two hex digits, other bytes as they are.
fn escape_grammar(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = char::from(bytes.next()?).to_digit(16)?;
        let lo = char::from(bytes.next()?).to_digit(16)?;
        out.push((hi * 16 + lo) as u8);
    }
    Some(out)
}

/// Any text, text made of the characters around escapes, and damaged encodings.
fn param_text() -> impl Strategy<Value = String> {
    prop_oneof![
        vec(any::<char>(), 0..4096).prop_map(String::from_iter),
        "[%+ 0-9a-fA-Fg/\u{e9}-]{0,32}",
        (vec(any::<u8>(), 0..64), vec(mutation(), 1..4)).prop_map(|(bytes, ms)| {
            let damaged = mutate(encode_param(&bytes).into_bytes(), &ms);
            String::from_utf8_lossy(&damaged).into_owned()
        }),
    ]
}

proptest! {
    #[test]
    fn param_encoding_round_trips_any_bytes_as_one_word(bytes in vec(any::<u8>(), 0..4096)) {
        let text = encode_param(&bytes);
        prop_assert!(
            text.bytes().all(|b| b.is_ascii_graphic() && b != b'"'),
            "not one plain word: {:?}",
            text
        );
        prop_assert_eq!(decode_param(&text), Some(bytes));
    }

    #[test]
    fn param_decoding_survives_any_text(text in param_text()) {
        let (decoded, bytes) = allocated_by(|| decode_param(&text));
        prop_assert!(bytes <= text.len(), "{} bytes allocated", bytes);
        if let Some(decoded) = decoded {
            prop_assert!(decoded.len() <= text.len());
        }
    }

    #[test]
    fn param_decoding_follows_the_escape_grammar(text in param_text()) {
        prop_assert_eq!(decode_param(&text), escape_grammar(&text));
    }
}

proptest! {
    /// The queue both ends' channels write from gives back what was pushed, in order, whatever
    /// the pieces pushed and written (against a `VecDeque` as the model).
    #[test]
    fn the_byte_queue_gives_back_its_bytes_in_order(
        steps in vec((vec(any::<u8>(), 0..100), 0usize..150), 0..200)
    ) {
        let mut q = ByteQueue::default();
        let mut model = std::collections::VecDeque::new();
        for (pushed, written) in steps {
            q.push(&pushed);
            model.extend(pushed);
            let written = written.min(q.len());
            let expected: Vec<u8> = model.drain(..written).collect();
            prop_assert_eq!(&q.unsent()[..written], expected.as_slice());
            q.advance(written);
            prop_assert_eq!(q.len(), model.len());
        }
        prop_assert_eq!(q.into_unsent(), Vec::from(model));
    }
}
