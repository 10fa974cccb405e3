//! Where a secret comes from (inline, an environment variable, a file, a systemd credential),
//! parsed from a hooks file and read once when the daemon loads: the one reader the providers'
//! `secrets` and the trigger rules' `payload-hmac-*` secrets share.

use crate::config::json::{at, check_fields, err, kind, ConfigError, Obj};
use crate::hooks::params::check_env_name;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// Written in the file (`"secret": "s3cret"`), as adnanh has it.
    Inline(String),
    /// `{"env": "NAME"}`: an environment variable of the daemon.
    Env(String),
    /// `{"file": "/etc/hookcast/github.secret"}`: a file's contents, trailing line breaks removed.
    File(PathBuf),
    /// `{"credential": "name"}`: `$CREDENTIALS_DIRECTORY/name`, systemd's `LoadCredential=`.
    Credential(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => write!(f, "Inline(<redacted>)"),
            SecretSource::Env(n) => write!(f, "Env({n:?})"),
            SecretSource::File(p) => write!(f, "File({p:?})"),
            SecretSource::Credential(n) => write!(f, "Credential({n:?})"),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => write!(f, "inline secret"),
            SecretSource::Env(n) => write!(f, "environment variable {n}"),
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Credential(n) => write!(f, "credential {n}"),
        }
    }
}

impl SecretSource {
    /// The secret's bytes. File and credential contents lose their trailing CR/LF: `echo s >
    /// file` and most editors end a file with a line break that is never part of the secret, and
    /// keeping it would make every signature fail without a hint why.
    pub fn resolve(&self) -> Result<Vec<u8>, ConfigError> {
        // The error has no JSON path: the caller knows where the source was written.
        let fail = |message: String| ConfigError { path: String::new(), message };
        let read = |p: &Path| -> Result<Vec<u8>, ConfigError> {
            let mut bytes = std::fs::read(p).map_err(|e| fail(format!("cannot read {self}: {e}")))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            Ok(bytes)
        };
        let bytes = match self {
            SecretSource::Inline(s) => s.clone().into_bytes(),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) => v.into_bytes(),
                Err(std::env::VarError::NotPresent) => return Err(fail(format!("{self} is not set"))),
                Err(std::env::VarError::NotUnicode(_)) => return Err(fail(format!("{self} is not UTF-8"))),
            },
            SecretSource::File(p) => read(p)?,
            SecretSource::Credential(name) => {
                let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
                    return Err(fail(format!(
                        "{self}: CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential={name}:…)"
                    )));
                };
                read(&Path::new(&dir).join(name))?
            }
        };
        if bytes.is_empty() {
            return Err(fail(format!("{self} is empty")));
        }
        Ok(bytes)
    }
}

/// Parses a secret: a string, or `{"env": …}`, `{"file": …}`, `{"credential": …}`.
pub fn parse_secret(value: Value, path: &str) -> Result<SecretSource, ConfigError> {
    match value {
        Value::String(s) if s.is_empty() => err(path, "empty secret"),
        Value::String(s) => Ok(SecretSource::Inline(s)),
        Value::Object(_) => {
            check_fields(&value, path, &["env", "file", "credential"], &[])?;
            let mut o = Obj::new(value, path)?;
            let (env, file, credential) = (o.opt_str("env")?, o.opt_str("file")?, o.opt_str("credential")?);
            o.finish()?;
            match (env, file, credential) {
                (Some(e), None, None) => {
                    check_env_name(&e, &at(path, "env"))?;
                    Ok(SecretSource::Env(e))
                }
                (None, Some(f), None) if Path::new(&f).is_absolute() => Ok(SecretSource::File(PathBuf::from(f))),
                (None, Some(f), None) => err(&at(path, "file"), format!("not an absolute path: {f:?}")),
                (None, None, Some(c)) if !c.is_empty() && !c.contains(['/', '\0']) && c != "." && c != ".." => {
                    Ok(SecretSource::Credential(c))
                }
                (None, None, Some(c)) => err(&at(path, "credential"), format!("not a credential name: {c:?}")),
                (None, None, None) => err(path, "expected one of env, file, credential"),
                _ => err(path, "exactly one of env, file, credential"),
            }
        }
        other => err(
            path,
            format!("expected a secret string or {{\"env\"|\"file\"|\"credential\": …}}, found {}", kind(&other)),
        ),
    }
}
