//! Acceptance tests of the habits restic users bring (issue 19): passphrase files and
//! commands, backup --dry-run and its filters, snapshot selection, retention flags, tags,
//! stats, dump, completions and the man page. Real `scatter` processes on a small grid.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `scatter ARGS` as the grid's user without SCATTER_PASSPHRASE, with `vars`, stdin closed.
fn without_passphrase(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(EXE);
    cmd.args(args)
        .env("SCATTER_CONFIG", env.grid.client_dir())
        .env_remove("SCATTER_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("run scatter")
}

/// The stderr of a command that must fail with exit code 1 and a one-line message.
fn one_sentence_failure(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{what} should fail with 1: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line expected: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn passphrase_from_a_file_or_a_command() {
    let env = grid(3).await;
    let pass = env.grid.passphrase().to_owned();
    let file = env.path("pass");
    std::fs::write(&file, format!("{pass}\n")).expect("write");

    // The variable and the flag, each with a trailing newline that is dropped.
    ok(without_passphrase(&env, &["ls"], &[("SCATTER_PASSPHRASE_FILE", s(&file))]), "ls with a passphrase file");
    ok(without_passphrase(&env, &["ls", "--passphrase-file", s(&file)], &[]), "ls --passphrase-file");
    let cmd = format!("printf '%s\\n' '{pass}'");
    ok(without_passphrase(&env, &["ls"], &[("SCATTER_PASSPHRASE_COMMAND", &cmd)]), "ls with a passphrase command");
    ok(without_passphrase(&env, &["ls", "--passphrase-command", &cmd], &[]), "ls --passphrase-command");

    // Only one trailing newline goes: a second one is part of the (then wrong) passphrase.
    std::fs::write(&file, format!("{pass}\n\n")).expect("write");
    let out = without_passphrase(&env, &["ls", "--passphrase-file", s(&file)], &[]);
    assert!(!out.status.success(), "a passphrase with an extra newline must not open the keys");

    let missing = env.path("no-such-file");
    let out = without_passphrase(&env, &["ls", "--passphrase-file", s(&missing)], &[]);
    let err = one_sentence_failure(&out, "a missing passphrase file");
    assert!(err.contains("cannot read the passphrase file") && err.contains("no-such-file"), "{err}");

    let out = without_passphrase(&env, &["ls"], &[("SCATTER_PASSPHRASE_COMMAND", "echo nope >&2; exit 7")]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The command's own stderr passes through; ours is the last line, one sentence.
    let last = err.trim_end().lines().last().expect("a message");
    assert!(last.starts_with("error: the passphrase command") && last.contains("exit status: 7"), "{err}");

    let out = without_passphrase(&env, &["ls", "--passphrase-file", s(&file), "--passphrase-command", "true"], &[]);
    one_sentence_failure(&out, "both a file and a command");
}
