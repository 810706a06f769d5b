//! Where data goes: the erasure code of new packs (`--data`/`--parity`, else the grid's),
//! the user's placement policy (`scatter policy`), the grid's durability rule in `status`,
//! and `scatter admin capacity`.

use anyhow::Result;
use scatter_cli::terms::PolicyArgs;
use scatter_client::coordinator::Coordinator;
use scatter_client::upload::Redundancy;
use scatter_core::ByteSize;
use scatter_proto::api::{CapacityResponse, GridInfo, Policy};

/// The erasure code of new packs: `--data`/`--parity`, or else the grid's default, which
/// follows its durability rule.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CodeArgs {
    /// Data shards per pack (k; default: the grid's, e.g. 4).
    #[arg(long = "data")]
    pub k: Option<u8>,
    /// Parity shards per pack (m; default: the grid's, e.g. 2). The grid's durability rule
    /// needs m ≥ f.
    #[arg(long = "parity")]
    pub m: Option<u8>,
}

impl CodeArgs {
    /// The code to use: what was asked, the rest from the grid.
    pub async fn resolve(&self, coord: &Coordinator) -> Result<Redundancy> {
        if let (Some(k), Some(m)) = (self.k, self.m) {
            return Ok(Redundancy { k, m });
        }
        let grid = coord.grid().await?;
        Ok(Redundancy { k: self.k.unwrap_or(grid.data), m: self.m.unwrap_or(grid.parity) })
    }
}

/// `scatter policy`.
#[derive(clap::Subcommand)]
pub enum PolicyCmd {
    /// Show the conditions your data's hosts must meet.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set them (replacing the stored policy); `put` and `backup` take the same flags to
    /// override a condition for one run.
    Set {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Remove every condition: any host that takes data may be used.
    Clear,
}

/// Runs a `scatter policy` command.
pub async fn policy(coord: &Coordinator, cmd: PolicyCmd) -> Result<()> {
    match cmd {
        PolicyCmd::Show { json } => {
            let p = coord.policy().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!("Placement policy: {}", p);
            }
        }
        PolicyCmd::Set { policy } => {
            let p = coord.set_policy(&policy.policy()).await?;
            println!("Placement policy: {}", p);
        }
        PolicyCmd::Clear => {
            coord.set_policy(&Policy::default()).await?;
            println!("Placement policy cleared: any host that takes data may be used.");
        }
    }
    Ok(())
}

/// The durability rule, in a sentence or two for `status`.
pub fn describe_grid(g: &GridInfo) -> String {
    let how = if g.auto {
        format!("by the grid's size: {} failure domain(s) online", g.domains)
    } else {
        "set by the admin".to_owned()
    };
    let rule = match g.tolerate {
        0 => format!("Durability: f = 0 ({how}): losing a host may lose data; with two or more the grid keeps every pack safe from one loss."),
        f => format!("Durability: every pack survives the loss of any {f} host(s) or operators (f = {f}, {how})."),
    };
    let packs = match g.lowest_tolerance {
        None => "No packs stored yet.".to_owned(),
        Some(t) => format!("Lowest tolerance of any pack now: {t} loss(es)."),
    };
    let crowded = match g.crowded_packs {
        0 => String::new(),
        n => format!(
            " {n} pack(s) placed under a looser rule, or with a zone down, are re-spread once every zone has stayed up for 10 repair passes (5 minutes at the default --checker-interval)."
        ),
    };
    format!("{rule} New data is coded {}+{}. {packs}{crowded}", g.data, g.parity)
}

/// Prints `scatter admin capacity`.
pub fn print_capacity(c: &CapacityResponse) {
    let g = &c.grid;
    println!(
        "{} host(s) take data, {} free. Under the durability rule (f = {}, {}+{}: at most {} of a pack's {} shards per failure domain), they can take {} more with redundancy: {} of user data.",
        c.hosts,
        ByteSize(c.free),
        g.tolerate,
        g.data,
        g.parity,
        domain_share(g),
        g.data as usize + g.parity as usize,
        ByteSize(c.raw),
        ByteSize(c.user_data)
    );
    if c.raw < c.free / 2 {
        println!("The rule, not disk space, is the limit: hosts of other operators or more hosts of similar size would raise it.");
    }
}

/// Shards of a pack one domain may hold (as the coordinator computes it).
fn domain_share(g: &GridInfo) -> usize {
    match g.tolerate {
        0 => g.data as usize + g.parity as usize,
        f => ((g.parity / f) as usize).max(1),
    }
}
