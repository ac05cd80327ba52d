//! `lstmkd import`: PyTorch weights of a zoo architecture as an lstmkd checkpoint.

use anyhow::Result;

pub(crate) use crate::interop::import::ImportArgs as Args;

pub(crate) fn run(args: Args) -> Result<()> {
    let ckpt = crate::interop::import::run(&args)?;
    let m = &ckpt.meta;
    println!(
        "imported    {} as {} ({} classes, input {}x{}x{}, {} parameters)",
        args.weights.display(),
        m.model.name,
        m.classes.len(),
        m.input[0],
        m.input[1],
        m.input[2],
        crate::models::count_params(&ckpt.network(&burn::tensor::Device::flex())?)
    );
    println!("mean/std    {:?} / {:?}", m.mean, m.std);
    println!("wrote       {}", args.out.display());
    Ok(())
}
