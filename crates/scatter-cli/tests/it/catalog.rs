//! A grid's catalog on PostgreSQL: moved there from SQLite with `scatter catalog
//! export|import`, and served from there by the real coordinator.

use crate::common;

use common::{ok, run};

#[tokio::test(flavor = "multi_thread")]
async fn a_grid_moves_its_catalog_from_sqlite_to_postgresql() {
    let pg = scatter_pgtest::TestPg::start();
    let mut env = common::grid(4).await;
    let before = env.write_random("before", 3 << 20, 1);
    env.put(&before, "before");

    // A live export is a consistent snapshot, but the move is done with the coordinator
    // stopped, so nothing is written after it.
    env.grid.kill_coordinator();
    let data_dir = env.grid.coordinator_dir();
    let export = env.path("catalog.jsonl");
    let (dir, file) = (data_dir.to_str().expect("utf-8"), export.to_str().expect("utf-8"));
    let none = env.path("no-profile");
    ok(run(&none, &["catalog", "export", "--data-dir", dir, "--file", file], &[]), "export");
    let url = pg.url();
    let imported = ok(run(&none, &["catalog", "import", "--catalog", &url, "--file", file], &[]), "import");
    assert!(imported.is_empty(), "the summary goes to stderr: {imported}");
    // A second import into the same catalog is refused: it holds a grid now.
    let again = run(&none, &["catalog", "import", "--catalog", &url, "--file", file], &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{again:?}");

    std::fs::rename(data_dir.join("catalog.db"), data_dir.join("catalog.db.moved")).expect("set SQLite aside");
    env.grid.set_coordinator_args(&["--catalog", &url]);
    env.grid.start_coordinator().expect("the coordinator starts on PostgreSQL");
    assert!(!data_dir.join("catalog.db").exists(), "no SQLite catalog is made beside PostgreSQL");

    env.get_and_compare("before", &before);
    let after = env.write_random("after", 2 << 20, 2);
    env.put(&after, "after");
    env.get_and_compare("after", &after);
    let listed = env.ok(&["ls"]);
    assert!(listed.contains("before") && listed.contains("after"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_coordinator_per_data_folder_and_a_missing_folder_is_created() {
    let env = common::grid(1).await;
    let dir = env.grid.coordinator_dir();
    // A second coordinator on the running one's folder is refused, and changes nothing there.
    let url_before = std::fs::read_to_string(dir.join("url")).expect("url");
    let out = std::process::Command::new(common::EXE)
        .args(["coordinator", "--data-dir", dir.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("another coordinator is running on"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("url")).expect("url"), url_before);
    // So is a second host on a running host's folder: it would have taken over its
    // registration.
    let host_dir = env.grid.host_dir(0);
    let host_url = std::fs::read_to_string(host_dir.join("url")).expect("url");
    let token = std::fs::read_to_string(dir.join("join-token")).expect("join token");
    let mut second = std::process::Command::new(common::EXE)
        .args(["host", "--data-dir", host_dir.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .args(["--coordinator", env.grid.url(), "--join-token", token.trim(), "--capacity", "1GiB"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(env.path("second-host.err")).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second host ran on a running host's folder");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(env.path("second-host.err")).unwrap_or_default();
    assert!(!status.success() && err.contains("another host is running on"), "{err}");
    assert_eq!(std::fs::read_to_string(host_dir.join("url")).expect("url"), host_url);

    // A first start (with TLS) on a folder that does not exist yet creates it.
    let fresh = env.path("new/nested/coordinator");
    let log = env.path("fresh.log");
    let mut child = std::process::Command::new(common::EXE)
        .args(["coordinator", "--data-dir", fresh.to_str().expect("utf-8"), "--listen", "127.0.0.1:0"])
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(env.path("fresh.err")).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !fresh.join("url").exists() {
        let exited = child.try_wait().expect("wait");
        assert!(exited.is_none(), "it exited: {}", std::fs::read_to_string(env.path("fresh.err")).unwrap_or_default());
        assert!(std::time::Instant::now() < deadline, "no url within 30 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for file in ["ca.crt", "ca.key", "coordinator.key", "join-token", "admin-token", "catalog.db"] {
        assert!(fresh.join(file).exists(), "{file} was created");
    }
    // Readable by its owner only: the folder, and the catalog with its WAL.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&fresh), 0o700, "the data folder");
    for file in ["catalog.db", "catalog.db-wal"] {
        assert_eq!(mode(&fresh.join(file)), 0o600, "{file}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
