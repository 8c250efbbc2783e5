//! `[auth]`: who may stream. None (anyone who reaches the page, the default), a shared
//! passphrase stored as its argon2 hash, or bearer tokens verified as JWTs. Viewer links stay
//! capability URLs either way.

use serde::Deserialize;
use std::path::PathBuf;

/// How a browser (or API client) proves it may start sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Anyone who can reach the page may stream (fine on a laptop or a loopback address).
    #[default]
    None,
    /// A shared passphrase, stored as its argon2 hash (`hls-face hash-passphrase`).
    Passphrase,
    /// A bearer token: a JWT signed with the operator's key (HS256 or RS256).
    Jwt,
}

/// The JWT signature algorithms accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (the key file's bytes).
    #[default]
    HS256,
    /// RSA-SHA256 with the issuer's public key (a PEM file).
    RS256,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `mode = "passphrase"`: the passphrase's argon2 hash, as a PHC string
    /// (`$argon2id$v=19$…`). Never the passphrase itself.
    pub passphrase_hash: String,
    /// `mode = "jwt"`: the key file (HS256: the shared secret; RS256: a PEM public key).
    pub jwt_key_file: Option<PathBuf>,
    pub jwt_algorithm: JwtAlgorithm,
    /// `mode = "jwt"`: when set, a token's `aud` must name it.
    pub jwt_audience: Option<String>,
    /// `mode = "jwt"`: when set, a token's `iss` must be it.
    pub jwt_issuer: Option<String>,
    /// Whether `/metrics` asks for the same proof (a signed-in browser, or
    /// `Authorization: Bearer` with the passphrase or a token).
    pub protect_metrics: bool,
    /// How long a browser that signed in stays signed in.
    pub sign_in_hours: u64,
    /// Sign-in attempts one network address may make a minute (argon2 is slow on purpose;
    /// this bounds the CPU a guesser can take too).
    pub max_attempts_per_minute: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::None,
            passphrase_hash: String::new(),
            jwt_key_file: None,
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_audience: None,
            jwt_issuer: None,
            protect_metrics: false,
            sign_in_hours: 12,
            max_attempts_per_minute: 10,
        }
    }
}

impl AuthConfig {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        super::first_failure(&[
            (
                self.mode != AuthMode::Passphrase || self.passphrase_hash.starts_with("$argon2"),
                "auth.passphrase-hash must be an argon2 hash (make one with `hls-face hash-passphrase`)",
            ),
            (
                self.mode != AuthMode::Jwt || self.jwt_key_file.is_some(),
                "auth.jwt-key-file must name the token key file when auth.mode = \"jwt\"",
            ),
            (
                (1..=24 * 30).contains(&self.sign_in_hours),
                "auth.sign-in-hours must be 1..=720",
            ),
            (
                self.max_attempts_per_minute >= 1,
                "auth.max-attempts-per-minute must be at least 1",
            ),
        ])
    }
}
