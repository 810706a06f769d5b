//! The S3 gateway (`scatter gateway`) driven by real S3 clients over TLS with the operator's
//! certificate, against a live grid of six hosts: the AWS CLI (v1, from PyPI: a botocore
//! recent enough to send CRC32 checksum trailers), rclone, restic's S3 backend and boto3.
//! Every byte that goes up comes back the same. Plain HTTP is served on loopback only.
//!
//! The clients: `.ci/s3-clients` puts the AWS CLI and boto3 in a venv at
//! `target/s3-clients` (or `SCATTER_S3_CLIENTS` names another venv); rclone and restic are
//! Debian's, on the PATH. `.ci/run` installs all of them. A missing one fails the test with
//! one sentence that says so.
//!
//! Each gateway's stderr goes to `gateway.log` in the test's directory, printed when the
//! test fails.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};

use crate::common;
use common::*;

/// How long one client command may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------
// The clients

struct Clients {
    aws: PathBuf,
    python: PathBuf,
    rclone: PathBuf,
    restic: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The S3 clients, or a panic that names the one missing and how to install it.
fn clients() -> Clients {
    let venv = std::env::var_os("SCATTER_S3_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/s3-clients"));
    let aws = venv.join("bin/aws");
    let python = venv.join("bin/python");
    for (what, p) in [("the AWS CLI", &aws), ("boto3's Python", &python)] {
        assert!(p.is_file(), "{what} is not at {}: run .ci/s3-clients (CI's .ci/run does)", p.display());
    }
    let rclone = on_path("rclone").expect("rclone is not on the PATH: apt-get install rclone (CI's .ci/run does)");
    let restic = on_path("restic").expect("restic is not on the PATH: apt-get install restic (CI's .ci/run does)");
    Clients { aws, python, rclone, restic }
}

/// A command with no S3 settings of the caller's environment (AWS_*, RCLONE_*, RESTIC_*)
/// and no proxy for loopback.
fn clean(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("AWS_") || k.starts_with("RCLONE_") || k.starts_with("RESTIC_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end, bounded by [`TOOL_TIMEOUT`]; its output goes through files in
/// `dir` (a client's debug output would fill a pipe nobody reads).
fn run_tool(mut cmd: Command, dir: &Path, what: &str) -> Output {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_p, err_p) = (dir.join(format!("tool-{n}.out")), dir.join(format!("tool-{n}.err")));
    cmd.stdout(std::fs::File::create(&out_p).expect("stdout file"));
    cmd.stderr(std::fs::File::create(&err_p).expect("stderr file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {TOOL_TIMEOUT:?}: {}",
                tail(&std::fs::read_to_string(&err_p).unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read(&out_p).expect("stdout");
    let stderr = std::fs::read(&err_p).expect("stderr");
    Output { status, stdout, stderr }
}

fn tail(text: &str) -> &str {
    let mut at = text.len().saturating_sub(6000);
    while !text.is_char_boundary(at) {
        at += 1;
    }
    &text[at..]
}

fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout)),
        tail(&String::from_utf8_lossy(&out.stderr))
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must fail.
fn must_fail(out: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} should have failed: {}", tail(&String::from_utf8_lossy(&out.stdout)));
    err
}

// ---------------------------------------------------------------------------------------
// The gateway

/// A port nobody listens on now.
/// How long a running gateway may take to serve a key added or refuse a key removed.
const KEY_CHANGE: Duration = Duration::from_secs(10);

/// Whether `done` holds within `limit`, trying again every 200 ms.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A test CA and the operator's certificate for 127.0.0.1 signed by it: (CA, chain, key).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Test gateway CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let (ca_p, cert_p, key_p) = (dir.join("ca.pem"), dir.join("gateway.crt"), dir.join("gateway.key"));
    std::fs::write(&ca_p, ca_cert.pem()).expect("write the CA");
    std::fs::write(&cert_p, format!("{}{}", cert.pem(), ca_cert.pem())).expect("write the chain");
    std::fs::write(&key_p, key.serialize_pem()).expect("write the key");
    (ca_p, cert_p, key_p)
}

/// A running `scatter gateway`: killed by PID when dropped; its log printed if the test is
/// failing then.
struct Gateway {
    child: Child,
    log: PathBuf,
    port: u16,
    tls: bool,
}

impl Gateway {
    /// Starts `scatter gateway --listen 127.0.0.1:PORT ARGS` with the grid user's profile and
    /// waits (bounded) until it accepts connections.
    fn start(env: &Env, args: &[&str], log_name: &str) -> Gateway {
        Gateway::start_as(env, &env.grid.client_dir(), env.grid.passphrase(), args, log_name)
    }

    /// [`Gateway::start`] with the profile in `config`, opened with `passphrase`.
    fn start_as(env: &Env, config: &Path, passphrase: &str, args: &[&str], log_name: &str) -> Gateway {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = env.path(log_name);
        let mut cmd = Command::new(EXE);
        cmd.arg("gateway")
            .arg("--listen")
            .arg(&listen)
            .args(args)
            .env("SCATTER_CONFIG", config)
            .env("SCATTER_PASSPHRASE", passphrase)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(env.path(&format!("{log_name}.out"))).expect("log"))
            .stderr(std::fs::File::create(&log).expect("log"));
        let child = cmd.spawn().expect("spawn scatter gateway");
        let mut gw = Gateway { child, log, port, tls: !args.contains(&"--plain-http") };
        let addr: SocketAddr = listen.parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Some(status) = gw.child.try_wait().expect("wait") {
                panic!("scatter gateway exited ({status}) before it listened: {}", gw.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "scatter gateway did not listen on {listen} within 30 s: {}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
    }

    fn log_text(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default()).to_owned()
    }

    /// Sends SIGTERM; the exit status, once it stopped (bounded).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "scatter gateway did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- scatter gateway's log ({}) ----\n{}\n---- end of the gateway's log ----",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// S3 credentials of the grid's user.
#[derive(Clone)]
struct Key {
    access: String,
    secret: String,
}

/// `scatter gateway key add [--write-only] --json`.
fn add_key(env: &Env, write_only: bool) -> Key {
    key_of(write_only, |args| env.ok(args))
}

/// `scatter gateway key add [--write-only] --json`, run by `scatter`.
fn key_of(write_only: bool, scatter: impl FnOnce(&[&str]) -> String) -> Key {
    let mut args = vec!["gateway", "key", "add", "--json"];
    if write_only {
        args.push("--write-only");
    }
    let out = scatter(&args);
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("key add --json printed no JSON ({e}): {out}"));
    assert_eq!(v["write_only"], write_only, "{v}");
    let access = v["access_key"].as_str().expect("access_key").to_owned();
    let secret = v["secret_key"].as_str().expect("secret_key").to_owned();
    assert!(access.len() >= 16 && secret.len() >= 30, "credentials too short: {v}");
    Key { access, secret }
}

/// A grid of six hosts, a key, a write-only key and a gateway over TLS with a certificate of
/// a test CA. (The gateway reads its keys when it starts.)
struct Setup {
    // Dropped first: the gateway stops before the grid does.
    gw: Gateway,
    key: Key,
    write_only: Key,
    ca: PathBuf,
    env: Env,
    clients: Clients,
}

async fn setup() -> Setup {
    // Deleted objects' shards stay a while, as a real coordinator's do: a GET under way when
    // its object is deleted reads on (boto3_checks.py).
    let opts = scatter_cli::grid::GridOptions {
        passphrase: "test passphrase".into(),
        release_grace: "60s".into(),
        ..Default::default()
    };
    setup_with(opts).await
}

/// [`setup`] on a grid started with `opts`.
async fn setup_with(opts: scatter_cli::grid::GridOptions) -> Setup {
    let clients = clients();
    let env = grid_with(6, opts).await;
    let key = add_key(&env, false);
    let write_only = add_key(&env, true);
    let (ca, cert, tls_key) = certificate(env.dir.path());
    let gw = Gateway::start(
        &env,
        &["--cert", cert.to_str().expect("utf-8"), "--key", tls_key.to_str().expect("utf-8")],
        "gateway.log",
    );
    Setup { gw, key, write_only, ca, env, clients }
}

// ---------------------------------------------------------------------------------------
// Data

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Every file under `root` (relative path → bytes).
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let (ka, kb): (Vec<_>, Vec<_>) = (ta.keys().collect(), tb.keys().collect());
    assert_eq!(ka, kb, "{} and {} hold different files", a.display(), b.display());
    for (k, v) in &ta {
        assert!(v == &tb[k], "{k} differs between {} and {}", a.display(), b.display());
    }
}

/// A tree of `n` small files of various sizes (a few empty ones, one of 6 MiB), in nested
/// folders, with spaces, non-ASCII letters and `+ % = &` in some names.
fn make_tree(root: &Path, n: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dirs = ["", "a", "a/b", "a/b/c", "docs", "docs/2024", "photos/été", "x y", "deep/1/2/3/4"];
    for i in 0..n {
        let dir = root.join(dirs[i % dirs.len()]);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = match i {
            _ if i % 97 == 3 => 0,
            _ if i % 50 == 7 => rng.gen_range(100_000..400_000),
            _ => rng.gen_range(1..20_000),
        };
        let name = if i % 31 == 0 { format!("file {i} ü.dat") } else { format!("f{i:04}.bin") };
        std::fs::write(dir.join(name), random(len, seed + i as u64)).expect("write");
    }
    std::fs::write(root.join("a/big.bin"), random(6 << 20, seed ^ 0xb16)).expect("write");
    // Names that S3 listings must encode (with encoding-type=url) to come back unchanged.
    std::fs::write(root.join("docs/a+b %41=&.txt"), random(1234, seed ^ 0x2b)).expect("write");
    // Written a minute ago, as a tree synced later is: `aws s3 sync` copies a file again when
    // its mtime is later than the object's Last-Modified, which (in whole seconds, as S3's)
    // can be the very second the file was written in.
    let then = filetime::FileTime::from_system_time(std::time::SystemTime::now() - Duration::from_secs(60));
    for (rel, _) in tree(root) {
        filetime::set_file_mtime(root.join(rel), then).expect("mtime");
    }
}

// ---------------------------------------------------------------------------------------
// The AWS CLI

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.env.path(name)
    }

    /// Another gateway over TLS with the same certificate (after the last one stopped).
    fn restart(&self, log: &str) -> Gateway {
        let (cert, key) = (self.path("gateway.crt"), self.path("gateway.key"));
        Gateway::start(
            &self.env,
            &["--cert", cert.to_str().expect("utf-8 path"), "--key", key.to_str().expect("utf-8 path")],
            log,
        )
    }

    /// `aws --endpoint-url GATEWAY ARGS` signing with `key`.
    fn aws_command(&self, key: &Key, args: &[&str]) -> Command {
        self.aws_at(&self.gw, key, args)
    }

    /// [`Setup::aws_command`] to the gateway `gw` (with the same certificate).
    fn aws_at(&self, gw: &Gateway, key: &Key, args: &[&str]) -> Command {
        let config = self.path("aws-config");
        if !config.exists() {
            std::fs::write(&config, "[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
                .expect("aws config");
        }
        let mut cmd = clean(&self.clients.aws);
        cmd.env("AWS_ACCESS_KEY_ID", &key.access)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path("no-aws-credentials"))
            .env("AWS_MAX_ATTEMPTS", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(gw.tls.then_some(("AWS_CA_BUNDLE", &self.ca)))
            .arg("--endpoint-url")
            .arg(gw.endpoint())
            .args(if gw.tls { vec!["--ca-bundle", self.ca.to_str().expect("utf-8")] } else { vec![] })
            .args(args);
        cmd
    }

    fn aws_with(&self, key: &Key, args: &[&str]) -> Output {
        run_tool(self.aws_command(key, args), self.env.dir.path(), &format!("aws {args:?}"))
    }

    /// `aws ARGS` reading its standard input from `input`.
    fn aws_stdin(&self, args: &[&str], input: &Path) -> Output {
        let mut cmd = self.aws_command(&self.key, args);
        cmd.stdin(std::fs::File::open(input).expect("input"));
        run_tool(cmd, self.env.dir.path(), &format!("aws {args:?} < {}", input.display()))
    }

    fn aws(&self, args: &[&str]) -> Output {
        self.aws_with(&self.key.clone(), args)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_cli_puts_gets_lists_and_removes() {
    let mut s = setup().await;
    let version = must(s.aws(&["--version"]), "aws --version");
    eprintln!("AWS CLI: {}", version.trim());

    must(s.aws(&["s3", "mb", "s3://cli-bucket"]), "aws s3 mb");
    let buckets = must(s.aws(&["s3", "ls"]), "aws s3 ls");
    assert!(buckets.contains("cli-bucket"), "aws s3 ls: {buckets}");

    // Over 8 MiB, the CLI puts it in parts (8 MiB each by default); a small one in one PUT.
    let big = random(13 << 20, 1);
    let small = random(10_000, 2);
    std::fs::write(s.path("big.bin"), &big).expect("write");
    std::fs::write(s.path("small.bin"), &small).expect("write");
    let big_p = s.path("big.bin");
    let small_p = s.path("small.bin");
    must(
        s.aws(&["s3", "cp", big_p.to_str().expect("utf-8 path"), "s3://cli-bucket/dir/big.bin"]),
        "aws s3 cp (multipart)",
    );
    must(s.aws(&["s3", "cp", small_p.to_str().expect("utf-8 path"), "s3://cli-bucket/small.bin"]), "aws s3 cp (small)");

    // ETags: MD5 of the bytes, and for the multipart one the MD5 of the parts' MD5s, "-2".
    let head: serde_json::Value = serde_json::from_str(&must(
        s.aws(&["s3api", "head-object", "--bucket", "cli-bucket", "--key", "dir/big.bin"]),
        "head-object",
    ))
    .expect("JSON");
    let mut md5s = Vec::new();
    for part in big.chunks(8 << 20) {
        md5s.extend_from_slice(&md5(part));
    }
    let want = format!("\"{}-2\"", hex::encode(md5(&md5s)));
    assert_eq!(head["ETag"], want.as_str(), "{head}");
    assert_eq!(head["ContentLength"], big.len(), "{head}");
    let head: serde_json::Value = serde_json::from_str(&must(
        s.aws(&["s3api", "head-object", "--bucket", "cli-bucket", "--key", "small.bin"]),
        "head-object",
    ))
    .expect("JSON");
    assert_eq!(head["ETag"], format!("\"{}\"", hex::encode(md5(&small))).as_str(), "{head}");

    // Down again, bit for bit.
    let out = s.path("big.out");
    must(
        s.aws(&["s3", "cp", "s3://cli-bucket/dir/big.bin", out.to_str().expect("utf-8 path")]),
        "aws s3 cp down (big)",
    );
    assert!(std::fs::read(&out).expect("read") == big, "the big file came back different");
    let out = s.path("small.out");
    must(
        s.aws(&["s3", "cp", "s3://cli-bucket/small.bin", out.to_str().expect("utf-8 path")]),
        "aws s3 cp down (small)",
    );
    assert!(std::fs::read(&out).expect("read") == small, "the small file came back different");

    // put-object streams a file: over TLS this botocore sends the body aws-chunked with a
    // CRC32 checksum in a trailer.
    let debug = s.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "trailer.bin",
        "--body",
        small_p.to_str().expect("utf-8 path"),
        "--debug",
    ]);
    let debug_err = String::from_utf8_lossy(&debug.stderr).into_owned();
    must(debug, "aws s3api put-object --debug");
    let sent =
        debug_err.lines().find(|l| l.contains("Sending http request") && l.contains("trailer.bin")).unwrap_or("");
    assert!(
        sent.contains("x-amz-trailer") && sent.contains("aws-chunked"),
        "the CLI sent no checksum trailer with put-object: {sent}"
    );
    assert!(sent.to_ascii_lowercase().contains("crc32"), "the CLI's trailer is not CRC32: {sent}");
    let out = s.path("trailer.out");
    must(
        s.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "trailer.bin",
            out.to_str().expect("utf-8 path"),
        ]),
        "aws s3api get-object",
    );
    assert!(std::fs::read(&out).expect("read") == small, "the trailer-checksummed object came back different");

    // ls: the folder as a prefix, then everything.
    let ls = must(s.aws(&["s3", "ls", "s3://cli-bucket/"]), "aws s3 ls bucket");
    assert!(
        ls.contains("PRE dir/") && ls.contains("small.bin") && ls.contains("trailer.bin") && !ls.contains("big.bin"),
        "aws s3 ls: {ls}"
    );
    let ls = must(s.aws(&["s3", "ls", "--recursive", "s3://cli-bucket/"]), "aws s3 ls --recursive");
    assert!(
        ls.contains("dir/big.bin") && ls.contains(&format!("{} dir/big.bin", big.len())),
        "aws s3 ls --recursive: {ls}"
    );

    // rm, and it is gone.
    must(s.aws(&["s3", "rm", "s3://cli-bucket/small.bin"]), "aws s3 rm");
    let ls = must(s.aws(&["s3", "ls", "s3://cli-bucket/"]), "aws s3 ls after rm");
    assert!(!ls.contains("small.bin"), "small.bin still listed after rm: {ls}");
    let err = must_fail(
        s.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "small.bin",
            out.to_str().expect("utf-8 path"),
        ]),
        "get-object of a removed key",
    );
    assert!(err.contains("NoSuchKey"), "{err}");
    let err = must_fail(
        s.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "never-there",
            out.to_str().expect("utf-8 path"),
        ]),
        "get-object of a missing key",
    );
    assert!(err.contains("NoSuchKey"), "{err}");
    let err = must_fail(s.aws(&["s3", "ls", "s3://no-such-bucket/"]), "ls of a missing bucket");
    assert!(err.contains("NoSuchBucket"), "{err}");

    // A wrong secret, an unknown access key.
    // Its last character changed (to 'x', or to 'y' when it already was 'x': a fixed 'x'
    // left the secret right one time in sixty-four).
    let (head, last) = s.key.secret.split_at(s.key.secret.len() - 1);
    let wrong = Key { access: s.key.access.clone(), secret: format!("{head}{}", if last == "x" { 'y' } else { 'x' }) };
    assert_ne!(wrong.secret, s.key.secret);
    let err = must_fail(s.aws_with(&wrong, &["s3", "ls", "s3://cli-bucket/"]), "ls with a wrong secret");
    assert!(err.contains("SignatureDoesNotMatch") && err.contains("secret key"), "{err}");
    assert!(!err.contains("Unknown"), "a refusal without a sentence: {err}");
    let err = must_fail(
        s.aws_with(&wrong, &["s3", "cp", small_p.to_str().expect("utf-8 path"), "s3://cli-bucket/forged"]),
        "cp with a wrong secret",
    );
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    let unknown = Key { access: "AKIAIOSFODNN7EXAMPLE".into(), secret: s.key.secret.clone() };
    let err = must_fail(s.aws_with(&unknown, &["s3", "ls", "s3://cli-bucket/"]), "ls with an unknown access key");
    assert!(err.contains("InvalidAccessKeyId") && err.contains("gateway key ls"), "{err}");
    let err = must_fail(s.aws(&["s3", "mb", "s3://Bad_Name"]), "mb with an invalid name");
    assert!(err.contains("InvalidBucketName") && !err.contains("Unknown"), "{err}");
    // Refusals are logged at debug level only: anyone can send them.
    assert!(!s.gw.log_text().contains("SignatureDoesNotMatch"), "{}", s.gw.log_text());

    // Keys: ls shows access keys, never secrets. A running gateway serves a key added and
    // refuses a key removed within seconds, without a restart.
    let other = add_key(&s.env, false);
    let ls = s.env.ok(&["gateway", "key", "ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(ls.trim()).expect("key ls --json prints JSON");
    let entry = |access: &str| listed.as_array().expect("a list").iter().find(|k| k["access_key"] == access).cloned();
    assert_eq!(entry(&s.key.access).expect("the first key listed")["write_only"], false, "{ls}");
    assert_eq!(entry(&s.write_only.access).expect("the write-only key listed")["write_only"], true, "{ls}");
    assert!(entry(&other.access).is_some(), "key ls: {ls}");
    assert_eq!(entry(&other.access).expect("listed")["bound"], true, "a new key is bound to its profile: {ls}");
    for k in [&s.key, &s.write_only, &other] {
        assert!(!ls.contains(&k.secret), "key ls --json shows a secret: {ls}");
    }
    let ls_text = s.env.ok(&["gateway", "key", "ls"]);
    assert!(ls_text.contains(&other.access) && !ls_text.contains(&other.secret), "key ls: {ls_text}");
    let served = eventually(KEY_CHANGE, || s.aws_with(&other, &["s3", "ls", "s3://cli-bucket/"]).status.success());
    assert!(served, "a key added was not served by the running gateway within {KEY_CHANGE:?}");
    s.env.ok(&["gateway", "key", "rm", &other.access]);
    let ls = s.env.ok(&["gateway", "key", "ls", "--json"]);
    assert!(!ls.contains(&other.access) && ls.contains(&s.key.access), "key ls after rm: {ls}");
    let refused = eventually(KEY_CHANGE, || !s.aws_with(&other, &["s3", "ls", "s3://cli-bucket/"]).status.success());
    assert!(refused, "a removed key was still served by the running gateway after {KEY_CHANGE:?}");
    let err = must_fail(s.aws_with(&other, &["s3", "ls", "s3://cli-bucket/"]), "ls with a removed key");
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
    must(s.aws(&["s3", "ls", "s3://cli-bucket/"]), "ls with a key that was kept");
    // A key store damaged while the gateway runs serves no key, not the keys it had.
    let store = s.env.grid.client_dir().join("gateway-keys");
    let sealed = std::fs::read(&store).expect("read the key store");
    let damaged = s.path("gateway-keys.damaged");
    std::fs::write(&damaged, b"not a sealed key store").expect("write");
    std::fs::rename(&damaged, &store).expect("replace the key store");
    let refused = eventually(KEY_CHANGE, || !s.aws(&["s3", "ls", "s3://cli-bucket/"]).status.success());
    assert!(refused, "a damaged key store's keys were still served after {KEY_CHANGE:?}");
    assert!(s.gw.log_text().contains("does not open"), "no warning in the log: {}", s.gw.log_text());
    std::fs::write(&damaged, &sealed).expect("write");
    std::fs::rename(&damaged, &store).expect("put the key store back");
    let served = eventually(KEY_CHANGE, || s.aws(&["s3", "ls", "s3://cli-bucket/"]).status.success());
    assert!(served, "the keys were not served again once the key store was mended");
    // A restart refuses the removed key too, and the data outlives the gateway.
    let status = s.gw.terminate();
    eprintln!("the gateway stopped on SIGTERM: {status}");
    s.gw = s.restart("gateway-2.log");
    let err = must_fail(s.aws_with(&other, &["s3", "ls", "s3://cli-bucket/"]), "ls with a removed key after a restart");
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
    let out = s.path("big.again");
    must(
        s.aws(&["s3", "cp", "s3://cli-bucket/dir/big.bin", out.to_str().expect("utf-8 path")]),
        "aws s3 cp down after a restart",
    );
    assert!(std::fs::read(&out).expect("read") == big, "the big file came back different after a restart");

    // A stream of unknown length from standard input goes up in parts; to standard output.
    let piped = random(11 << 20, 5);
    std::fs::write(s.path("piped.in"), &piped).expect("write");
    must(s.aws_stdin(&["s3", "cp", "-", "s3://cli-bucket/piped.bin"], &s.path("piped.in")), "aws s3 cp - (stdin)");
    let out = s.aws(&["s3", "cp", "s3://cli-bucket/piped.bin", "-"]);
    let bytes = out.stdout.clone();
    must(out, "aws s3 cp to stdout");
    assert!(bytes == piped, "what went up from stdin came back different on stdout");

    // Buckets: a non-empty one stays; emptied, it goes.
    let err = must_fail(s.aws(&["s3api", "delete-bucket", "--bucket", "cli-bucket"]), "delete of a non-empty bucket");
    assert!(err.contains("BucketNotEmpty"), "{err}");
    must(s.aws(&["s3", "rm", "--recursive", "s3://cli-bucket/"]), "aws s3 rm --recursive");
    must(s.aws(&["s3", "rb", "s3://cli-bucket"]), "aws s3 rb");
    let buckets = must(s.aws(&["s3", "ls"]), "aws s3 ls");
    assert!(!buckets.contains("cli-bucket"), "aws s3 ls after rb: {buckets}");

    // sync up and down: the CLI lists (with encoding-type=url) to decide what to copy, so
    // names with `+`, `%` and spaces must come back from listings as they went in.
    let src = s.path("sync-src");
    make_tree(&src, 40, 21);
    must(s.aws(&["s3", "mb", "s3://sync-bucket"]), "aws s3 mb");
    let src_s = src.to_str().expect("utf-8 path");
    must(s.aws(&["s3", "sync", "--only-show-errors", src_s, "s3://sync-bucket/t"]), "aws s3 sync up");
    let ls = must(s.aws(&["s3", "ls", "s3://sync-bucket/t/docs/"]), "aws s3 ls");
    assert!(ls.contains("a+b %41=&.txt"), "aws s3 ls shows the name changed: {ls}");
    let again = must(s.aws(&["s3", "sync", src_s, "s3://sync-bucket/t"]), "aws s3 sync up again");
    assert!(again.trim().is_empty(), "a second sync copied again what is there: {again}");
    let down = s.path("sync-down");
    must(
        s.aws(&["s3", "sync", "--only-show-errors", "s3://sync-bucket/t", down.to_str().expect("utf-8 path")]),
        "aws s3 sync down",
    );
    assert_same_tree(&src, &down);
}

/// `--grid-cert`: TLS with a certificate from the grid's CA, whose certificate the gateway
/// writes to `gateway-ca.crt` in the profile folder for S3 clients to trust.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_the_grid_ca() {
    let clients = clients();
    let env = grid(6).await;
    let key = add_key(&env, false);
    let gw = Gateway::start(&env, &["--grid-cert", "127.0.0.1"], "gateway.log");
    let ca = env.grid.client_dir().join("gateway-ca.crt");
    assert!(ca.is_file(), "the gateway wrote no {}", ca.display());
    let s = Setup { gw, write_only: key.clone(), key, ca, env, clients };

    // Without that CA, a client refuses the gateway.
    let mut cmd = clean(&s.clients.aws);
    cmd.env("AWS_ACCESS_KEY_ID", &s.key.access)
        .env("AWS_SECRET_ACCESS_KEY", &s.key.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .args(["--endpoint-url", &s.gw.endpoint(), "s3", "ls"]);
    let err = must_fail(run_tool(cmd, s.env.dir.path(), "aws s3 ls without the CA"), "aws s3 ls without the CA");
    assert!(err.contains("SSL") || err.contains("certificate"), "{err}");

    must(s.aws(&["s3", "mb", "s3://grid-cert"]), "aws s3 mb");
    let data = random(9 << 20, 31);
    std::fs::write(s.path("d"), &data).expect("write");
    must(s.aws(&["s3", "cp", s.path("d").to_str().expect("utf-8 path"), "s3://grid-cert/d"]), "aws s3 cp");
    let out = s.path("d.out");
    must(s.aws(&["s3", "cp", "s3://grid-cert/d", out.to_str().expect("utf-8 path")]), "aws s3 cp down");
    assert!(std::fs::read(&out).expect("read") == data, "came back different");
    let src = s.path("src");
    make_tree(&src, 30, 32);
    must(s.rclone(&["copy", src.to_str().expect("utf-8 path"), "gw:grid-cert/t"]), "rclone copy");
    must(s.rclone(&["check", src.to_str().expect("utf-8 path"), "gw:grid-cert/t"]), "rclone check");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_on_loopback_only() {
    let clients = clients();
    let env = grid(6).await;
    let key = add_key(&env, false);
    // Plain HTTP elsewhere than on loopback: refused, and the gateway does not start.
    let port = free_port();
    let mut cmd = Command::new(EXE);
    cmd.args(["gateway", "--listen", &format!("0.0.0.0:{port}"), "--plain-http"])
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", env.grid.passphrase());
    let out = run_tool(cmd, env.dir.path(), "scatter gateway --plain-http on 0.0.0.0");
    let err = must_fail(out, "scatter gateway --plain-http on 0.0.0.0");
    assert!(!err.contains("panicked") && err.lines().count() <= 3, "{err}");

    let gw = Gateway::start(&env, &["--plain-http"], "gateway.log");
    let s = Setup { gw, write_only: key.clone(), key, ca: PathBuf::new(), env, clients };
    must(s.aws(&["s3", "mb", "s3://plain"]), "aws s3 mb over HTTP");
    let data = random(50_000, 9);
    std::fs::write(s.path("d"), &data).expect("write");
    must(s.aws(&["s3", "cp", s.path("d").to_str().expect("utf-8 path"), "s3://plain/d"]), "aws s3 cp over HTTP");
    let out = s.path("d.out");
    must(s.aws(&["s3", "cp", "s3://plain/d", out.to_str().expect("utf-8 path")]), "aws s3 cp down over HTTP");
    assert!(std::fs::read(&out).expect("read") == data, "came back different over HTTP");
    // A second gateway on the same profile is told that neither sees the other's writes.
    assert!(!s.gw.log_text().contains("another `scatter gateway`"), "{}", s.gw.log_text());
    let second = Gateway::start(&s.env, &["--plain-http"], "second.log");
    assert!(
        second.log_text().contains("another `scatter gateway` on this machine serves the profile"),
        "{}",
        second.log_text()
    );
}

fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

// ---------------------------------------------------------------------------------------
// rclone

impl Setup {
    /// `rclone ARGS` with a remote `gw:` for the gateway, from environment variables alone.
    fn rclone(&self, args: &[&str]) -> Output {
        let mut cmd = clean(&self.clients.rclone);
        cmd.env("RCLONE_CONFIG", self.path("rclone.conf"))
            .env("RCLONE_CONFIG_GW_TYPE", "s3")
            .env("RCLONE_CONFIG_GW_PROVIDER", "Other")
            .env("RCLONE_CONFIG_GW_ACCESS_KEY_ID", &self.key.access)
            .env("RCLONE_CONFIG_GW_SECRET_ACCESS_KEY", &self.key.secret)
            .env("RCLONE_CONFIG_GW_ENDPOINT", self.gw.endpoint())
            .env("RCLONE_CONFIG_GW_REGION", "us-east-1")
            .env("RCLONE_CONFIG_GW_FORCE_PATH_STYLE", "true")
            .args(if self.gw.tls { vec!["--ca-cert", self.ca.to_str().expect("utf-8")] } else { vec![] })
            .args(["--retries", "1", "--low-level-retries", "2", "--transfers", "4", "--checkers", "8"])
            // Files over 5 MiB go up in 5 MiB parts.
            .args(["--s3-upload-cutoff", "5Mi", "--s3-chunk-size", "5Mi"])
            .args(args);
        std::fs::write(self.path("rclone.conf"), "").expect("rclone config");
        run_tool(cmd, self.env.dir.path(), &format!("rclone {args:?}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rclone_syncs_a_tree_up_and_back() {
    let s = setup().await;
    eprintln!("{}", must(s.rclone(&["version"]), "rclone version").lines().next().unwrap_or(""));
    let src = s.path("src");
    make_tree(&src, 300, 7);
    let src_s = src.to_str().expect("utf-8 path");

    must(s.rclone(&["mkdir", "gw:rclone-bucket"]), "rclone mkdir");
    must(s.rclone(&["sync", src_s, "gw:rclone-bucket/tree"]), "rclone sync up");
    must(s.rclone(&["check", src_s, "gw:rclone-bucket/tree"]), "rclone check against the remote");
    let size = must(s.rclone(&["size", "--json", "gw:rclone-bucket/tree"]), "rclone size");
    let size: serde_json::Value = serde_json::from_str(size.trim()).expect("JSON");
    let local = tree(&src);
    assert_eq!(size["count"], local.len(), "{size}");
    assert_eq!(size["bytes"], local.values().map(|v| v.len()).sum::<usize>(), "{size}");

    let down = s.path("down");
    must(s.rclone(&["sync", "gw:rclone-bucket/tree", down.to_str().expect("utf-8 path")]), "rclone sync down");
    must(s.rclone(&["check", src_s, down.to_str().expect("utf-8 path")]), "rclone check of the downloaded copy");
    must(
        s.rclone(&["check", "gw:rclone-bucket/tree", down.to_str().expect("utf-8 path")]),
        "rclone check of the remote against the copy",
    );
    assert_same_tree(&src, &down);

    // Changes go up as puts and deletes: a file changed, two removed, one added.
    std::fs::write(src.join("a/b/changed.bin"), random(3000, 77)).expect("write");
    let victims: Vec<PathBuf> = local.keys().filter(|k| k.starts_with("docs/")).take(2).map(|k| src.join(k)).collect();
    for v in &victims {
        std::fs::remove_file(v).expect("remove");
    }
    let first = local.keys().find(|k| !k.ends_with("big.bin")).expect("a file").clone();
    std::fs::write(src.join(&first), random(12_345, 78)).expect("rewrite");
    must(s.rclone(&["sync", src_s, "gw:rclone-bucket/tree"]), "rclone sync of the changes");
    must(s.rclone(&["check", src_s, "gw:rclone-bucket/tree"]), "rclone check after the changes");
    let down2 = s.path("down2");
    must(s.rclone(&["copy", "gw:rclone-bucket/tree", down2.to_str().expect("utf-8 path")]), "rclone copy down");
    assert_same_tree(&src, &down2);
    // The listing is a flat one of every key, the removed ones gone.
    let ls = must(s.rclone(&["lsf", "-R", "--files-only", "gw:rclone-bucket/tree"]), "rclone lsf");
    let mut listed: Vec<&str> = ls.lines().collect();
    listed.sort();
    let want: Vec<String> = tree(&src).into_keys().collect();
    assert_eq!(listed, want.iter().map(String::as_str).collect::<Vec<_>>());

    // A server-side copy (CopyObject) of the whole tree, checked against the source.
    must(s.rclone(&["copy", "gw:rclone-bucket/tree", "gw:rclone-bucket/copy"]), "rclone server-side copy");
    must(s.rclone(&["check", src_s, "gw:rclone-bucket/copy"]), "rclone check of the server-side copy");
    let down3 = s.path("down3");
    must(s.rclone(&["copy", "gw:rclone-bucket/copy", down3.to_str().expect("utf-8 path")]), "rclone copy of the copy");
    assert_same_tree(&src, &down3);

    must(s.rclone(&["purge", "gw:rclone-bucket"]), "rclone purge");
    let buckets = must(s.rclone(&["lsd", "gw:"]), "rclone lsd");
    assert!(!buckets.contains("rclone-bucket"), "the bucket is still there after purge: {buckets}");
}

// ---------------------------------------------------------------------------------------
// restic

impl Setup {
    fn restic(&self, args: &[&str]) -> Output {
        let mut cmd = clean(&self.clients.restic);
        cmd.env("AWS_ACCESS_KEY_ID", &self.key.access)
            .env("AWS_SECRET_ACCESS_KEY", &self.key.secret)
            .env("RESTIC_PASSWORD", "restic test password")
            .env("RESTIC_CACHE_DIR", self.path("restic-cache"))
            .env("HOME", self.env.dir.path())
            .arg("-r")
            .arg(format!("s3:{}/restic-bucket", self.gw.endpoint()))
            .args(if self.gw.tls { vec!["--cacert", self.ca.to_str().expect("utf-8")] } else { vec![] })
            .args(["-o", "s3.region=us-east-1", "-o", "s3.bucket-lookup=path"])
            .args(args);
        run_tool(cmd, self.env.dir.path(), &format!("restic {args:?}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restic_backs_up_restores_and_checks_over_s3() {
    let s = setup().await;
    eprintln!("{}", must(s.restic(&["version"]), "restic version").trim());
    let src = s.path("src");
    make_tree(&src, 120, 11);
    let src_s = src.to_str().expect("utf-8 path");

    must(s.restic(&["init"]), "restic init");
    must(s.restic(&["backup", src_s]), "restic backup");
    std::fs::write(src.join("docs/after.bin"), random(70_000, 12)).expect("write");
    must(s.restic(&["backup", src_s]), "restic second backup");
    let snaps: serde_json::Value =
        serde_json::from_str(&must(s.restic(&["snapshots", "--json"]), "restic snapshots")).expect("JSON");
    assert_eq!(snaps.as_array().map(Vec::len), Some(2), "{snaps}");

    let target = s.path("restored");
    must(s.restic(&["restore", "latest", "--target", target.to_str().expect("utf-8 path")]), "restic restore");
    // restic restores a backed-up absolute path under the target.
    assert_same_tree(&src, &target.join(src_s.trim_start_matches('/')));
    must(s.restic(&["check", "--read-data"]), "restic check --read-data");

    // Forget and prune delete packs through the gateway; what is left is whole.
    must(s.restic(&["forget", "--keep-last", "1", "--prune"]), "restic forget --prune");
    must(s.restic(&["check", "--read-data"]), "restic check --read-data after prune");
    let again = s.path("restored-again");
    must(
        s.restic(&["restore", "latest", "--target", again.to_str().expect("utf-8 path")]),
        "restic restore after prune",
    );
    assert_same_tree(&src, &again.join(src_s.trim_start_matches('/')));
}

// ---------------------------------------------------------------------------------------
// boto3

/// tests/s3/boto3_checks.py with the venv's Python: multipart with explicit parts (and a
/// part copied from a range), abort, InvalidPart, ranges, metadata, copies, conditional
/// requests, listings (v1 and v2) page by page against what S3 answers, deletes, bucket
/// errors and a write-only key.
#[tokio::test(flavor = "multi_thread")]
async fn boto3_multipart_ranges_conditions_listings_and_a_write_only_key() {
    let s = setup().await;
    let wo = s.write_only.clone();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/boto3_checks.py");
    let mut cmd = clean(&s.clients.python);
    cmd.arg(&script)
        .env("GW_ENDPOINT", s.gw.endpoint())
        .env("GW_CA", &s.ca)
        .env("AWS_CA_BUNDLE", &s.ca)
        .env("AWS_CONFIG_FILE", s.path("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.path("no-aws-credentials"))
        .env("GW_ACCESS", &s.key.access)
        .env("GW_SECRET", &s.key.secret)
        .env("GW_WO_ACCESS", &wo.access)
        .env("GW_WO_SECRET", &wo.secret);
    let out = run_tool(cmd, s.env.dir.path(), "boto3_checks.py");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let stdout = must(out, "boto3_checks.py");
    assert!(stdout.contains("boto3: all checks passed"), "{stdout}");
}

/// Small objects put at once share packs: 96 puts of 0–20 KiB from 24 threads, a quarter by
/// a write-only key, leave far fewer than the 576 shard files they would stored one pack
/// each (the script counts the hosts' files). Refused puts among them (a taken name with
/// `If-None-Match: *`, a wrong Content-MD5) fail alone, and every object reads back bit for
/// bit. aws-chunked bodies are held to their declared length and framing, and a put whose
/// client hangs up is stored and listed, or neither.
#[tokio::test(flavor = "multi_thread")]
async fn small_objects_put_at_once_share_packs_and_a_refused_one_fails_alone() {
    const COUNT: usize = 96;
    let s = setup().await;
    let dirs: Vec<String> = (0..6).map(|i| s.env.grid.host_dir(i).join("shards").display().to_string()).collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/small_checks.py");
    let mut cmd = clean(&s.clients.python);
    cmd.arg(&script)
        .env("GW_ENDPOINT", s.gw.endpoint())
        .env("GW_CA", &s.ca)
        .env("AWS_CONFIG_FILE", s.path("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.path("no-aws-credentials"))
        .env("GW_ACCESS", &s.key.access)
        .env("GW_SECRET", &s.key.secret)
        .env("GW_WO_ACCESS", &s.write_only.access)
        .env("GW_WO_SECRET", &s.write_only.secret)
        .env("SMALL_COUNT", COUNT.to_string())
        .env("SHARD_DIRS", dirs.join(":"))
        .env("SCATTER_EXE", EXE)
        .env("SCATTER_CONFIG", s.env.grid.client_dir())
        .env("SCATTER_PASSPHRASE", s.env.grid.passphrase());
    let out = run_tool(cmd, s.env.dir.path(), "small_checks.py");
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    let stdout = must(out, "small_checks.py");
    assert!(stdout.contains("small: all checks passed"), "{stdout}");
}

/// One gateway serving two profiles (two accounts): each key reaches its own profile's
/// buckets only, even under the same bucket name; an unsigned request is refused; an upload
/// neither completed nor aborted goes after `--upload-expiry`, its parts with it.
#[tokio::test(flavor = "multi_thread")]
async fn two_profiles_stay_apart_unsigned_requests_are_refused_and_abandoned_uploads_expire() {
    let mut s = setup().await;
    // A second account, with its own profile and passphrase, and its own gateway key.
    let token = s.env.ok(&["admin", "user", "add", "bob"]).trim().to_owned();
    let bob = s.path("bob");
    let url = s.env.grid.url().to_owned();
    ok(run(&bob, &["init", "--coordinator", &url, "--token", &token], &[]), "bob init");
    let added = ok(run(&bob, &["gateway", "key", "add", "--json"], &[]), "bob's key");
    let v: serde_json::Value = serde_json::from_str(added.trim()).expect("JSON");
    let bob_key = Key {
        access: v["access_key"].as_str().expect("access").to_owned(),
        secret: v["secret_key"].as_str().expect("secret").to_owned(),
    };
    let pass = s.path("bob-passphrase");
    std::fs::write(&pass, THEIR_PASSPHRASE).expect("passphrase file");
    s.gw.terminate();
    let (cert, key) = (s.path("gateway.crt"), s.path("gateway.key"));
    let profile = format!("{}={}", bob.display(), pass.display());
    s.gw = Gateway::start(
        &s.env,
        &[
            "--cert",
            cert.to_str().expect("utf-8"),
            "--key",
            key.to_str().expect("utf-8"),
            "--profile",
            &profile,
            "--upload-expiry",
            // Long enough for the AWS CLI (a Python start each) to upload a part and list
            // the upload before it lapses on a loaded machine; 3 s was not.
            "20s",
        ],
        "gateway-two.log",
    );

    // The same bucket name in both profiles: two buckets, neither sees the other's objects.
    let secret = s.path("secret.txt");
    std::fs::write(&secret, b"alice's").expect("write");
    must(s.aws(&["s3", "mb", "s3://shared-name"]), "alice: mb");
    must(s.aws(&["s3", "cp", secret.to_str().expect("utf-8"), "s3://shared-name/secret.txt"]), "alice: put");
    let listed = must(s.aws_with(&bob_key, &["s3", "ls"]), "bob: ls");
    assert!(!listed.contains("shared-name"), "bob sees alice's bucket: {listed}");
    let err = must_fail(s.aws_with(&bob_key, &["s3", "ls", "s3://shared-name/"]), "bob: ls alice's bucket");
    assert!(err.contains("NoSuchBucket"), "{err}");
    must(s.aws_with(&bob_key, &["s3", "mb", "s3://shared-name"]), "bob: mb of the same name");
    let listed = must(s.aws_with(&bob_key, &["s3", "ls", "s3://shared-name/"]), "bob: ls his bucket");
    assert!(!listed.contains("secret.txt"), "bob sees alice's object: {listed}");
    let out = s.path("stolen.txt");
    let err = must_fail(
        s.aws_with(
            &bob_key,
            &["s3api", "get-object", "--bucket", "shared-name", "--key", "secret.txt", out.to_str().expect("utf-8")],
        ),
        "bob: get alice's object",
    );
    assert!(err.contains("NoSuchKey"), "{err}");
    let listed = must(s.aws(&["s3", "ls", "s3://shared-name/"]), "alice: ls");
    assert!(listed.contains("secret.txt"), "{listed}");

    // No signature, no service: the object is not served to an anonymous request.
    let anonymous = std::process::Command::new(&s.clients.python)
        .arg("-c")
        .arg(
            "import ssl,sys,urllib.request,urllib.error\n\
             ctx=ssl.create_default_context(cafile=sys.argv[2])\n\
             try:\n    urllib.request.urlopen(sys.argv[1],context=ctx); print('served')\n\
             except urllib.error.HTTPError as e: print(e.code, e.read().decode())",
        )
        .arg(format!("{}/shared-name/secret.txt", s.gw.endpoint()))
        .arg(&s.ca)
        .output()
        .expect("python");
    let answer = String::from_utf8_lossy(&anonymous.stdout);
    assert!(answer.starts_with("403") && answer.contains("AccessDenied") && !answer.contains("alice's"), "{answer}");

    // An upload started and left: gone, with its part, within seconds of its expiry.
    let started = must(
        s.aws(&["s3api", "create-multipart-upload", "--bucket", "shared-name", "--key", "left.bin"]),
        "create-multipart-upload",
    );
    let upload = serde_json::from_str::<serde_json::Value>(&started).expect("JSON")["UploadId"]
        .as_str()
        .expect("UploadId")
        .to_owned();
    let part = s.path("part.bin");
    std::fs::write(&part, random(1 << 20, 9)).expect("part");
    must(
        s.aws(&[
            "s3api",
            "upload-part",
            "--bucket",
            "shared-name",
            "--key",
            "left.bin",
            "--part-number",
            "1",
            "--upload-id",
            &upload,
            "--body",
            part.to_str().expect("utf-8"),
        ]),
        "upload-part",
    );
    let pending =
        |s: &Setup| must(s.aws(&["s3api", "list-multipart-uploads", "--bucket", "shared-name"]), "list uploads");
    assert!(pending(&s).contains(&upload), "the upload is listed while it is in progress");
    let deadline = Instant::now() + Duration::from_secs(90);
    while pending(&s).contains(&upload) {
        assert!(Instant::now() < deadline, "an upload left for 90 s with a 20 s expiry is still there");
        std::thread::sleep(Duration::from_millis(500));
    }
    let names = s.env.ok(&["ls"]);
    assert!(!names.contains(".s3-uploads"), "the expired upload's marker or part is still stored: {names}");

    // One profile's stalled uploads and XML take its share of the gateway, not the other's
    // (two of alice's keys hog, bob's key must still get through).
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/hog_checks.py");
    let mut cmd = clean(&s.clients.python);
    cmd.arg(&script)
        .env("GW_ENDPOINT", s.gw.endpoint())
        .env("GW_CA", &s.ca)
        .env("GW_WO_ACCESS", &s.write_only.access)
        .env("GW_WO_SECRET", &s.write_only.secret)
        .env("GW_HOG2_ACCESS", &s.key.access)
        .env("GW_HOG2_SECRET", &s.key.secret)
        .env("GW_HOG_BUCKET", "shared-name")
        .env("GW_OTHER_ACCESS", &bob_key.access)
        .env("GW_OTHER_SECRET", &bob_key.secret)
        .env("GW_OTHER_BUCKET", "shared-name");
    let out = run_tool(cmd, s.env.dir.path(), "hog_checks.py");
    must(out, "hog_checks.py");

    // Attack (red team): one profile's owner writes what it likes into its own key store (a
    // damaged one, or one naming another profile's access key), and the gateway refused to
    // start for every profile. Those keys are left out, and the others are served.
    s.gw.terminate();
    std::fs::write(bob.join("gateway-keys"), b"not a sealed key store").expect("damage bob's key store");
    let gw = Gateway::start(
        &s.env,
        &["--cert", cert.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8"), "--profile", &profile],
        "gateway-damaged.log",
    );
    s.gw = gw;
    must(s.aws(&["s3", "ls", "s3://shared-name/"]), "alice: ls with bob's key store damaged");
    let err = must_fail(s.aws_with(&bob_key, &["s3", "ls"]), "bob: ls with his key store damaged");
    assert!(err.contains("InvalidAccessKeyId"), "{err}");
    assert!(s.gw.log_text().contains("does not open"), "{}", s.gw.log_text());
}

/// Attack (red team): any key, a write-only one too, sent completions of an upload made of
/// 8 MiB of `<Part/>`. Such a body was counted as 8 MiB of the XML budget, but s3s builds a
/// part of about 300 bytes for each of its 1.2 million elements before any handler (nor the
/// refusal of an unknown upload) sees it: two requests of a write-only key took the gateway
/// to 682 MB, four of a profile to 1.07 GB, and it could be repeated at will. Each element
/// of an XML body is now counted too as it arrives, and a body whose elements go past what
/// its profile may hold is refused.
#[tokio::test(flavor = "multi_thread")]
async fn xml_of_many_elements_is_counted_for_what_it_makes_the_gateway_hold() {
    let s = setup().await;
    must(s.aws(&["s3", "mb", "s3://xml"]), "aws s3 mb");
    let pid = s.gw.child.id();
    reset_peak(pid);
    let before = peak_rss(pid);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/s3/xml_checks.py");
    let mut cmd = clean(&s.clients.python);
    cmd.arg(&script)
        .env("GW_ENDPOINT", s.gw.endpoint())
        .env("GW_CA", &s.ca)
        .env("GW_WO_ACCESS", &s.write_only.access)
        .env("GW_WO_SECRET", &s.write_only.secret)
        .env("GW_KEY_ACCESS", &s.key.access)
        .env("GW_KEY_SECRET", &s.key.secret)
        .env("GW_BUCKET", "xml");
    let answers = must(run_tool(cmd, s.env.dir.path(), "xml_checks.py"), "xml_checks.py");
    let grew = peak_rss(pid).saturating_sub(before);
    eprintln!("the gateway's peak grew by {} MiB; answers: {answers}", grew >> 20);
    assert!(grew < 200 << 20, "four bodies of 8 MiB made the gateway hold {} MiB more", grew >> 20);
    assert!(!answers.contains(" 200 "), "a made-up completion succeeded: {answers}");
    // Completions and batch deletes of their usual size still go through.
    must(
        s.aws(&["s3", "cp", s.env.write_random("parted", 20 << 20, 5).to_str().expect("utf-8"), "s3://xml/parted"]),
        "a multipart put",
    );
    must(s.aws(&["s3", "rm", "s3://xml/parted"]), "aws s3 rm");
}

/// Attack (red team): with `--log-level debug`, s3s logged each refused signature with the
/// one the request should have carried, and every request's Authorization header: whoever
/// reads the gateway's logs could sign any request of their choosing, or replay one. Its
/// lines are left out whatever the level asked for.
#[tokio::test(flavor = "multi_thread")]
async fn debug_logs_hold_no_signature() {
    let mut s = setup().await;
    let (cert, key) = (s.env.path("gateway.crt"), s.env.path("gateway.key"));
    s.gw.terminate();
    let args = ["--cert", cert.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8"), "--log-level", "debug"];
    s.gw = Gateway::start(&s.env, &args, "gateway-debug.log");
    must(s.aws(&["s3", "mb", "s3://logged"]), "aws s3 mb");
    let wrong = Key { access: s.key.access.clone(), secret: format!("{}-wrong", s.key.secret) };
    let err = must_fail(s.aws_with(&wrong, &["s3", "ls", "s3://logged/"]), "ls with a wrong secret");
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    let log = s.gw.log_text();
    assert!(log.contains("DEBUG"), "the gateway logged nothing at debug level: {log}");
    for secret in ["signature mismatch", "AWS4-HMAC-SHA256 Credential", "Signature="] {
        assert!(!log.contains(secret), "the debug log holds `{secret}`: {log}");
    }
}

/// Waits until the hosts `which` hold no upload the catalog does not record.
fn wait_clean(s: &Setup, which: &[usize], what: &str) {
    match wait_clean_on(&s.env, which, Duration::from_secs(30)) {
        Ok(took) => eprintln!("{what}: hosts were clean {took:?} after it ended"),
        Err(left) => panic!("{what}: its uploads stayed on the hosts: {left:?}"),
    }
}

/// A PUT that ends without its object gives back what it placed, although the gateway runs
/// on: the hosts hold none of its uploads seconds later, not until its placements lapse (10
/// minutes) or the orphan sweep (an hour here). First a PUT cut off by its client (killed):
/// the packs in flight are dropped with the request. Then one that fails because four of the
/// six hosts die under it: the pack cut short when the other failed is given back too.
#[tokio::test(flavor = "multi_thread")]
async fn a_put_that_ends_without_its_object_leaves_nothing_on_hosts() {
    let opts = scatter_cli::grid::GridOptions {
        orphan_grace: "1h".into(),
        passphrase: "test passphrase".into(),
        ..Default::default()
    };
    let mut s = setup_with(opts).await;
    must(s.aws(&["s3", "mb", "s3://doomed"]), "aws s3 mb");
    let body = s.path("big.bin");
    std::fs::write(&body, random(96 << 20, 11)).expect("write");
    let put = |s: &Setup, watched: &[usize]| {
        let args =
            ["s3api", "put-object", "--bucket", "doomed", "--key", "big.bin", "--body", body.to_str().expect("utf-8")];
        let mut child =
            s.aws_command(&s.key, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn aws");
        wait_for_upload(&s.env, watched, &mut child);
        child
    };
    let all: Vec<usize> = (0..6).collect();

    let mut cut = put(&s, &all);
    cut.kill().expect("kill aws");
    cut.wait().expect("wait");
    wait_clean(&s, &all, "a put cut off by its client");

    let mut doomed = put(&s, &[0, 1]);
    for i in 2..6 {
        s.env.grid.kill_host(i);
    }
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = doomed.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the put did not end within {TOOL_TIMEOUT:?} of its hosts' death");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the put succeeded on two hosts");
    wait_clean(&s, &[0, 1], "a put failing on dead hosts");
    assert!(s.gw.child.try_wait().expect("wait").is_none(), "the gateway stopped");
}

/// Attack (red team): a request signed with SigV2 in its header was good for ever: s3s
/// checks only that it carries a date, so a GET, PUT or DELETE seen once (in a proxy's log,
/// say) could be sent again years later, a PUT with another body (SigV2 does not sign it).
/// Its signed date must now be within 15 minutes of the gateway's clock, as SigV4's is.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigv2_request_is_good_only_near_the_date_it_was_signed_at() {
    let env = grid(3).await;
    let key = add_key(&env, false);
    let gw = Gateway::start(&env, &["--plain-http"], "gateway.log");
    let http = reqwest::Client::new();
    let list = |date: String| {
        // SigV2: HMAC-SHA1 over method, Content-MD5, Content-Type, Date and the resource.
        let signing = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key.secret.as_bytes());
        let tag = ring::hmac::sign(&signing, format!("GET\n\n\n{date}\n/").as_bytes());
        let signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, tag.as_ref());
        http.get(format!("{}/", gw.endpoint()))
            .header("date", date)
            .header("authorization", format!("AWS {}:{signature}", key.access))
            .send()
    };
    let now = std::time::SystemTime::now();
    let ok = list(httpdate(now)).await.expect("request");
    assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap_or_default());
    for (when, what) in [
        (now - Duration::from_secs(16 * 60), "16 minutes ago"),
        (now + Duration::from_secs(16 * 60), "16 minutes ahead"),
        (std::time::UNIX_EPOCH + Duration::from_secs(978_307_200), "in 2001"),
    ] {
        let old = list(httpdate(when)).await.expect("request");
        let status = old.status();
        let body = old.text().await.unwrap_or_default();
        assert_eq!(status, 403, "a SigV2 request signed {what}: {body}");
        assert!(body.contains("RequestTimeTooSkewed"), "{body}");
    }
    let undated = list("not a date".into()).await.expect("request");
    assert_eq!(undated.status(), 403, "a SigV2 request with no date it was signed at");
}

/// An HTTP date (`Wed, 02 Dec 2026 09:15:00 GMT`).
fn httpdate(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let name = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][month as usize - 1];
    format!("{weekday}, {day:02} {name} {year} {h:02}:{m:02}:{s:02} GMT")
}

/// Attack (red team): a write-only key is its owner's delegate, and a delegate is told only
/// that its owner's quota is used up (the coordinator refuses it `usage` and the figures, which
/// placements of other sizes would measure to the byte). The gateway runs as the owner, so the
/// coordinator told it everything, and it passed the owner's usage and quota on to the key.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_only_key_is_not_told_its_owners_quota_figures() {
    let s = setup().await;
    // Bob: a user with a quota (an admin cannot change its own), with a gateway of his own.
    let bob = s.path("bob");
    let token = s.env.ok(&["admin", "user", "add", "bob", "--quota", "4MiB"]).trim().to_owned();
    common::ok(common::run(&bob, &["init", "--coordinator", s.env.grid.url(), "--token", &token], &[]), "bob init");
    let bobs = |args: &[&str]| common::ok(common::run(&bob, args, &[]), &format!("bob's {args:?}"));
    let (owner, appender) = (key_of(false, bobs), key_of(true, bobs));
    let (cert, key) = (s.path("gateway.crt"), s.path("gateway.key"));
    let args = ["--cert", cert.to_str().expect("utf-8"), "--key", key.to_str().expect("utf-8")];
    let gw = Gateway::start_as(&s.env, &bob, common::THEIR_PASSPHRASE, &args, "bobs-gateway.log");
    let aws = |key: &Key, args: &[&str]| run_tool(s.aws_at(&gw, key, args), s.env.dir.path(), &format!("aws {args:?}"));
    must(aws(&owner, &["s3", "mb", "s3://full"]), "aws s3 mb");
    let file = s.env.write_random("six", 6 << 20, 7);
    let file = file.to_str().expect("utf-8 path");
    let put = |key: &Key, name: &str| {
        let target = format!("s3://full/{name}");
        must_fail(aws(key, &["s3", "cp", file, &target]), &format!("a put past the quota ({name})"))
    };
    let told = put(&owner, "owner");
    assert!(told.contains("AccessDenied") && told.contains("quota"), "{told}");
    assert!(told.contains("4.0 MiB"), "the owner is told the figures: {told}");
    let told = put(&appender, "appender");
    assert!(told.contains("AccessDenied") && told.contains("quota"), "{told}");
    assert!(!told.contains("MiB") && !told.contains(" B "), "the write-only key is told the owner's figures: {told}");
}
