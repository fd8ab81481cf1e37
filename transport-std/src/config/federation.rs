//! The `federation` key: the NATS server and subject that join brokers,
//! and their checks (a typed error naming `federation.nats` or
//! `federation.subject`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The NATS link that joins brokers (the `federation` key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// The NATS server: `nats://host:port` (or `tls://host:port`: TLS
    /// checked against the system's roots). No credentials in the URL.
    pub nats: String,
    /// The subject every broker of the federation publishes and subscribes
    /// to (default `flagpost`): no spaces, no wildcards (`*`, `>`).
    #[serde(default = "default_subject")]
    pub subject: String,
}

/// The federation subject unless told otherwise.
pub const DEFAULT_FEDERATION_SUBJECT: &str = "flagpost";

fn default_subject() -> String {
    DEFAULT_FEDERATION_SUBJECT.to_owned()
}

impl FederationConfig {
    /// The link to `nats` on the default subject.
    pub fn new(nats: impl Into<String>) -> Self {
        FederationConfig {
            nats: nats.into(),
            subject: default_subject(),
        }
    }

    /// Checks the URL and the subject; the error names the key.
    pub fn check(&self) -> Result<(), ConfigError> {
        check_nats_url(&self.nats).map_err(|reason| ConfigError::Invalid {
            key: "federation.nats",
            reason,
        })?;
        check_subject(&self.subject).map_err(|reason| ConfigError::Invalid {
            key: "federation.subject",
            reason: reason.to_owned(),
        })
    }
}

/// `nats://host[:port]` or `tls://host[:port]`, without credentials.
fn check_nats_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("`{url}`: not a URL (nats://host:4222)"));
    };
    if scheme != "nats" && scheme != "tls" {
        return Err(format!("`{url}`: the scheme must be nats:// or tls://"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(
            "the URL holds credentials, which command lines and configuration files show \
             to others; NATS credentials are not supported: protect the subject with the \
             broker key and the NATS server's network policy"
                .to_owned(),
        );
    }
    if authority.is_empty()
        || authority
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | ','))
    {
        return Err(format!("`{url}`: one server, host[:port], is needed"));
    }
    // the port, when there is one (`[::1]:4222`, `host:4222`)
    let port = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.ends_with(']') => Some(port),
        _ => None,
    };
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{url}`: bad port `{port}`"));
        }
    }
    Ok(())
}

/// A NATS subject to publish and subscribe to: dot-separated tokens, no
/// spaces, no wildcards.
fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() || subject.len() > 255 {
        return Err("must be 1 to 255 bytes");
    }
    if subject
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err("may hold no spaces and no wildcards (`*`, `>`)");
    }
    if subject.split('.').any(str::is_empty) {
        return Err("must be dot-separated tokens, none empty");
    }
    Ok(())
}

#[cfg(all(test, feature = "config"))]
mod tests {
    use super::*;
    use crate::config::tests::env;
    use crate::BrokerConfig;

    fn invalid_key(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Invalid { key, .. } => key,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_table_parses_with_a_default_subject() {
        let c: BrokerConfig = toml::from_str("federation = { nats = \"nats://h:4222\" }").unwrap();
        assert_eq!(c.federation, Some(FederationConfig::new("nats://h:4222")));
        assert_eq!(c.federation.unwrap().subject, "flagpost");
        assert_eq!(BrokerConfig::default().federation, None);
        let c: BrokerConfig =
            toml::from_str("[federation]\nnats = \"tls://[::1]:4222\"\nsubject = \"fp.site1\"\n")
                .unwrap();
        c.validate().unwrap();
        assert_eq!(c.federation.unwrap().subject, "fp.site1");
        // an unknown field is an error naming it
        let e =
            toml::from_str::<BrokerConfig>("federation = { nats = \"nats://h\", subjet = \"x\" }")
                .unwrap_err();
        assert!(e.to_string().contains("subjet"), "{e}");
    }

    #[test]
    fn the_variables_set_the_table_in_either_order() {
        for vars in [
            [
                ("FLAGPOST_FEDERATION", "nats://h:1"),
                ("FLAGPOST_FEDERATION_SUBJECT", "a.b"),
            ],
            [
                ("FLAGPOST_FEDERATION_SUBJECT", "a.b"),
                ("FLAGPOST_FEDERATION", "nats://h:1"),
            ],
        ] {
            let c = BrokerConfig::load(None, env(&vars)).unwrap();
            let fed = c.federation.unwrap();
            assert_eq!(
                (fed.nats.as_str(), fed.subject.as_str()),
                ("nats://h:1", "a.b")
            );
        }
        // a subject alone has no server to go with
        let e = BrokerConfig::load(None, env(&[("FLAGPOST_FEDERATION_SUBJECT", "a")])).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Env { var, .. } if var == "FLAGPOST_FEDERATION_SUBJECT"),
            "{e}"
        );
        // a near miss is named
        let e = BrokerConfig::load(None, env(&[("FLAGPOST_FEDERATON", "nats://h")])).unwrap_err();
        assert!(e.to_string().contains("FLAGPOST_FEDERATION"), "{e}");
    }

    #[test]
    fn bad_urls_and_subjects_name_their_key() {
        for url in [
            "h:4222",
            "http://h:4222",
            "nats://",
            "nats://h:4222,nats://g:4222",
            "nats://h:0",
            "nats://h:port",
            "nats://h:4222/path",
            "nats://h 1:4222",
        ] {
            let e = FederationConfig::new(url).check().unwrap_err();
            assert_eq!(invalid_key(e), "federation.nats", "{url}");
        }
        let e = FederationConfig::new("nats://user:secret@h:4222")
            .check()
            .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert_eq!(invalid_key(e), "federation.nats");
        for ok in [
            "nats://h",
            "nats://h:4222",
            "tls://10.0.0.1:4222/",
            "nats://[::1]:4222",
        ] {
            FederationConfig::new(ok).check().unwrap();
        }
        for subject in ["", "a b", "fp.*", "fp.>", "a..b", ".a", "a\tb"] {
            let fed = FederationConfig {
                subject: subject.to_owned(),
                ..FederationConfig::new("nats://h")
            };
            assert_eq!(
                invalid_key(fed.check().unwrap_err()),
                "federation.subject",
                "{subject:?}"
            );
        }
        // validate() checks the table too
        let c = BrokerConfig {
            federation: Some(FederationConfig::new("udp://h")),
            ..BrokerConfig::default()
        };
        assert_eq!(invalid_key(c.validate().unwrap_err()), "federation.nats");
    }
}
