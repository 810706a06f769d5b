//! Where the passphrase comes from when no one types it, as restic users are used to:
//! a file (`--passphrase-file`, `SCATTER_PASSPHRASE_FILE`) or the output of a command
//! (`--passphrase-command`, `SCATTER_PASSPHRASE_COMMAND`, e.g. `pass show scatter`).
//!
//! One trailing line ending (`\n` or `\r\n`) is dropped, since editors and `echo` add one;
//! everything else, spaces included, is part of the passphrase. (restic trims all surrounding
//! white space; keeping it means a passphrase that ends in a space works the same from a file
//! as from `SCATTER_PASSPHRASE`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

/// A place to read the passphrase from instead of `SCATTER_PASSPHRASE` or a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file's content.
    File(PathBuf),
    /// What a shell command prints on stdout.
    Command(String),
}

impl Source {
    /// The source given by the flags (or their variables); `None` when neither is set.
    pub fn pick(file: Option<PathBuf>, command: Option<String>) -> Result<Option<Self>> {
        match (file, command) {
            (Some(_), Some(_)) => {
                bail!("a passphrase file and a passphrase command were both given; keep one of them")
            }
            (Some(f), None) => Ok(Some(Self::File(f))),
            (None, Some(c)) if c.trim().is_empty() => {
                bail!("the passphrase command is empty; give a command or unset SCATTER_PASSPHRASE_COMMAND")
            }
            (None, Some(c)) => Ok(Some(Self::Command(c))),
            (None, None) => Ok(None),
        }
    }

    /// Reads the passphrase.
    pub fn read(&self) -> Result<String> {
        match self {
            Self::File(path) => from_file(path),
            Self::Command(cmd) => from_command(cmd),
        }
    }
}

/// `text` without one trailing line ending.
pub fn strip_newline(text: &str) -> &str {
    text.strip_suffix("\r\n").or_else(|| text.strip_suffix('\n')).unwrap_or(text)
}

fn from_file(path: &Path) -> Result<String> {
    let bytes = scatter_net::read_small(path, 64 << 10).map_err(|e| {
        anyhow::anyhow!("cannot read the passphrase file {} ({e}); fix the path or its permissions", path.display())
    })?;
    let Ok(text) = String::from_utf8(bytes) else {
        bail!("the passphrase file {} is not UTF-8 text; write the passphrase in it as text", path.display());
    };
    Ok(strip_newline(&text).to_owned())
}

fn from_command(cmd: &str) -> Result<String> {
    // Through the shell, so pipes and quoting work as they do in a crontab line; stdin and
    // stderr stay the terminal's, so a command that asks for a PIN can.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run the passphrase command `{cmd}` ({e}); check that /bin/sh exists"))?;
    if !out.status.success() {
        bail!("the passphrase command `{cmd}` failed ({}); fix it or unset SCATTER_PASSPHRASE_COMMAND", out.status);
    }
    let Ok(text) = String::from_utf8(out.stdout) else {
        bail!("the passphrase command `{cmd}` printed something that is not UTF-8 text; it must print the passphrase");
    };
    let pass = strip_newline(&text);
    if pass.is_empty() {
        bail!("the passphrase command `{cmd}` printed nothing; it must print the passphrase on stdout");
    }
    Ok(pass.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_ending_is_dropped() {
        assert_eq!(strip_newline("secret\n"), "secret");
        assert_eq!(strip_newline("secret\r\n"), "secret");
        assert_eq!(strip_newline("secret\n\n"), "secret\n");
        assert_eq!(strip_newline(" secret "), " secret ");
        assert_eq!(strip_newline(""), "");
    }

    #[test]
    fn file_and_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pass");
        std::fs::write(&f, "two words \n").expect("write");
        assert_eq!(Source::File(f.clone()).read().expect("file"), "two words ");
        let missing = Source::File(dir.path().join("nope")).read().expect_err("missing file");
        assert!(missing.to_string().contains("cannot read the passphrase file"), "{missing}");
        assert_eq!(Source::Command("printf 'a b\\n'".into()).read().expect("command"), "a b");
        let failed = Source::Command("exit 3".into()).read().expect_err("failing command");
        assert!(failed.to_string().contains("failed (exit status: 3)"), "{failed}");
        assert!(Source::Command("true".into()).read().is_err(), "empty output is refused");
        assert!(Source::pick(Some(f), Some("true".into())).is_err());
        assert_eq!(Source::pick(None, None).expect("none"), None);
    }
}
