//! Writes the committed seed corpora: `corpus/datagram` and `corpus/frame`
//! (the valid vectors of PROTOCOL.md plus a few longest-case messages), and
//! `corpus/broker` (operation lists, encoded as the `arbitrary` bytes the
//! `broker` target decodes them from; each is checked to decode back).
//!
//! Run from `fuzz/`: `cargo +nightly run --example gen_seeds`. It only adds
//! or overwrites its own named files.

use std::fs;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use flagpost_core::channel::ChannelId;
use flagpost_core::notify::Notification;
use flagpost_core::wire::{
    FrameRepr, HelloRepr, NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN, MAX_FRAME_LEN, TAG_LEN,
};
use flagpost_core::FlagSet;
use flagpost_fuzz::encode::to_bytes;
use flagpost_model::{Corrupt, FrameSpec, Input, NotifySpec, Op, SeqSpec, Setup};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn datagrams(dir: &Path) {
    // Vectors from PROTOCOL.md.
    for (name, bytes) in [
        (
            "notify-status-all",
            "46 50 01 01 00 01 00 00 01 02 03 04 05 06 07 08 00 00 00 2a 00 00 00 01",
        ),
        (
            "notify-status-gsm1-ack",
            "46 50 01 01 01 01 04 00 fe ed fa ce ca fe be ef 00 00 00 07 00 00 00 14 67 73 6d 31",
        ),
        (
            "notify-non-status",
            "46 50 01 01 00 02 00 00 01 02 03 04 05 06 07 08 00 00 00 2b 00 00 01 f4",
        ),
        (
            "notify-channel-update-tagged",
            "46 50 01 01 02 03 04 00 01 02 03 04 05 06 07 08 00 00 00 2c 00 00 00 01 67 73 6d 31 \
             a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af",
        ),
        (
            "notify-channel-shutdown",
            "46 50 01 01 00 04 08 00 01 02 03 04 05 06 07 08 00 00 00 2d 00 00 00 01 \
             6d 6f 64 65 6d 2d c3 a9",
        ),
        (
            "ack-delivered",
            "46 50 01 02 00 00 00 00 fe ed fa ce ca fe be ef 00 00 00 07",
        ),
        (
            "ack-duplicate-tagged",
            "46 50 01 02 02 01 00 00 01 02 03 04 05 06 07 08 00 00 00 2c \
             c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce cf",
        ),
        (
            "invalid-reserved-non-zero",
            "46 50 01 01 00 01 00 01 01 02 03 04 05 06 07 08 00 00 00 2a 00 00 00 01",
        ),
    ] {
        write(dir, name, &hex(bytes));
    }
    // The longest datagram: a 32-byte channel, tagged, ack requested.
    let longest = NotifyRepr {
        notification: Notification::channel_update(
            ChannelId::new("channel-name-of-32-bytes-exactly").expect("32 bytes"),
        ),
        sender: SenderId(u64::MAX),
        seq: Seq(u32::MAX),
        batch: u32::MAX,
        ack_requested: true,
        probe: false,
        tag: Some([0x5a; TAG_LEN]),
    };
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let n = longest.emit(&mut buf).expect("fits");
    assert_eq!(n, MAX_DATAGRAM_LEN);
    write(dir, "notify-longest", &buf[..n]);
}

fn frames(dir: &Path) {
    let vectors = [
        ("hello-all", "46 50 01 10 00 04 0f 00 00 00"),
        (
            "hello-gsm1-status",
            "46 50 01 10 00 08 03 04 00 1e 67 73 6d 31",
        ),
        (
            "welcome",
            "46 50 01 11 00 0c 03 00 00 1e 11 22 33 44 55 66 77 88",
        ),
        ("flags", "46 50 01 12 00 08 03 00 00 00 00 00 03 e8"),
        ("ping", "46 50 01 13 00 04 de ad be ef"),
        ("pong", "46 50 01 14 00 04 de ad be ef"),
        ("close-shutdown", "46 50 01 15 00 04 01 01 00 00"),
        ("stats-request", "46 50 01 16 00 00"),
        (
            "stat",
            "46 50 01 17 00 0c 00 02 00 00 00 00 00 00 00 00 01 02",
        ),
        // listener authentication (version 2), with PROTOCOL.md's test key
        (
            "hello-v2-gsm1-status",
            "46 50 02 10 00 08 03 04 00 1e 67 73 6d 31",
        ),
        (
            "challenge",
            "46 50 02 18 00 10 b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf",
        ),
        (
            "proof",
            "46 50 02 19 00 20 c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce cf \
             ca 56 19 d7 9e 05 4b e3 3e 93 5a 7f 04 87 43 1c",
        ),
        (
            "accept",
            "46 50 02 1a 00 10 be 79 81 d6 01 e2 d7 bd 71 6c fd 2a bc 00 62 7a",
        ),
    ];
    for (name, bytes) in vectors {
        write(dir, name, &hex(bytes));
    }
    // A stream: hello, ping, close back to back.
    let stream: Vec<u8> = ["hello-gsm1-status", "ping", "close-shutdown"]
        .iter()
        .flat_map(|want| hex(vectors.iter().find(|(n, _)| n == want).expect("vector").1))
        .collect();
    write(dir, "stream-hello-ping-close", &stream);
    // A stream ending in half a frame.
    let mut partial = hex(vectors[4].1);
    partial.extend_from_slice(&hex(vectors[1].1)[..9]);
    write(dir, "stream-partial", &partial);
    // The longest hello: a 32-byte channel.
    let hello = FrameRepr::Hello(HelloRepr {
        interest: FlagSet::ALL,
        channel: Some(ChannelId::new("channel-name-of-32-bytes-exactly").expect("32 bytes")),
        keepalive_secs: u16::MAX,
    });
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = hello.emit(&mut buf).expect("fits");
    write(dir, "hello-longest", &buf[..n]);
}

const SETUP: Setup = Setup {
    hello_timeout: 0,
    stuck_timeout: 0,
    housekeeping: 0,
    lazy_events: false,
    broker_id: 0x1122_3344_5566_7788,
    listeners: 0,
    senders: 0,
    keepalive: 0,
    lazy_ready: false,
    evict_after: 0,
};

fn hello(listener: u8, interest: u8, channel: u8, keepalive_secs: u16) -> Op {
    Op::Frame {
        listener,
        frame: FrameSpec::Hello {
            interest,
            channel,
            keepalive_secs,
        },
    }
}

fn notify(kind: u8, channel: u8, sender: u8, seq: SeqSpec, ack: bool) -> Op {
    Op::Notify(NotifySpec {
        kind,
        channel,
        sender,
        seq,
        ack,
        tagged: false,
        batch: 1,
    })
}

const fn secs(s: u32) -> Op {
    Op::Advance {
        micros: s * 1_000_000,
    }
}

fn broker_seeds() -> Vec<(&'static str, Input)> {
    let status = |seq| notify(0, 0, 0, seq, false);
    vec![
        (
            "listen-and-notify",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 0, 0),
                    Op::Open,
                    hello(1, 0x0f, 1, 30),
                    notify(0, 0, 0, SeqSpec::Next, true),
                    notify(2, 1, 0, SeqSpec::Next, false),
                    notify(3, 2, 1, SeqSpec::Next, true),
                    Op::Frame {
                        listener: 1,
                        frame: FrameSpec::Ping { nonce: 7 },
                    },
                    Op::InProcess {
                        kind: 1,
                        channel: 1,
                        batch: 3,
                        repeat: 6,
                    },
                ],
            },
        ),
        (
            "coalesce-while-unwritable",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    hello(0, 0x03, 1, 0),
                    Op::Writable {
                        listener: 0,
                        writable: false,
                    },
                    status(SeqSpec::Next),
                    notify(1, 1, 0, SeqSpec::Next, false),
                    status(SeqSpec::Next),
                    Op::Frame {
                        listener: 0,
                        frame: FrameSpec::Ping { nonce: 1 },
                    },
                    Op::PollFrame { listener: 0 },
                    Op::Writable {
                        listener: 0,
                        writable: true,
                    },
                    status(SeqSpec::Next),
                ],
            },
        ),
        (
            "loss-detection",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 0, 0),
                    status(SeqSpec::Next),
                    status(SeqSpec::Skip(3)),
                    status(SeqSpec::Back(1)),
                    status(SeqSpec::Same),
                    status(SeqSpec::Back(100)),
                    status(SeqSpec::First),
                    notify(0, 0, 1, SeqSpec::Raw(u32::MAX), true),
                    notify(0, 0, 1, SeqSpec::Next, true),
                    notify(0, 0, 2, SeqSpec::Next, false),
                    notify(0, 0, 3, SeqSpec::Next, false),
                    notify(0, 0, 4, SeqSpec::Next, false),
                    notify(0, 0, 5, SeqSpec::Next, false),
                    Op::Lost { count: 3 },
                ],
            },
        ),
        (
            "timeouts",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    Op::Open,
                    hello(1, 0x0f, 0, 5),
                    secs(11),
                    Op::HandleTimeout,
                    Op::Frame {
                        listener: 1,
                        frame: FrameSpec::Ping { nonce: 2 },
                    },
                    Op::SleepUntilTimeout,
                    Op::Open,
                    hello(2, 0x0f, 0, 0),
                    Op::Writable {
                        listener: 2,
                        writable: false,
                    },
                    status(SeqSpec::Next),
                    secs(20),
                    Op::Frame {
                        listener: 2,
                        frame: FrameSpec::Ping { nonce: 3 },
                    },
                    secs(20),
                    Op::Frame {
                        listener: 2,
                        frame: FrameSpec::Ping { nonce: 4 },
                    },
                    secs(21),
                    Op::HandleTimeout,
                    Op::SleepUntilTimeout,
                ],
            },
        ),
        (
            "protocol-errors",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    Op::RawFrame {
                        listener: 0,
                        bytes: b"GET / HTTP/1.1\r\n".to_vec(),
                    },
                    Op::Open,
                    Op::CorruptFrame {
                        listener: 1,
                        frame: FrameSpec::Hello {
                            interest: 0x0f,
                            channel: 1,
                            keepalive_secs: 0,
                        },
                        // version 3: nobody speaks it
                        corrupt: Corrupt {
                            at: 2,
                            xor: 2,
                            cut: 0,
                        },
                    },
                    Op::Open,
                    Op::Frame {
                        listener: 2,
                        frame: FrameSpec::Pong { nonce: 1 },
                    },
                    Op::Open,
                    hello(3, 0x00, 0, 0),
                    Op::Open,
                    hello(4, 0x0f, 0, 0),
                    hello(4, 0x0f, 0, 0),
                    Op::Open,
                    Op::Frame {
                        listener: 5,
                        frame: FrameSpec::Close { reason: 0 },
                    },
                    Op::Frame {
                        listener: 0,
                        frame: FrameSpec::Ping { nonce: 9 },
                    },
                    // listener authentication to this keyless broker: a
                    // version-2 hello and stats request are refused, a
                    // proof is unexpected
                    Op::Open,
                    Op::Frame {
                        listener: 6,
                        frame: FrameSpec::HelloV2 {
                            interest: 0x0f,
                            channel: 1,
                        },
                    },
                    Op::Open,
                    Op::Frame {
                        listener: 7,
                        frame: FrameSpec::StatsRequestV2,
                    },
                    Op::Open,
                    Op::Frame {
                        listener: 8,
                        frame: FrameSpec::Proof { fill: 0xc0 },
                    },
                ],
            },
        ),
        (
            "full-table-and-shutdown",
            Input {
                setup: SETUP,
                ops: [
                    vec![Op::Open; 17],
                    vec![
                        Op::Disconnect { listener: 3 },
                        Op::Open,
                        hello(0, 0x0f, 0, 0),
                        Op::Shutdown,
                        Op::Open,
                    ],
                ]
                .concat(),
            },
        ),
        (
            "lazy-events",
            Input {
                setup: Setup {
                    lazy_events: true,
                    ..SETUP
                },
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 0, 0),
                    Op::Close {
                        listener: 0,
                        reason: 7,
                    },
                    Op::Frame {
                        listener: 0,
                        frame: FrameSpec::Ping { nonce: 5 },
                    },
                    Op::Disconnect { listener: 0 },
                    Op::Open,
                    Op::PollEvents,
                    Op::Open,
                ],
            },
        ),
        (
            "stats-request",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    Op::Frame {
                        listener: 0,
                        frame: FrameSpec::StatsRequest,
                    },
                    Op::Open,
                    hello(1, 0x0f, 0, 0),
                    Op::Frame {
                        listener: 1,
                        frame: FrameSpec::StatsRequest,
                    },
                ],
            },
        ),
        (
            "local-listener-stuck",
            Input {
                setup: Setup {
                    stuck_timeout: 2,
                    ..SETUP
                },
                ops: vec![
                    Op::OpenLocal {
                        interest: 0,
                        channel: 2,
                    },
                    notify(2, 2, 0, SeqSpec::Next, false),
                    Op::Writable {
                        listener: 0,
                        writable: false,
                    },
                    notify(3, 2, 0, SeqSpec::Next, false),
                    secs(3),
                    Op::SleepUntilTimeout,
                ],
            },
        ),
        (
            "small-tables-sleeping",
            Input {
                setup: Setup {
                    listeners: 2,
                    senders: 2,
                    keepalive: 2,
                    stuck_timeout: 2,
                    ..SETUP
                },
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 3, 1),
                    Op::Open,
                    Op::Open,
                    Op::Writable {
                        listener: 0,
                        writable: false,
                    },
                    notify(0, 3, 0, SeqSpec::Next, false),
                    notify(0, 0, 1, SeqSpec::Next, true),
                    notify(2, 3, 2, SeqSpec::Next, false),
                    notify(0, 0, 0, SeqSpec::Next, true),
                    Op::Sleep { micros: 1_500_000 },
                    hello(1, 0x01, 0, 65535),
                    Op::Sleep { micros: 25_000_000 },
                ],
            },
        ),
        (
            // a full table of two: a silent connection is evicted for a
            // newcomer after 1 s, never the listener; the newcomer closes
            // and goes before the eviction is reported
            "evict-silent",
            Input {
                setup: Setup {
                    listeners: 2,
                    lazy_events: true,
                    ..SETUP
                },
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 0, 0),
                    Op::Open,
                    Op::Open,
                    secs(1),
                    Op::Open,
                    Op::Open,
                    Op::Frame {
                        listener: 2,
                        frame: FrameSpec::Ping { nonce: 7 },
                    },
                    Op::Disconnect { listener: 2 },
                    Op::Open,
                    Op::PollEvents,
                    Op::Open,
                ],
            },
        ),
        (
            "lazy-ready-reused-slot",
            Input {
                setup: Setup {
                    listeners: 1,
                    stuck_timeout: 2,
                    lazy_ready: true,
                    ..SETUP
                },
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 0, 0),
                    Op::Sleep { micros: 2_000_000 },
                    Op::Open,
                    hello(1, 0x0f, 0, 0),
                    Op::PollFrame { listener: 1 },
                    status(SeqSpec::Next),
                    Op::PollReady,
                    status(SeqSpec::Next),
                    Op::Sleep { micros: 3_000_000 },
                ],
            },
        ),
        (
            "bad-datagrams",
            Input {
                setup: SETUP,
                ops: vec![
                    Op::Open,
                    hello(0, 0x0f, 0, 0),
                    Op::RawDatagram {
                        bytes: hex("46 50 01 01 00 01 00 00 01 02 03 04 05 06 07 08 \
                                    00 00 00 2a 00 00 00 01"),
                    },
                    Op::CorruptNotify {
                        notify: NotifySpec {
                            kind: 2,
                            channel: 1,
                            sender: 0,
                            seq: SeqSpec::Next,
                            ack: true,
                            tagged: true,
                            batch: 9,
                        },
                        corrupt: Corrupt {
                            at: 6,
                            xor: 0x80,
                            cut: 0,
                        },
                    },
                    Op::CorruptNotify {
                        notify: NotifySpec {
                            kind: 0,
                            channel: 0,
                            sender: 1,
                            seq: SeqSpec::Next,
                            ack: false,
                            tagged: false,
                            batch: 1,
                        },
                        corrupt: Corrupt {
                            at: 0,
                            xor: 0,
                            cut: 1,
                        },
                    },
                ],
            },
        ),
    ]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    datagrams(&root.join("datagram"));
    frames(&root.join("frame"));
    let dir = root.join("broker");
    for (name, input) in broker_seeds() {
        let bytes = to_bytes(&input);
        let decoded = Input::arbitrary_take_rest(Unstructured::new(&bytes))
            .unwrap_or_else(|e| panic!("seed {name} does not decode: {e}"));
        assert_eq!(decoded, input, "seed {name} decodes to something else");
        // The seed itself must pass the harness.
        flagpost_model::run(&decoded);
        write(&dir, name, &bytes);
    }
    println!("seeds written under {}", root.display());
}
