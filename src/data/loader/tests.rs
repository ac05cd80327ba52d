use std::sync::Arc;

use super::{Batch, Loader};
use crate::data::augment::{AugmentConfig, Normalize};
use crate::data::{InMemory, Source, Split, train_val_split};

fn source(n: usize) -> Arc<dyn Source> {
    // Image i is filled with the value i (so a batch reveals which images it holds).
    Arc::new(InMemory {
        images: (0..n).flat_map(|i| vec![i as u8; 2 * 4 * 4]).collect(),
        labels: (0..n).map(|i| i % 3).collect(),
        shape: [2, 4, 4],
    })
}

fn loader(split: Split, augment: Option<AugmentConfig>, seed: u64) -> Loader {
    Loader {
        split,
        batch_size: 8,
        normalize: Normalize::new(&[0.0, 0.5], &[1.0, 0.25]),
        augment,
        seed,
        prefetch: 2,
    }
}

fn collect(l: &Loader, epoch: usize) -> Vec<Batch> {
    l.epoch(epoch).unwrap().map(|b| b.unwrap()).collect()
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let (t1, v1) = train_val_split(source(100), 0.2, 7);
    let (t2, v2) = train_val_split(source(100), 0.2, 7);
    let (_, v3) = train_val_split(source(100), 0.2, 8);
    assert_eq!((t1.len(), v1.len()), (80, 20));
    assert_eq!(v1.indices, v2.indices);
    assert_eq!(t1.indices, t2.indices);
    assert_ne!(v1.indices, v3.indices);
    let mut all: Vec<usize> = t1
        .indices
        .iter()
        .chain(v1.indices.iter())
        .copied()
        .collect();
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
}

#[test]
fn same_seed_same_batches_and_epochs_differ() {
    let aug = Some(AugmentConfig {
        pad_crop: 1,
        hflip: true,
    });
    let a = loader(Split::all(source(30)), aug, 1);
    let b = loader(Split::all(source(30)), aug, 1);
    let (ea, eb) = (collect(&a, 0), collect(&b, 0));
    assert_eq!(ea.len(), 4); // 30 images in batches of 8
    assert_eq!(ea.last().unwrap().dims, [6, 2, 4, 4]);
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x.images, y.images);
        assert_eq!(x.labels, y.labels);
    }
    assert_ne!(a.order(0), a.order(1), "each epoch reshuffles");
    assert_ne!(a.order(0), loader(Split::all(source(30)), aug, 2).order(0));
    let mut seen = a.order(3);
    seen.sort();
    assert_eq!(
        seen,
        (0..30).collect::<Vec<_>>(),
        "an epoch visits every image once"
    );
}

#[test]
fn evaluation_batches_are_normalised_in_order() {
    let l = loader(Split::all(source(10)), None, 0);
    let batches = collect(&l, 0);
    let b = &batches[0];
    // Image 3, channel 1: (3/255 - 0.5) / 0.25.
    let want = (3.0 / 255.0 - 0.5) / 0.25;
    let got = b.images[3 * 32 + 16];
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    assert_eq!(b.labels, vec![0, 1, 2, 0, 1, 2, 0, 1]);
}

/// Image 13 panics when read, as a bug in a reader would.
struct Panicky;

impl Source for Panicky {
    fn len(&self) -> usize {
        40
    }
    fn shape(&self) -> [usize; 3] {
        [2, 4, 4]
    }
    fn label(&self, _: usize) -> usize {
        0
    }
    fn read(&self, i: usize, out: &mut [u8]) -> anyhow::Result<()> {
        assert_ne!(i, 13, "a reader bug");
        out.fill(1);
        Ok(())
    }
}

#[test]
fn a_panic_on_the_loader_thread_is_an_error_of_the_epoch() {
    let l = loader(Split::all(Arc::new(Panicky)), None, 0);
    let results: Vec<_> = l.epoch(0).unwrap().collect();
    // Batches 0 (images 0-7) arrives, batch 1 (8-15) fails, nothing after it.
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    let e = format!("{:#}", results[1].as_ref().err().unwrap());
    assert!(
        e.contains("panicked on batch 1") && e.contains("a reader bug"),
        "{e}"
    );
}
