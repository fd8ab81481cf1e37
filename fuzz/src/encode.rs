//! Encodes a [`flagpost_model::Input`] as the bytes `arbitrary` 1.x decodes it from,
//! so seed inputs can be written as operation lists (see
//! `examples/gen_seeds.rs`, which checks every seed decodes back to the
//! operations it was made from).
//!
//! The format, as `arbitrary` 1.5 reads it: integers little-endian (missing
//! bytes read as zero), `bool` the low bit of a byte, an enum a `u32` `x`
//! selecting variant `(x * variants) >> 32`, `Option` a `bool` then the
//! value, a `Vec` field a `true` byte before each element and a `false` byte
//! after the last; the last field of the top-level input takes the rest of
//! the data, so its elements each follow a `true` byte with no terminator.

use flagpost_model::{Corrupt, FrameSpec, Input, NotifySpec, Op, SeqSpec, Setup};

/// Something `arbitrary` decodes.
pub trait Encode {
    /// Appends the bytes this value decodes from.
    fn encode(&self, out: &mut Vec<u8>);
}

/// Appends the discriminant selecting variant `index` of `count`.
pub fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    assert!(index < count);
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    let x = u32::try_from(x).expect("below 2^32");
    out.extend_from_slice(&x.to_le_bytes());
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for item in self {
            out.push(1);
            item.encode(out);
        }
        out.push(0);
    }
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.hello_timeout.encode(out);
        self.stuck_timeout.encode(out);
        self.housekeeping.encode(out);
        self.lazy_events.encode(out);
        self.broker_id.encode(out);
        self.listeners.encode(out);
        self.senders.encode(out);
        self.keepalive.encode(out);
        self.lazy_ready.encode(out);
        self.evict_after.encode(out);
    }
}

impl Encode for Corrupt {
    fn encode(&self, out: &mut Vec<u8>) {
        self.at.encode(out);
        self.xor.encode(out);
        self.cut.encode(out);
    }
}

impl Encode for SeqSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 6;
        match self {
            SeqSpec::Next => variant(out, 0, N),
            SeqSpec::Same => variant(out, 1, N),
            SeqSpec::Skip(n) => {
                variant(out, 2, N);
                n.encode(out);
            }
            SeqSpec::Back(n) => {
                variant(out, 3, N);
                n.encode(out);
            }
            SeqSpec::First => variant(out, 4, N),
            SeqSpec::Raw(s) => {
                variant(out, 5, N);
                s.encode(out);
            }
        }
    }
}

impl Encode for NotifySpec {
    fn encode(&self, out: &mut Vec<u8>) {
        self.kind.encode(out);
        self.channel.encode(out);
        self.sender.encode(out);
        self.seq.encode(out);
        self.ack.encode(out);
        self.tagged.encode(out);
        self.batch.encode(out);
    }
}

impl Encode for FrameSpec {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 11;
        match self {
            FrameSpec::Hello {
                interest,
                channel,
                keepalive_secs,
            } => {
                variant(out, 0, N);
                interest.encode(out);
                channel.encode(out);
                keepalive_secs.encode(out);
            }
            FrameSpec::Ping { nonce } => {
                variant(out, 1, N);
                nonce.encode(out);
            }
            FrameSpec::Close { reason } => {
                variant(out, 2, N);
                reason.encode(out);
            }
            FrameSpec::Pong { nonce } => {
                variant(out, 3, N);
                nonce.encode(out);
            }
            FrameSpec::Flags { flags, raises } => {
                variant(out, 4, N);
                flags.encode(out);
                raises.encode(out);
            }
            FrameSpec::Welcome { interest } => {
                variant(out, 5, N);
                interest.encode(out);
            }
            FrameSpec::StatsRequest => variant(out, 6, N),
            FrameSpec::Stat { index, value } => {
                variant(out, 7, N);
                index.encode(out);
                value.encode(out);
            }
            FrameSpec::HelloV2 { interest, channel } => {
                variant(out, 8, N);
                interest.encode(out);
                channel.encode(out);
            }
            FrameSpec::StatsRequestV2 => variant(out, 9, N),
            FrameSpec::Proof { fill } => {
                variant(out, 10, N);
                fill.encode(out);
            }
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 21;
        match self {
            Op::Open => variant(out, 0, N),
            Op::Frame { listener, frame } => {
                variant(out, 1, N);
                listener.encode(out);
                frame.encode(out);
            }
            Op::CorruptFrame {
                listener,
                frame,
                corrupt,
            } => {
                variant(out, 2, N);
                listener.encode(out);
                frame.encode(out);
                corrupt.encode(out);
            }
            Op::RawFrame { listener, bytes } => {
                variant(out, 3, N);
                listener.encode(out);
                bytes.encode(out);
            }
            Op::Notify(spec) => {
                variant(out, 4, N);
                spec.encode(out);
            }
            Op::CorruptNotify { notify, corrupt } => {
                variant(out, 5, N);
                notify.encode(out);
                corrupt.encode(out);
            }
            Op::RawDatagram { bytes } => {
                variant(out, 6, N);
                bytes.encode(out);
            }
            Op::InProcess {
                kind,
                channel,
                batch,
                repeat,
            } => {
                variant(out, 7, N);
                kind.encode(out);
                channel.encode(out);
                batch.encode(out);
                repeat.encode(out);
            }
            Op::Lost { count } => {
                variant(out, 8, N);
                count.encode(out);
            }
            Op::Disconnect { listener } => {
                variant(out, 9, N);
                listener.encode(out);
            }
            Op::Writable { listener, writable } => {
                variant(out, 10, N);
                listener.encode(out);
                writable.encode(out);
            }
            Op::PollFrame { listener } => {
                variant(out, 11, N);
                listener.encode(out);
            }
            Op::PollEvents => variant(out, 12, N),
            Op::Advance { micros } => {
                variant(out, 13, N);
                micros.encode(out);
            }
            Op::HandleTimeout => variant(out, 14, N),
            Op::SleepUntilTimeout => variant(out, 15, N),
            Op::Shutdown => variant(out, 16, N),
            Op::OpenLocal { interest, channel } => {
                variant(out, 17, N);
                interest.encode(out);
                channel.encode(out);
            }
            Op::Close { listener, reason } => {
                variant(out, 18, N);
                listener.encode(out);
                reason.encode(out);
            }
            Op::Sleep { micros } => {
                variant(out, 19, N);
                micros.encode(out);
            }
            Op::PollReady => variant(out, 20, N),
        }
    }
}

impl Encode for Input {
    fn encode(&self, out: &mut Vec<u8>) {
        self.setup.encode(out);
        // The last field takes the rest: no terminator.
        for op in &self.ops {
            out.push(1);
            op.encode(out);
        }
    }
}

/// The bytes `input` decodes from.
pub fn to_bytes(input: &Input) -> Vec<u8> {
    let mut out = Vec::new();
    input.encode(&mut out);
    out
}
