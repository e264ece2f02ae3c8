//! The token (where it comes from, how it is compared), query decoding and the origin check.

use anyhow::{bail, Result};
use std::ffi::OsString;
use std::path::Path;

/// The environment variable that may hold the token (so it stays out of `ps`).
pub const TOKEN_ENV: &str = "IGN_EDGE_HTTP_TOKEN";

/// The token every request must carry; compared in constant time.
#[derive(Clone)]
pub(super) struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Refuses an empty token (it would guard nothing while looking like it does).
    pub(super) fn new(token: &str) -> Result<Token> {
        if token.is_empty() {
            bail!("the http token is empty: give a non-empty token, or none to serve without one");
        }
        Ok(Token(token.to_string()))
    }

    /// Whether `given` is the token; the time taken does not depend on where they differ.
    pub(super) fn matches(&self, given: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }

    /// Whether a request carries the token, as `?token=` (percent-decoded, as the page sends
    /// `encodeURIComponent(token)`) or as `Authorization: Bearer`.
    pub(super) fn authorizes(&self, query: Option<&str>, authorization: Option<&[u8]>) -> bool {
        let by_query = query_value(query, "token").is_some_and(|t| self.matches(&t));
        let by_header = authorization
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| self.matches(t.trim()));
        by_query | by_header
    }
}

/// The value of `key` in a query string, decoded as a browser's `URLSearchParams` does
/// (`%XX` escapes, `+` for a space).
pub(super) fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Whether a request may change state: no `Origin` (not a browser's cross-site request), or
/// an `Origin` whose host:port is the `Host` the request was sent to.
pub(super) fn same_origin(origin: Option<&[u8]>, host: Option<&[u8]>) -> bool {
    let Some(origin) = origin else { return true };
    let (Ok(origin), Some(Ok(host))) = (std::str::from_utf8(origin), host.map(std::str::from_utf8))
    else {
        return false;
    };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false; // "null" (a sandboxed frame, a file) or garbage
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let norm = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(s) => s.to_string(),
            None => a,
        }
    };
    !authority.is_empty() && !authority.contains('/') && norm(authority) == norm(host)
}

/// The token from, in this order, `--http-token`, `--http-token-file` (its first line, trimmed)
/// or the environment variable [`TOKEN_ENV`]; none if none is given. An empty one is an error.
pub fn resolve_token(
    flag: Option<&str>,
    file: Option<&Path>,
    env: Option<OsString>,
) -> Result<Option<String>> {
    if let Some(t) = flag {
        if t.is_empty() {
            bail!("--http-token is empty: give a non-empty token, or leave the option out");
        }
        return Ok(Some(t.to_string()));
    }
    const TOKEN: ign_core::fsio::SecretKind = ign_core::fsio::SecretKind {
        what: "http token",
        noun: "token",
    };
    if let Some(path) = file {
        return ign_core::fsio::secret_from_file(path, TOKEN).map(Some);
    }
    env.map(|v| ign_core::fsio::secret_from_env(v, TOKEN_ENV, TOKEN))
        .transpose()
}

/// The names this server answers to in `Host`: a page from another name that resolves to
/// this board (DNS rebinding) gets 403 whatever it carries, the token included.
///
/// Allowed: IP literals (a rebinding page's `Host` is its own DNS name, never an address),
/// `localhost`, this machine's hostname and `<hostname>.local` (mDNS), and the names given
/// with `--http-allow-host` (a reverse proxy's). A request without `Host` (not a browser) is
/// let through.
///
/// ```
/// use ign_edge::web::AllowedHosts;
/// let a = AllowedHosts::new(Some("pi5"), &["cam.example".into()]);
/// for ok in ["192.168.1.9:8080", "[::1]:8080", "localhost", "PI5:80", "pi5.local", "cam.example"] {
///     assert!(a.allows(Some(ok.as_bytes())), "{ok}");
/// }
/// assert!(!a.allows(Some(b"evil.example:8080")));
/// assert!(a.allows(None));
/// ```
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// `localhost`, `hostname` (and `hostname.local`) and `extra`, compared without case.
    pub fn new(hostname: Option<&str>, extra: &[String]) -> AllowedHosts {
        let mut names = vec!["localhost".to_string()];
        if let Some(h) = hostname.map(str::trim).filter(|h| !h.is_empty()) {
            names.push(h.to_ascii_lowercase());
            names.push(format!("{}.local", h.to_ascii_lowercase()));
        }
        names.extend(extra.iter().map(|n| n.trim().to_ascii_lowercase()));
        AllowedHosts { names }
    }

    /// With this machine's hostname (Linux: /proc/sys/kernel/hostname).
    pub fn for_this_machine(extra: &[String]) -> AllowedHosts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        AllowedHosts::new(hostname.as_deref(), extra)
    }

    /// Whether a request with this `Host` header may be served.
    pub fn allows(&self, host: Option<&[u8]>) -> bool {
        let Some(raw) = host else {
            return true;
        };
        let Ok(host) = std::str::from_utf8(raw) else {
            return false;
        };
        let host = host.trim();
        if host.starts_with('[') {
            // an IPv6 literal, `[::1]:8080`
            return host
                .split(']')
                .next()
                .is_some_and(|a| a[1..].parse::<std::net::Ipv6Addr>().is_ok());
        }
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compares_whole_strings() {
        let t = Token::new("s3cret").unwrap();
        assert!(t.matches("s3cret"));
        for wrong in ["", "s3cre", "s3cret!", "S3cret", "s3crex"] {
            assert!(!t.matches(wrong), "{wrong}");
        }
        assert!(Token::new("").is_err());
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        let t = Token::new("p@ss").unwrap();
        assert!(t.authorizes(Some("token=p%40ss"), None));
        assert!(t.authorizes(Some("steps=2&token=p@ss"), None));
        assert!(!t.authorizes(Some("token=p%41ss"), None));
        assert!(!t.authorizes(None, None));
        let t = Token::new("a+b").unwrap();
        assert!(t.authorizes(Some("token=a%2Bb"), None));
        // a literal '+' is a space, as in the page's URLSearchParams
        assert!(!t.authorizes(Some("token=a+b"), None));
        assert!(Token::new("a b")
            .unwrap()
            .authorizes(Some("token=a+b"), None));
        assert!(t.authorizes(None, Some(b"Bearer a+b")));
        assert!(!t.authorizes(None, Some(b"Bearer a%2Bb")));
        assert!(!t.authorizes(None, Some(b"Basic a+b")));
        assert_eq!(
            query_value(Some("x=1&k=%E2%9C%93"), "k").as_deref(),
            Some("✓")
        );
        assert_eq!(query_value(Some("x=1"), "k"), None);
    }

    #[test]
    fn origin_must_name_the_host() {
        let ok = |o: &str, h: &str| same_origin(Some(o.as_bytes()), Some(h.as_bytes()));
        assert!(same_origin(None, Some(b"127.0.0.1:8080")));
        assert!(same_origin(None, None));
        assert!(ok("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(ok("http://Board.local:8080", "board.local:8080"));
        assert!(ok("http://board.local", "board.local"));
        assert!(ok("http://board.local", "board.local:80"));
        assert!(ok("https://board.example", "board.example"));
        assert!(!ok("http://evil.example", "127.0.0.1:8080"));
        assert!(!ok("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!ok("http://127.0.0.1", "127.0.0.1:8080"));
        assert!(!ok("null", "127.0.0.1:8080"));
        assert!(!ok("http://127.0.0.1:8080/x", "127.0.0.1:8080"));
        assert!(!ok("ftp://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(!same_origin(Some(b"http://127.0.0.1:8080"), None));
    }

    #[test]
    fn token_sources() {
        assert_eq!(resolve_token(None, None, None).unwrap(), None);
        assert!(resolve_token(Some(""), None, None).is_err());
        assert_eq!(
            resolve_token(Some("a"), None, Some("b".into())).unwrap(),
            Some("a".into())
        );
        assert_eq!(
            resolve_token(None, None, Some("b".into())).unwrap(),
            Some("b".into())
        );
        let e = resolve_token(None, None, Some("".into())).unwrap_err();
        assert!(e.to_string().contains(TOKEN_ENV), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "  p@ss \nsecond line\n").unwrap();
        assert_eq!(
            resolve_token(None, Some(&f), Some("env".into())).unwrap(),
            Some("p@ss".into())
        );
        std::fs::write(&f, "\n").unwrap();
        let e = resolve_token(None, Some(&f), None).unwrap_err();
        assert!(e.to_string().contains("first line is empty"), "{e}");
        let missing = dir.path().join("missing");
        let e = resolve_token(None, Some(&missing), None).unwrap_err();
        assert!(format!("{e:#}").contains("missing"), "{e:#}");
    }
}
