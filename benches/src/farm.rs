//! Pieces the end-to-end measurements share: readings from `/proc`, the
//! file-descriptor limit, and the *listener farm* — N raw TCP connections
//! served by one epoll loop (mio) in one process, so 19,000 listeners cost
//! no thread each. The farm counts messages per connection and reports the
//! moment every connection has received its r-th message.
//!
//! A [`FarmSpec`] says what the connections say first ([`Hello`]: a
//! Flagpost hello with an interest set, the bare ingest floor's one-line
//! hello, or nothing for the bare fan-out floor), which channel each one
//! listens for ([`Channels`], e.g. ten per channel `c{i/10}`) and, if
//! asked, a small `SO_RCVBUF`. Connections are opened in chunks, each
//! chunk welcomed before the next one connects, so that a listen backlog
//! (the broker's is 4,096) never overflows. A farm reads promptly, or
//! stops reading ([`Farm::set_reading`]): an *idle* listener is connected
//! and welcomed, then never read.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flagpost_core::wire::{FrameReader, FrameRepr, HelloRepr, MAX_FRAME_LEN};
use flagpost_core::{ChannelId, FlagSet};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// CPU time (user + system), resident memory and context switches of a
/// process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Voluntary + involuntary context switches (each one a wake-up or
    /// a preemption).
    pub switches: u64,
}

/// Reads `pid`'s figures.
pub fn proc_sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the ")" that ends the command name; utime and stime are
    // fields 14 and 15 of the whole line, i.e. 11 and 12 after it
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu_s = (ticks(11) + ticks(12)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        cpu_s,
        rss_kib: field("VmRSS:"),
        switches: field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:"),
    })
}

/// Raises the soft open-file limit to `needed` (or fails saying why).
pub fn raise_fd_limit(needed: u64) -> Result<(), String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| e.to_string())?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(format!(
            "need {needed} open files but the hard limit is {hard}: raise it (ulimit -Hn, or LimitNOFILE)"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| e.to_string())
}

/// What the farm's connections speak (the fan-out scenario's two farms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FarmMode {
    /// Flagpost listeners: hello, welcome, then flags frames are messages.
    Flagpost,
    /// The bare floor: every 8 bytes are a message.
    Bare,
}

/// What a farm connection says first, and so how its stream is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hello {
    /// A Flagpost hello with this interest (and the connection's channel);
    /// the broker's welcome is awaited and flags frames are messages.
    Flagpost(FlagSet),
    /// The bare ingest floor's hello: the channel's name and a newline
    /// (just the newline for all channels). The floor answers with a
    /// Flagpost welcome frame and writes Flagpost flags frames, so the
    /// stream is read as Flagpost's.
    Line,
    /// Nothing: the bare fan-out floor, whose every 8 bytes are a message.
    None,
}

/// Which channel each connection listens for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    /// All channels.
    All,
    /// Every connection the same channel.
    One(ChannelId),
    /// Ten connections per channel: connection `i` listens for
    /// [`per_ten_channel(i)`](per_ten_channel).
    PerTen,
}

/// The channel of connection `i` under [`Channels::PerTen`]: `c{i/10}`.
pub fn per_ten_channel(i: usize) -> ChannelId {
    // at most "c" and 20 digits: always a valid channel id
    ChannelId::new(&format!("c{}", i / 10)).expect("a short ASCII channel name")
}

impl Channels {
    /// The channel of connection `i`, `None` for all channels.
    pub fn of(&self, i: usize) -> Option<ChannelId> {
        match self {
            Channels::All => None,
            Channels::One(c) => Some(*c),
            Channels::PerTen => Some(per_ten_channel(i)),
        }
    }
}

/// How a farm's connections are opened.
#[derive(Clone, Copy, Debug)]
pub struct FarmSpec {
    /// What each connection says first.
    pub hello: Hello,
    /// Which channel each listens for.
    pub channels: Channels,
    /// `SO_RCVBUF` set before connecting (`None`: the kernel's default).
    pub recv_buffer: Option<usize>,
    /// Connections opened before waiting for their welcomes.
    pub chunk: usize,
}

impl FarmSpec {
    /// Flagpost listeners with `interest`, on `channels`, default buffers,
    /// in chunks of 1,000.
    pub fn flagpost(interest: FlagSet, channels: Channels) -> FarmSpec {
        FarmSpec {
            hello: Hello::Flagpost(interest),
            channels,
            recv_buffer: None,
            chunk: 1000,
        }
    }
}

/// How long one chunk of connections may take to be welcomed.
const WELCOME_DEADLINE: Duration = Duration::from_secs(60);

struct Conn {
    stream: TcpStream,
    /// Flagpost frames not yet taken.
    frames: FrameReader<MAX_FRAME_LEN>,
    /// Bytes of a partial 8-byte message (the bare floor's stream).
    partial8: usize,
    messages: u64,
    welcomed: bool,
    closed: bool,
}

/// Counts the messages in `bytes`, just read from `conn`: every 8 bytes
/// when `fixed8`, else Flagpost frames (a welcome marks the connection
/// welcomed, a flags frame is a message). A stream that is not Flagpost's
/// stops counting, as the reader then stays empty.
fn take_messages(conn: &mut Conn, bytes: &[u8], fixed8: bool) {
    if fixed8 {
        let all = conn.partial8 + bytes.len();
        conn.messages += (all / 8) as u64;
        conn.partial8 = all % 8;
        return;
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let took = conn.frames.push(rest);
        if took == 0 {
            // the stream failed: nothing more is taken
            return;
        }
        rest = &rest[took..];
        while let Some(frame) = conn.frames.next_frame() {
            match frame.and_then(FrameRepr::parse_bytes) {
                Ok(FrameRepr::Welcome(_)) => conn.welcomed = true,
                Ok(FrameRepr::Flags(_)) => conn.messages += 1,
                _ => {}
            }
        }
    }
}

/// N connections in one epoll loop.
pub struct Farm {
    poll: Poll,
    conns: Vec<Conn>,
    /// Whether every 8 bytes are a message (else Flagpost frames).
    fixed8: bool,
    /// How many connections have at least r messages, indexed by r (grown
    /// as rounds complete).
    reached: Vec<u64>,
    /// Whether the connections are registered for reading.
    reading: bool,
    /// Whether a connection the peer closes is an error (the fan-out
    /// farms) or is counted ([`closed`](Self::closed)).
    close_is_error: bool,
    closed: usize,
}

impl Farm {
    /// Connects `n` connections to `addr` and, for Flagpost, waits until
    /// every one is welcomed.
    pub fn connect(addr: SocketAddr, n: usize, mode: FarmMode) -> io::Result<Farm> {
        Self::connect_to_channel(addr, n, mode, None)
    }

    /// [`connect`](Self::connect), the listeners listening for `channel`.
    pub fn connect_to_channel(
        addr: SocketAddr,
        n: usize,
        mode: FarmMode,
        channel: Option<ChannelId>,
    ) -> io::Result<Farm> {
        let spec = FarmSpec {
            hello: match mode {
                FarmMode::Flagpost => Hello::Flagpost(FlagSet::ALL),
                FarmMode::Bare => Hello::None,
            },
            channels: channel.map_or(Channels::All, Channels::One),
            recv_buffer: None,
            chunk: 1000,
        };
        let mut farm = Self::open(addr, n, &spec)?;
        farm.close_is_error = true;
        Ok(farm)
    }

    /// Opens `n` connections to `addr` as `spec` says, `spec.chunk` at a
    /// time, each chunk welcomed (unless [`Hello::None`]) before the next
    /// connects. The farm then reads promptly; a connection the peer
    /// closes is counted, not an error.
    pub fn open(addr: SocketAddr, n: usize, spec: &FarmSpec) -> io::Result<Farm> {
        let mut farm = Farm {
            poll: Poll::new()?,
            conns: Vec::with_capacity(n),
            fixed8: spec.hello == Hello::None,
            reached: vec![n as u64],
            reading: true,
            close_is_error: false,
            closed: 0,
        };
        let chunk = spec.chunk.max(1);
        let mut next = 0;
        while next < n {
            let end = (next + chunk).min(n);
            for i in next..end {
                farm.connect_one(addr, i, spec)?;
            }
            let deadline = Instant::now() + WELCOME_DEADLINE;
            while farm.conns[next..end].iter().any(|c| !c.welcomed) {
                if Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "connections {next}..{end} were not all welcomed in {} s",
                        WELCOME_DEADLINE.as_secs()
                    )));
                }
                farm.poll(Some(Duration::from_millis(100)))?;
            }
            next = end;
        }
        Ok(farm)
    }

    /// Connects connection `i` (synchronously: the listen backlog absorbs
    /// a chunk), says its hello and hands it to mio.
    fn connect_one(&mut self, addr: SocketAddr, i: usize, spec: &FarmSpec) -> io::Result<()> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if let Some(bytes) = spec.recv_buffer {
            // before connecting, so that the window scale the handshake
            // agrees on fits the small buffer
            socket.set_recv_buffer_size(bytes)?;
        }
        socket.connect(&addr.into())?;
        socket.set_tcp_nodelay(true)?;
        let std: std::net::TcpStream = socket.into();
        let channel = spec.channels.of(i);
        match spec.hello {
            Hello::Flagpost(interest) => {
                let mut hello = [0u8; 64];
                let len = FrameRepr::Hello(HelloRepr {
                    interest,
                    channel,
                    keepalive_secs: 3600,
                })
                .emit(&mut hello)
                .map_err(io::Error::other)?;
                (&std).write_all(&hello[..len])?;
            }
            Hello::Line => {
                let name = channel.as_ref().map_or("", |c| c.as_str());
                (&std).write_all(format!("{name}\n").as_bytes())?;
            }
            Hello::None => {}
        }
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        self.poll
            .registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        self.conns.push(Conn {
            stream,
            frames: FrameReader::new(),
            partial8: 0,
            messages: 0,
            welcomed: spec.hello == Hello::None,
            closed: false,
        });
        Ok(())
    }

    /// Handles one batch of readiness events: reads what arrived, waiting
    /// at most `timeout` for it.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        match self.poll.poll(&mut events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            other => other?,
        }
        let mut chunk = [0u8; 4096];
        for event in events.iter() {
            let Some(conn) = self.conns.get_mut(event.token().0) else {
                continue;
            };
            if conn.closed {
                continue;
            }
            let mut gone = false;
            let before = conn.messages;
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        gone = true;
                        break;
                    }
                    Ok(n) => take_messages(conn, &chunk[..n], self.fixed8),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if self.close_is_error => return Err(e),
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            for r in before + 1..=conn.messages {
                let r = r as usize;
                if self.reached.len() <= r {
                    self.reached.resize(r + 1, 0);
                }
                self.reached[r] += 1;
            }
            if gone {
                if self.close_is_error {
                    return Err(io::Error::other("a farm connection was closed"));
                }
                conn.closed = true;
                let _ = self.poll.registry().deregister(&mut conn.stream);
                self.closed += 1;
            }
        }
        Ok(())
    }

    /// Stops reading (`false`: the connections stay open and are never
    /// read, as idle listeners) or starts again (`true`: whatever queued
    /// meanwhile is read).
    pub fn set_reading(&mut self, on: bool) -> io::Result<()> {
        if on == self.reading {
            return Ok(());
        }
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if conn.closed {
                continue;
            }
            if on {
                self.poll
                    .registry()
                    .register(&mut conn.stream, Token(i), Interest::READABLE)?;
            } else {
                self.poll.registry().deregister(&mut conn.stream)?;
            }
        }
        self.reading = on;
        Ok(())
    }

    /// Blocks until every connection has at least `round` messages, or
    /// `timeout` passes; returns whether it happened.
    pub fn wait_round(&mut self, round: u64, timeout: Duration) -> io::Result<bool> {
        let n = self.conns.len() as u64;
        let deadline = Instant::now() + timeout;
        loop {
            if self.reached.get(round as usize).copied().unwrap_or(0) >= n {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.poll(Some(left))?;
        }
    }

    /// Messages received so far, over all connections (handles what is
    /// already readable first).
    pub fn messages(&mut self) -> io::Result<u64> {
        self.poll(Some(Duration::ZERO))?;
        Ok(self.conns.iter().map(|c| c.messages).sum())
    }

    /// Connections the peer closed (seen while reading).
    pub fn closed(&self) -> usize {
        self.closed
    }

    /// The local (client) port of every connection, in connection order.
    pub fn local_ports(&self) -> Vec<u16> {
        self.conns
            .iter()
            .filter_map(|c| c.stream.local_addr().ok().map(|a| a.port()))
            .collect()
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether the farm holds no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
