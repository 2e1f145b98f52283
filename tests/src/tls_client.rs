//! A blocking TLS client over one connection (rustls), for tests that must see the
//! handshake itself: client certificates, refused handshakes, the server certificate a
//! connection got, and requests on one kept-alive connection across a certificate swap.

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One TLS connection to the gateway.
#[derive(Debug)]
pub struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

/// A client certificate and its key (PEM files).
pub type ClientCert<'a> = (&'a Path, &'a Path);

/// An answer: status, headers (names lower-cased), body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

impl TlsConn {
    /// Connects to `addr` as `localhost`, trusting only the CA in `ca_pem`, with a client
    /// certificate or none; the handshake completes before this returns (a refused
    /// handshake is an error here).
    pub fn connect(
        addr: SocketAddr,
        ca_pem: &Path,
        client: Option<ClientCert<'_>>,
    ) -> anyhow::Result<TlsConn> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        TlsConn::over(tcp, ca_pem, client)
    }

    /// [`connect`](Self::connect) over a TCP connection already open (and maybe already
    /// used, as by a PROXY protocol header before the handshake).
    pub fn over(
        tcp: TcpStream,
        ca_pem: &Path,
        client: Option<ClientCert<'_>>,
    ) -> anyhow::Result<TlsConn> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca_pem)? {
            roots.add(c?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
            }
            None => builder.with_no_client_auth(),
        };
        let conn = rustls::ClientConnection::new(
            Arc::new(config),
            ServerName::try_from("localhost")?.to_owned(),
        )?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // TLS 1.3 sends the server's verdict on the client certificate after the handshake:
        // drive the connection until it is fully established, then one more read attempt
        // surfaces an alert (refused certificate) as an error.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .context("TLS handshake")?;
        }
        Ok(TlsConn { stream })
    }

    /// The server's leaf certificate on this connection.
    pub fn server_cert(&self) -> Option<Vec<u8>> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
    }

    /// Sends `GET path` (keep-alive) and reads one answer with a Content-Length body;
    /// returns the status and the headers (names lower-cased) and the body.
    pub fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        self.request("GET", path, &[])
    }

    /// Sends one request with a body and reads one answer.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Answer> {
        self.request_with(method, path, &[], body)
    }

    /// [`request`](Self::request) with extra headers.
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            self.stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.stream.write_all(body)?;
        self.stream.flush()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            anyhow::ensure!(buf.len() < 64 * 1024, "answer head too large");
            let n = self.stream.read(&mut chunk).context("reading the answer")?;
            anyhow::ensure!(n > 0, "connection closed before an answer");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = crate::http::header_in(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        for _ in 0..10_000 {
            if body.len() >= len {
                break;
            }
            let n = self.stream.read(&mut chunk)?;
            anyhow::ensure!(n > 0, "connection closed in the body");
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
        Ok((status, headers, body))
    }
}
