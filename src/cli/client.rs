//! A small blocking HTTP/1.1 client for the client commands (`publish`, `tail`, `send`, `runs`,
//! `deliveries`): plain TCP to a hookcast on this machine, or TLS (rustls, the system's CA
//! store) to one behind its tunnel or a proxy. Not used by the daemon.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A connection the client reads and writes: plain TCP or TLS over it.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A response's status, header fields (names lower-cased), and the stream after the head.
pub type Answer = (u16, Vec<(String, String)>, BufReader<Box<dyn Stream>>);

/// Where to reach a hookcast: scheme, host, port and path prefix from
/// `http[s]://host:port[/prefix]`.
#[derive(Debug, Clone)]
pub struct Target {
    tls: bool,
    host: String,
    port: u16,
    prefix: String,
}

impl Target {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(format!("{url}: not an http:// or https:// URL")),
        };
        if tls && !cfg!(feature = "tls") {
            return Err(format!("{url}: this hookcast was built without the tls feature (cargo build --features tls)"));
        }
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse().map_err(|_| format!("{url}: bad port"))?)
            }
            _ => (authority.to_string(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(Target { tls, host, port, prefix })
    }

    fn connect(&self) -> io::Result<Box<dyn Stream>> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let s = TcpStream::connect((host, self.port))?;
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        if !self.tls {
            return Ok(Box::new(s));
        }
        #[cfg(feature = "tls")]
        return tls::connect(host, s);
        #[cfg(not(feature = "tls"))]
        unreachable!("Target::parse refuses https:// without the tls feature")
    }

    /// Sends one request and returns the open stream positioned after the response head, with
    /// the status and header fields (names lower-cased).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Answer> {
        let mut s = self.connect()?;
        let mut req = format!("{method} {}{path} HTTP/1.1\r\nHost: {}:{}\r\n", self.prefix, self.host, self.port);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("not an HTTP response: {line:?}")))?;
        let mut fields = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        Ok((status, fields, r))
    }
}

/// TLS for [`Target::connect`]: rustls with the ring provider, trusting the system's CA store
/// (`/etc/ssl/certs`, or `$SSL_CERT_FILE` / `$SSL_CERT_DIR`), loaded once per process.
#[cfg(feature = "tls")]
mod tls {
    use super::Stream;
    use std::io;
    use std::net::TcpStream;
    use std::sync::{Arc, OnceLock};

    fn config() -> io::Result<Arc<rustls::ClientConfig>> {
        static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
        let made = CONFIG.get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map_or_else(|| "none found".to_string(), ToString::to_string);
                return Err(format!("no CA certificates to check the server with ({why}): install ca-certificates"));
            }
            // Deprecated only for lacking post-quantum key exchange, which aws-lc-rs has at the price
            // of cmake to build and about a megabyte of binary; X25519 suits a client talking to
            // its own daemon.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(cfg))
        });
        made.clone().map_err(io::Error::other)
    }

    /// Wraps `tcp` in a TLS session with `host`, checked against the system's CAs; the
    /// handshake happens with the first write.
    pub(super) fn connect(host: &str, tcp: TcpStream) -> io::Result<Box<dyn Stream>> {
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let conn = rustls::ClientConnection::new(config()?, name).map_err(io::Error::other)?;
        Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
    }
}

/// Reads a whole response body framed by Content-Length (or to EOF).
pub fn read_body(fields: &[(String, String)], r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match fields.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<u64>().ok()) {
        Some(n) => {
            r.take(n).read_to_end(&mut body)?;
        }
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.prefix.as_str()), ("127.0.0.1", 9000, ""));
        let t = Target::parse("http://[::1]:81/hc/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.prefix.as_str()), ("[::1]", 81, "/hc"));
        assert_eq!(Target::parse("http://localhost").unwrap().port, 80);
        match Target::parse("https://hooks.example.org/hc") {
            Ok(t) => assert_eq!((t.tls, t.port, t.prefix.as_str()), (true, 443, "/hc")),
            Err(e) => assert!(!cfg!(feature = "tls") && e.contains("without the tls feature"), "{e}"),
        }
        assert!(Target::parse("ftp://x").is_err());
        assert!(Target::parse("https://:1").is_err());
    }
}
