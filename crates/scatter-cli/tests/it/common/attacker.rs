//! An account driven by hand-made API requests, for the hostile tests: what an attacker
//! with a stock invite can send, signed with its own device key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ed25519_dalek::SigningKey;
use scatter_core::{DeviceId, HostId, ShardId, UserId};
use scatter_proto::api::{AbandonRequest, CreateSessionRequest, PlacedShard, RegisterRequest, RegisterResponse};
use scatter_proto::auth::{Credential, Request};

use super::{fingerprint, Env};

/// Unix time now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An account driven by hand-made API requests signed with its own device key: what an
/// attacker with a stock invite can send.
pub struct Attacker {
    pub user: UserId,
    pub device: DeviceId,
    key: SigningKey,
    http: reqwest::Client,
    base: String,
    grid: [u8; 32],
}

impl Attacker {
    /// Invites an account with `args` (`admin user add NAME ...`) and registers it.
    pub async fn invite(env: &Env, args: &[&str]) -> Self {
        let mut all = vec!["admin", "user", "add"];
        all.extend_from_slice(args);
        let token = env.ok(&all).trim().to_owned();
        let fp = fingerprint(env);
        let http = scatter_net::http_client(Some(fp), scatter_net::Peer::Coordinator)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let base = env.grid.url().to_owned();
        // A delegate brings its owner's public key (a public key is no secret); anyone else
        // one of its own.
        let owner = args.iter().position(|a| *a == "--of").and_then(|i| args.get(i + 1));
        let public_key = match owner.and_then(|o| o.trim_start_matches('u').parse::<i64>().ok()) {
            Some(id) => env
                .catalog_db()
                .query_row("SELECT public_key FROM users WHERE id = ?1", [id], |r| r.get(0))
                .expect("the owner's public key"),
            None => "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq".into(),
        };
        let reg = RegisterRequest {
            token,
            public_key,
            device_key: hex::encode(key.verifying_key().to_bytes()),
            device_name: "attacker".into(),
            write_only: false,
        };
        let resp = http.post(format!("{base}/v1/users/register")).json(&reg).send().await.expect("register");
        assert!(resp.status().is_success(), "register: {}", resp.text().await.unwrap_or_default());
        let reg: RegisterResponse = resp.json().await.expect("register reply");
        Self { user: reg.user_id, device: reg.device_id, key, http, base, grid: fp.0 }
    }

    /// The device of the profile in `dir`, driven by hand: what whoever takes that machine
    /// can send without the passphrase.
    pub fn from_profile(env: &Env, dir: &std::path::Path) -> Self {
        let profile = scatter_client::profile::Profile::load(dir).expect("profile");
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&profile.device_key, &mut seed).expect("device key");
        let fp = fingerprint(env);
        let http = scatter_net::http_client(Some(fp), scatter_net::Peer::Coordinator)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            user: profile.user_id,
            device: profile.device(),
            key: SigningKey::from_bytes(&seed),
            http,
            base: env.grid.url().to_owned(),
            grid: fp.0,
        }
    }

    /// Sends a request with a credential made for it (as a stock client would); returns the
    /// status and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default();
        let auth = self.credential(&method, path, &bytes);
        self.send(method, path, &auth, bytes).await
    }

    /// The `Authorization` header a stock client would send with this request.
    pub fn credential(&self, method: &reqwest::Method, path: &str, body: &[u8]) -> String {
        let target = Request { method: method.as_str(), target: path };
        let cred = Credential::new(self.device, now() + 60, body).sign(&self.key, &self.grid, target).expect("sign");
        format!("Scatter {cred}")
    }

    /// Sends a request with the `Authorization` header `auth` (made for it, or captured);
    /// returns the status and the JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &str,
        bytes: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("authorization", auth);
        if !bytes.is_empty() {
            req = req.header("content-type", "application/json").body(bytes);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Sends a signed GET of `path` and hands back the answer once its headers are in, its
    /// body unread: what a peer that asks and does not read holds.
    pub async fn ask(&self, path: &str) -> reqwest::Response {
        self.try_ask(path).await.expect("request")
    }

    /// [`Attacker::ask`], with the client's error (a timeout, say) handed back.
    pub async fn try_ask(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        let auth = self.credential(&reqwest::Method::GET, path, b"");
        self.http.get(format!("{}{path}", self.base)).header("authorization", auth).send().await
    }

    /// Sends a body declared `declared` bytes long to `path`, under a credential (signed for
    /// an empty body: the coordinator compares the body only once it has it), 8 KiB every
    /// 100 ms, above the coordinator's minimum rate, until `stop` is set: it holds the room
    /// bodies in flight share for as long as that.
    pub fn trickle(
        &self,
        path: &str,
        declared: u64,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let target = Request { method: "POST", target: path };
        let cred = Credential::new(self.device, now() + 60, b"").sign(&self.key, &self.grid, target).expect("sign");
        let slow = futures::stream::unfold(stop, |stop| async move {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok::<_, std::io::Error>(vec![b' '; 8 << 10]), stop))
        });
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(600))
            .header("authorization", format!("Scatter {cred}"))
            .header("content-type", "application/json")
            .header("content-length", declared.to_string())
            .body(reqwest::Body::wrap_stream(slow));
        tokio::spawn(async move {
            let _ = req.send().await;
        })
    }

    /// A signed POST of `body` as JSON.
    pub async fn post<T: serde::Serialize>(&self, path: &str, body: &T) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(serde_json::to_value(body).expect("json"))).await
    }

    /// Gives back placements (`/v1/packs/abandon`) of these (host, shard) pairs.
    pub async fn give_back(&self, pairs: &[(HostId, ShardId)]) -> (u16, serde_json::Value) {
        let shards = pairs.iter().map(|&(host, shard)| PlacedShard { host, shard }).collect();
        self.post("/v1/packs/abandon", &AbandonRequest { shards }).await
    }

    /// Opens a write session (with a key nobody can unwrap).
    pub async fn session(&self) -> u64 {
        self.session_wrapping(b"not a wrapped key").await
    }

    /// Opens a write session whose data key is `wrapped` (as a delegate holding its owner's
    /// public key wraps one).
    pub async fn session_wrapping(&self, wrapped: &[u8]) -> u64 {
        let b64 = base64::engine::general_purpose::STANDARD.encode(wrapped);
        let (status, body) = self.post("/v1/sessions", &CreateSessionRequest { wrapped_key: b64 }).await;
        assert_eq!(status, 200, "session: {body}");
        body["session"].as_u64().expect("session id")
    }
}
