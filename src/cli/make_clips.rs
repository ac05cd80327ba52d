//! `lstmkd make-clips`: a generated motion dataset in the clips layout.

use anyhow::Result;

pub(crate) use crate::data::motion::MotionArgs as Args;

pub(crate) fn run(args: Args) -> Result<()> {
    let (train, test) = crate::data::motion::generate(&args)?;
    println!(
        "done: {train} training and {test} test clips in {} (data.format = \"clips\")",
        args.out.display()
    );
    Ok(())
}
