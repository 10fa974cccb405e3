//! Signed subscriber tokens (JWT). STUB for the integration; replaced by the real module.
#![allow(missing_docs, dead_code)]

pub mod jws {
    /// Three non-empty base64url segments.
    pub fn looks_like_jwt(s: &str) -> bool {
        let parts: Vec<&str> = s.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    }
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub name: String,
}

#[derive(Debug, Clone, Default)]
pub struct Verifiers {
    list: Vec<VerifierConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subscribe: Box<[Box<str>]>,
    pub publish: Box<[Box<str>]>,
    pub expires: Option<u64>,
    pub subject: Option<Box<str>>,
    pub verifier: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    UnsupportedAlg,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    MissingExp,
    BadClaim,
    NoGrant,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        "malformed"
    }
    pub fn message(self) -> &'static str {
        "the token is not valid"
    }
}

impl Verifiers {
    pub fn new(list: Vec<VerifierConfig>) -> Verifiers {
        Verifiers { list }
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    pub fn verify(&self, _token: &str, _now: u64) -> Result<Grant, Refusal> {
        Err(Refusal::UnsupportedAlg)
    }
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|v| v.name.as_str()).collect()
    }
}
