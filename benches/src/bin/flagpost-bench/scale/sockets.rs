//! The broker's side of its listener connections, as the kernel sees it:
//! for every TCP socket whose local port is the broker's, its peer port,
//! whether it is still ESTABLISHED, the bytes it has queued and not yet
//! had acknowledged (Send-Q: `tx_queue` of `/proc/<pid>/net/tcp`), and,
//! where `ss` is installed, the memory its write queue holds (`skmem`'s
//! `w`, `sk_wmem_queued`: buffers included, not only the bytes).
//!
//! A socket the broker has closed with bytes still queued stays in the
//! table (FIN-WAIT-1, an orphan) until the peer reads them or the kernel
//! gives up; so "left ESTABLISHED" is when the broker closed it.
//!
//! On loopback the listeners' sockets are in the same table: their
//! receive queues (Recv-Q, `rx_queue`) say how much of what the broker
//! sent waits on the listener's side instead.

use std::collections::HashMap;

/// One broker-side socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sock {
    /// The listener's (client's) port.
    pub(crate) peer_port: u16,
    /// Still ESTABLISHED (the broker has not closed it).
    pub(crate) established: bool,
    /// Bytes queued, not yet acknowledged.
    pub(crate) send_q: u64,
    /// `sk_wmem_queued` from `ss -tmn`, when `ss` ran.
    pub(crate) wmem: Option<u64>,
}

/// TCP state ESTABLISHED in `/proc/net/tcp`.
const ESTABLISHED: u8 = 0x01;
/// TCP state LISTEN.
const LISTEN: u8 = 0x0a;

/// Both ends of the connections to a broker at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// The broker's side of each connection.
    pub(crate) broker: Vec<Sock>,
    /// The listener's side: its receive queue (bytes) by its port.
    pub(crate) client_recv_q: HashMap<u16, u64>,
}

/// The connections of local port `port` in the network namespace of `pid`
/// (IPv4: the benches bind 127.0.0.1), with `ss`'s memory where it runs.
pub(crate) fn sample(pid: u32, port: u16) -> Sample {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let mut sample = parse_proc_tcp(&table, port);
    if let Some(wmem) = ss_wmem(port) {
        for s in &mut sample.broker {
            s.wmem = wmem.get(&s.peer_port).copied();
        }
    }
    sample
}

/// The rows of a `/proc/net/tcp` table whose local port is `port` (but the
/// listening socket), and the receive queues of those whose peer is.
fn parse_proc_tcp(table: &str, port: u16) -> Sample {
    let hex_port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let mut sample = Sample::default();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let row = || {
            let local = hex_port(f.get(1)?)?;
            let peer = hex_port(f.get(2)?)?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let (tx, rx) = f.get(4)?.split_once(':')?;
            let hex = |v: &str| u64::from_str_radix(v, 16).unwrap_or(0);
            Some((local, peer, state, hex(tx), hex(rx)))
        };
        let Some((local, peer, state, tx, rx)) = row() else {
            continue;
        };
        if local == port && state != LISTEN {
            sample.broker.push(Sock {
                peer_port: peer,
                established: state == ESTABLISHED,
                send_q: tx,
                wmem: None,
            });
        } else if peer == port {
            sample.client_recv_q.insert(local, rx);
        }
    }
    sample
}

/// `sk_wmem_queued` by peer port of the sockets of local port `port`, from
/// `ss -tmnHO`; `None` when `ss` is not there or fails.
fn ss_wmem(port: u16) -> Option<HashMap<u16, u64>> {
    let out = std::process::Command::new("ss")
        .args(["-tmnHO", "state", "all"])
        .arg(format!("( sport = :{port} )"))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(parse_ss(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `ss -tmnHO` lines: state, Recv-Q, Send-Q, local, peer, then
/// `skmem:(r…,rb…,t…,tb…,f…,w…,…)`.
fn parse_ss(text: &str) -> HashMap<u16, u64> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let peer = f.get(4)?.rsplit_once(':')?.1.parse::<u16>().ok()?;
            let skmem = f.iter().find_map(|t| t.strip_prefix("skmem:("))?;
            let w = skmem
                .trim_end_matches(')')
                .split(',')
                .find_map(|kv| kv.strip_prefix('w')?.parse::<u64>().ok())?;
            Some((peer, w))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:3039 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:3039 0100007F:9C40 01 00000400:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n\
   2: 0100007F:3039 0100007F:9C41 04 0000000E:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1\n\
   3: 0100007F:9C40 0100007F:3039 01 00000000:00000400 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n";
        let sample = parse_proc_tcp(table, 0x3039);
        assert_eq!(sample.client_recv_q.get(&0x9c40), Some(&1024));
        assert_eq!(
            sample.broker,
            vec![
                Sock {
                    peer_port: 0x9c40,
                    established: true,
                    send_q: 1024,
                    wmem: None
                },
                Sock {
                    peer_port: 0x9c41,
                    established: false,
                    send_q: 14,
                    wmem: None
                },
            ]
        );
    }

    #[test]
    fn parses_ss_oneline() {
        let text = "ESTAB  0      1400      127.0.0.1:35205 127.0.0.1:36186 skmem:(r0,rb131072,t0,tb3939840,f0,w2304,o0,bl0,d0)\n\
FIN-WAIT-1 0 14 127.0.0.1:35205 127.0.0.1:36187 skmem:(r0,rb131072,t0,tb46080,f1792,w2304,o0,bl0,d0)\n";
        let w = parse_ss(text);
        assert_eq!(w.get(&36186), Some(&2304));
        assert_eq!(w.len(), 2);
    }
}
