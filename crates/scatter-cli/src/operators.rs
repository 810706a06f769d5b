//! `scatter admin operator`: parties that run hosts, each one failure domain unless the
//! admin says otherwise.

use anyhow::Result;
use clap::Subcommand;
use scatter_client::coordinator::Coordinator;
use scatter_proto::api::OperatorRequest;

#[derive(Subcommand)]
pub(crate) enum OperatorCmd {
    /// Register an operator; prints the join token its hosts use (`scatter host
    /// --join-token`). Its hosts count as one failure domain, whatever zones they declare.
    Add {
        /// A name for listings (unique).
        name: String,
        /// Its hosts fail independently of each other: each is its own failure domain.
        #[arg(long)]
        independent: bool,
    },
    /// Every operator, with how many hosts joined with its token.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Declare whether an operator's hosts fail independently (yes: each host its own failure
    /// domain) or together (no: all of them one domain, the default).
    Independent {
        /// The operator's name.
        name: String,
        /// yes or no.
        #[arg(value_parser = yes_no, action = clap::ArgAction::Set)]
        independent: bool,
    },
}

fn yes_no(s: &str) -> Result<bool, String> {
    match s {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("`{s}`: say yes or no")),
    }
}

/// Runs an operator command against the coordinator `coord` (at `url`, one or several).
pub(crate) async fn run(coord: &Coordinator, url: &scatter_net::CoordinatorUrls, command: OperatorCmd) -> Result<()> {
    match command {
        OperatorCmd::Add { name, independent } => {
            let op = coord.add_operator(&OperatorRequest { name, independent }).await?;
            println!("{}", op.token);
            eprintln!(
                "Hosts run by {} join with this token: scatter host --coordinator {url} --join-token TOKEN ...; {}",
                op.name,
                if independent {
                    "each is its own failure domain.".to_owned()
                } else {
                    format!(
                        "together they count as one failure domain (operator {}) unless you run `scatter admin operator independent {} yes`.",
                        op.id, op.name
                    )
                }
            );
        }
        OperatorCmd::Ls { json } => {
            let ops = coord.operators().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ops)?);
            } else {
                println!("{:<5} {:<20} {:>6}  {:<12} registered", "id", "name", "hosts", "domains");
                for o in ops {
                    println!(
                        "{:<5} {:<20} {:>6}  {:<12} {}",
                        o.id,
                        scatter_core::tree::escape(o.name.as_bytes()),
                        o.hosts,
                        if o.independent { "one per host" } else { "one" },
                        scatter_cli::terms::format_time(o.created)
                    );
                }
            }
        }
        OperatorCmd::Independent { name, independent } => {
            coord.set_operator_independent(&name, independent).await?;
            if independent {
                println!("{name}'s hosts now count as separate failure domains.");
            } else {
                println!("{name}'s hosts now count as one failure domain; packs holding too much of it are re-spread.");
            }
        }
    }
    Ok(())
}
