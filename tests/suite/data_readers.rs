use std::path::Path;

use lstmkd::data::{Cifar100Labels, cifar, idx, image_folder, tiny_imagenet};
use tempfile::tempdir;

use crate::common::*;

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn idx_reads_gzipped_and_raw_alike() {
    let (a, b) = (tempdir().unwrap(), tempdir().unwrap());
    write_idx_dataset(a.path(), 30, 10, 8, true);
    write_idx_dataset(b.path(), 30, 10, 8, false);
    let (ga, rb) = (idx::open(a.path()).unwrap(), idx::open(b.path()).unwrap());
    assert_eq!(ga.train.len(), 30);
    assert_eq!(ga.test.len(), 10);
    assert_eq!(ga.shape(), [1, 8, 8]);
    let (mut x, mut y) = (vec![0u8; 64], vec![0u8; 64]);
    for i in 0..30 {
        ga.train.read(i, &mut x).unwrap();
        rb.train.read(i, &mut y).unwrap();
        assert_eq!(x, y);
        assert_eq!(ga.train.label(i), rb.train.label(i));
    }
    let (images, labels) = toy_images(30, 8, 8, 4, 1);
    ga.train.read(7, &mut x).unwrap();
    assert_eq!(x, images[7 * 64..8 * 64]);
    assert_eq!(ga.train.label(7), labels[7] as usize);
    assert_eq!(
        ga.classes[3], "3",
        "MNIST's digits in a folder not named like Fashion-MNIST"
    );
    let fashion = a.path().join("Fashion-MNIST");
    write_idx_dataset(&fashion, 30, 10, 8, false);
    let names = idx::open(&fashion).unwrap().classes;
    assert_eq!(
        (names[0].as_str(), names[9].as_str()),
        ("T-shirt/top", "Ankle boot")
    );
}

fn corrupt_idx(root: &Path, file: &str, bytes: Vec<u8>) -> String {
    write_idx_dataset(root, 20, 5, 8, false);
    std::fs::write(root.join(file), bytes).unwrap();
    err_of(idx::open(root))
}

#[test]
fn idx_bad_inputs_name_the_file_and_problem() {
    let d = tempdir().unwrap();
    let e = corrupt_idx(
        d.path(),
        "train-images-idx3-ubyte",
        vec![0, 0, 9, 3, 0, 0, 0, 1],
    );
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("wrong magic"),
        "{e}"
    );

    // Dimensions whose product does not fit in 64 bits.
    let huge = idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[1; 64]);
    let e = corrupt_idx(d.path(), "train-images-idx3-ubyte", huge);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("overflow"),
        "{e}"
    );

    let mut trunc = idx_bytes(&[20, 8, 8], &[1; 20 * 64]);
    trunc.truncate(trunc.len() - 10);
    let e = corrupt_idx(d.path(), "train-images-idx3-ubyte", trunc);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );

    let e = corrupt_idx(
        d.path(),
        "train-labels-idx1-ubyte",
        idx_bytes(&[20], &[10; 20]),
    );
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("out of range"),
        "{e}"
    );

    let e = corrupt_idx(
        d.path(),
        "train-labels-idx1-ubyte",
        idx_bytes(&[19], &[1; 19]),
    );
    assert!(e.contains("20 images") && e.contains("19 labels"), "{e}");

    write_idx_dataset(d.path(), 20, 5, 8, false);
    std::fs::remove_file(d.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let e = err_of(idx::open(d.path()));
    assert!(
        e.contains("missing IDX file 't10k-labels-idx1-ubyte'"),
        "{e}"
    );

    std::fs::write(d.path().join("t10k-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    let e = err_of(idx::open(d.path()));
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
}

fn write_cifar10(root: &Path) {
    for i in 1..=5 {
        let labels: Vec<Vec<u8>> = (0..4).map(|j| vec![((i + j) % 10) as u8]).collect();
        std::fs::write(
            root.join(format!("data_batch_{i}.bin")),
            cifar_records(&labels),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("test_batch.bin"),
        cifar_records(&[vec![3], vec![9]]),
    )
    .unwrap();
}

#[test]
fn cifar10_reads_batches_and_rejects_bad_files() {
    let d = tempdir().unwrap();
    write_cifar10(d.path());
    let ds = cifar::open_cifar10(d.path()).unwrap();
    assert_eq!(
        (ds.train.len(), ds.test.len(), ds.num_classes()),
        (20, 2, 10)
    );
    assert_eq!(ds.test.label(1), 9);
    assert_eq!(
        ds.classes[9], "truck",
        "CIFAR-10's names without batches.meta.txt"
    );
    let mut buf = vec![0u8; 3072];
    ds.test.read(1, &mut buf).unwrap();
    assert_eq!(buf[0], 1); // pixel p of record i is (p + i) % 251
    assert_eq!(buf[100], 101);

    let mut bytes = cifar_records(&[vec![1], vec![2]]);
    bytes.pop();
    std::fs::write(d.path().join("data_batch_3.bin"), bytes).unwrap();
    let e = err_of(cifar::open_cifar10(d.path()));
    assert!(
        e.contains("data_batch_3.bin") && e.contains("truncated record"),
        "{e}"
    );

    std::fs::write(
        d.path().join("data_batch_3.bin"),
        cifar_records(&[vec![10]]),
    )
    .unwrap();
    let e = err_of(cifar::open_cifar10(d.path()));
    assert!(
        e.contains("data_batch_3.bin") && e.contains("out of range"),
        "{e}"
    );

    std::fs::remove_file(d.path().join("test_batch.bin")).unwrap();
    let e = err_of(cifar::open_cifar10(d.path()));
    assert!(e.contains("test_batch.bin") && e.contains("missing"), "{e}");
}

#[test]
fn cifar100_uses_fine_labels_by_default_and_coarse_on_request() {
    let d = tempdir().unwrap();
    let sub = d.path().join("cifar-100-binary");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("train.bin"),
        cifar_records(&[vec![4, 77], vec![19, 99]]),
    )
    .unwrap();
    std::fs::write(sub.join("test.bin"), cifar_records(&[vec![0, 5]])).unwrap();
    let fine = cifar::open_cifar100(d.path(), Cifar100Labels::Fine).unwrap();
    assert_eq!(
        (fine.num_classes(), fine.train.label(0), fine.train.label(1)),
        (100, 77, 99)
    );
    assert_eq!(
        fine.classes[99], "99",
        "numbers without fine_label_names.txt"
    );
    // The names the binary distribution ships beside the records.
    let coarse_names: Vec<String> = (0..20).map(|i| format!("super{i}")).collect();
    std::fs::write(
        sub.join("coarse_label_names.txt"),
        coarse_names.join("\n") + "\n",
    )
    .unwrap();
    let coarse = cifar::open_cifar100(d.path(), Cifar100Labels::Coarse).unwrap();
    assert_eq!(coarse.classes, coarse_names);
    std::fs::write(sub.join("fine_label_names.txt"), "apple\nbee\n").unwrap();
    let e = err_of(cifar::open_cifar100(d.path(), Cifar100Labels::Fine));
    assert!(
        e.contains("fine_label_names.txt") && e.contains("2 class names for 100"),
        "{e}"
    );
    assert_eq!(
        (
            coarse.num_classes(),
            coarse.train.label(0),
            coarse.train.label(1)
        ),
        (20, 4, 19)
    );

    std::fs::write(sub.join("test.bin"), cifar_records(&[vec![20, 5]])).unwrap();
    let e = err_of(cifar::open_cifar100(d.path(), Cifar100Labels::Coarse));
    assert!(e.contains("test.bin") && e.contains("out of range"), "{e}");
}

fn write_image_folder(root: &Path) {
    for (split, n) in [("train", 3), ("val", 1)] {
        for (k, class) in ["cat", "dog"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(40, 30, |x, y| {
                    image::Rgb([(x * 6) as u8, (y * 8) as u8, (k * 200) as u8])
                });
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                img.save(dir.join(format!("{i}.{ext}"))).unwrap();
            }
        }
    }
}

#[test]
fn image_folder_resizes_crops_and_labels_by_folder() {
    let d = tempdir().unwrap();
    write_image_folder(d.path());
    let ds = image_folder::open(d.path(), 20, 16, false).unwrap();
    assert_eq!(ds.classes, vec!["cat", "dog"]);
    assert_eq!(
        (ds.train.len(), ds.test.len(), ds.shape()),
        (6, 2, [3, 16, 16])
    );
    assert_eq!((ds.train.label(0), ds.train.label(5)), (0, 1));
    let mut buf = vec![0u8; 3 * 16 * 16];
    ds.train.read(3, &mut buf).unwrap(); // dog/0.png (lossless): blue is 200 everywhere
    assert!(buf[2 * 256..].iter().all(|&b| b == 200));
    // Red = 6x and green = 8y are ramps, which a (normalised, symmetric) triangle filter keeps
    // exact away from the edges: the shorter side 30 -> 20 makes 40 -> 26 (truncated, as
    // torchvision), then the centre crop starts at round(10 / 2) = 5 and round(4 / 2) = 2. Pixel
    // (i, j) samples the source at centre ((j + 5 + 0.5) 40 / 26 - 0.5, (i + 2 + 0.5) 1.5 - 0.5).
    for i in 0..16 {
        for j in 0..16 {
            let sx = (j as f64 + 5.5) * 40.0 / 26.0 - 0.5;
            let sy = (i as f64 + 2.5) * 1.5 - 0.5;
            let (red, green) = (buf[i * 16 + j] as f64, buf[256 + i * 16 + j] as f64);
            assert!(
                (red - 6.0 * sx).abs() <= 1.0 && (green - 8.0 * sy).abs() <= 1.0,
                "pixel ({i}, {j}): red {red} vs {}, green {green} vs {}",
                6.0 * sx,
                8.0 * sy
            );
        }
    }

    // Without a crop the images keep their own (equal) size.
    let ds = image_folder::open(d.path(), 0, 0, false).unwrap();
    assert_eq!(ds.shape(), [3, 30, 40]);
}

#[test]
fn image_folder_bad_inputs_name_the_file_and_problem() {
    let d = tempdir().unwrap();
    write_image_folder(d.path());
    std::fs::write(
        d.path().join("train/dog/broken.jpg"),
        b"\xff\xd8 not really a jpeg",
    )
    .unwrap();
    let ds = image_folder::open(d.path(), 0, 16, false).unwrap();
    let broken = (0..ds.train.len())
        .map(|i| ds.train.read(i, &mut vec![0u8; 768]))
        .find_map(|r| r.err())
        .expect("the broken image fails to decode");
    let e = format!("{broken:#}");
    assert!(
        e.contains("broken.jpg") && e.contains("cannot decode"),
        "{e}"
    );

    std::fs::create_dir(d.path().join("train/emu")).unwrap();
    let e = err_of(image_folder::open(d.path(), 0, 16, false));
    assert!(e.contains("emu") && e.contains("empty class folder"), "{e}");
    std::fs::remove_dir(d.path().join("train/emu")).unwrap();

    std::fs::create_dir_all(d.path().join("val/fox")).unwrap();
    let e = err_of(image_folder::open(d.path(), 0, 16, false));
    assert!(
        e.contains("fox") && e.contains("not among the training classes"),
        "{e}"
    );
    std::fs::remove_dir(d.path().join("val/fox")).unwrap();

    let small = image_folder::open(d.path(), 0, 64, false).unwrap();
    let e = err_of(small.train.read(0, &mut vec![0u8; 3 * 64 * 64]));
    assert!(
        e.contains("0.png") && e.contains("smaller than the 64x64 crop"),
        "{e}"
    );

    // Without a crop, test images of another size than the training images are refused.
    for class in ["cat", "dog"] {
        image::RgbImage::new(20, 10)
            .save(d.path().join("val").join(class).join("0.png"))
            .unwrap();
    }
    let e = err_of(image_folder::open(d.path(), 0, 0, false));
    assert!(
        e.contains("val")
            && e.contains(
                "images are [3, 10, 20] but training images are [3, 30, 40] (set data.crop)"
            ),
        "{e}"
    );

    std::fs::remove_dir_all(d.path().join("val")).unwrap();
    let e = err_of(image_folder::open(d.path(), 0, 16, false));
    assert!(e.contains("missing 'val'"), "{e}");
}

#[test]
fn random_resized_crop_draws_torchvisions_boxes() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (mut small, mut large) = (false, false);
    for _ in 0..2000 {
        let (x, y, w, h) = image_folder::random_resized_box(120, 90, &mut rng);
        assert!(x + w <= 120 && y + h <= 90 && w > 0 && h > 0);
        let scale = (w * h) as f64 / (120.0 * 90.0);
        let ratio = w as f64 / h as f64;
        // Rounding to whole pixels moves the drawn scale and ratio slightly.
        assert!((0.075..=1.0).contains(&scale), "scale {scale}");
        assert!((0.72..=1.39).contains(&ratio), "ratio {ratio}");
        small |= scale < 0.15;
        large |= scale > 0.9;
    }
    assert!(small && large, "the whole scale range is drawn");
    // Nothing fits a 1x100 strip at ratio >= 3/4: the fallback is the central ratio-clamped box.
    assert_eq!(
        image_folder::random_resized_box(1, 100, &mut rng),
        (0, 49, 1, 1)
    );

    // Training views are random crops resized to `crop`; evaluation keeps the centre crop.
    let d = tempdir().unwrap();
    write_image_folder(d.path());
    let ds = image_folder::open(d.path(), 20, 16, true).unwrap();
    let (mut centre, mut a, mut b) = (vec![0u8; 768], vec![0u8; 768], vec![0u8; 768]);
    ds.train.read(0, &mut centre).unwrap();
    let plain = image_folder::open(d.path(), 20, 16, false).unwrap();
    let mut plain_centre = vec![0u8; 768];
    plain.train.read(0, &mut plain_centre).unwrap();
    assert_eq!(centre, plain_centre, "read is the evaluation view");
    ds.train
        .read_train(0, &mut rand::rngs::StdRng::seed_from_u64(3), &mut a)
        .unwrap();
    ds.train
        .read_train(0, &mut rand::rngs::StdRng::seed_from_u64(4), &mut b)
        .unwrap();
    assert_ne!(a, b, "different draws, different views");
    let mut again = vec![0u8; 768];
    ds.train
        .read_train(0, &mut rand::rngs::StdRng::seed_from_u64(3), &mut again)
        .unwrap();
    assert_eq!(a, again, "seeded");
}

/// A miniature of Tiny-ImageNet-200's official layout: wnids.txt unsorted, words.txt with more
/// ids than used, train/<wnid>/images/ with the boxes file and a .DS_Store beside them, and the
/// validation images in one folder labelled by val_annotations.txt. Each image is one flat
/// colour, its red channel the class's number in wnids.txt and green its index.
fn write_tiny_imagenet(root: &Path) {
    let ids = ["n02", "n01", "n03"];
    std::fs::write(root.join("wnids.txt"), ids.join("\n") + "\n").unwrap();
    std::fs::write(
        root.join("words.txt"),
        "n00\tentity\nn01\tgoldfish, Carassius auratus\nn02\tsalamander\nn03\t\n",
    )
    .unwrap();
    let flat = |r: u8, g: u8| image::RgbImage::from_pixel(8, 8, image::Rgb([r, g, 0]));
    for (k, id) in ids.iter().enumerate() {
        let dir = root.join("train").join(id).join("images");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..2u8 {
            flat(k as u8 * 50, i)
                .save(dir.join(format!("{id}_{i}.png")))
                .unwrap();
        }
        std::fs::write(dir.parent().unwrap().join(format!("{id}_boxes.txt")), "").unwrap();
        std::fs::write(dir.join(".DS_Store"), "").unwrap();
    }
    let images = root.join("val/images");
    std::fs::create_dir_all(&images).unwrap();
    let mut notes = String::new();
    for (i, k) in [2usize, 0, 1, 0].into_iter().enumerate() {
        flat(k as u8 * 50, 100 + i as u8)
            .save(images.join(format!("val_{i}.png")))
            .unwrap();
        notes += &format!("val_{i}.png\t{}\t0\t0\t7\t7\n", ids[k]);
    }
    std::fs::write(root.join("val/val_annotations.txt"), notes).unwrap();
}

#[test]
fn tiny_imagenet_reads_the_official_layout_with_sorted_wnids_and_word_names() {
    let d = tempdir().unwrap();
    write_tiny_imagenet(d.path());
    let ds = tiny_imagenet::open(d.path(), 0, 0, false).unwrap();
    // Sorted wnids n01, n02, n03; names from words.txt, the wnid where it gives none.
    assert_eq!(ds.classes, vec!["goldfish", "salamander", "n03"]);
    assert_eq!(
        (ds.train.len(), ds.test.len(), ds.shape()),
        (6, 4, [3, 8, 8])
    );
    let mut buf = vec![0u8; 3 * 64];
    let seen = |split: &std::sync::Arc<dyn lstmkd::data::Source>, i: usize, buf: &mut Vec<u8>| {
        split.read(i, buf).unwrap();
        (split.label(i), buf[0], buf[64])
    };
    // Training images by sorted wnid: n01 (written as class 1, red 50) is label 0.
    assert_eq!(seen(&ds.train, 0, &mut buf), (0, 50, 0));
    assert_eq!(seen(&ds.train, 5, &mut buf), (2, 100, 1));
    // Validation images take the annotation's class: val_0 is n03 (red 100), label 2; val_2
    // is n01 (red 50), label 0.
    assert_eq!(seen(&ds.test, 0, &mut buf), (2, 100, 100));
    assert_eq!(seen(&ds.test, 2, &mut buf), (0, 50, 102));
}

#[test]
fn tiny_imagenet_bad_inputs_name_the_file_and_problem() {
    let d = tempdir().unwrap();
    write_tiny_imagenet(d.path());
    let notes = d.path().join("val/val_annotations.txt");
    let good = std::fs::read_to_string(&notes).unwrap();
    for (bad, says) in [
        (
            "val_0.png\tn09\t0\t0\t7\t7\n",
            "line 1: class 'n09' is not in wnids.txt",
        ),
        ("val_9.png\tn01\t0\t0\t7\t7\n", "val_9.png does not exist"),
        ("val_0.png\n", "line 1: expected 'file<TAB>wnid<TAB>box'"),
    ] {
        std::fs::write(&notes, bad).unwrap();
        let e = err_of(tiny_imagenet::open(d.path(), 0, 0, false));
        assert!(e.contains("val_annotations.txt") && e.contains(says), "{e}");
    }
    std::fs::write(&notes, good).unwrap();
    std::fs::write(d.path().join("wnids.txt"), "n01\nn02\nn03\nn04\n").unwrap();
    let e = err_of(tiny_imagenet::open(d.path(), 0, 0, false));
    assert!(
        e.contains("n04") && e.contains("train/<wnid>/images/"),
        "{e}"
    );
    std::fs::write(d.path().join("wnids.txt"), "n01\nn01\n").unwrap();
    let e = err_of(tiny_imagenet::open(d.path(), 0, 0, false));
    assert!(e.contains("'n01' appears twice"), "{e}");
    std::fs::remove_file(d.path().join("wnids.txt")).unwrap();
    let e = err_of(tiny_imagenet::open(d.path(), 0, 0, false));
    assert!(
        e.contains("wnids.txt") && e.contains("scripts/tiny_imagenet.sh"),
        "{e}"
    );
}

/// `resize` and `crop` apply to the formats that decode image files; elsewhere they are refused
/// rather than ignored.
#[test]
fn resize_and_crop_are_refused_where_the_format_does_not_decode_files() {
    use lstmkd::data::{DataConfig, Format};
    let d = tempdir().unwrap();
    for format in [Format::Idx, Format::Cifar10, Format::Cifar100] {
        let mut cfg = DataConfig::new(format, d.path());
        cfg.crop = 24;
        let e = err_of(cfg.validate());
        assert!(
            e.contains(
                "data.resize / data.crop: only for format = \"image-folder\" or \"tiny-imagenet\""
            ),
            "{e}"
        );
    }
    for format in [Format::ImageFolder, Format::TinyImagenet] {
        let mut cfg = DataConfig::new(format, d.path());
        (cfg.resize, cfg.crop) = (36, 32);
        cfg.validate().unwrap();
    }
}
