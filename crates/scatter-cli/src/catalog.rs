//! `scatter catalog export|import`: a whole catalog to a file and back, in one format for
//! SQLite and PostgreSQL. How a grid moves from the embedded SQLite catalog to PostgreSQL
//! (stop the coordinator, export, import, start coordinators with `--catalog`), and a
//! logical backup of either.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use scatter_coordinator::store::{Moved, Store};

/// Where a catalog is.
#[derive(Args)]
pub struct Location {
    /// A coordinator's data directory: its SQLite catalog (catalog.db).
    #[arg(long, conflicts_with = "catalog", required_unless_present = "catalog")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL catalog (postgresql://USER:PASSWORD@HOST:PORT/DATABASE), or
    /// SCATTER_CATALOG.
    #[arg(long, env = "SCATTER_CATALOG", hide_env_values = true)]
    catalog: Option<String>,
}

/// What to do with a catalog.
#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Write the whole catalog to a file (one consistent snapshot; coordinators may run).
    Export {
        #[command(flatten)]
        from: Location,
        /// The file to write (mode 0600: it holds wrapped keys and token hashes), or `-`
        /// for standard output.
        #[arg(long, default_value = "-")]
        file: PathBuf,
    },
    /// Load an export into a new, empty catalog (all of it or nothing).
    Import {
        #[command(flatten)]
        into: Location,
        /// The export to read, or `-` for standard input.
        #[arg(long, default_value = "-")]
        file: PathBuf,
    },
}

fn open(at: &Location, create: bool) -> Result<Store> {
    match (&at.catalog, &at.data_dir) {
        (Some(url), _) => Store::connect(url).context("could not open the PostgreSQL catalog"),
        (None, Some(dir)) => {
            let path = dir.join("catalog.db");
            if !create && !path.exists() {
                bail!("{} holds no catalog; give the coordinator's --data-dir", dir.display());
            }
            std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
            Store::open(&path).with_context(|| format!("could not open {}", path.display()))
        }
        (None, None) => bail!("say which catalog: --data-dir DIR or --catalog postgresql://…"),
    }
}

fn report(verb: &str, moved: &Moved) {
    let tables: Vec<String> = moved.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
    eprintln!("{verb} {} rows ({})", moved.total(), tables.join(", "));
}

/// Writes the export through a temporary file renamed into place, so a failed export
/// leaves no file that looks whole.
fn export_to(store: &Store, path: &Path) -> Result<Moved> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".scatter-export")
        .tempfile_in(dir)
        .with_context(|| format!("could not write in {}", dir.display()))?;
    let mut out = std::io::BufWriter::new(tmp.as_file());
    let moved = store.export(&mut out)?;
    out.flush().context("could not write the export")?;
    drop(out);
    tmp.as_file().sync_all().context("could not write the export")?;
    tmp.persist(path).with_context(|| format!("could not write {}", path.display()))?;
    Ok(moved)
}

/// Runs a `catalog` command (blocking: the catalog's clients are synchronous).
pub fn run(cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Export { from, file } => {
            let store = open(&from, false)?;
            let moved = if file.as_os_str() == "-" {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                match store.export(&mut out).map_err(anyhow::Error::from).and_then(|m| {
                    std::io::Write::flush(&mut out)?;
                    Ok(m)
                }) {
                    Err(e) if crate::is_closed_pipe(&e) => std::process::exit(141),
                    r => r?,
                }
            } else {
                export_to(&store, &file)?
            };
            report("exported", &moved);
        }
        CatalogCmd::Import { into, file } => {
            let store = open(&into, true)?;
            let moved = if file.as_os_str() == "-" {
                store.import(&mut std::io::stdin().lock())?
            } else {
                let f = std::fs::File::open(&file).with_context(|| format!("could not read {}", file.display()))?;
                store.import(&mut BufReader::new(f))?
            };
            report("imported", &moved);
        }
    }
    Ok(())
}
