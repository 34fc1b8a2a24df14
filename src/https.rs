//! One HTTPS client set-up (rustls with aws-lc-rs, the system's roots) for
//! the calls that are not AWS SDK calls: the CLI's signed requests and the
//! Lambda's JWKS fetches. Plain http is allowed; callers decide where.

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn client() -> Result<HttpsClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("no TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Whether `url` is http(s) to this machine: the only place plain http is accepted.
pub fn is_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_urls() {
        for yes in ["http://127.0.0.1:5155", "http://localhost/x", "https://[::1]:8443/"] {
            assert!(super::is_loopback(yes), "{yes}");
        }
        for no in ["http://127.0.0.1.evil.com/", "http://localhost@evil.com/", "https://example.com", "127.0.0.1"] {
            assert!(!super::is_loopback(no), "{no}");
        }
    }
}
