//! Reloading the configuration of a running broker (`SIGHUP`): what can
//! change at run time changes without dropping a connection, what cannot
//! is kept and named, and an invalid configuration changes nothing.
//!
//! At run time: `max_listeners` (up to the table size the broker started
//! with), `max_per_address`, `listener_send_buffer` (new connections),
//! `keepalive` (new connections), `hello_timeout`, `stuck_timeout`, the
//! key files (re-read even when their paths are unchanged: a rotation
//! rewrites them), `allow_senders` and `allow_listeners`. Everything else
//! (addresses, socket options, tables, the metrics endpoint, the PostgreSQL
//! source, the federation) needs a restart.

use tracing::{info, warn};

use super::allow::AllowList;
use super::{accept, fds, BrokerGone, BrokerHandle, Command, Server};
use crate::config::{BrokerConfig, ConfigError};
use crate::keyfile::{read_keyring, KeyFileError};

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose new value is now in force.
    pub applied: Vec<&'static str>,
    /// Keys whose new value needs a restart; their old value stays.
    pub needs_restart: Vec<&'static str>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key file cannot be used.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The broker has stopped.
    #[error(transparent)]
    Gone(#[from] BrokerGone),
}

impl BrokerHandle {
    /// Applies `config` to the running broker, without dropping a
    /// connection: `max_listeners` (up to the table size it started with),
    /// `max_per_address`, `listener_send_buffer` and `keepalive` (for new
    /// connections), `hello_timeout`, `stuck_timeout`, the key files (read
    /// again even when their paths are the same) and the allow-lists (for
    /// new datagrams and connections). Other keys need a restart: they are
    /// named in [`Reloaded::needs_restart`] and logged, and keep their
    /// values. The configuration is validated and the key files read
    /// first: on any error nothing changes.
    pub fn reload(&self, config: BrokerConfig) -> Result<Reloaded, ReloadError> {
        config.validate()?;
        let keys = match &config.key_file {
            Some(path) => Some(read_keyring(path, config.previous_key_file.as_deref())?),
            None => None,
        };
        let (reply, rx) = std::sync::mpsc::channel();
        self.send(Command::Reload(Box::new((config, keys)), reply))?;
        rx.recv().map_err(|_| ReloadError::Gone(BrokerGone))
    }
}

/// `fresh` (the file and environment as they are now) with the values the
/// command line gave at start-up: each key where `started` (the
/// configuration the broker started with) differs from `base` (the file
/// and environment then) keeps its value from `started`. (A flag that
/// repeated the file's value at start-up cannot be told from the file: that
/// key follows the file.) Feature `config`.
#[cfg(feature = "config")]
pub fn with_overrides(
    fresh: BrokerConfig,
    base: &BrokerConfig,
    started: &BrokerConfig,
) -> Result<BrokerConfig, ConfigError> {
    let table = |c: &BrokerConfig| {
        toml::Table::try_from(c).map_err(|e| ConfigError::Invalid {
            key: "config",
            reason: e.to_string(),
        })
    };
    let (base, started) = (table(base)?, table(started)?);
    let mut out = table(&fresh)?;
    for (key, value) in &started {
        if base.get(key) != Some(value) {
            out.insert(key.clone(), value.clone());
        }
    }
    let config: BrokerConfig =
        out.try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                key: "config",
                reason: e.to_string(),
            })?;
    config.validate()?;
    Ok(config)
}

impl Server {
    /// Applies what can change of `new` (already validated, its keys read).
    pub(super) fn reload(
        &mut self,
        mut new: BrokerConfig,
        keys: Option<flagpost_core::auth::Keyring>,
    ) -> Reloaded {
        let old = &self.config;
        let mut done = Reloaded::default();
        macro_rules! restart {
            ($($key:ident),*) => {$(
                if new.$key != old.$key {
                    done.needs_restart.push(stringify!($key));
                    new.$key = old.$key.clone();
                }
            )*};
        }
        restart!(
            bind,
            metrics,
            listen_backlog,
            udp_recv_buffer,
            udp_sockets,
            sender_table,
            postgres,
            postgres_channel,
            postgres_password_file,
            postgres_mode,
            postgres_slot,
            postgres_publication,
            federation
        );
        let capacity = self.core.capacity();
        if new.max_listeners > capacity {
            warn!(
                max_listeners = new.max_listeners,
                table = capacity,
                "max_listeners above the table the broker started with needs a restart; {capacity} in force until then"
            );
            done.needs_restart.push("max_listeners");
            new.max_listeners = capacity;
        }
        macro_rules! applied {
            ($($key:ident),*) => {$(
                if new.$key != old.$key {
                    done.applied.push(stringify!($key));
                }
            )*};
        }
        applied!(
            max_listeners,
            max_per_address,
            listener_send_buffer,
            keepalive,
            hello_timeout,
            stuck_timeout,
            key_file,
            previous_key_file,
            allow_senders,
            allow_listeners
        );
        self.core.set_limit(new.max_listeners);
        self.core.set_timeouts(
            new.keepalive.into(),
            new.hello_timeout.into(),
            new.stuck_timeout.into(),
        );
        // re-read even if the paths are the same: a rotation rewrites them
        if let Some(path) = &new.key_file {
            info!(key_file = %path.display(), "key files read again");
        }
        self.core.set_keys(keys);
        #[cfg(all(feature = "federation", target_os = "linux"))]
        if let Some(fed) = &mut self.federation {
            fed.keys_changed(&self.core);
        }
        let limit_changed = new.max_listeners != old.max_listeners;
        self.config = new;
        self.allow_senders = AllowList::new(&self.config.allow_senders);
        self.allow_listeners = AllowList::new(&self.config.allow_listeners);
        if limit_changed {
            accept::report_fd_limit(fds::raise_limit(), self.config.max_listeners);
        }
        if !done.needs_restart.is_empty() {
            warn!(
                keys = ?done.needs_restart,
                "configuration reloaded, but these keys need a restart to change (old values kept)"
            );
        }
        info!(applied = ?done.applied, "configuration reloaded");
        done
    }
}

#[cfg(all(test, feature = "config"))]
mod tests {
    use super::*;

    #[test]
    fn flags_given_at_start_stay_over_a_reloaded_file() {
        let base = BrokerConfig::default();
        // the command line said --max-listeners 50 --allow-senders 10.0.0.0/8
        let started = BrokerConfig {
            max_listeners: 50,
            allow_senders: vec!["10.0.0.0/8".parse().unwrap()],
            ..base.clone()
        };
        // the file now says another keepalive and max_listeners
        let fresh = BrokerConfig {
            keepalive: std::time::Duration::from_secs(5),
            max_listeners: 70,
            ..base.clone()
        };
        let merged = with_overrides(fresh, &base, &started).unwrap();
        assert_eq!(merged.max_listeners, 50);
        assert_eq!(merged.allow_senders, started.allow_senders);
        assert_eq!(merged.keepalive, std::time::Duration::from_secs(5));
        assert_eq!(merged.bind, base.bind);
    }
}
