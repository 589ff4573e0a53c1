//! A small async IMAP client for what OX's Dovecot push needs: LOGIN, CAPABILITY, GETMETADATA,
//! SETMETADATA, LOGOUT, over plain TCP, STARTTLS or implicit TLS (rustls, webpki roots plus
//! `mock.imap.ca_file`). Every conversation is bounded by the configured timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{ImapSettings, ImapTls};

/// The METADATA entry Dovecot's `user_from_metadata` reads.
pub const METADATA_KEY: &str = "/private/vendor/vendor.dovecot/http-notify";

/// Why an IMAP conversation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to IMAP {0}: {1}")]
    Connect(String, String),
    #[error("TLS towards IMAP failed: {0}")]
    Tls(String),
    #[error("IMAP authentication failed for {login}: {reason}")]
    Auth { login: String, reason: String },
    #[error("No \"METADATA\" capability supported")]
    NoMetadata,
    #[error("{0} command failed: {1}")]
    Command(&'static str, String),
    #[error("IMAP protocol error: {0}")]
    Protocol(String),
    #[error("IMAP I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("IMAP server did not answer within {0} ms")]
    Timeout(u64),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One logged-out or logged-in connection.
pub struct Imap {
    io: BufReader<Box<dyn Stream>>,
    tag: u32,
}

/// A tagged completion: status word and the rest of the line, plus the untagged lines before it.
struct Reply {
    ok: bool,
    text: String,
    untagged: Vec<String>,
}

fn tls_config(s: &ImapSettings) -> Result<Arc<rustls::ClientConfig>, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &s.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| ImapError::Tls(format!("{}: {e}", ca.display())))?;
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            let c = c.map_err(|e| ImapError::Tls(format!("{}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| ImapError::Tls(format!("{}: {e}", ca.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

async fn wrap_tls(s: &ImapSettings, tcp: TcpStream) -> Result<Box<dyn Stream>, ImapError> {
    let name = rustls::pki_types::ServerName::try_from(s.host.clone())
        .map_err(|e| ImapError::Tls(format!("{}: {e}", s.host)))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config(s)?)
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Tls(e.to_string()))?;
    Ok(Box::new(tls))
}

/// IMAP quoted string, or `None` when the value needs a literal.
fn quoted(v: &str) -> Option<String> {
    if v.bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return None;
    }
    Some(format!(
        "\"{}\"",
        v.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

impl Imap {
    /// Connects (and secures) a connection; the greeting must be `* OK`.
    pub async fn connect(s: &ImapSettings) -> Result<Imap, ImapError> {
        let addr = format!("{}:{}", s.host, s.port);
        let mut tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| ImapError::Connect(addr.clone(), e.to_string()))?;
        let greet = |g: String| {
            if g.starts_with("* OK") || g.starts_with("* PREAUTH") {
                Ok(())
            } else {
                Err(ImapError::Protocol(format!("unexpected greeting {g:?}")))
            }
        };
        let stream: Box<dyn Stream> = match s.tls {
            ImapTls::Tls => wrap_tls(s, tcp).await?,
            ImapTls::None => Box::new(tcp),
            ImapTls::StartTls => {
                // Unbuffered until the handshake, so no byte of the TLS stream is swallowed.
                greet(unbuffered_line(&mut tcp).await?)?;
                tcp.write_all(b"m0 STARTTLS\r\n").await?;
                loop {
                    let l = unbuffered_line(&mut tcp).await?;
                    if let Some(rest) = l.strip_prefix("m0 ") {
                        if !rest.starts_with("OK") {
                            return Err(ImapError::Tls(format!("STARTTLS refused: {rest}")));
                        }
                        break;
                    }
                }
                let c = Imap {
                    io: BufReader::new(wrap_tls(s, tcp).await?),
                    tag: 0,
                };
                return Ok(c);
            }
        };
        let mut c = Imap {
            io: BufReader::new(stream),
            tag: 0,
        };
        greet(c.line().await?)?;
        Ok(c)
    }

    /// Connects and logs in, all within the configured timeout.
    pub async fn open(s: &ImapSettings, login: &str, password: &str) -> Result<Imap, ImapError> {
        let t = s.timeout_ms;
        tokio::time::timeout(Duration::from_millis(t), async {
            let mut c = Imap::connect(s).await?;
            c.login(login, password).await?;
            Ok(c)
        })
        .await
        .map_err(|_| ImapError::Timeout(t))?
    }

    async fn line(&mut self) -> Result<String, ImapError> {
        let mut buf = Vec::new();
        let n = self.io.read_until(b'\n', &mut buf).await?;
        if n == 0 {
            return Err(ImapError::Protocol(
                "connection closed by the server".into(),
            ));
        }
        if buf.len() > 1 << 20 {
            return Err(ImapError::Protocol("line too long".into()));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Reads one response line, inlining literals as quoted strings.
    async fn response_line(&mut self) -> Result<String, ImapError> {
        let mut out = String::new();
        loop {
            let l = self.line().await?;
            let lit = l
                .strip_suffix('}')
                .and_then(|h| h.rfind('{').map(|i| (i, &h[i + 1..])))
                .and_then(|(i, n)| {
                    n.trim_end_matches('+')
                        .parse::<usize>()
                        .ok()
                        .map(|n| (i, n))
                });
            match lit {
                Some((i, n)) if n <= 1 << 20 => {
                    let mut data = vec![0u8; n];
                    self.io.read_exact(&mut data).await?;
                    out.push_str(&l[..i]);
                    let v = String::from_utf8_lossy(&data);
                    out.push_str(&quoted(&v).unwrap_or_else(|| format!("\"{v}\"")));
                }
                _ => {
                    out.push_str(&l);
                    return Ok(out);
                }
            }
        }
    }

    /// Sends a command whose arguments are strings (quoted, or as literals when needed).
    async fn command(&mut self, verb: &str, args: &[&str]) -> Result<Reply, ImapError> {
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        let mut head = format!("{tag} {verb}");
        for a in args {
            head.push(' ');
            match quoted(a) {
                Some(q) => head.push_str(&q),
                None => {
                    head.push_str(&format!("{{{}}}\r\n", a.len()));
                    self.io.get_mut().write_all(head.as_bytes()).await?;
                    self.io.get_mut().flush().await?;
                    let cont = self.line().await?;
                    if !cont.starts_with('+') {
                        return Ok(Reply {
                            ok: false,
                            text: cont,
                            untagged: Vec::new(),
                        });
                    }
                    head = a.to_string();
                }
            }
        }
        self.raw(&tag, head).await
    }

    async fn raw(&mut self, tag: &str, mut line: String) -> Result<Reply, ImapError> {
        line.push_str("\r\n");
        self.io.get_mut().write_all(line.as_bytes()).await?;
        self.io.get_mut().flush().await?;
        let mut untagged = Vec::new();
        for _ in 0..10_000 {
            let l = self.response_line().await?;
            if let Some(rest) = l.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                let (status, text) = rest.split_once(' ').unwrap_or((rest, ""));
                return Ok(Reply {
                    ok: status.eq_ignore_ascii_case("OK"),
                    text: format!("{status} {text}"),
                    untagged,
                });
            }
            untagged.push(l);
        }
        Err(ImapError::Protocol("too many untagged responses".into()))
    }

    /// `LOGIN`; a `NO` is an authentication failure.
    pub async fn login(&mut self, login: &str, password: &str) -> Result<(), ImapError> {
        let r = self.command("LOGIN", &[login, password]).await?;
        if r.ok {
            Ok(())
        } else {
            Err(ImapError::Auth {
                login: login.to_string(),
                reason: r.text,
            })
        }
    }

    /// `CAPABILITY`, upper-cased.
    pub async fn capabilities(&mut self) -> Result<Vec<String>, ImapError> {
        let r = self.command("CAPABILITY", &[]).await?;
        if !r.ok {
            return Err(ImapError::Command("CAPABILITY", r.text));
        }
        Ok(r.untagged
            .iter()
            .filter_map(|l| l.strip_prefix("* CAPABILITY "))
            .flat_map(|l| l.split_whitespace())
            .map(|w| w.to_ascii_uppercase())
            .collect())
    }

    /// `GETMETADATA "" (key)`: the server-level value, `None` for NIL or absent.
    pub async fn get_metadata(&mut self, key: &str) -> Result<Option<String>, ImapError> {
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        let r = self
            .raw(&tag, format!("{tag} GETMETADATA \"\" ({key})"))
            .await?;
        if !r.ok {
            return Err(ImapError::Command("GETMETADATA", r.text));
        }
        for l in &r.untagged {
            if let Some(v) = metadata_value(l, key) {
                return Ok(v);
            }
        }
        Ok(None)
    }

    /// `SETMETADATA "" (key "value")`, or `NIL` to remove it.
    pub async fn set_metadata(&mut self, key: &str, value: Option<&str>) -> Result<(), ImapError> {
        self.tag += 1;
        let tag = format!("m{}", self.tag);
        let v = match value {
            None => "NIL".to_string(),
            Some(v) => quoted(v).ok_or_else(|| {
                ImapError::Protocol("METADATA value must be printable ASCII".into())
            })?,
        };
        let r = self
            .raw(&tag, format!("{tag} SETMETADATA \"\" ({key} {v})"))
            .await?;
        if r.ok {
            Ok(())
        } else {
            Err(ImapError::Command("SETMETADATA", r.text))
        }
    }

    /// `LOGOUT`; errors are ignored (the work is done).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.command("LOGOUT", &[])).await;
    }
}

/// One line read byte by byte (only the greeting and the STARTTLS reply go through here).
async fn unbuffered_line(tcp: &mut TcpStream) -> Result<String, ImapError> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while buf.len() < 8192 {
        if tcp.read(&mut b).await? == 0 {
            return Err(ImapError::Protocol(
                "connection closed by the server".into(),
            ));
        }
        if b[0] == b'\n' {
            while buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(String::from_utf8_lossy(&buf).into_owned());
        }
        buf.push(b[0]);
    }
    Err(ImapError::Protocol("line too long".into()))
}

/// Extracts the value of `key` from `* METADATA "" (key value)`.
fn metadata_value(line: &str, key: &str) -> Option<Option<String>> {
    let rest = line.strip_prefix("* METADATA ")?;
    let i = rest.find(key)?;
    let v = rest[i + key.len()..].trim_start();
    if v.starts_with("NIL") {
        return Some(None);
    }
    let inner = v.strip_prefix('"')?;
    let mut out = String::new();
    let mut esc = false;
    for ch in inner.chars() {
        match (esc, ch) {
            (true, c) => {
                out.push(c);
                esc = false;
            }
            (false, '\\') => esc = true,
            (false, '"') => return Some(Some(out)),
            (false, c) => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_quoted_literal_and_nil() {
        let k = METADATA_KEY;
        assert_eq!(
            metadata_value(&format!("* METADATA \"\" ({k} \"user=3@1\")"), k),
            Some(Some("user=3@1".into()))
        );
        assert_eq!(
            metadata_value(&format!("* METADATA \"\" ({k} NIL)"), k),
            Some(None)
        );
        assert_eq!(metadata_value("* OK x", k), None);
        assert_eq!(quoted("a\"b\\"), Some("\"a\\\"b\\\\\"".into()));
        assert_eq!(quoted("pä"), None);
    }
}
