//! `[log]`: how casegate writes its log on stderr.

use serde::Deserialize;

use super::{Check, ConfigError};

/// The shape of each log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-23T10:00:00.123Z  INFO casegate::ingest: Mail processed origin=… outcome=…`
    #[default]
    Text,
    /// One JSON object per event, with the same fields: `timestamp`, `level`, `target`,
    /// `message` and the event's own fields, for journald, Loki or Elasticsearch.
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RawLog {
    format: Option<String>,
}

pub(super) fn log(check: &Check, l: RawLog) -> Result<LogConfig, ConfigError> {
    let format = match l.format.as_deref().map(str::trim) {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => return Err(check.invalid("log.format", format!("{other:?} is not one of \"text\", \"json\""))),
    };
    Ok(LogConfig { format })
}
