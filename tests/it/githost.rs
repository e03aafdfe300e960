//! A git host on `127.0.0.1:0` for the git source's tests: git's own smart
//! HTTP server, `git http-backend`, run as CGI for each request (as a web
//! server runs it in front of a real git host), behind axum; optionally
//! over TLS with a certificate from a test CA, and asking for HTTP basic
//! credentials, as a private repository's host does.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use tokio_rustls::rustls;

/// A running host.
pub struct GitHost {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub url: String,
    /// Requests answered by git.
    pub served: Arc<AtomicUsize>,
    /// Requests refused for want of the credentials.
    pub refused: Arc<AtomicUsize>,
    /// With TLS: the test CA's certificate (PEM), for `SSL_CERT_FILE`.
    pub ca_pem: Option<String>,
}

/// Serves the repositories under `root` (`URL/NAME.git` is `root/NAME.git`).
pub fn serve(root: &Path, tls: bool, credentials: Option<(&str, &str)>) -> GitHost {
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let expected = credentials.map(|(user, password)| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    });
    let root = root.to_path_buf();
    let (served_count, refused_count) = (Arc::clone(&served), Arc::clone(&refused));
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let root = root.clone();
        let expected = expected.clone();
        let (served, refused) = (Arc::clone(&served_count), Arc::clone(&refused_count));
        async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            if let Some(expected) = expected
                && header("authorization") != expected
            {
                refused.fetch_add(1, Ordering::SeqCst);
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header("WWW-Authenticate", "Basic realm=\"git\"")
                    .body(Body::empty())
                    .unwrap();
            }
            served.fetch_add(1, Ordering::SeqCst);
            http_backend(&root, &method, &uri, &header, &body)
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let (acceptor, ca_pem) = if tls {
        let (config, ca_pem) = tls_config();
        (
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            Some(ca_pem),
        )
    } else {
        (None, None)
    };
    let scheme = if tls { "https" } else { "http" };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let tcp = tokio::net::TcpListener::from_std(listener).unwrap();
                match acceptor {
                    Some(acceptor) => axum::serve(TlsListener { tcp, acceptor }, app).await,
                    None => axum::serve(tcp, app).await,
                }
                .unwrap();
            });
    });
    GitHost {
        url: format!("{scheme}://{address}"),
        served,
        refused,
        ca_pem,
    }
}

/// One request through `git http-backend` (CGI: the request in environment
/// variables and on standard input, the response's headers, a blank line
/// and its body on standard output).
fn http_backend(
    root: &Path,
    method: &Method,
    uri: &Uri,
    header: &dyn Fn(&str) -> String,
    body: &[u8],
) -> Response<Body> {
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git http-backend runs");
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stdout = out.stdout;
    let (head_end, body_start) = stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((stdout.len(), stdout.len()));
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(&stdout[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("status") {
            let code = value.trim().split(' ').next().unwrap_or("200");
            response = response.status(code.parse::<u16>().unwrap_or(500));
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response
        .body(Body::from(stdout[body_start..].to_vec()))
        .unwrap()
}

/// A server configuration with a certificate for 127.0.0.1 and localhost,
/// issued by a new test CA; and that CA's certificate.
fn tls_config() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stevedore test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let certificate = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![certificate.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (config, ca.pem())
}

/// TLS over a TCP listener, for `axum::serve`. A failed handshake (a
/// client that does not trust the CA) drops that connection only.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, address)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
