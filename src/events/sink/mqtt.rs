//! `mqtt://HOST[:PORT]/PREFIX`: events to an MQTT broker with Home Assistant discovery
//! (issue #30). Reserved: the spec is parsed here, the output itself is not built yet.

use anyhow::{bail, Result};

use super::{EventSink, OutputOptions};

/// The broker's default port (plain MQTT).
pub const DEFAULT_PORT: u16 = 1883;

/// `mqtt://HOST[:PORT]/PREFIX`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttSpec {
    pub host: String,
    pub port: u16,
    /// The topic prefix (without a trailing `/`).
    pub prefix: String,
}

/// Parse what follows `mqtt:` (`//HOST[:PORT]/PREFIX`).
pub fn parse(arg: &str) -> Result<MqttSpec> {
    let usage = "expected mqtt://HOST[:PORT]/PREFIX, e.g. mqtt://192.168.1.10:1883/ign-edge";
    let Some(rest) = arg.strip_prefix("//") else {
        bail!("mqtt:{arg}: {usage}");
    };
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    let (host, port) = match authority.rsplit_once(':') {
        // a bracketed IPv6 address without a port: its colons are not a port's
        Some((h, p)) if !p.ends_with(']') => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| anyhow::anyhow!("mqtt:{arg}: port {p:?} is not 1..65535"))?;
            (h, port)
        }
        _ => (authority, DEFAULT_PORT),
    };
    if host.is_empty() || prefix.is_empty() {
        bail!("mqtt:{arg}: {usage}");
    }
    if prefix.contains(['+', '#']) {
        bail!("mqtt:{arg}: the prefix may not hold the wildcards + or #");
    }
    Ok(MqttSpec {
        host: host.to_string(),
        port,
        prefix: prefix.to_string(),
    })
}

/// `mqtt://HOST[:PORT]/PREFIX`: parsed, then refused until the output is built.
pub fn open_spec(arg: &str, _opts: &OutputOptions) -> Result<Box<dyn EventSink>> {
    let spec = parse(arg)?;
    bail!(
        "mqtt://{}:{}/{}: the mqtt output is not built yet; use jsonl: or webhook: for now",
        spec.host,
        spec.port,
        spec.prefix
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_a_port() {
        let s = parse("//broker.lan/home/cam1/").unwrap();
        assert_eq!(
            s,
            MqttSpec {
                host: "broker.lan".into(),
                port: 1883,
                prefix: "home/cam1".into()
            }
        );
        assert_eq!(parse("//10.0.0.2:8883/ign").unwrap().port, 8883);
        assert_eq!(parse("//[::1]/ign").unwrap().host, "[::1]");
        assert_eq!(parse("//[::1]:1884/ign").unwrap().port, 1884);
        for bad in [
            "broker/x",
            "//broker",
            "//:1883/x",
            "//b:0/x",
            "//b:x/y",
            "//b/a/#",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn opening_says_it_is_not_built_yet() {
        let e = open_spec("//broker/ign", &OutputOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not built yet"), "{e}");
    }
}
