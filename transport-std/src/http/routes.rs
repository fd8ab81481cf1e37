//! What the server answers: the request head parsed with `httparse`, the
//! method and path routed, `/events`' query checked, the token required
//! where a key is configured, `/stats.json` rendered, and responses
//! formatted.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use flagpost_core::{ChannelId, FlagSet};

use super::sse::Client;
use super::{Options, Ready};
use crate::metrics::Format;

/// The built-in dashboard.
const DASHBOARD: &str = include_str!("dashboard.html");
/// Headers parsed per request at most (431 beyond).
const MAX_HEADERS: usize = 32;

/// What a request gets.
pub(crate) enum Reply {
    /// A whole response; the connection closes once it is written.
    Response(Vec<u8>),
    /// An event stream: the client and the response's head.
    Sse(Box<Client>, Vec<u8>),
}

/// The length of a complete request head at the start of `buf`, `None`
/// while incomplete, or the error reply for a malformed one.
pub(crate) fn head_len(buf: &[u8]) -> Result<Option<usize>, Reply> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(too_large()),
        Err(e) => Err(text(400, &format!("bad request: {e}"))),
    }
}

/// 431 for a head over the limit.
pub(crate) fn too_large() -> Reply {
    text(431, "request header fields too large")
}

/// Answers the complete request head `head` (from connection `index`).
pub(crate) fn handle(
    head: &[u8],
    peer: Option<IpAddr>,
    options: &Options,
    ready: &Arc<Ready>,
    index: usize,
) -> Reply {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    if request.parse(head).is_err() {
        return text(400, "bad request");
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return text(400, "bad request");
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Reply::Response(response(
                405,
                "text/plain; charset=utf-8",
                &[("Allow", "GET, HEAD")],
                b"method not allowed: only GET and HEAD\n",
                false,
            ))
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let reply = |status, content_type, body: &[u8]| {
        Reply::Response(response(status, content_type, &[], body, head_only))
    };
    match path {
        "/" => reply(200, "text/html; charset=utf-8", DASHBOARD.as_bytes()),
        "/metrics" | "/healthz" => match ((options.render)(), path) {
            (Ok(page), "/metrics") => {
                let format = Format::negotiate(header("Accept"));
                let body = format.convert(page);
                reply(200, format.content_type(), body.as_bytes())
            }
            (Ok(_), _) => reply(200, "text/plain", b"ok\n"),
            (Err(e), _) => reply(503, "text/plain", format!("{e}\n").as_bytes()),
        },
        "/events" | "/stats.json" => {
            let Some(broker) = &options.broker else {
                return text(404, "not found: no broker here");
            };
            if !peer.is_some_and(|ip| options.keys.admits(ip)) {
                return text(
                    403,
                    "forbidden: this address is not in the broker's allow_listeners",
                );
            }
            if !options.keys.allows(header("Authorization"), query) {
                return Reply::Response(response(
                    401,
                    "text/plain; charset=utf-8",
                    &[("WWW-Authenticate", "Bearer realm=\"flagpost\"")],
                    b"unauthorized: give the token of `flagpost http-token` as \
                      `Authorization: Bearer TOKEN` or `?token=TOKEN`\n",
                    head_only,
                ));
            }
            if path == "/stats.json" {
                return match broker
                    .stats_within(super::BROKER_ANSWER)
                    .map_err(|e| e.to_string())
                    .and_then(|s| s.ok_or_else(super::no_answer))
                {
                    Ok(stats) => reply(
                        200,
                        "application/json",
                        stats_json(&stats, options.started.elapsed()).as_bytes(),
                    ),
                    Err(e) => reply(503, "text/plain", format!("{e}\n").as_bytes()),
                };
            }
            if head_only {
                return text(405, "method not allowed: GET /events");
            }
            let (channel, interest) = match events_query(query) {
                Ok(q) => q,
                Err(why) => return text(400, &why),
            };
            let last_id = header("Last-Event-ID").and_then(|v| v.trim().parse::<u64>().ok());
            match Client::open(broker, channel, interest, last_id, ready, index) {
                Ok(client) => Reply::Sse(Box::new(client), sse_head()),
                Err(why) => text(503, &why),
            }
        }
        _ => reply(
            404,
            "text/plain",
            b"not found: try /, /metrics, /healthz, /events or /stats.json\n",
        ),
    }
}

/// `/events`' query: `channel=NAME` (default: all channels) and
/// `interest=status,non_status,channel_update,channel_shutdown` (default:
/// all four); `token` is the authentication's; other keys are ignored.
pub(crate) fn events_query(query: &str) -> Result<(Option<ChannelId>, FlagSet), String> {
    let mut channel = None;
    let mut interest = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "channel" if channel.is_some() => return Err("channel: given twice".into()),
            "channel" => {
                channel =
                    Some(ChannelId::new(&value).map_err(|e| format!("channel {value:?}: {e}"))?);
            }
            "interest" if interest.is_some() => return Err("interest: given twice".into()),
            "interest" => {
                let mut set = FlagSet::EMPTY;
                for name in value.split(',').map(str::trim) {
                    set |= match name.replace('-', "_").as_str() {
                        "status" => FlagSet::STATUS,
                        "non_status" => FlagSet::NON_STATUS,
                        "channel_update" => FlagSet::CHANNEL_UPDATE,
                        "channel_shutdown" => FlagSet::CHANNEL_SHUTDOWN,
                        _ => {
                            return Err(format!(
                                "interest: unknown flag {name:?} (status, non_status, \
                                 channel_update, channel_shutdown, comma-separated)"
                            ))
                        }
                    };
                }
                interest = Some(set);
            }
            _ => {}
        }
    }
    Ok((channel, interest.unwrap_or(FlagSet::ALL)))
}

/// `/stats.json`: `{"time_ms": <Unix time in ms>, "uptime_ms": <ms since
/// the HTTP server started>, "metrics": [...]}`, the entries as
/// `flagpost stats --json` prints them ([`crate::stats_json::entries`]).
pub(crate) fn stats_json(stats: &flagpost_core::broker::Stats, uptime: Duration) -> String {
    let metrics = crate::stats_json::entries(stats);
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    serde_json::json!({
        "time_ms": time_ms,
        "uptime_ms": uptime.as_millis() as u64,
        "metrics": metrics,
    })
    .to_string()
}

fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\n\
      Content-Type: text/event-stream\r\n\
      Cache-Control: no-cache\r\n\
      X-Accel-Buffering: no\r\n\
      \r\n\
      retry: 1000\n\n"
        .to_vec()
}

/// A plain-text reply with `status`.
fn text(status: u16, message: &str) -> Reply {
    Reply::Response(response(
        status,
        "text/plain; charset=utf-8",
        &[],
        format!("{message}\n").as_bytes(),
        false,
    ))
}

/// A whole response (`Connection: close`); `head_only` leaves the body out
/// (HEAD) but keeps its length.
pub(crate) fn response(
    status: u16,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_query_is_checked() {
        assert_eq!(events_query("").unwrap(), (None, FlagSet::ALL));
        let (c, i) = events_query("channel=gsm%201&interest=status,non_status&x=1").unwrap();
        assert_eq!(c.unwrap().as_str(), "gsm 1");
        assert_eq!(i, FlagSet::STATUS | FlagSet::NON_STATUS);
        assert!(events_query("interest=bogus")
            .unwrap_err()
            .contains("bogus"));
        assert!(events_query("channel=").unwrap_err().contains("channel"));
        assert!(events_query("channel=a&channel=b").is_err());
    }

    #[test]
    fn heads_are_bounded_and_checked() {
        assert!(matches!(head_len(b"GET / HTTP/1.1\r\nHost: x"), Ok(None)));
        assert!(matches!(
            head_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Some(27))
        ));
        assert!(head_len(b"\x00\x01 nonsense\r\n\r\n").is_err());
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let Err(Reply::Response(r)) = head_len(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes())
        else {
            panic!("too many headers accepted")
        };
        assert!(r.starts_with(b"HTTP/1.1 431"));
    }
}
