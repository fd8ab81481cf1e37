//! The publishers: one connection of each system's client in the bench
//! process ([`Publisher`]), publishing one message (the wake latency) or a
//! batch of [`BATCH`] (the throughput runs).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use flagpost_core::wire::{NotifyRepr, SenderId, Seq, MAX_DATAGRAM_LEN};
use flagpost_core::Notification;
use flagpost_std::Notifier;

use super::server::postgres_conninfo;
use super::{System, BATCH, CHANNEL};

/// This process's publishing connection to a server.
// one value per system, on the stack: the variants' sizes do not matter
#[allow(clippy::large_enum_variant)]
pub(super) enum Publisher {
    Flagpost {
        notifier: Notifier,
        raw: UdpSocket,
        broker: SocketAddr,
        seq: u32,
    },
    Redis(redis::Connection),
    Postgres {
        client: postgres::Client,
        /// [`BATCH`] notifications, a transaction each, in one query string.
        batch: String,
    },
    Mosquitto {
        client: rumqttc::Client,
        connection: rumqttc::Connection,
    },
    Nats {
        runtime: tokio::runtime::Runtime,
        client: async_nats::Client,
    },
}

impl Publisher {
    pub(super) fn connect(system: System, server: SocketAddr) -> Result<Publisher, String> {
        let e = |e: &dyn std::fmt::Display| format!("publisher: {e}");
        Ok(match system {
            System::Flagpost => Publisher::Flagpost {
                // the default notifier, tail-loss probe included
                notifier: Notifier::new(server).map_err(|x| e(&x))?,
                raw: UdpSocket::bind("127.0.0.1:0").map_err(|x| e(&x))?,
                broker: server,
                seq: 0,
            },
            System::Redis => Publisher::Redis(
                redis::Client::open(format!("redis://{server}/"))
                    .and_then(|c| c.get_connection())
                    .map_err(|x| e(&x))?,
            ),
            System::Postgres => Publisher::Postgres {
                client: postgres::Client::connect(&postgres_conninfo(server), postgres::NoTls)
                    .map_err(|x| e(&x))?,
                batch: format!("BEGIN; NOTIFY {CHANNEL}, 'x'; COMMIT; ").repeat(BATCH as usize),
            },
            System::Mosquitto => {
                let id = format!("flagpost-bench-pub-{}", std::process::id());
                let mut options =
                    rumqttc::MqttOptions::new(id, server.ip().to_string(), server.port());
                options.set_keep_alive(Duration::from_secs(60));
                let (client, mut connection) = rumqttc::Client::new(options, 2 * BATCH as usize);
                // the first poll connects
                match connection.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {}
                    other => return Err(format!("publisher: no CONNACK: {other:?}")),
                }
                Publisher::Mosquitto { client, connection }
            }
            System::Nats => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|x| e(&x))?;
                let client = runtime
                    .block_on(async_nats::connect(server.to_string()))
                    .map_err(|x| e(&x))?;
                Publisher::Nats { runtime, client }
            }
        })
    }

    /// One publish with the client's ordinary single-publish call (for
    /// Flagpost: `Notifier::notify_status_update`), written to the server
    /// before it returns.
    pub(super) fn publish_one(&mut self) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| format!("publish: {e}");
        match self {
            Publisher::Flagpost { notifier, .. } => {
                notifier.notify_status_update(None);
                Ok(())
            }
            Publisher::Redis(con) => redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg("x")
                .query::<i64>(con)
                .map(drop)
                .map_err(|x| e(&x)),
            Publisher::Postgres { client, .. } => client
                .batch_execute(&format!("NOTIFY {CHANNEL}, 'x'"))
                .map_err(|x| e(&x)),
            Publisher::Mosquitto { .. } => self.publish_mqtt(1),
            Publisher::Nats { runtime, client } => runtime.block_on(async {
                client
                    .publish(CHANNEL, "x".into())
                    .await
                    .map_err(|x| e(&x))?;
                client.flush().await.map_err(|x| e(&x))
            }),
        }
    }

    /// [`BATCH`] publishes (for Flagpost: raw notification datagrams, as
    /// `flagpost-bench ingest` sends them).
    pub(super) fn publish_batch(&mut self) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| format!("publish: {e}");
        match self {
            Publisher::Flagpost {
                raw, broker, seq, ..
            } => {
                let mut buf = [0u8; MAX_DATAGRAM_LEN];
                for _ in 0..BATCH {
                    *seq = seq.wrapping_add(1);
                    let n = NotifyRepr {
                        notification: Notification::non_status(None),
                        sender: SenderId(0x9ee5),
                        seq: Seq(*seq),
                        batch: 1,
                        ack_requested: false,
                        probe: false,
                        tag: None,
                    }
                    .emit(&mut buf)
                    .map_err(|x| e(&x))?;
                    // UDP: a full receive buffer drops, the broker counts
                    // what it handled
                    let _ = raw.send_to(&buf[..n], *broker);
                }
                Ok(())
            }
            Publisher::Redis(con) => {
                let mut pipe = redis::pipe();
                for _ in 0..BATCH {
                    pipe.cmd("PUBLISH").arg(CHANNEL).arg("x").ignore();
                }
                pipe.query::<()>(con).map_err(|x| e(&x))
            }
            Publisher::Postgres { client, batch } => client.batch_execute(batch).map_err(|x| e(&x)),
            Publisher::Mosquitto { .. } => self.publish_mqtt(BATCH),
            Publisher::Nats { runtime, client } => runtime.block_on(async {
                for _ in 0..BATCH {
                    client
                        .publish(CHANNEL, "x".into())
                        .await
                        .map_err(|x| e(&x))?;
                }
                client.flush().await.map_err(|x| e(&x))
            }),
        }
    }

    /// Queues `n` QoS 0 publishes and drives rumqttc's event loop in this
    /// thread until it has written all of them.
    fn publish_mqtt(&mut self, n: u64) -> Result<(), String> {
        use rumqttc::{Event, Outgoing, QoS};
        let Publisher::Mosquitto { client, connection } = self else {
            return Err("not MQTT".into());
        };
        for _ in 0..n {
            client
                .publish(CHANNEL, QoS::AtMostOnce, false, &b"x"[..])
                .map_err(|x| format!("publish: {x}"))?;
        }
        let mut written = 0;
        while written < n {
            match connection.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) => written += 1,
                Ok(Ok(_)) => {}
                Ok(Err(x)) => return Err(format!("publish: {x}")),
                Err(x) => return Err(format!("publish: {x:?}")),
            }
        }
        Ok(())
    }
}
