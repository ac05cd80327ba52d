use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_memory();
    match lstmkd::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<lstmkd::train::interrupt::Interrupted>() {
                Some(i) => ExitCode::from(i.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// A training step frees and reallocates tensors of a few MiB to tens of MiB hundreds of times.
/// glibc hands blocks over its mmap threshold (adaptive, at most 32 MiB by default) back to the
/// kernel on free, so each comes back as fresh pages that fault and are zeroed one at a time;
/// keeping freed memory in the heap makes training faster (BENCHMARKS.md, "What the vendored
/// flex changes").
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
