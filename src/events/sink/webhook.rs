//! `webhook:http://HOST[:PORT]/PATH`: each event phase POSTed to a URL (Home Assistant's
//! webhook trigger, Node-RED's `http in`, any small server).
//!
//! - Without a snapshot (an event's end, or `--events-snapshot none`): `Content-Type:
//!   application/json`, the [`Event`] as the body.
//! - With one (an event's start): `multipart/form-data` with two fields: `event` (the same
//!   JSON, `application/json`) and `snapshot` (the picture, `image/jpeg` or `image/png`, its
//!   file name that of the snapshot).
//!
//! Any 2xx answer is a delivery; anything else, a refused connection or no answer within the
//! timeout (`--events-timeout`, 5 s by default) is an error, which the runner retries with
//! backoff. `http://` only: for `https://`, put a local reverse proxy in between. One
//! connection per request (`Connection: close`), through hyper's client on a one-thread
//! tokio runtime that the output's thread owns.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode, Uri};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{EventSink, OutputOptions};
use crate::events::event::{Event, Snapshot};

/// POSTs events to one URL.
pub struct Webhook {
    uri: Uri,
    /// `host:port`, to connect to and for `Host`.
    authority: String,
    timeout: Duration,
    rt: tokio::runtime::Runtime,
}

impl Webhook {
    /// A webhook at `url` (`http://...`), each request answered within `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Webhook> {
        let uri: Uri = url
            .parse()
            .map_err(|e| anyhow!("webhook:{url}: not a URL ({e}); e.g. webhook:http://192.168.1.10:8123/api/webhook/ign"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!("webhook:{url}: https is not built in; use http:// (through a local reverse proxy for TLS)"),
            _ => bail!("webhook:{url}: give an http:// URL, e.g. webhook:http://127.0.0.1:1880/ign"),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow!("webhook:{url}: no host"))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("webhook: no runtime")?;
        Ok(Webhook {
            uri,
            authority,
            timeout,
            rt,
        })
    }

    /// The request for `ev` (and its snapshot).
    fn request(&self, ev: &Event, snapshot: Option<&Snapshot>) -> Result<Request<Full<Bytes>>> {
        let json = serde_json::to_vec(ev)?;
        let (content_type, body) = match snapshot {
            None => ("application/json".to_string(), json),
            Some(s) => multipart(&json, s),
        };
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::CONNECTION, "close")
            .header(
                hyper::header::USER_AGENT,
                concat!("ign-edge/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))?)
    }
}

/// The `multipart/form-data` body of `json` and snapshot `s`: its content type and bytes.
fn multipart(json: &[u8], s: &Snapshot) -> (String, Vec<u8>) {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let boundary = format!("ign-edge-{nanos:x}");
    let mut body = Vec::with_capacity(json.len() + s.bytes.len() + 512);
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"event\"\r\nContent-Type: application/json\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(json);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"snapshot\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            s.file_name, s.mime
        )
        .as_bytes(),
    );
    body.extend_from_slice(&s.bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// POST `req` to `authority` on one new connection: the answer's status.
async fn post(authority: &str, req: Request<Full<Bytes>>) -> Result<StatusCode> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let conn = tokio::spawn(conn);
    let status = sender.send_request(req).await.map(|r| r.status());
    conn.abort();
    Ok(status?)
}

impl EventSink for Webhook {
    fn name(&self) -> String {
        // the query may hold a secret (a token): not in logs and metrics
        format!("webhook:http://{}{}", self.authority, self.uri.path())
    }

    fn deliver(&mut self, ev: &Event, snapshot: Option<&Snapshot>) -> Result<()> {
        let req = self.request(ev, snapshot)?;
        let status = self
            .rt
            .block_on(async {
                tokio::time::timeout(self.timeout, post(&self.authority, req)).await
            })
            .map_err(|_| anyhow!("no answer within {:?}", self.timeout))?
            .with_context(|| format!("POST {}", self.name()))?;
        if !status.is_success() {
            bail!("POST {}: HTTP {status}", self.name());
        }
        Ok(())
    }
}

/// `webhook:<http URL>` (`arg` is everything after `webhook:`, the URL's colons included).
pub fn open_spec(arg: &str, opts: &OutputOptions) -> Result<Box<dyn EventSink>> {
    Ok(Box::new(Webhook::new(arg, opts.timeout)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_are_taken() {
        let t = Duration::from_secs(1);
        let ok = Webhook::new("http://10.0.0.2:1880/hook?token=s3cret", t).unwrap();
        assert_eq!(ok.authority, "10.0.0.2:1880");
        assert_eq!(
            ok.name(),
            "webhook:http://10.0.0.2:1880/hook",
            "no query in the name"
        );
        assert_eq!(Webhook::new("http://h/x", t).unwrap().authority, "h:80");
        for bad in ["https://h/x", "ftp://h/x", "h/x", "", "http:///x"] {
            assert!(Webhook::new(bad, t).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_snapshot_goes_as_a_second_form_field() {
        let s = Snapshot {
            file_name: "evt-1-1.jpg".into(),
            mime: "image/jpeg",
            bytes: vec![0xff, 0xd8, 0, 1],
        };
        let (ct, body) = multipart(b"{\"id\":\"evt-1-1\"}", &s);
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains(
            "name=\"event\"\r\nContent-Type: application/json\r\n\r\n{\"id\":\"evt-1-1\"}\r\n"
        ));
        assert!(text.contains(
            "name=\"snapshot\"; filename=\"evt-1-1.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        ));
        assert!(body.ends_with(format!("\u{0}\u{1}\r\n--{boundary}--\r\n").as_bytes()));
    }
}
