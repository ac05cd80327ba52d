//! Records the code a binary was built from (`git describe`), so that a ledger entry says
//! which code produced its numbers.

use std::process::Command;

fn main() {
    // The description changes with a commit, a checkout or an edit of what is compiled in
    // (the vendored flex and the locked dependencies change numbers too).
    for path in [
        "src",
        "vendor",
        "Cargo.toml",
        "Cargo.lock",
        ".git/HEAD",
        ".git/index",
        ".git/refs",
        ".git/packed-refs",
    ] {
        // A path that does not exist would rerun this script at every build.
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
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
