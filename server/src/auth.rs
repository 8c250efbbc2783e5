//! Who may stream (`[auth]`): checks a passphrase against its argon2 hash or a bearer JWT
//! against the operator's key, throttles guessing per network address, and signs the cookie
//! that keeps a browser signed in. Viewer links and channels never ask: they are
//! capabilities and operator settings.

use crate::config::{AuthConfig, AuthMode, JwtAlgorithm};
use crate::error::ServerError;
use crate::session::kept::unix_now;
use crate::session::quota::network_of;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a client was not let in, as counted in `hls_face_auth_refusals_total{why}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No proof at all.
    Missing,
    /// A wrong passphrase, or a token that does not verify.
    Wrong,
    /// A token (or a sign-in) past its time.
    Expired,
    /// Too many attempts from this network address: wait a minute.
    Throttled,
}

impl Refusal {
    /// The `why` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Wrong => "wrong",
            Refusal::Expired => "expired",
            Refusal::Throttled => "throttled",
        }
    }
}

/// A verified JWT's key and rules.
struct Jwt {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

/// The claims read from a token (the rest are checked by `jsonwebtoken`'s validation).
#[derive(serde::Deserialize)]
struct Claims {
    sub: Option<String>,
}

/// The running `[auth]` settings, ready to check proofs.
pub struct Gate {
    mode: AuthMode,
    passphrase: Option<String>,
    jwt: Option<Jwt>,
    protect_metrics: bool,
    sign_in: Duration,
    max_attempts: u32,
    /// A digest of the secret settings: a sign-in cookie names it, so a changed passphrase
    /// or key signs everyone out.
    fingerprint: String,
    /// Attempts per network address in the current minute.
    attempts: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// The gate of `config`, its key file read.
    pub fn new(config: &AuthConfig) -> Result<Self, ServerError> {
        let mut digest = Sha256::new();
        digest.update(format!("{:?}", config.mode));
        let jwt = match (config.mode, &config.jwt_key_file) {
            (AuthMode::Jwt, Some(path)) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| ServerError::io("cannot read auth.jwt-key-file", path, e))?;
                digest.update(&bytes);
                let bad_key = |e: jsonwebtoken::errors::Error| {
                    ServerError::Config(format!(
                        "auth.jwt-key-file {}: not a usable {:?} key ({e})",
                        path.display(),
                        config.jwt_algorithm
                    ))
                };
                let (key, algorithm) = match config.jwt_algorithm {
                    JwtAlgorithm::HS256 => {
                        let secret = trim_ascii(&bytes);
                        if secret.len() < 32 {
                            return Err(ServerError::Config(format!(
                                "auth.jwt-key-file {}: an HS256 secret needs at least 32 bytes",
                                path.display()
                            )));
                        }
                        (
                            jsonwebtoken::DecodingKey::from_secret(secret),
                            jsonwebtoken::Algorithm::HS256,
                        )
                    }
                    JwtAlgorithm::RS256 => (
                        jsonwebtoken::DecodingKey::from_rsa_pem(&bytes).map_err(bad_key)?,
                        jsonwebtoken::Algorithm::RS256,
                    ),
                };
                let mut validation = jsonwebtoken::Validation::new(algorithm);
                validation.leeway = 5;
                match &config.jwt_audience {
                    Some(aud) => validation.set_audience(&[aud]),
                    None => validation.validate_aud = false,
                }
                if let Some(iss) = &config.jwt_issuer {
                    validation.set_issuer(&[iss]);
                }
                Some(Jwt { key, validation })
            }
            _ => None,
        };
        let passphrase = (config.mode == AuthMode::Passphrase).then(|| {
            digest.update(config.passphrase_hash.as_bytes());
            config.passphrase_hash.clone()
        });
        if let Some(hash) = &passphrase {
            PasswordHash::new(hash).map_err(|e| {
                ServerError::Config(format!("auth.passphrase-hash is not an argon2 hash ({e})"))
            })?;
        }
        Ok(Gate {
            mode: config.mode,
            passphrase,
            jwt,
            protect_metrics: config.protect_metrics,
            sign_in: Duration::from_secs(config.sign_in_hours * 3600),
            max_attempts: config.max_attempts_per_minute,
            fingerprint: hex::encode(&digest.finalize()[..8]),
            attempts: Mutex::new(HashMap::new()),
        })
    }

    /// How clients prove themselves (`None`: they need not).
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Whether starting a session needs a proof.
    pub fn required(&self) -> bool {
        self.mode != AuthMode::None
    }

    /// Whether `/metrics` needs a proof.
    pub fn protects_metrics(&self) -> bool {
        self.required() && self.protect_metrics
    }

    /// Checks `secret` (the passphrase, or a token) sent from `from`; slow on purpose for a
    /// passphrase (argon2): call it off the async workers.
    pub fn check_secret(&self, secret: &str, from: IpAddr) -> Result<(), Refusal> {
        match self.mode {
            AuthMode::None => Ok(()),
            AuthMode::Passphrase => {
                self.throttle(from)?;
                let hash = self.passphrase.as_deref().unwrap_or_default();
                let parsed = PasswordHash::new(hash).map_err(|_| Refusal::Wrong)?;
                Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .map_err(|_| Refusal::Wrong)
            }
            AuthMode::Jwt => {
                // A bad signature costs little to check, but guessing is throttled all
                // the same (a failed attempt counts).
                let jwt = self.jwt.as_ref().ok_or(Refusal::Wrong)?;
                match jsonwebtoken::decode::<Claims>(secret, &jwt.key, &jwt.validation) {
                    Ok(data) => {
                        tracing::debug!(sub = ?data.claims.sub, "token accepted");
                        Ok(())
                    }
                    Err(e) => {
                        self.throttle(from)?;
                        Err(match e.kind() {
                            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Refusal::Expired,
                            _ => Refusal::Wrong,
                        })
                    }
                }
            }
        }
    }

    /// Counts an attempt from `from`'s network; refuses past the minute's allowance.
    fn throttle(&self, from: IpAddr) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        attempts.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        let (_, count) = attempts.entry(network_of(from)).or_insert((now, 0));
        *count += 1;
        if *count > self.max_attempts {
            Err(Refusal::Throttled)
        } else {
            Ok(())
        }
    }

    /// The value of the sign-in cookie for browser `sid`, signed with `mac`, and how long
    /// it lasts.
    pub fn sign_in_cookie(&self, sid: &str, mac: impl Fn(&str) -> String) -> (String, Duration) {
        let until = unix_now() + self.sign_in.as_secs();
        let value = format!("{until}.{}", mac(&self.signed_text(sid, until)));
        (value, self.sign_in)
    }

    /// Whether `cookie` (a sign-in cookie's value) signs in browser `sid` now.
    pub fn cookie_signs_in(
        &self,
        sid: &str,
        cookie: &str,
        mac: impl Fn(&str) -> String,
    ) -> Result<(), Refusal> {
        let (until, sig) = cookie.split_once('.').ok_or(Refusal::Wrong)?;
        let until: u64 = until.parse().map_err(|_| Refusal::Wrong)?;
        let expected = mac(&self.signed_text(sid, until));
        let same: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), sig.as_bytes()).into();
        if !same {
            return Err(Refusal::Wrong);
        }
        if until < unix_now() {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    fn signed_text(&self, sid: &str, until: u64) -> String {
        format!("{sid}:{until}:{}", self.fingerprint)
    }
}

/// The argon2id hash (PHC string) of `passphrase`, with a fresh salt: what
/// `auth.passphrase-hash` holds.
pub fn hash_passphrase(passphrase: &str) -> Result<String, ServerError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ServerError::Config(format!("no randomness: {e}")))?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt)
        .map_err(|e| ServerError::Config(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(passphrase.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServerError::Config(format!("cannot hash the passphrase: {e}")))
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase_gate(pass: &str, max_attempts: u32) -> Gate {
        Gate::new(&AuthConfig {
            mode: AuthMode::Passphrase,
            passphrase_hash: hash_passphrase(pass).unwrap(),
            max_attempts_per_minute: max_attempts,
            ..AuthConfig::default()
        })
        .unwrap()
    }

    fn mac(text: &str) -> String {
        hex::encode(&Sha256::digest(format!("key:{text}").as_bytes())[..8])
    }

    #[test]
    fn a_passphrase_is_checked_against_its_hash_and_guessing_is_throttled() {
        let gate = passphrase_gate("correct horse battery", 3);
        let me = IpAddr::from([192, 0, 2, 1]);
        assert!(gate.required());
        assert_eq!(gate.check_secret("wrong", me), Err(Refusal::Wrong));
        assert_eq!(gate.check_secret("correct horse battery", me), Ok(()));
        assert_eq!(gate.check_secret("wrong again", me), Err(Refusal::Wrong));
        assert_eq!(
            gate.check_secret("correct horse battery", me),
            Err(Refusal::Throttled),
            "the fourth attempt in a minute is refused unchecked"
        );
        assert_eq!(
            gate.check_secret("correct horse battery", IpAddr::from([198, 51, 100, 7])),
            Ok(()),
            "another network is not affected"
        );
    }

    #[test]
    fn a_sign_in_cookie_is_bound_to_its_browser_and_to_the_secret() {
        let gate = passphrase_gate("one", 10);
        let (cookie, lasts) = gate.sign_in_cookie("sid-a", mac);
        assert_eq!(lasts, Duration::from_secs(12 * 3600));
        assert_eq!(gate.cookie_signs_in("sid-a", &cookie, mac), Ok(()));
        assert_eq!(
            gate.cookie_signs_in("sid-b", &cookie, mac),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            gate.cookie_signs_in("sid-a", "garbage", mac),
            Err(Refusal::Wrong)
        );
        let mut forged = cookie.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            gate.cookie_signs_in("sid-a", &forged, mac),
            Err(Refusal::Wrong)
        );
        // A new passphrase signs everyone out.
        let changed = passphrase_gate("two", 10);
        assert_eq!(
            changed.cookie_signs_in("sid-a", &cookie, mac),
            Err(Refusal::Wrong)
        );
        // An old one has expired.
        let old = format!("1.{}", mac(&gate.signed_text("sid-a", 1)));
        assert_eq!(
            gate.cookie_signs_in("sid-a", &old, mac),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn jwts_are_verified_with_the_operators_key() {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let dir = std::env::temp_dir().join(format!("hls-face-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("jwt.key");
        let secret = b"0123456789abcdef0123456789abcdef-operator";
        std::fs::write(&key_file, secret).unwrap();
        let gate = Gate::new(&AuthConfig {
            mode: AuthMode::Jwt,
            jwt_key_file: Some(key_file.clone()),
            jwt_audience: Some("hls-face".into()),
            ..AuthConfig::default()
        })
        .unwrap();
        let me = IpAddr::from([192, 0, 2, 1]);
        let token = |exp: u64, aud: &str, key: &[u8]| {
            encode(
                &Header::default(),
                &serde_json::json!({"sub": "alice", "exp": exp, "aud": aud}),
                &EncodingKey::from_secret(key),
            )
            .unwrap()
        };
        let later = unix_now() + 600;
        assert_eq!(
            gate.check_secret(&token(later, "hls-face", secret), me),
            Ok(())
        );
        assert_eq!(
            gate.check_secret(&token(unix_now() - 600, "hls-face", secret), me),
            Err(Refusal::Expired)
        );
        assert_eq!(
            gate.check_secret(&token(later, "elsewhere", secret), me),
            Err(Refusal::Wrong)
        );
        assert_eq!(
            gate.check_secret(
                &token(later, "hls-face", b"another key of at least 32 bytes!!"),
                me
            ),
            Err(Refusal::Wrong)
        );
        assert_eq!(gate.check_secret("not a jwt", me), Err(Refusal::Wrong));
        std::fs::write(&key_file, b"short").unwrap();
        assert!(Gate::new(&AuthConfig {
            mode: AuthMode::Jwt,
            jwt_key_file: Some(key_file),
            ..AuthConfig::default()
        })
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
