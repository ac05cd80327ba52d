//! `lstmkd predict`: images (or clip folders) classified with a checkpoint.

use anyhow::Result;

pub(crate) use crate::predict::PredictArgs as Args;

pub(crate) fn run(args: Args) -> Result<()> {
    let predictions = crate::predict::run(&args)?;
    crate::predict::print(&predictions, args.json)
}
