//! Which browser origins may use Herald: the public origin plus `CORS_ALLOWED_ORIGINS`. One
//! parser and one rule for the api's CORS answers and the gateway's Origin check, so a frontend
//! that may read the inbox may also open the WebSocket, and the other way round.
//!
//! Entries are full origins (`scheme://host[:port]`, `http` or `https`); a trailing `/` is
//! tolerated, a path, query, user name or wildcard is refused at start-up rather than silently
//! never matching. A browser's `Origin` header is compared with the normalised entries exactly,
//! as browsers send it (`http://localhost:3000`, never a trailing slash or a default port).

use url::Url;

/// Why one configured origin was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an origin: {why}")]
pub struct OriginError {
    pub entry: String,
    pub why: &'static str,
}

/// `CORS_ALLOWED_ORIGINS`, for `clap` to flatten into a service's configuration (the api and
/// the gateway read the same variable with the same meaning).
#[cfg(feature = "cli")]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OriginArgs {
    /// Browser origins allowed besides the public one (HERALD_PUBLIC_URL), comma separated:
    /// `scheme://host[:port]`, e.g. `http://localhost:3000,http://localhost:3001`. They may call
    /// the REST api (CORS) and open WebSocket and Socket.IO connections; any other browser origin
    /// is refused. Requests without an Origin header (servers, CLI tools) are always allowed.
    #[arg(
        long = "allowed-origins",
        env = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
}

/// The normalised list of allowed origins (the public origin first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins {
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// The public URL's origin plus every configured entry (blank entries are skipped, so
    /// `CORS_ALLOWED_ORIGINS=""` means "only the public origin").
    pub fn parse<S: AsRef<str>>(configured: &[S], public_url: &str) -> Result<Self, OriginError> {
        let public = Url::parse(public_url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| OriginError {
                entry: public_url.to_owned(),
                why: "HERALD_PUBLIC_URL must be an http(s) URL",
            })?;
        Self {
            origins: vec![public.origin().ascii_serialization()],
        }
        .with(configured)
    }

    /// Is this `Origin` header value one of the allowed origins?
    pub fn allows(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }

    /// Is `url` an absolute http(s) URL, without user name or password, on one of these
    /// origins?
    pub fn allows_url(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.username().is_empty()
                && u.password().is_none()
                && self.allows(&u.origin().ascii_serialization())
        })
    }

    /// These origins plus `more` (normalised the same way).
    pub fn with<S: AsRef<str>>(&self, more: &[S]) -> Result<Self, OriginError> {
        let mut origins = self.origins.clone();
        for entry in more.iter().map(|e| e.as_ref().trim()) {
            if entry.is_empty() {
                continue;
            }
            let origin = normalise(entry)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Self { origins })
    }

    pub fn as_slice(&self) -> &[String] {
        &self.origins
    }
}

/// `scheme://host[:port]` of an http(s) URL that names nothing but an origin.
fn normalise(entry: &str) -> Result<String, OriginError> {
    let refuse = |why| OriginError {
        entry: entry.to_owned(),
        why,
    };
    if entry.contains('*') {
        return Err(refuse(
            "wildcards are not supported: list each origin (scheme://host:port)",
        ));
    }
    let url = Url::parse(entry.trim()).map_err(|_| refuse("not a URL (scheme://host:port)"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("an origin has no user name or password"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(refuse(
            "an origin has no path, query or fragment (scheme://host:port)",
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_origin_is_always_allowed_and_entries_are_normalised() {
        let o = AllowedOrigins::parse(
            &["http://127.0.0.1:3000/", " HTTPS://App.Example:443 ", ""],
            "http://127.0.0.1:8000/some/path",
        )
        .unwrap();
        assert_eq!(
            o.as_slice(),
            [
                "http://127.0.0.1:8000",
                "http://127.0.0.1:3000",
                "https://app.example"
            ]
        );
        assert!(o.allows("http://127.0.0.1:3000"));
        assert!(o.allows("https://app.example"));
        assert!(!o.allows("http://127.0.0.1:3002"));
        assert!(!o.allows("null"));
        assert!(!o.allows("http://127.0.0.1:3000/"));
    }

    #[test]
    fn a_url_is_allowed_only_on_an_allowed_origin() {
        let o = AllowedOrigins::parse(&["https://app.example"], "http://127.0.0.1:8000").unwrap();
        assert!(o.allows_url("https://app.example/goals/1?x=2"));
        assert!(o.allows_url("http://127.0.0.1:8000/"));
        assert!(!o.allows_url("https://evil.example/x"));
        assert!(!o.allows_url("https://app.example.evil.example/x"));
        assert!(!o.allows_url("https://user@app.example/x"));
        assert!(!o.allows_url("javascript:alert(1)"));
        assert!(!o.allows_url("/relative"));
        let more = o.with(&["https://links.example"]).unwrap();
        assert!(more.allows_url("https://links.example/a"));
    }

    #[test]
    fn entries_that_are_not_origins_are_refused_with_the_reason() {
        for (bad, why) in [
            ("*", "wildcards"),
            ("localhost:3000", "scheme"),
            ("ftp://files.example", "scheme"),
            ("http://a.example/app", "path"),
            ("http://u:p@a.example", "user name"),
            ("not a url", "not a URL"),
        ] {
            let err = AllowedOrigins::parse(&[bad], "http://127.0.0.1:8000").unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }
}
