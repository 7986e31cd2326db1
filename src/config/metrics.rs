//! `[metrics]`: where `casegate run` serves `/metrics`, `/healthz` and `/readyz` for
//! monitoring, and the limits `/readyz` judges by.

use std::time::Duration;

use serde::Deserialize;

use super::{Check, ConfigError};

/// Default of `metrics.mailbox_retry_window_secs`: long enough for a few reconnects
/// (the backoff reaches 60 s), short enough that a server that is down pages someone.
pub const DEFAULT_MAILBOX_RETRY_WINDOW_SECS: u64 = 300;
/// Default of `metrics.outbox_stuck_secs`.
pub const DEFAULT_OUTBOX_STUCK_SECS: u64 = 1800;

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Address and port of the operators' listener; `None`: not served.
    pub listen: Option<String>,
    /// `/readyz` fails for a mailbox not connected for longer than this.
    pub mailbox_retry_window: Duration,
    /// `/readyz` fails when the oldest due notification has waited longer than this.
    pub outbox_stuck: Duration,
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            listen: None,
            mailbox_retry_window: Duration::from_secs(DEFAULT_MAILBOX_RETRY_WINDOW_SECS),
            outbox_stuck: Duration::from_secs(DEFAULT_OUTBOX_STUCK_SECS),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawMetrics {
    listen: Option<String>,
    mailbox_retry_window_secs: Option<u64>,
    outbox_stuck_secs: Option<u64>,
}

pub(super) fn metrics(check: &Check, m: RawMetrics) -> Result<MetricsConfig, ConfigError> {
    let listen = m.listen.filter(|l| !l.trim().is_empty());
    if let Some(listen) = &listen {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(check.invalid(
                "metrics.listen",
                format!("{listen:?} must be an address and port such as \"127.0.0.1:9725\""),
            ));
        }
    }
    let secs = |key: &str, value: Option<u64>, default: u64| match value {
        Some(0) => Err(check.invalid(key, format!("0 would fail /readyz at once; the default is {default}"))),
        v => Ok(Duration::from_secs(v.unwrap_or(default))),
    };
    Ok(MetricsConfig {
        listen,
        mailbox_retry_window: secs(
            "metrics.mailbox_retry_window_secs",
            m.mailbox_retry_window_secs,
            DEFAULT_MAILBOX_RETRY_WINDOW_SECS,
        )?,
        outbox_stuck: secs("metrics.outbox_stuck_secs", m.outbox_stuck_secs, DEFAULT_OUTBOX_STUCK_SECS)?,
    })
}
