//! Records the code a binary was built from (`git describe`), so that a ledger entry says
//! which code produced its numbers.

use std::process::Command;

fn main() {
    // The description changes with a commit, a checkout or an edit of the sources.
    for path in ["src", "Cargo.toml", ".git/HEAD", ".git/index", ".git/refs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let described = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    println!(
        "cargo:rustc-env=LSTMKD_CODE={}",
        described.as_deref().unwrap_or("unknown")
    );
}
