//! Config files for the services: `scatter coordinator --config FILE` and `scatter host
//! --config FILE` read their settings from a TOML file.
//!
//! The file holds one service's settings at its top level, one key per long flag of that
//! command, spelled as the flag (`data-dir = "/var/lib/scatter"`, `insecure = true`,
//! `coordinator = ["https://a:7000", "https://b:7000"]`). The list of keys is not kept here:
//! it is whatever clap knows as the command's long flags, so a new flag is a new key the day
//! it is added. The file's values are turned into `--KEY=VALUE` arguments that clap then
//! parses with the same parsers as the command line, after the command line, skipping every
//! key the command line or an environment variable already sets. So the order of precedence
//! is: command line, then environment variables (`SCATTER_JOIN_TOKEN`, `SCATTER_CATALOG`,
//! `SCATTER_LOG`, …), then the file, then built-in defaults.
//!
//! Refused, with one sentence naming the key and the file (exit 2, like a bad flag): a key
//! that is no flag of the command (a typo must not be silently ignored), a value of the wrong
//! type (a flag without a value takes `true` or `false`; a flag with one takes a string or a
//! number, and an array where the flag takes several values or a comma-separated list), and
//! a value the flag's parser refuses.
//!
//! Secrets: a flag whose value clap hides from `--help` (`hide_env_values`, which the secret
//! flags need anyway so that `--help` does not print the variable's value) is a secret:
//! today `--join-token` and `--catalog` (a `postgresql://` URL carries its password). That
//! attribute is the one place secrets are marked. A file holding a secret must not be
//! readable by group or others, or it is refused with the `chmod 600` that fixes it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The subcommands that take `--config`.
pub const SERVICES: [&str; 2] = ["coordinator", "host"];

/// The flag naming the file.
const CONFIG_FLAG: &str = "config";

/// Long flags that are not settings, so not keys of a file.
const NOT_SETTINGS: [&str; 4] = [CONFIG_FLAG, "check-config", "help", "version"];

/// The command line with a service's config file merged in. Its `Debug` leaves the
/// arguments out: they may hold secrets.
#[derive(Clone, Default)]
pub struct Merged {
    /// The arguments for clap: the command line followed by `--KEY=VALUE` for every setting
    /// of the file that neither the command line nor an environment variable gives.
    pub args: Vec<OsString>,
    /// The file read, when `--config` was given to a service.
    pub file: Option<PathBuf>,
    /// The keys whose values were taken from the file.
    pub from_file: Vec<String>,
}

impl std::fmt::Debug for Merged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merged")
            .field("args", &format_args!("<{} arguments>", self.args.len()))
            .field("file", &self.file)
            .field("from_file", &self.from_file)
            .finish()
    }
}

/// Reads the config file named by `--config`, if the command line runs a service with one,
/// and merges its settings into `args` (the whole command line, program name first) for
/// `cmd`, the program's clap command. Without `--config`, `args` come back unchanged.
pub fn merge(cmd: &Command, args: Vec<OsString>) -> Result<Merged> {
    let unchanged = |args| Ok(Merged { args, ..Default::default() });
    let flag = format!("--{CONFIG_FLAG}");
    if !args.iter().any(|a| a.to_str().is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))) {
        return unchanged(args);
    }
    // A first pass that tolerates what the file is still to give (required flags); whatever
    // is wrong with the command line itself is reported by the real parse.
    let Ok(first) = cmd.clone().ignore_errors(true).try_get_matches_from(&args) else { return unchanged(args) };
    let Some((name, given)) = first.subcommand() else { return unchanged(args) };
    if !SERVICES.contains(&name) {
        return unchanged(args);
    }
    let Some(path) = given.try_get_one::<PathBuf>(CONFIG_FLAG).ok().flatten().cloned() else {
        return unchanged(args);
    };
    let mut built = cmd.clone();
    built.build();
    let service = built.find_subcommand(name).with_context(|| format!("`{name}` is not a command"))?;
    let settings = read(&path, service)?;
    let mut merged = Merged { args, file: Some(path), from_file: Vec::new() };
    for (key, (arg, value)) in settings {
        let id = arg.get_id().as_str();
        if matches!(given.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        merged.args.extend(value.into_iter().map(OsString::from));
        merged.from_file.push(key);
    }
    Ok(merged)
}

/// Whether `arg` is a flag without a value (`--insecure`), which the file sets with a bool.
fn flag_only(arg: &Arg) -> bool {
    !arg.get_action().takes_values()
}

/// A file's settings for `service`: for each key, the flag and the arguments that give it
/// (`--KEY=VALUE`, or `--KEY` for a flag without a value), checked against the flag's kind
/// and the secrets rule. A flag without a value set to `false` gives no argument.
fn read<'a>(path: &Path, service: &'a Command) -> Result<BTreeMap<String, (&'a Arg, Vec<String>)>> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {file}; check the path given to --config"))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| text.bytes().take(s.start).filter(|b| *b == b'\n').count() + 1);
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        anyhow!("the config file {file} is not valid TOML{at}: {}", e.message().trim().replace('\n', "; "))
    })?;
    let flags: BTreeMap<&str, &Arg> = service
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| (l, a)))
        .filter(|(l, _)| !NOT_SETTINGS.contains(l))
        .collect();
    let service_name = service.get_name();
    let unknown: Vec<String> = table
        .iter()
        .filter(|(k, _)| !flags.contains_key(k.as_str()))
        .map(|(k, v)| unknown_key(k, v, &flags, service_name))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "{} in the config file {file}: keys are the long flags of `scatter {service_name}` (see its --help)",
            unknown.join("; ")
        );
    }
    let secrets: Vec<&str> = table.keys().map(String::as_str).filter(|k| flags[k].is_hide_env_values_set()).collect();
    check_private(path, &secrets)?;
    let mut out = BTreeMap::new();
    for (key, value) in &table {
        let arg = flags[key.as_str()];
        let wrong =
            |what: &str| anyhow!("`{key}` in the config file {file} must be {what}, not a {}", value.type_str());
        let values = match (flag_only(arg), value) {
            (true, toml::Value::Boolean(true)) => vec![format!("--{key}")],
            // `insecure = false`: the flag is not given.
            (true, toml::Value::Boolean(false)) => Vec::new(),
            (true, _) => return Err(wrong("true or false")),
            (false, toml::Value::Array(items)) => {
                let items: Vec<String> = items
                    .iter()
                    .map(scalar)
                    .collect::<Option<_>>()
                    .ok_or_else(|| wrong("an array of strings or numbers"))?;
                if matches!(arg.get_action(), ArgAction::Append) {
                    items.iter().map(|i| format!("--{key}={i}")).collect()
                } else {
                    // The flags that take several values in one (`--coordinator A,B`).
                    vec![format!("--{key}={}", items.join(","))]
                }
            }
            (false, v) => vec![format!("--{key}={}", scalar(v).ok_or_else(|| wrong("a string or a number"))?)],
        };
        out.insert(key.clone(), (arg, values));
    }
    Ok(out)
}

/// Why a key is unknown, with the key it probably meant.
fn unknown_key(key: &str, value: &toml::Value, flags: &BTreeMap<&str, &Arg>, service: &str) -> String {
    if value.is_table() {
        return format!(
            "`[{key}]` is a section, but the file holds the settings of `scatter {service}` at its top level"
        );
    }
    let kebab = key.replace('_', "-");
    if flags.contains_key(kebab.as_str()) {
        return format!("unknown key `{key}` (write `{kebab}`, as the flag is spelled)");
    }
    let closest = flags.keys().map(|f| (distance(&kebab, f), *f)).min();
    match closest {
        Some((d, f)) if d <= 2 => format!("unknown key `{key}` (did you mean `{f}`?)"),
        _ => format!("unknown key `{key}`"),
    }
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A single value as the command line would spell it.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Boolean(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// Refuses a file that group or others may change (another local user would choose where
/// the service keeps its data and whom it trusts), and one holding `secrets` that they may
/// read.
#[cfg(unix)]
fn check_private(path: &Path, secrets: &[&str]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        bail!(
            "group or others may change the config file {file} (mode {:03o}), and with it what the service does; run `chmod go-w {file}`",
            mode & 0o777,
            file = path.display(),
        );
    }
    if !secrets.is_empty() && mode & 0o077 != 0 {
        let keys: Vec<String> = secrets.iter().map(|k| format!("`{k}`")).collect();
        bail!(
            "the config file {file} holds a secret ({}) but group or others may read it (mode {:03o}); run `chmod 600 {file}` (and make the service's user its owner)",
            keys.join(", "),
            mode & 0o777,
            file = path.display(),
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _secrets: &[&str]) -> Result<()> {
    Ok(())
}

impl Merged {
    /// Says which key of the file a clap error is about, when it is about one, as one
    /// sentence naming the key and the file; `None` leaves the error to clap.
    pub fn explain(&self, err: &clap::Error) -> Option<String> {
        let file = self.file.as_ref()?.display();
        if err.kind() == ErrorKind::MissingRequiredArgument {
            let missing = match err.get(ContextKind::InvalidArg)? {
                ContextValue::Strings(s) => s.clone(),
                ContextValue::String(s) => vec![s.clone()],
                _ => return None,
            };
            let keys: Vec<String> = missing.iter().filter_map(|m| flag_name(m)).map(|k| format!("`{k}`")).collect();
            let (them, flags) = if keys.len() == 1 { ("it", "a flag") } else { ("them", "flags") };
            return Some(format!(
                "the config file {file} lacks {}; set {them} there or give {them} as {flags}",
                keys.join(", ")
            ));
        }
        // Other errors (a flag given twice, say) are about the command line: clap says them.
        if !matches!(err.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue) {
            return None;
        }
        let ContextValue::String(arg) = err.get(ContextKind::InvalidArg)? else { return None };
        let key = flag_name(arg)?;
        if !self.from_file.iter().any(|k| k == key) {
            return None;
        }
        let value = match err.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(v)) => format!("`{v}`"),
            _ => "its value".into(),
        };
        let why = match (std::error::Error::source(err), err.get(ContextKind::ValidValue)) {
            (Some(cause), _) => cause.to_string(),
            (None, Some(ContextValue::Strings(valid))) => format!("expected one of {}", valid.join(", ")),
            _ => "a value is needed".into(),
        };
        Some(format!("`{key}` in the config file {file}: {value} is refused: {why}"))
    }
}

/// `capacity` from clap's `--capacity <CAPACITY>`.
fn flag_name(arg: &str) -> Option<&str> {
    arg.strip_prefix("--")?.split([' ', '=']).next()
}

/// One setting of a service as it will run: its key, value (secrets hidden) and where the
/// value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key (the long flag).
    pub key: String,
    /// The value, as a TOML value (a secret's is `"<hidden>"`).
    pub value: String,
    /// `command line`, `environment`, `config file` or `default`.
    pub source: &'static str,
}

/// The settings of the service `name` of `cmd` that `matches` (its matches, after [`merge`])
/// hold, for `--check-config`: every long flag with a value, the global ones included, in
/// key order. `from_file` says which values came from the file.
pub fn settings(cmd: &Command, name: &str, matches: &ArgMatches, from_file: &[String]) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut built = cmd.clone();
    built.build();
    let Some(service) = built.find_subcommand(name) else { return out };
    for arg in service.get_arguments() {
        let Some(key) = arg.get_long().filter(|l| !NOT_SETTINGS.contains(l)) else { continue };
        let id = arg.get_id().as_str();
        let (Some(source), Some(raw)) = (matches.value_source(id), matches.get_raw(id)) else { continue };
        let source = match source {
            ValueSource::CommandLine if from_file.iter().any(|k| k == key) => "config file",
            ValueSource::CommandLine => "command line",
            ValueSource::EnvVariable => "environment",
            _ => "default",
        };
        let raw: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let value = if arg.is_hide_env_values_set() {
            toml::Value::from("<hidden>")
        } else if flag_only(arg) {
            toml::Value::Boolean(raw.first().is_some_and(|v| v == "true"))
        } else if matches!(arg.get_action(), ArgAction::Append) {
            toml::Value::Array(raw.into_iter().map(toml::Value::from).collect())
        } else {
            toml::Value::from(raw.join(","))
        };
        out.push(Setting { key: key.to_owned(), value: value.to_string(), source });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command::new("scatter")
            .arg(Arg::new("log_level").long("log-level").global(true))
            .subcommand(
                Command::new("host")
                    .arg(Arg::new("config").long("config").value_parser(clap::value_parser!(PathBuf)))
                    .arg(Arg::new("data_dir").long("data-dir").required(true))
                    .arg(Arg::new("zone").long("zone").default_value("default"))
                    .arg(Arg::new("coordinator").long("coordinator"))
                    .arg(Arg::new("tag").long("tag").action(ArgAction::Append))
                    .arg(Arg::new("port").long("port").value_parser(clap::value_parser!(u16)))
                    .arg(Arg::new("token").long("join-token").env("TEST_SCATTER_TOKEN").hide_env_values(true))
                    .arg(Arg::new("insecure").long("insecure").action(ArgAction::SetTrue)),
            )
            .subcommand(Command::new("ls").arg(Arg::new("config").long("config")))
    }

    fn file(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("host.toml");
        std::fs::write(&path, text).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        (dir, path)
    }

    fn merge_args(path: &Path, extra: &[&str]) -> Result<Merged> {
        let mut args: Vec<OsString> = ["scatter", "host", "--config"].map(OsString::from).to_vec();
        args.push(path.into());
        args.extend(extra.iter().map(OsString::from));
        merge(&cmd(), args)
    }

    fn tail(m: &Merged) -> Vec<String> {
        m.args[4..].iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn settings_become_flags_and_the_command_line_wins() {
        let (_d, path) = file(
            "data-dir = \"/srv\"\nzone = \"a\"\ninsecure = true\ncoordinator = [\"https://a\", \"https://b\"]\n\
             tag = [\"x\", \"y\"]\nport = 7000\nlog-level = \"debug\"\n",
            0o644,
        );
        let m = merge_args(&path, &["--zone", "b"]).expect("merge");
        assert_eq!(
            tail(&m),
            [
                "--zone",
                "b",
                "--coordinator=https://a,https://b",
                "--data-dir=/srv",
                "--insecure",
                "--log-level=debug",
                "--port=7000",
                "--tag=x",
                "--tag=y"
            ]
        );
        let matches = cmd().try_get_matches_from(&m.args).expect("parses");
        let (_, host) = matches.subcommand().expect("host");
        assert_eq!(host.get_one::<String>("zone").map(String::as_str), Some("b"));
        assert_eq!(host.get_one::<u16>("port"), Some(&7000));
        let shown = settings(&cmd(), "host", host, &m.from_file);
        let level = shown.iter().find(|s| s.key == "log-level").expect("a global flag");
        assert_eq!((level.value.as_str(), level.source), ("\"debug\"", "config file"));
        let zone = shown.iter().find(|s| s.key == "zone").expect("zone");
        assert_eq!((zone.value.as_str(), zone.source), ("\"b\"", "command line"));
        let dir = shown.iter().find(|s| s.key == "data-dir").expect("data-dir");
        assert_eq!((dir.value.as_str(), dir.source), ("\"/srv\"", "config file"));
        let tags = shown.iter().find(|s| s.key == "tag").expect("tag");
        assert_eq!(tags.value, "[\"x\", \"y\"]");
    }

    #[test]
    fn false_flags_are_left_out_and_no_config_changes_nothing() {
        let (_d, path) = file("data-dir = \"/srv\"\ninsecure = false\n", 0o644);
        let m = merge_args(&path, &[]).expect("merge");
        assert_eq!(tail(&m), ["--data-dir=/srv"]);
        let plain: Vec<OsString> = ["scatter", "host", "--data-dir", "x"].map(OsString::from).to_vec();
        assert_eq!(merge(&cmd(), plain.clone()).expect("merge").args, plain);
        // Another command's --config is its own business.
        let other: Vec<OsString> = ["scatter", "ls", "--config", "x"].map(OsString::from).to_vec();
        assert!(merge(&cmd(), other).expect("merge").file.is_none());
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        for (text, expect) in [
            ("zoen = \"a\"\n", "unknown key `zoen` (did you mean `zone`?)"),
            ("data_dir = \"/srv\"\n", "unknown key `data_dir` (write `data-dir`"),
            ("[host]\nzone = \"a\"\n", "`[host]` is a section"),
            ("config = \"x\"\n", "unknown key `config`"),
            ("insecure = \"yes\"\n", "`insecure` in the config file"),
            ("zone = true\n", "`zone` in the config file"),
            ("coordinator = [[\"a\"]]\n", "must be an array of strings or numbers"),
            ("zone = \n", "is not valid TOML (line 1)"),
        ] {
            let (_d, path) = file(text, 0o600);
            let e = format!("{:#}", merge_args(&path, &[]).expect_err(text));
            assert!(e.contains(expect), "{text}: {e}");
            assert!(e.contains(&path.display().to_string()), "{text}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_needs_a_private_file() {
        let (_d, path) = file("data-dir = \"/srv\"\njoin-token = \"sjt_x\"\n", 0o640);
        let e = format!("{:#}", merge_args(&path, &[]).expect_err("0640"));
        assert!(e.contains(&format!("run `chmod 600 {}`", path.display())), "{e}");
        assert!(e.contains("`join-token`") && e.contains("mode 640"), "{e}");
        let (_d, path) = file("data-dir = \"/srv\"\njoin-token = \"sjt_x\"\n", 0o600);
        let m = merge_args(&path, &[]).expect("0600 is fine");
        assert!(tail(&m).contains(&"--join-token=sjt_x".to_owned()));
        // No secret: readable is fine, writable by others is not.
        let (_d, path) = file("data-dir = \"/srv\"\n", 0o644);
        merge_args(&path, &[]).expect("no secret");
        for mode in [0o664, 0o646] {
            let (_d, path) = file("data-dir = \"/srv\"\n", mode);
            let e = format!("{:#}", merge_args(&path, &[]).expect_err("writable by others"));
            assert!(e.contains(&format!("run `chmod go-w {}`", path.display())), "{e}");
        }
    }

    #[test]
    fn clap_errors_about_file_values_name_the_key() {
        let (_d, path) = file("data-dir = \"/srv\"\nport = \"seven\"\n", 0o644);
        let m = merge_args(&path, &[]).expect("merge");
        let e = cmd().try_get_matches_from(&m.args).expect_err("bad port");
        let said = m.explain(&e).expect("about the file");
        assert!(said.starts_with("`port` in the config file") && said.contains("`seven` is refused"), "{said}");
        // A flag given twice on the command line is the command line's mistake.
        let (_d, path) = file("data-dir = \"/srv\"\nzone = \"a\"\n", 0o644);
        let m = merge_args(&path, &["--zone", "b", "--zone", "c"]).expect("merge");
        let e = cmd().try_get_matches_from(&m.args).expect_err("twice");
        assert_eq!(m.explain(&e), None);
        let (_d, path) = file("zone = \"a\"\n", 0o644);
        let m = merge_args(&path, &[]).expect("merge");
        let e = cmd().try_get_matches_from(&m.args).expect_err("no data dir");
        assert!(m.explain(&e).expect("missing").contains("lacks `data-dir`"));
    }

    #[test]
    fn distances() {
        assert_eq!(distance("zoen", "zone"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("listen", "listen"), 0);
    }
}
