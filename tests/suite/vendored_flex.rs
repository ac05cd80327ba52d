//! The flex that burn links is lstmkd's vendored copy (vendor/burn-flex), not crates.io's:
//! the speed-ups and the thread-count-independent sums the other tests and the published
//! numbers rely on live only there.

#[test]
fn the_linked_flex_is_the_vendored_copy() {
    // `LSTMKD_PATCHES` exists only in the vendored copy, so against crates.io's burn-flex
    // (a burn upgrade the patch no longer matches) this file does not compile.
    let patches = burn::backend::flex::LSTMKD_PATCHES;
    let vendored = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/burn-flex/VENDORED.md"),
    )
    .unwrap()
    .to_lowercase();
    for patch in patches {
        assert!(
            vendored.contains(patch),
            "VENDORED.md describes every change: {patch}"
        );
    }
}
