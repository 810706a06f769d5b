//! A grid's catalog on PostgreSQL: moved there from SQLite with `scatter catalog
//! export|import`, and served from there by the real coordinator.

mod common;

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
