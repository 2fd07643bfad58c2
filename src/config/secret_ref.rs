//! A reference written as a config value instead of the secret itself (`env:NAME`,
//! `file:PATH`): how it is recognised and read. The configuration checks values with it;
//! `secrets` resolves a key's secret through it.

use std::path::PathBuf;

use crate::errors::Failure;
use crate::logging::register_secret;

/// A reference written as a config value instead of the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    pub fn parse(v: &str) -> Option<SecretRef> {
        if let Some(name) = v.strip_prefix("env:") {
            (!name.trim().is_empty()).then(|| SecretRef::Env(name.trim().to_string()))
        } else if let Some(path) = v.strip_prefix("file:") {
            (!path.trim().is_empty()).then(|| SecretRef::File(PathBuf::from(path.trim())))
        } else {
            None
        }
    }

    /// Reads the secret. A file's first line is used (trailing newline removed).
    pub fn resolve(&self, key: &str) -> anyhow::Result<String> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| {
                Failure::Config(format!(
                    "`{key}` refers to environment variable {name}, which is not set"
                ))
            })?,
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Failure::Config(format!(
                        "`{key}` refers to file {}, which cannot be read: {e}",
                        path.display()
                    ))
                })?;
                text.lines().next().unwrap_or_default().to_string()
            }
        };
        if value.is_empty() {
            return Err(Failure::Config(format!("`{key}`: the referenced secret is empty")).into());
        }
        register_secret(&value);
        Ok(value)
    }
}
