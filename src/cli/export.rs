//! `lstmkd export`: a checkpoint as ONNX or safetensors.

use anyhow::Result;

pub(crate) use crate::interop::export::ExportArgs as Args;

pub(crate) fn run(args: Args) -> Result<()> {
    let done = crate::interop::export::run(&args)?;
    if let Some((diff, scale)) = done.check {
        println!(
            "checked     tract runs the graph: max |logit difference| {diff:.2e} (logits up to {scale:.2})"
        );
    }
    println!("wrote       {} ({} bytes)", args.out.display(), done.bytes);
    Ok(())
}
