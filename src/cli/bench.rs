//! `lstmkd bench`: training and inference speed on synthetic images.

use anyhow::Result;

use crate::train::checkpoint::write_atomic;

pub(crate) use crate::bench::BenchArgs as Args;

pub(crate) fn run(args: Args) -> Result<()> {
    if let Some(path) = &args.checkpoint {
        let rows = crate::bench::checkpoint_inference(&args, path)?;
        println!(
            "lstmkd bench: {} as deployed, device {}",
            path.display(),
            args.device
        );
        crate::bench::print_timings(&rows);
        if let Some(json) = &args.json {
            write_atomic(json, serde_json::to_string_pretty(&rows)?.as_bytes())?;
        }
        return Ok(());
    }
    let report = crate::bench::run(&args)?;
    crate::bench::print(&report);
    if let Some(json) = &args.json {
        write_atomic(json, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
