//! The HTTP token: with a key configured, `/events` and `/stats.json` need
//! `Authorization: Bearer TOKEN` or `?token=TOKEN` (a browser's
//! `EventSource` cannot set headers), where TOKEN is the hex of the key's
//! tag (HMAC-SHA-256, truncated to 16 bytes as every Flagpost tag) of
//! [`TOKEN_CONTEXT`]: derived from the key, never the key itself, so a
//! token that leaks (URLs end up in logs) gives HTTP reads, not the right
//! to notify or to listen over TCP. Checked in constant time by the core's
//! `Key::verify`; during a rotation the previous key's token works too.
//! The broker's `allow_listeners` applies to the same reads: an event
//! stream is a listener, and the stats are what `allow_listeners` guards
//! on port 16725.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use flagpost_core::auth::{Key, Keyring};

use crate::server::AllowList;

/// What the token is the tag of.
pub const TOKEN_CONTEXT: &[u8] = b"flagpost http token v1";

/// The HTTP token of `key` (32 hex digits).
pub fn token(key: &Key) -> String {
    key.tag(&[TOKEN_CONTEXT])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys whose tokens the HTTP server takes and the networks its
/// reads may come from, shared with whoever reloads them (`SIGHUP`): no
/// keys, no token needed; an empty allow-list, any address.
#[derive(Clone, Debug, Default)]
pub struct HttpKeys(Arc<RwLock<Option<Keyring>>>, Arc<RwLock<AllowList>>);

impl HttpKeys {
    /// Keys to start with.
    pub fn new(keys: Option<Keyring>) -> HttpKeys {
        HttpKeys(Arc::new(RwLock::new(keys)), Arc::default())
    }

    /// Replaces the keys (for the requests that come next).
    pub fn set(&self, keys: Option<Keyring>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// Replaces the networks `/events` and `/stats.json` may be read from
    /// (the broker's `allow_listeners`; empty: any), for the requests that
    /// come next.
    pub fn set_allow_listeners(&self, nets: &[ipnet::IpNet]) {
        *self.1.write().unwrap_or_else(|p| p.into_inner()) = AllowList::new(nets);
    }

    /// Whether a read may come from `ip`.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        self.1.read().unwrap_or_else(|p| p.into_inner()).allows(ip)
    }

    /// Whether a request with this `Authorization` header and query string
    /// may read.
    pub(crate) fn allows(&self, authorization: Option<&str>, query: &str) -> bool {
        let guard = self.0.read().unwrap_or_else(|p| p.into_inner());
        let Some(keys) = guard.as_ref() else {
            return true;
        };
        let bearer = authorization.and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let from_query = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        let allowed = [bearer, from_query.as_deref()]
            .into_iter()
            .flatten()
            .any(|t| decode(t).is_some_and(|tag| keys.verify(&[TOKEN_CONTEXT], &tag).is_some()));
        allowed
    }
}

/// Hex digits into bytes (`None` if they are not).
fn decode(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || hex.len() > 128 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_opens_and_nothing_else_does() {
        let key = Key::new(&[7u8; 32]).unwrap();
        let t = token(&key);
        assert_eq!(t.len(), 32);
        let keys = HttpKeys::new(Some(Keyring::new(key)));
        assert!(keys.allows(Some(&format!("Bearer {t}")), ""));
        assert!(keys.allows(None, &format!("channel=x&token={t}")));
        assert!(!keys.allows(None, ""));
        assert!(!keys.allows(Some("Bearer 00"), "token=zz"));
        assert!(!keys.allows(Some(&format!("Basic {t}")), ""));
        assert!(HttpKeys::default().allows(None, ""));
    }

    #[test]
    fn the_allow_list_admits_its_networks_only() {
        let keys = HttpKeys::default();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "10.9.0.1".parse().unwrap();
        assert!(keys.admits(far), "no list: any address");
        keys.set_allow_listeners(&["127.0.0.0/8".parse().unwrap()]);
        assert!(keys.admits(local));
        assert!(!keys.admits(far));
        assert!(
            keys.admits("::ffff:127.0.0.1".parse().unwrap()),
            "IPv4-mapped"
        );
    }
}
