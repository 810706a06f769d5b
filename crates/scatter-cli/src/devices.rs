//! What `init`, `key passwd`, `key devices` and `key recovery-code` tell the user: above all,
//! what to keep, and what happens without it.

use std::fmt::Write;
use std::path::Path;

use scatter_client::profile::{CodeState, Initialized};
use scatter_proto::api::{DevicesResponse, Role};

use crate::terms::format_time;

/// How to keep a recovery code, printed with every new one.
fn code_text(code: &str) -> String {
    format!(
        "  Recovery code (shown only now; write it down or print it, and keep it away from this machine):\n\n    {code}\n\n\
         With this code and your passphrase, `scatter init --coordinator URL --token CODE` on any machine gets your keys\n\
         back if this one is lost. Each code works once (using it prints a new one); `scatter key recovery-code` makes a\n\
         new one and voids this one.\n"
    )
}

/// The report of `scatter init`.
pub fn initialized(done: &Initialized, dir: &Path) -> String {
    let p = &done.profile;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} as user {} ({}), device {}, with {}; profile and keys are in {}.",
        if done.recovered { "Recovered your keys" } else { "Registered" },
        p.user_id,
        done.role,
        p.device(),
        p.coordinator,
        dir.display()
    );
    if !done.keys_open {
        let _ = writeln!(
            out,
            "warning: the passphrase given does not open the key file that came back (it is under the passphrase it was last\n\
             sealed with); it is saved as it is, and every command asks for the passphrase: use that one. The recovery code\n\
             used is spent: run `scatter key recovery-code` with the right passphrase to get a new one."
        );
        return out;
    }
    match (&done.code, done.role) {
        (CodeState::New(code), _) => {
            let _ = writeln!(out, "\nKeep two things, apart from this machine:\n  Your passphrase: without it nobody, not even the grid's admin, can read your data.");
            out.push_str(&code_text(code));
        }
        (CodeState::Kept, _) => {
            let _ = writeln!(
                out,
                "\nYour account's recovery code (made on another device) still works: keep it, with your passphrase, apart\n\
                 from your machines. `scatter key devices` lists this machine next to your others."
            );
        }
        (CodeState::None(_), Role::Appender) => {
            let _ = writeln!(
                out,
                "\nThis machine adds to its owner's data and cannot read it back (with write-only keys). Restores run on the\n\
                 owner's devices (or, if all are lost, with the owner's recovery code). If this machine is lost, the grid's\n\
                 admin invites it again; keep this passphrase to run it."
            );
        }
        (CodeState::None(why), _) => {
            let _ = writeln!(out, "\nKeep your passphrase safe: without it nobody, not even the grid's admin, can read the data.\nNo recovery code: {why}.");
        }
    }
    out
}

/// The report of `scatter key passwd` about the recovery code.
pub fn after_passwd(code: &CodeState) -> String {
    match code {
        CodeState::Kept => {
            "The copy the coordinator keeps for your recovery code is re-sealed: the code now opens it with the new passphrase.".into()
        }
        CodeState::New(code) => code_text(code),
        CodeState::None(why) => format!("No copy of the key file is kept for a recovery code: {why}."),
    }
}

/// The report of `scatter key recovery-code`.
pub fn new_code(code: &str) -> String {
    format!("A new recovery code is set; the one before no longer works.\n\n{}", code_text(code))
}

/// `scatter key devices` as a table.
pub fn table(list: &DevicesResponse) -> String {
    let mut out = format!("{:<8} {:<24} {:<22} {}\n", "DEVICE", "NAME", "REGISTERED", "STATE");
    for d in &list.devices {
        let state = match (d.revoked, d.id == list.current) {
            (Some(t), _) => format!("revoked {}", format_time(t)),
            (None, true) => "this device".into(),
            (None, false) => "active".into(),
        };
        let state = match d.unproven && d.revoked.is_none() {
            true => {
                format!("{state}, registered with the recovery code, has not shown the keys (revoke it if not yours)")
            }
            false => state,
        };
        // Whatever the coordinator sends, no terminal escapes reach the screen.
        let name: String = d.name.chars().filter(|c| !c.is_control()).take(24).collect();
        let _ = writeln!(out, "{:<8} {:<24} {:<22} {}", d.id.to_string(), name, format_time(d.created), state);
    }
    out
}
