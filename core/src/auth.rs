//! JWT verification, shared by the api and the gateway so both accept exactly the same tokens.
//!
//! The algorithm is pinned by configuration: HS256 with `HERALD_JWT_SECRET`, or the algorithm
//! named by `HERALD_JWT_ALGORITHM` (RS256 by default) with the PEM key in
//! `HERALD_JWT_PUBLIC_KEY_FILE`. `alg: none`, any other algorithm, a bad signature, a missing or
//! past `exp`, a future `nbf`, and `exp`/`nbf` sent as strings are rejected; `iss` and `aud` are
//! enforced when configured.

use crate::secret::Secret;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Longest accepted `sub` (user id), in characters.
pub const MAX_USER_ID_CHARS: usize = 128;
/// Longest accepted role name, in characters.
pub const MAX_ROLE_CHARS: usize = 64;
/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;

/// How tokens are verified. Exactly one of `secret` and `public_key_pem` must be set.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    pub secret: Option<Secret>,
    pub public_key_pem: Option<Vec<u8>>,
    /// `RS256`, `ES256` or `EdDSA` (only with a public key). Default `RS256`.
    pub algorithm: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Why a token was refused. [`AuthError::reason`] is the metric label; `Display` is the message
/// a client sees (it never contains the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token algorithm is not accepted")]
    WrongAlgorithm,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token claims are missing or invalid")]
    InvalidClaims,
    #[error("token subject (sub) must be 1 to 128 characters without control characters")]
    InvalidSubject,
}

impl AuthError {
    /// A short, fixed label for metrics (`herald_*_auth_failures_total{reason}`).
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::WrongAlgorithm => "wrong_algorithm",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::InvalidClaims => "invalid_claims",
            AuthError::InvalidSubject => "invalid_subject",
        }
    }
}

/// The token-verification flags every service reads (`HERALD_JWT_*`), for `clap` to flatten
/// into a service's configuration.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct JwtArgs {
    /// HS256 secret for verifying tokens (exclusive with the public key file).
    #[arg(long = "jwt-secret", env = "HERALD_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<Secret>,

    /// PEM public key for verifying tokens (RS256/ES256/EdDSA, see HERALD_JWT_ALGORITHM).
    #[arg(long = "jwt-public-key-file", env = "HERALD_JWT_PUBLIC_KEY_FILE")]
    pub public_key_file: Option<std::path::PathBuf>,

    /// Algorithm used with the public key: RS256 (default), ES256 or EdDSA.
    #[arg(long = "jwt-algorithm", env = "HERALD_JWT_ALGORITHM")]
    pub algorithm: Option<String>,

    /// When set, tokens must carry exactly this `iss`.
    #[arg(long = "jwt-issuer", env = "HERALD_JWT_ISSUER")]
    pub issuer: Option<String>,

    /// When set, tokens must carry this `aud`.
    #[arg(long = "jwt-audience", env = "HERALD_JWT_AUDIENCE")]
    pub audience: Option<String>,
}

#[cfg(feature = "cli")]
impl JwtArgs {
    /// Settings with an HS256 secret only (tests, embedding).
    pub fn with_secret(secret: &str) -> Self {
        Self {
            secret: Some(Secret::new(secret)),
            ..Self::default()
        }
    }

    /// A verifier for these flags; reads the public key file if one is configured.
    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        let public_key_pem = match &self.public_key_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                ConfigError::Key(format!(
                    "{} (reading {}: {e})",
                    self.algorithm.as_deref().unwrap_or("RS256"),
                    path.display()
                ))
            })?),
            None => None,
        };
        Verifier::new(&JwtSettings {
            secret: self.secret.clone().filter(|s| !s.is_empty()),
            public_key_pem,
            algorithm: self.algorithm.clone(),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
        })
    }
}

/// A configuration that cannot verify anything.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("set exactly one of HERALD_JWT_SECRET and HERALD_JWT_PUBLIC_KEY_FILE")]
    KeyChoice,
    #[error("HERALD_JWT_ALGORITHM {0:?} is not one of RS256, ES256, EdDSA")]
    Algorithm(String),
    #[error("the public key is not a valid PEM key for {0}")]
    Key(String),
}

/// The claims Herald uses, checked: `sub` is 1..=128 characters, roles are non-empty
/// `[A-Za-z0-9_.-]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub scopes: Vec<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
}

impl Claims {
    /// The Redis channels this grant may hear on a connection: the user's own, broadcast, and one
    /// per role. A refreshed token's grant replaces the old one, channels included.
    pub fn channels(&self, keys: &crate::keys::Keys) -> Vec<String> {
        let mut channels = vec![keys.user_channel(&self.sub), keys.broadcast_channel()];
        channels.extend(self.roles.iter().map(|r| keys.role_channel(r)));
        channels
    }

    /// Checks that `fresh` may replace this grant on an open connection: only the same user
    /// may refresh it. The fresh grant then applies whole (roles, scope and expiry).
    pub fn refresh(&self, fresh: Claims) -> Result<Claims, RefreshError> {
        if fresh.sub != self.sub {
            return Err(RefreshError::OtherUser);
        }
        Ok(fresh)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a fresh token cannot replace a connection's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error("the new token is for another user")]
    OtherUser,
}

/// The token body as sent; what is not here is ignored.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// One audience or several (RFC 7519 §4.1.3 allows both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audiences>,
}

/// The `aud` claim: a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audiences {
    One(String),
    Many(Vec<String>),
}

impl TokenClaims {
    /// Claims for `sub` expiring `ttl_secs` from now, with no name, email, issuer or audience.
    pub fn new(
        sub: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
        scope: Option<&str>,
        ttl_secs: u64,
    ) -> Self {
        Self {
            sub: sub.into(),
            roles: roles.into_iter().map(Into::into).collect(),
            name: None,
            email: None,
            scope: scope.map(str::to_owned),
            exp: now_unix() + ttl_secs,
            iss: None,
            aud: None,
        }
    }
}

/// Verifies tokens against one pinned key and algorithm.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(settings: &JwtSettings) -> Result<Self, ConfigError> {
        let (key, algorithm) = match (&settings.secret, &settings.public_key_pem) {
            (Some(secret), None) if !secret.is_empty() => (
                DecodingKey::from_secret(secret.expose().as_bytes()),
                Algorithm::HS256,
            ),
            (None, Some(pem)) => {
                let name = settings.algorithm.as_deref().unwrap_or("RS256");
                let (key, alg) = match name {
                    "RS256" => (DecodingKey::from_rsa_pem(pem), Algorithm::RS256),
                    "ES256" => (DecodingKey::from_ec_pem(pem), Algorithm::ES256),
                    "EdDSA" => (DecodingKey::from_ed_pem(pem), Algorithm::EdDSA),
                    other => return Err(ConfigError::Algorithm(other.to_owned())),
                };
                (key.map_err(|_| ConfigError::Key(name.to_owned()))?, alg)
            }
            _ => return Err(ConfigError::KeyChoice),
        };
        let mut validation = Validation::new(algorithm);
        // jsonwebtoken checks `iss`/`aud` only when present: require them when configured.
        let mut required = vec!["exp", "sub"];
        if settings.issuer.is_some() {
            required.push("iss");
        }
        if settings.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match &settings.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self { key, validation })
    }

    /// Checks the token and returns its claims, or why it was refused.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        match header_algorithm(token) {
            None => return Err(AuthError::Malformed),
            Some(Ok(alg)) if self.validation.algorithms.contains(&alg) => {}
            Some(_) => return Err(AuthError::WrongAlgorithm),
        }
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.key, &self.validation)
            .map_err(|e| classify(e.kind()))?;
        let c = data.claims;
        if !valid_user_id(&c.sub) {
            return Err(AuthError::InvalidSubject);
        }
        if !c.roles.iter().all(|r| valid_role(r)) {
            return Err(AuthError::InvalidClaims);
        }
        Ok(Claims {
            sub: c.sub,
            roles: c.roles,
            name: c.name,
            email: c.email,
            scopes: c
                .scope
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            exp: c.exp,
        })
    }
}

/// The `alg` of the token's header: `None` when the header is not base64url JSON,
/// `Some(Err(name))` for a name jsonwebtoken does not know (e.g. `none`), which its own header
/// parser would report as a JSON error.
fn header_algorithm(token: &str) -> Option<Result<Algorithm, String>> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let name = value.get("alg")?.as_str()?.to_owned();
    Some(name.parse::<Algorithm>().map_err(|_| name))
}

/// Is `id` usable as a user id: 1 to [`MAX_USER_ID_CHARS`] characters, none of them a control
/// character (NUL cannot be stored by Postgres; line breaks would forge log lines and headers).
/// It becomes part of a Redis channel, a Socket.IO room and Postgres rows.
pub fn valid_user_id(id: &str) -> bool {
    let n = id.chars().count();
    (1..=MAX_USER_ID_CHARS).contains(&n) && !id.chars().any(char::is_control)
}

/// The token of an `Authorization` header value: the scheme `Bearer` in any case (RFC 9110
/// §11.1), then one or more spaces or tabs, then the token, which holds no whitespace itself.
/// Used for every header that carries a token (REST, the WebSocket handshake, Socket.IO).
pub fn bearer_token(value: &str) -> Result<&str, AuthError> {
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t']).ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = rest.trim_start_matches([' ', '\t']);
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Is `role` usable as a role name (it becomes part of a Redis channel and a Socket.IO namespace)?
pub fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= MAX_ROLE_CHARS
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn classify(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            AuthError::InvalidClaims
        }
        ErrorKind::Json(_) => AuthError::InvalidClaims,
        _ => AuthError::Malformed,
    }
}

/// Mints an HS256 token: for the dev `mint-token` command, scripts and tests. Production tokens
/// come from the host application.
pub fn mint_hs256(secret: &Secret, claims: &TokenClaims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .expect("HS256 signing with an in-memory secret cannot fail")
}

/// Time left until `exp` (unix seconds); zero when it has passed.
pub fn until_exp(exp: u64) -> std::time::Duration {
    std::time::Duration::from_secs(exp.saturating_sub(now_unix()))
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> JwtSettings {
        JwtSettings {
            secret: Some(Secret::new("s3cret")),
            ..Default::default()
        }
    }

    fn claims(exp: u64) -> TokenClaims {
        TokenClaims {
            exp,
            ..TokenClaims::new("alice", ["admin"], Some("publish read"), 0)
        }
    }

    #[test]
    fn accepts_a_good_token_and_reads_its_claims() {
        let v = Verifier::new(&settings()).unwrap();
        let t = mint_hs256(&Secret::new("s3cret"), &claims(now_unix() + 60));
        let c = v.verify(&t).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.has_role("admin") && c.has_scope("publish") && !c.has_scope("pub"));
    }

    #[test]
    fn refuses_expired_wrong_key_and_garbage() {
        let v = Verifier::new(&settings()).unwrap();
        let expired = mint_hs256(&Secret::new("s3cret"), &claims(now_unix() - 3600));
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        let forged = mint_hs256(&Secret::new("other"), &claims(now_unix() + 60));
        assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
        assert_eq!(v.verify("not.a.jwt"), Err(AuthError::Malformed));
        assert_eq!(v.verify(""), Err(AuthError::Missing));
    }

    #[test]
    fn refuses_bad_role_names() {
        let v = Verifier::new(&settings()).unwrap();
        let mut c = claims(now_unix() + 60);
        c.roles = vec!["bad role".into()];
        let t = mint_hs256(&Secret::new("s3cret"), &c);
        assert_eq!(v.verify(&t), Err(AuthError::InvalidClaims));
    }

    #[test]
    fn a_subject_with_a_control_character_is_refused_with_its_own_reason() {
        let v = Verifier::new(&settings()).unwrap();
        for sub in ["nul\u{0}user", "line\nbreak", "", &"x".repeat(129)] {
            let mut c = claims(now_unix() + 60);
            c.sub = sub.to_owned();
            let t = mint_hs256(&Secret::new("s3cret"), &c);
            assert_eq!(v.verify(&t), Err(AuthError::InvalidSubject), "{sub:?}");
        }
        assert_eq!(AuthError::InvalidSubject.reason(), "invalid_subject");
    }

    #[test]
    fn the_audience_may_be_a_string_or_an_array_holding_the_configured_one() {
        let v = Verifier::new(&JwtSettings {
            audience: Some("herald".into()),
            ..settings()
        })
        .unwrap();
        let with = |aud: Option<Audiences>| {
            let mut c = claims(now_unix() + 60);
            c.aud = aud;
            v.verify(&mint_hs256(&Secret::new("s3cret"), &c))
        };
        assert!(with(Some(Audiences::One("herald".into()))).is_ok());
        assert!(with(Some(Audiences::Many(vec!["other".into(), "herald".into()]))).is_ok());
        assert_eq!(
            with(Some(Audiences::Many(vec!["other".into()]))),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(with(None), Err(AuthError::InvalidClaims));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_one_word() {
        for ok in ["Bearer abc", "bearer abc", "BEARER abc", "  Bearer\t abc  "] {
            assert_eq!(bearer_token(ok), Ok("abc"), "{ok:?}");
        }
        for bad in [
            "Bearer",
            "Bearer ",
            "Basic abc",
            "Bearerabc",
            "Bearer a b",
            "",
        ] {
            assert_eq!(bearer_token(bad), Err(AuthError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn a_refresh_keeps_the_user_and_replaces_the_rest() {
        let v = Verifier::new(&settings()).unwrap();
        let old = v
            .verify(&mint_hs256(
                &Secret::new("s3cret"),
                &claims(now_unix() + 60),
            ))
            .unwrap();
        let mut fewer = claims(now_unix() + 600);
        fewer.roles = vec![];
        let fewer = v
            .verify(&mint_hs256(&Secret::new("s3cret"), &fewer))
            .unwrap();
        let keys = crate::keys::Keys::new("h");
        let granted = old.refresh(fewer).unwrap();
        assert_eq!(granted.channels(&keys), ["h:user:alice", "h:broadcast"]);
        let mut other = claims(now_unix() + 60);
        other.sub = "mallory".into();
        let other = v
            .verify(&mint_hs256(&Secret::new("s3cret"), &other))
            .unwrap();
        assert_eq!(old.refresh(other), Err(RefreshError::OtherUser));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            // HERALD_FUZZ_CASES=<n> for a longer run by hand (docs/operations.md).
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("HERALD_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
            ))]

            /// Anything a client can send as a token: refused, never a panic.
            #[test]
            fn arbitrary_text_is_never_a_token(text in any::<String>()) {
                let v = Verifier::new(&settings()).unwrap();
                prop_assert!(v.verify(&text).is_err());
            }

            /// A token signed with the right key, whatever its sub and roles hold: accepted
            /// exactly when they pass the edge's rules, and then read back unchanged.
            #[test]
            fn signed_claims_are_accepted_only_when_valid(
                sub in any::<String>(),
                roles in proptest::collection::vec(any::<String>(), 0..3),
            ) {
                let v = Verifier::new(&settings()).unwrap();
                let mut c = claims(now_unix() + 60);
                c.sub = sub.clone();
                c.roles = roles.clone();
                let got = v.verify(&mint_hs256(&Secret::new("s3cret"), &c));
                let valid = valid_user_id(&sub) && roles.iter().all(|r| valid_role(r));
                prop_assert_eq!(got.is_ok(), valid, "{:?}", got);
                if let Ok(claims) = got {
                    prop_assert_eq!(claims.sub, sub);
                    prop_assert_eq!(claims.roles, roles);
                }
            }

            /// One character of a good token changed: refused, or (a change the encoding
            /// ignores) the very same claims; never someone else's.
            #[test]
            fn a_tampered_token_gives_nothing_new(at in any::<prop::sample::Index>(), with in any::<char>()) {
                let v = Verifier::new(&settings()).unwrap();
                let good = mint_hs256(&Secret::new("s3cret"), &claims(now_unix() + 60));
                let mut chars: Vec<char> = good.chars().collect();
                let i = at.index(chars.len());
                chars[i] = with;
                let tampered: String = chars.into_iter().collect();
                if let Ok(c) = v.verify(&tampered) {
                    prop_assert_eq!(c, v.verify(&good).unwrap());
                }
            }
        }
    }

    #[test]
    fn needs_exactly_one_key() {
        assert!(Verifier::new(&JwtSettings::default()).is_err());
        let both = JwtSettings {
            public_key_pem: Some(b"x".to_vec()),
            ..settings()
        };
        assert!(Verifier::new(&both).is_err());
    }
}
