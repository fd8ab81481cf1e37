//! Pieces the end-to-end measurements share: readings from `/proc`, the
//! file-descriptor limit, and the *listener farm* — N raw TCP connections
//! served by one epoll loop (mio) in one process, so 10,000 listeners cost
//! no thread each. The farm counts messages per connection and reports the
//! moment every connection has received its r-th message.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flagpost_core::wire::{frame_len, FrameRepr, HelloRepr};
use flagpost_core::FlagSet;
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

/// What the farm's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FarmMode {
    /// Flagpost listeners: hello, welcome, then flags frames are messages.
    Flagpost,
    /// The bare floor: every 8 bytes are a message.
    Bare,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    messages: u64,
    welcomed: bool,
}

/// N connections in one epoll loop.
pub struct Farm {
    poll: Poll,
    conns: Vec<Conn>,
    mode: FarmMode,
    /// How many connections have at least r messages, indexed by r (grown
    /// as rounds complete).
    reached: Vec<u64>,
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
        channel: Option<flagpost_core::ChannelId>,
    ) -> io::Result<Farm> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(n);
        let mut hello = [0u8; 64];
        let hello_len = FrameRepr::Hello(HelloRepr {
            interest: FlagSet::ALL,
            channel,
            keepalive_secs: 3600,
        })
        .emit(&mut hello)
        .map_err(io::Error::other)?;
        for i in 0..n {
            // connect synchronously (the listen backlog absorbs the burst),
            // then hand the socket to mio
            let std = std::net::TcpStream::connect(addr)?;
            std.set_nodelay(true)?;
            if mode == FarmMode::Flagpost {
                (&std).write_all(&hello[..hello_len])?;
            }
            std.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(std);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            conns.push(Conn {
                stream,
                buf: Vec::new(),
                messages: 0,
                welcomed: mode == FarmMode::Bare,
            });
        }
        let mut farm = Farm {
            poll,
            conns,
            mode,
            reached: vec![n as u64],
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while farm.conns.iter().any(|c| !c.welcomed) {
            if Instant::now() > deadline {
                return Err(io::Error::other("not every listener was welcomed in 60 s"));
            }
            farm.turn(Some(Duration::from_millis(100)))?;
        }
        Ok(farm)
    }

    /// Handles one batch of readiness events.
    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.poll.poll(&mut events, timeout)?;
        let mut chunk = [0u8; 4096];
        for event in events.iter() {
            let Some(conn) = self.conns.get_mut(event.token().0) else {
                continue;
            };
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => return Err(io::Error::other("a farm connection was closed")),
                    Ok(n) => conn.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            let before = conn.messages;
            match self.mode {
                FarmMode::Bare => {
                    let whole = conn.buf.len() / 8;
                    conn.messages += whole as u64;
                    conn.buf.drain(..whole * 8);
                }
                FarmMode::Flagpost => {
                    while let Ok(Some(len)) = frame_len(&conn.buf) {
                        match FrameRepr::parse_bytes(&conn.buf[..len]) {
                            Ok(FrameRepr::Welcome(_)) => conn.welcomed = true,
                            Ok(FrameRepr::Flags(_)) => conn.messages += 1,
                            _ => {}
                        }
                        conn.buf.drain(..len);
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
        }
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
            self.turn(Some(left))?;
        }
    }

    /// Messages received so far, over all connections (handles what is
    /// already readable first).
    pub fn messages(&mut self) -> io::Result<u64> {
        self.turn(Some(Duration::ZERO))?;
        Ok(self.conns.iter().map(|c| c.messages).sum())
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
