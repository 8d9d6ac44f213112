//! The client-security settings (D11): authentication, authorization and quotas.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use steme_protocol::acl::{ANONYMOUS, check_principal};

/// Whether client connections must authenticate (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// No authentication asked; a client may still prove a key (the principal is logged).
    #[default]
    Off,
    /// Clients may authenticate (a key proof or a client certificate); others are anonymous.
    Optional,
    /// Every request but the handshake and authentication itself needs a principal.
    Required,
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "off" => Ok(AuthMode::Off),
            "optional" => Ok(AuthMode::Optional),
            "required" => Ok(AuthMode::Required),
            other => Err(format!(
                "auth `{other}`: expected off, optional or required"
            )),
        }
    }
}

/// Whether the broker enforces ACLs (`--authorization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Authorization {
    /// Every principal may do everything (but write internal topics).
    #[default]
    Off,
    /// Everything is denied unless an ACL allows it, or the principal is a superuser.
    On,
}

impl FromStr for Authorization {
    type Err = String;

    fn from_str(s: &str) -> Result<Authorization, String> {
        match s {
            "off" => Ok(Authorization::Off),
            "on" => Ok(Authorization::On),
            other => Err(format!("authorization `{other}`: expected on or off")),
        }
    }
}

/// Limits for one principal on one broker; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    /// Record bytes per second the principal may produce.
    pub produce_bytes_per_sec: Option<u64>,
    /// Record bytes per second the principal may fetch.
    pub fetch_bytes_per_sec: Option<u64>,
    /// Client connections the principal may hold at once.
    pub connections: Option<u32>,
}

impl QuotaLimits {
    /// `self`, with each unset limit taken from `defaults`.
    pub fn or(self, defaults: QuotaLimits) -> QuotaLimits {
        QuotaLimits {
            produce_bytes_per_sec: self
                .produce_bytes_per_sec
                .or(defaults.produce_bytes_per_sec),
            fetch_bytes_per_sec: self.fetch_bytes_per_sec.or(defaults.fetch_bytes_per_sec),
            connections: self.connections.or(defaults.connections),
        }
    }

    fn validate(&self, whose: &str) -> Result<(), String> {
        for (name, v) in [
            ("produce_bytes_per_sec", self.produce_bytes_per_sec),
            ("fetch_bytes_per_sec", self.fetch_bytes_per_sec),
        ] {
            if let Some(v) = v
                && !(1024..=1 << 40).contains(&v)
            {
                return Err(format!(
                    "{whose} quota {name} = {v} is out of range 1024..={}",
                    1u64 << 40
                ));
            }
        }
        if self.connections == Some(0) {
            return Err(format!(
                "{whose} quota connections = 0 would refuse every client"
            ));
        }
        Ok(())
    }
}

/// Checks the security settings that need more than their types.
pub fn validate(
    superusers: &[String],
    defaults: &QuotaLimits,
    overrides: &BTreeMap<String, QuotaLimits>,
) -> Result<(), String> {
    for s in superusers {
        check_principal(s).map_err(|e| format!("--superuser: {e}"))?;
        if s == "*" || s == ANONYMOUS {
            return Err(format!(
                "--superuser `{s}` would make every unauthenticated client a superuser; \
                 run with --authorization off instead"
            ));
        }
    }
    defaults.validate("the default")?;
    for (principal, limits) in overrides {
        check_principal(principal).map_err(|e| format!("[quotas]: {e}"))?;
        if principal == "*" {
            return Err("[quotas.\"*\"]: the limits for everyone are the defaults \
                 ([quota_defaults], --quota-*)"
                .into());
        }
        limits.validate(&format!("`{principal}`'s"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::config::{Config, ConfigError, Overrides};

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        o: Overrides,
    }

    fn load(toml: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(&path, toml).unwrap();
        let mut args = vec!["steme-broker", "--config", path.to_str().unwrap()];
        args.extend_from_slice(flags);
        Config::load(&Cli::try_parse_from(args).unwrap().o)
    }

    #[test]
    fn flags_and_file_set_authorization_and_quotas() {
        let c = load(
            "authorization = \"on\"\nsuperusers = [\"cert:ops\"]\n\
             [quota_defaults]\nfetch_bytes_per_sec = 2048\nconnections = 4\n\
             [quotas.\"cert:big\"]\nconnections = 40\n",
            &[
                "--quota-produce-bytes-per-sec",
                "1048576",
                "--quota-connections",
                "5",
            ],
        )
        .unwrap();
        assert_eq!(c.authorization, Authorization::On);
        assert_eq!(c.superusers, vec!["cert:ops".to_string()]);
        assert_eq!(
            c.quota_defaults,
            QuotaLimits {
                produce_bytes_per_sec: Some(1 << 20),
                fetch_bytes_per_sec: Some(2048),
                connections: Some(5),
            }
        );
        assert_eq!(c.quotas["cert:big"].connections, Some(40));
        let c = load(
            "",
            &[
                "--authorization",
                "on",
                "--superuser",
                "cert:a",
                "--superuser",
                "cert:b",
            ],
        )
        .unwrap();
        assert_eq!(c.superusers.len(), 2);
        assert!(Cli::try_parse_from(["steme-broker", "--authorization", "maybe"]).is_err());
    }

    #[test]
    fn refuses_everyone_as_superuser_and_bad_quotas() {
        for (toml, flags, words) in [
            (
                "",
                &["--superuser", "*"][..],
                "unauthenticated client a superuser",
            ),
            (
                "",
                &["--superuser", "anonymous"][..],
                "unauthenticated client a superuser",
            ),
            ("[quotas.\"*\"]\nconnections = 1\n", &[][..], "the defaults"),
            ("", &["--superuser", "alice"][..], "principal `alice`"),
            ("", &["--quota-connections", "0"][..], "connections = 0"),
            (
                "",
                &["--quota-fetch-bytes-per-sec", "10"][..],
                "out of range",
            ),
            ("[quotas.\"bob\"]\nconnections = 1\n", &[][..], "[quotas]"),
            ("[quotas.\"cert:b\"]\nbytes = 1\n", &[][..], "unknown field"),
        ] {
            let err = load(toml, flags).unwrap_err().to_string();
            assert!(err.contains(words), "{flags:?} {toml:?}: {err}");
        }
    }
}
