//! Scatter's transport layer: the grid's certificate authority ([`tls::Authority`]), TLS
//! configurations that trust only that CA ([`tls::client_config`]), HTTP clients built on them
//! ([`http_client`]) and the server loop coordinator and hosts share ([`serve::serve`]).

pub mod serve;
pub mod tls;

pub use tls::{write_private, Fingerprint};

/// An HTTP client builder that trusts only the grid CA with `fingerprint`, or — `None`, for a
/// grid run with `--insecure` — speaks plain HTTP and trusts no certificate at all.
pub fn http_client(fingerprint: Option<Fingerprint>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().tls_built_in_root_certs(false).pool_idle_timeout(std::time::Duration::from_secs(60));
    match fingerprint {
        Some(fp) => builder.use_preconfigured_tls(tls::client_config(fp)).https_only(true),
        None => builder,
    }
}

/// The scheme a grid URL must use: `https` unless the grid runs with `--insecure`.
pub fn scheme(secure: bool) -> &'static str {
    if secure {
        "https"
    } else {
        "http"
    }
}
