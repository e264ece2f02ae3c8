//! The spec of the MQTT output and what it names: `mqtt[s]://HOST[:PORT]/PREFIX[?OPTIONS]`,
//! the password (a file or [`PASSWORD_ENV`], never the command line), the TLS roots and the
//! device id.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The broker's default port (plain MQTT).
pub const DEFAULT_PORT: u16 = 1883;
/// The broker's default port over TLS (`mqtts://`).
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// The environment variable that may hold the broker's password (so it stays out of `ps`);
/// `password-file=` wins over it.
pub const PASSWORD_ENV: &str = "IGN_EDGE_MQTT_PASSWORD";
/// Home Assistant's discovery prefix, the default of `discovery=`.
pub const DEFAULT_DISCOVERY: &str = "homeassistant";
/// The options the query takes, as errors list them.
const KEYS: &str = "user, password-file, ca, device, discovery";

/// `mqtt[s]://HOST[:PORT]/PREFIX[?OPTIONS]`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    /// The topic prefix (without a trailing `/`).
    pub prefix: String,
    /// `mqtts://`: TLS, with the broker's certificate checked against `ca` or the system's.
    pub tls: bool,
    /// `user=`: the user name to log in with.
    pub user: Option<String>,
    /// `password-file=`: the password on the file's first line.
    pub password_file: Option<PathBuf>,
    /// `ca=`: the PEM file of the certificates the broker's must chain to (`mqtts://`).
    pub ca: Option<PathBuf>,
    /// `device=`: the id in Home Assistant's ids and topics (default: the hostname).
    pub device: Option<String>,
    /// `discovery=`: Home Assistant's discovery prefix; `off` (None) sends no discovery.
    pub discovery: Option<String>,
}

impl MqttSpec {
    /// The spec without its options, for logs and `/stats.json` (no secrets in it).
    pub fn name(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.prefix)
    }
}

/// Parse what follows `mqtt:` (`tls`: `mqtts:`), i.e. `//HOST[:PORT]/PREFIX[?OPTIONS]`.
pub fn parse(arg: &str, tls: bool) -> Result<MqttSpec> {
    let scheme = if tls { "mqtts" } else { "mqtt" };
    let usage = format!(
        "expected {scheme}://HOST[:PORT]/PREFIX[?user=U&password-file=F], e.g. \
         {scheme}://192.168.1.10/ign-edge/cam1"
    );
    let Some(rest) = arg.strip_prefix("//") else {
        bail!("{scheme}:{arg}: {usage}");
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        // a bracketed IPv6 address without a port: its colons are not a port's
        Some((h, p)) if !p.ends_with(']') => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| anyhow::anyhow!("{scheme}:{arg}: port {p:?} is not 1..65535"))?;
            (h, port)
        }
        _ => (authority, if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT }),
    };
    if host.is_empty() || prefix.is_empty() {
        bail!("{scheme}:{arg}: {usage}");
    }
    if prefix.contains(['+', '#']) {
        bail!("{scheme}:{arg}: the prefix may not hold the wildcards + or #");
    }
    let mut spec = MqttSpec {
        host: host.to_string(),
        port,
        prefix: prefix.to_string(),
        tls,
        user: None,
        password_file: None,
        ca: None,
        device: None,
        discovery: Some(DEFAULT_DISCOVERY.to_string()),
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        if v.is_empty() {
            bail!("{scheme}:{arg}: {k}= is empty");
        }
        match k.as_ref() {
            "user" => spec.user = Some(v),
            "password-file" => spec.password_file = Some(PathBuf::from(v)),
            "ca" if tls => spec.ca = Some(PathBuf::from(v)),
            "ca" => bail!("{scheme}:{arg}: ca= is for mqtts:// (TLS)"),
            "device" => spec.device = Some(v),
            "discovery" if v == "off" => spec.discovery = None,
            "discovery" if v.contains(['+', '#']) => {
                bail!("{scheme}:{arg}: discovery= may not hold the wildcards + or #")
            }
            "discovery" => spec.discovery = Some(v.trim_end_matches('/').to_string()),
            "password" => bail!(
                "{scheme}:{}: no password in the spec (it would show in ps and logs): put it \
                 in a file (password-file=FILE) or in {PASSWORD_ENV}",
                spec.name()
            ),
            other => bail!(
                "{scheme}:{}: unknown option {other:?}; use {KEYS}",
                spec.name()
            ),
        }
    }
    Ok(spec)
}

/// The password: the first line of `file`, else the environment variable [`PASSWORD_ENV`]
/// (`env`), else none. An empty one is an error.
pub fn resolve_password(
    file: Option<&Path>,
    env: Option<std::ffi::OsString>,
) -> Result<Option<String>> {
    const PASSWORD: ign_core::fsio::SecretKind = ign_core::fsio::SecretKind {
        what: "mqtt password",
        noun: "password",
    };
    if let Some(path) = file {
        return ign_core::fsio::secret_from_file(path, PASSWORD).map(Some);
    }
    env.map(|v| ign_core::fsio::secret_from_env(v, PASSWORD_ENV, PASSWORD))
        .transpose()
}

/// The device id: `given`, else this machine's hostname, else `ign-edge`; sanitised for Home
/// Assistant's ids (`[a-z0-9_-]`, other characters become `_`, 64 at most).
pub fn device_id(given: Option<&str>) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let raw = given.or(hostname.as_deref()).unwrap_or_default().trim();
    let id: String = raw
        .chars()
        .take(64)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '_',
        })
        .collect();
    if id.trim_matches('_').is_empty() {
        "ign-edge".to_string()
    } else {
        id
    }
}

/// The TLS settings of `mqtts://`: rustls with the ring provider, the broker's certificate
/// checked against the PEM file `ca`, else the system's roots.
pub fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let p = path.display();
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("{p}: cannot read the CA file"))?
            {
                let cert = cert.with_context(|| format!("{p}: not a PEM certificate file"))?;
                roots
                    .add(cert)
                    .with_context(|| format!("{p}: a certificate rustls cannot use"))?;
            }
            if roots.is_empty() {
                bail!("{p}: no certificate in it (ca= takes a PEM file)");
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                bail!("mqtts://: no system CA certificates found; give ca=FILE (PEM)");
            }
        }
    }
    // ring on purpose: C and assembly that gcc builds for every board (aws-lc-rs, rustls's
    // post-quantum default, wants cmake or clang there); the key exchange is X25519 or ECDHE.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls: no protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_a_port() {
        let s = parse("//broker.lan/home/cam1/", false).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.prefix.as_str(), s.tls),
            ("broker.lan", 1883, "home/cam1", false)
        );
        assert_eq!(s.discovery.as_deref(), Some("homeassistant"));
        assert_eq!(parse("//10.0.0.2:8883/ign", false).unwrap().port, 8883);
        assert_eq!(parse("//b/ign", true).unwrap().port, 8883);
        assert_eq!(parse("//[::1]/ign", false).unwrap().host, "[::1]");
        assert_eq!(parse("//[::1]:1884/ign", false).unwrap().port, 1884);
        for bad in [
            "broker/x",
            "//broker",
            "//:1883/x",
            "//b:0/x",
            "//b:x/y",
            "//b/a/#",
            "//b/a?colour=red",
            "//b/a?user=",
            "//b/a?ca=/etc/ca.pem",
            "//b/a?discovery=ha/%23",
        ] {
            assert!(parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_come_from_the_query() {
        let s = parse(
            "//b:1884/p?user=cam%201&password-file=/run/pw&device=Pi5&discovery=ha/",
            false,
        )
        .unwrap();
        assert_eq!(s.user.as_deref(), Some("cam 1"));
        assert_eq!(s.password_file.as_deref(), Some(Path::new("/run/pw")));
        assert_eq!(s.device.as_deref(), Some("Pi5"));
        assert_eq!(s.discovery.as_deref(), Some("ha"));
        assert_eq!(s.name(), "mqtt://b:1884/p", "no options in the name");
        assert_eq!(parse("//b/p?discovery=off", false).unwrap().discovery, None);
        let t = parse("//b/p?ca=/etc/ca.pem", true).unwrap();
        assert_eq!(t.ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.name(), "mqtts://b:8883/p");
    }

    #[test]
    fn a_password_in_the_spec_is_refused_without_echoing_it() {
        let e = parse("//b/p?password=hunter2", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("password-file") && e.contains(PASSWORD_ENV),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn the_password_comes_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret \nignored\n").unwrap();
        let env = Some("from-env".into());
        assert_eq!(
            resolve_password(Some(&f), env.clone()).unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            resolve_password(None, env).unwrap().as_deref(),
            Some("from-env")
        );
        assert_eq!(resolve_password(None, None).unwrap(), None);
        assert!(resolve_password(None, Some("".into())).is_err());
        std::fs::write(&f, "\n").unwrap();
        assert!(resolve_password(Some(&f), None).is_err());
        assert!(resolve_password(Some(&dir.path().join("none")), None).is_err());
    }

    #[test]
    fn device_ids_are_sanitised() {
        assert_eq!(device_id(Some("Pi 5.local")), "pi_5_local");
        assert_eq!(device_id(Some("cam-1_a")), "cam-1_a");
        assert_eq!(device_id(Some("..")), "ign-edge");
        let host = device_id(None);
        assert!(!host.is_empty() && host.len() <= 64, "{host}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = tls_config(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
        assert!(tls_config(Some(&dir.path().join("none"))).is_err());
    }
}
