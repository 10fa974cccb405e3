//! A small blocking HTTP/1.1 client for the `publish` and `tail` subcommands: plain TCP to a
//! hookcast on this machine or behind a tunnel's local end. Not used by the daemon.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response's status, header fields (names lower-cased), and the stream after the head.
pub type Answer = (u16, Vec<(String, String)>, BufReader<TcpStream>);

/// Where to reach a hookcast: host, port and path prefix from `http://host:port[/prefix]`.
#[derive(Debug, Clone)]
pub struct Target {
    host: String,
    port: u16,
    prefix: String,
}

impl Target {
    /// Parses an `http://` URL.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs (hookcast speaks plain HTTP; TLS ends at the tunnel)"))?;
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse().map_err(|_| format!("{url}: bad port"))?)
            }
            _ => (authority.to_string(), 80),
        };
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(Target { host, port, prefix })
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let s = TcpStream::connect((host, self.port))?;
        s.set_nodelay(true)?;
        Ok(s)
    }

    /// Sends one request and returns the open stream positioned after the response head, with
    /// the status and header fields (names lower-cased).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> io::Result<Answer> {
        let mut s = self.connect()?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
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
        assert!(Target::parse("https://x").is_err());
    }
}
