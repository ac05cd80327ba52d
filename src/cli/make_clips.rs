//! `lstmkd make-clips`: a generated motion dataset in the clips layout.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Folder the dataset is written to (train/ and test/); must not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// IDX dataset whose images are the moving items.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    items: PathBuf,
    /// Training clips per class.
    #[arg(long, default_value_t = 60)]
    train_per_class: usize,
    /// Test clips per class.
    #[arg(long, default_value_t = 15)]
    test_per_class: usize,
    /// Shortest clip, in frames.
    #[arg(long, default_value_t = 6)]
    min_frames: usize,
    /// Longest clip, in frames.
    #[arg(long, default_value_t = 12)]
    max_frames: usize,
    /// Pixels the item travels over a clip (the canvas is the item plus this on each axis).
    #[arg(long, default_value_t = 12)]
    travel: usize,
    /// Seed of every draw (items, clip lengths, offsets): the same seed writes the same set.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn run(args: Args) -> Result<()> {
    let opts = crate::data::motion::MotionOptions {
        out: args.out,
        items: args.items,
        train_per_class: args.train_per_class,
        test_per_class: args.test_per_class,
        min_frames: args.min_frames,
        max_frames: args.max_frames,
        travel: args.travel,
        seed: args.seed,
    };
    let (train, test) = crate::data::motion::generate(&opts)?;
    println!(
        "done: {train} training and {test} test clips in {} (data.format = \"clips\")",
        opts.out.display()
    );
    Ok(())
}
