//! Secrets (passwords, the link secret): where the file says to find them, read only when
//! a command needs them, so `cases list` works without an IMAP password in the environment.

use std::path::{Path, PathBuf};

use super::{Check, ConfigError};

/// Where a secret comes from: an environment variable or a file (first line, trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Env { var: String, key: String },
    File { path: PathBuf, key: String },
    Inline { value: String },
}

impl Secret {
    /// Reads the secret now. The error names the config key and what to do.
    pub fn read(&self, config_path: &Path) -> Result<String, ConfigError> {
        match self {
            Secret::Inline { value } => Ok(value.clone()),
            Secret::Env { var, key } => std::env::var(var).map_err(|_| ConfigError::Invalid {
                path: config_path.to_path_buf(),
                key: key.clone(),
                message: format!("environment variable {var} is not set; export it or use a *_file key"),
            }),
            Secret::File { path, key } => std::fs::read_to_string(path)
                .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
                .map_err(|e| ConfigError::Invalid {
                    path: config_path.to_path_buf(),
                    key: key.clone(),
                    message: format!("cannot read {}: {e}", path.display()),
                }),
        }
    }
}

/// The three keys one secret may be written with, e.g. `password`, `password_env` and
/// `password_file`.
#[derive(Default)]
pub(super) struct RawSecret {
    pub inline: Option<String>,
    pub env: Option<String>,
    pub file: Option<String>,
}

impl Check<'_> {
    /// The secret `name` of `table` (`mailbox[0]`, `smtp`, `survey`), if one is given;
    /// giving it twice is an error, since which one wins would be a guess.
    pub(super) fn secret(&self, table: &str, name: &str, raw: RawSecret) -> Result<Option<Secret>, ConfigError> {
        let given = [raw.inline.is_some(), raw.env.is_some(), raw.file.is_some()].iter().filter(|b| **b).count();
        if given > 1 {
            return Err(
                self.invalid(&format!("{table}.{name}"), format!("give only one of {name}, {name}_env, {name}_file"))
            );
        }
        Ok(if let Some(var) = raw.env {
            Some(Secret::Env { var, key: format!("{table}.{name}_env") })
        } else if let Some(file) = raw.file {
            Some(Secret::File { path: self.resolve(&file), key: format!("{table}.{name}_file") })
        } else {
            raw.inline.map(|value| Secret::Inline { value })
        })
    }
}
