//! Secrets (passwords, the link secret): where the file says to find them, read only when
//! a command needs them, so `cases list` works without an IMAP password in the environment.
//!
//! A `*_file` path may start with `${CREDENTIALS_DIRECTORY}/`: the folder where systemd puts
//! the credentials a unit names with `LoadCredential=` (readable only by the service),
//! known only when the service runs. Such a path is expanded when the secret is read.

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
            Secret::File { path, key } => {
                let invalid = |message: String| ConfigError::Invalid {
                    path: config_path.to_path_buf(),
                    key: key.clone(),
                    message,
                };
                let path = expand_credentials(path, std::env::var_os(CREDENTIALS_ENV)).map_err(invalid)?;
                std::fs::read_to_string(&path)
                    .map(|s| s.lines().next().unwrap_or_default().trim().to_string())
                    .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
            }
        }
    }
}

/// The variable systemd sets to the folder of a service's credentials (`LoadCredential=`).
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// How a path in the credentials folder is written in the config.
const CREDENTIALS_PREFIXES: [&str; 2] = ["${CREDENTIALS_DIRECTORY}/", "$CREDENTIALS_DIRECTORY/"];

/// A `*_file` path as written, with `${CREDENTIALS_DIRECTORY}/` replaced by `dir` (the
/// variable's value); other paths as they are.
fn expand_credentials(path: &Path, dir: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
    let text = path.to_string_lossy();
    let Some(name) = CREDENTIALS_PREFIXES.iter().find_map(|p| text.strip_prefix(p)) else {
        return Ok(path.to_path_buf());
    };
    match dir.filter(|d| !d.is_empty()) {
        Some(dir) => Ok(PathBuf::from(dir).join(name)),
        None => Err(format!(
            "{} names a systemd credential, but {CREDENTIALS_ENV} is not set: run casegate from its unit \
             (with LoadCredential={name}:…), or point the key at the file itself",
            path.display()
        )),
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
            // A credential's folder is known only when the service runs: kept as written.
            let path = if CREDENTIALS_PREFIXES.iter().any(|p| file.starts_with(p)) {
                PathBuf::from(file)
            } else {
                self.resolve(&file)
            };
            Some(Secret::File { path, key: format!("{table}.{name}_file") })
        } else {
            raw.inline.map(|value| Secret::Inline { value })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_path_is_read_from_the_folder_systemd_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("imap-password"), "s3cret\nignored\n").unwrap();
        let written = Path::new("${CREDENTIALS_DIRECTORY}/imap-password");
        let expanded = expand_credentials(written, Some(dir.path().as_os_str().to_owned())).unwrap();
        assert_eq!(expanded, dir.path().join("imap-password"));
        let plain = Path::new("/etc/casegate/imap-password");
        assert_eq!(expand_credentials(plain, None).unwrap(), plain);
        let err = expand_credentials(written, None).unwrap_err();
        assert!(
            err.contains("CREDENTIALS_DIRECTORY is not set") && err.contains("LoadCredential=imap-password"),
            "{err}"
        );

        // Through the config: the path is kept as written, not taken relative to the file.
        let check = Check::new(Path::new("/etc/casegate/casegate.toml"));
        let raw = RawSecret { inline: None, env: None, file: Some(written.display().to_string()) };
        let secret = check.secret("mailbox[0]", "password", raw).unwrap().unwrap();
        assert_eq!(secret, Secret::File { path: written.to_path_buf(), key: "mailbox[0].password_file".into() });
    }
}
