//! The clips format (frame sampling, bad clips), clip batches, and the generated motion set.

use std::path::Path;

use lstmkd::data::augment::{AugmentConfig, Normalize};
use lstmkd::data::loader::Loader;
use lstmkd::data::{Split, clips, motion};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tempfile::tempdir;

use crate::common::*;

/// A 4x4 grey frame whose every pixel is `value`.
fn flat_frame(path: &Path, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(4, 4, image::Luma([value]))
        .save(path)
        .unwrap();
}

/// Clips whose frame j has the value 10 j, so a read tells which frames it took.
fn write_clips(root: &Path, clips: &[(&str, &str, &str, usize)]) {
    for (split, class, clip, len) in clips {
        for j in 0..*len {
            flat_frame(
                &root
                    .join(split)
                    .join(class)
                    .join(clip)
                    .join(format!("f{j:02}.png")),
                10 * j as u8,
            );
        }
    }
}

fn frames_read(bytes: &[u8]) -> Vec<usize> {
    bytes.chunks(16).map(|f| f[0] as usize / 10).collect()
}

/// A small generated motion set (16 classes of 12x12 frames from a toy IDX set) under `dir`.
fn motion_set(dir: &Path, train_per_class: usize, max_frames: usize) -> std::path::PathBuf {
    let items = dir.join("idx");
    write_idx_dataset(&items, 40, 20, 8, false);
    let data = dir.join("motion");
    ok(lstmkd(&[
        "make-clips",
        "--out",
        data.to_str().unwrap(),
        "--items",
        items.to_str().unwrap(),
        "--train-per-class",
        &train_per_class.to_string(),
        "--test-per-class",
        "1",
        "--min-frames",
        "3",
        "--max-frames",
        &max_frames.to_string(),
        "--travel",
        "4",
    ]));
    data
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn clip_frames_are_sampled_per_segment_in_order() {
    let d = tempdir().unwrap();
    write_clips(
        d.path(),
        &[
            ("train", "a", "long", 10),
            ("train", "a", "short", 3),
            ("train", "b", "c0", 5),
            ("test", "a", "t0", 4),
            ("test", "b", "t1", 4),
        ],
    );
    let ds = clips::open(d.path(), 4).unwrap();
    assert_eq!(ds.classes, ["a", "b"]);
    assert_eq!((ds.train.len(), ds.test.len()), (3, 2));
    assert_eq!((ds.shape(), ds.frames()), ([1, 4, 4], 4));
    assert_eq!(ds.train.sample_len(), 64);
    assert_eq!(
        (ds.train.label(0), ds.train.label(1), ds.train.label(2)),
        (0, 0, 1)
    );
    let mut buf = vec![0u8; 64];
    // Evaluation takes each segment's middle. 10 frames in 4 segments: [0,2) [2,5) [5,7)
    // [7,10), middles 0, 3, 5, 8. 3 frames: segments [0,1) [0,1) [1,2) [2,3).
    ds.train.read(0, &mut buf).unwrap();
    assert_eq!(frames_read(&buf), [0, 3, 5, 8]);
    ds.train.read(1, &mut buf).unwrap();
    assert_eq!(frames_read(&buf), [0, 0, 1, 2]);
    // Training draws one frame per segment: seeded, in order, covering each segment.
    let mut seen = [[false; 10]; 4];
    for s in 0..200 {
        let mut rng = StdRng::seed_from_u64(s);
        ds.train.read_train(0, &mut rng, &mut buf).unwrap();
        let got = frames_read(&buf);
        for (k, &f) in got.iter().enumerate() {
            assert!([0..2, 2..5, 5..7, 7..10][k].contains(&f), "{got:?}");
            seen[k][f] = true;
        }
        let mut again = vec![0u8; 64];
        ds.train
            .read_train(0, &mut StdRng::seed_from_u64(s), &mut again)
            .unwrap();
        assert_eq!(buf, again, "the same seed draws the same frames");
    }
    assert_eq!(
        seen.iter().flatten().filter(|s| **s).count(),
        10,
        "every frame drawn"
    );
}

#[test]
fn bad_clips_are_named() {
    let d = tempdir().unwrap();
    let good = [
        ("train", "a", "c0", 3),
        ("train", "b", "c1", 3),
        ("test", "a", "t0", 3),
    ];
    write_clips(d.path(), &good);

    let empty = d.path().join("train/a/empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = err_of(clips::open(d.path(), 2));
    assert!(
        e.contains("train/a/empty") && e.contains("clip has no frames"),
        "{e}"
    );
    std::fs::remove_dir(&empty).unwrap();

    let broken = d.path().join("train/b/c1/f01.png");
    std::fs::write(&broken, b"not a png").unwrap();
    let e = err_of(clips::open(d.path(), 2));
    assert!(
        e.contains("clip ") && e.contains("train/b/c1") && e.contains("f01.png"),
        "{e}"
    );
    write_clips(d.path(), &good);

    image::GrayImage::new(5, 4)
        .save(d.path().join("test/a/t0/f02.png"))
        .unwrap();
    let e = err_of(clips::open(d.path(), 2));
    assert!(
        e.contains("test/a/t0") && e.contains("5x4") && e.contains("one size"),
        "{e}"
    );
    write_clips(d.path(), &good);

    // Test clips of one size, but another than the training clips'.
    for j in 0..3 {
        image::GrayImage::new(5, 4)
            .save(d.path().join(format!("test/a/t0/f{j:02}.png")))
            .unwrap();
    }
    let e = err_of(clips::open(d.path(), 2));
    assert!(
        e.contains("test") && e.contains("frames are [1, 4, 5] but training frames are [1, 4, 4]"),
        "{e}"
    );
    write_clips(d.path(), &good);

    std::fs::create_dir_all(d.path().join("train/c")).unwrap();
    let e = err_of(clips::open(d.path(), 2));
    assert!(e.contains("train/c") && e.contains("no clips"), "{e}");
    std::fs::remove_dir(d.path().join("train/c")).unwrap();

    // A frame that decodes its header but not its pixels fails on reading, naming the clip.
    let png = std::fs::read(d.path().join("train/a/c0/f01.png")).unwrap();
    std::fs::write(d.path().join("train/a/c0/f01.png"), &png[..png.len() - 20]).unwrap();
    let ds = clips::open(d.path(), 3).unwrap();
    let e = err_of(ds.train.read(0, &mut [0u8; 48]));
    assert!(
        e.contains("clip ") && e.contains("train/a/c0") && e.contains("f01.png"),
        "{e}"
    );
}

#[test]
fn colour_frames_give_three_channels_and_data_frames_is_checked() {
    let d = tempdir().unwrap();
    for (split, clip) in [("train", "c0"), ("test", "t0")] {
        let dir = d.path().join(split).join("a").join(clip);
        std::fs::create_dir_all(&dir).unwrap();
        for j in 0..2u8 {
            image::RgbImage::from_pixel(3, 2, image::Rgb([j, 100, 200]))
                .save(dir.join(format!("{j}.png")))
                .unwrap();
        }
    }
    let ds = clips::open(d.path(), 2).unwrap();
    assert_eq!(ds.shape(), [3, 2, 3]);
    let mut buf = vec![0u8; 2 * 18];
    ds.train.read(0, &mut buf).unwrap();
    // Two frames, each CHW: 6 reds, 6 greens, 6 blues.
    assert_eq!(&buf[..18], [[0u8; 6], [100; 6], [200; 6]].concat());
    assert_eq!(&buf[18..], [[1u8; 6], [100; 6], [200; 6]].concat());

    let mut cfg = lstmkd::data::DataConfig::new(lstmkd::data::Format::Clips, d.path());
    cfg.frames = Some(0);
    assert!(err_of(cfg.validate()).contains("data.frames: must be at least 1"));
    let mut cfg = lstmkd::data::DataConfig::new(lstmkd::data::Format::Idx, d.path());
    cfg.frames = Some(4);
    assert!(err_of(cfg.validate()).contains("data.frames: applies to format = \"clips\" only"));
}

#[test]
fn a_clip_batch_holds_its_frames_in_order_with_one_augmentation() {
    let d = tempdir().unwrap();
    // Every frame of a clip is the same picture (a gradient, so a crop or flip shows).
    for (split, n) in [("train", 6), ("test", 1)] {
        for k in 0..n {
            let dir = d
                .path()
                .join(split)
                .join(["a", "b"][k % 2])
                .join(format!("c{k}"));
            std::fs::create_dir_all(&dir).unwrap();
            for j in 0..3 {
                image::GrayImage::from_fn(6, 6, |x, y| {
                    image::Luma([(40 * x + 7 * y + k as u32) as u8])
                })
                .save(dir.join(format!("{j}.png")))
                .unwrap();
            }
        }
    }
    let ds = clips::open(d.path(), 3).unwrap();
    let loader = Loader {
        split: Split::all(ds.train.clone()),
        batch_size: 4,
        normalize: Normalize::new(&[0.0], &[1.0]),
        augment: Some(AugmentConfig {
            pad_crop: 2,
            hflip: true,
        }),
        seed: 5,
        prefetch: 1,
    };
    let order = loader.order(0);
    let batch = loader.batch(&order, 0, 0).unwrap();
    assert_eq!(batch.dims, [12, 1, 6, 6], "4 clips x 3 frames");
    assert_eq!(batch.labels.len(), 4);
    assert_eq!(batch.samples, order[..4]);
    let mut augmented = 0;
    for (c, clip) in batch.images.chunks(3 * 36).enumerate() {
        let frames: Vec<&[f32]> = clip.chunks(36).collect();
        assert!(
            frames.iter().all(|f| *f == frames[0]),
            "clip {c}: one placement"
        );
        let k = batch.samples[c] as u32;
        let plain: Vec<f32> = (0..36u32)
            .map(|p| (40 * (p % 6) + 7 * (p / 6) + k) as f32 / 255.0)
            .collect();
        augmented += usize::from(frames[0] != plain.as_slice());
        assert_eq!(ds.train.label(batch.samples[c]), batch.labels[c]);
    }
    assert!(augmented > 0, "the augmentation moved at least one clip");
}

#[test]
fn motion_clips_differ_only_in_frame_order_and_the_generator_writes_the_layout() {
    // A left clip is the right clip played backwards: no single frame tells them apart.
    let item: Vec<u8> = (0..12u8).map(|v| v * 20 + 1).collect();
    for len in [2, 5, 9] {
        let right = motion::render_clip(&item, [3, 4], 6, (1, 0), 2, len);
        let mut left = motion::render_clip(&item, [3, 4], 6, (-1, 0), 2, len);
        left.reverse();
        assert_eq!(right, left, "len {len}");
        // The item enters at the left edge and leaves `travel` pixels on, 2 rows down.
        let first_col = |f: &image::GrayImage| (0..f.width()).find(|&x| f.get_pixel(x, 2).0[0] > 0);
        assert_eq!(first_col(&right[0]), Some(0));
        assert_eq!(first_col(&right[len - 1]), Some(6));
        assert_eq!(
            right[0].get_pixel(0, 1).0[0],
            0,
            "rows above the item stay black"
        );
    }

    let d = tempdir().unwrap();
    let items = d.path().join("idx");
    write_idx_dataset(&items, 40, 20, 8, false);
    let out = d.path().join("motion");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "make-clips",
            "--out",
            out.to_str().unwrap(),
            "--items",
            items.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        lstmkd(&args)
    };
    for (args, expected) in [
        (&["--min-frames", "1"][..], "--min-frames"),
        (
            &["--travel", "4294967296"][..],
            "--travel: 1 to 1024 pixels",
        ),
        (&["--max-frames", "5000"][..], "--max-frames: at most 1024"),
    ] {
        let bad = run(args);
        let e = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && e.contains(expected), "{e}");
        assert!(!out.exists(), "nothing written");
    }
    ok(run(&[
        "--train-per-class",
        "2",
        "--test-per-class",
        "1",
        "--min-frames",
        "3",
        "--max-frames",
        "5",
        "--travel",
        "4",
    ]));
    let ds = clips::open(&out, 3).unwrap();
    // The toy IDX set has 4 item classes, each with 4 directions.
    assert_eq!(ds.classes.len(), 16);
    assert!(
        ds.classes.contains(&"2-2-left".to_string()),
        "{:?}",
        ds.classes
    );
    assert_eq!((ds.train.len(), ds.test.len()), (32, 16));
    assert_eq!(ds.shape(), [1, 12, 12]);
    for clip in std::fs::read_dir(out.join("train/1-1-up")).unwrap() {
        let n = std::fs::read_dir(clip.unwrap().path()).unwrap().count();
        assert!((3..=5).contains(&n), "{n} frames");
    }
    let again = run(&[]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn the_clip_head_joins_mean_appearance_and_motion_from_3d_convolutions() {
    use burn::module::Module;
    use burn::tensor::{Device, Distribution, Tensor};
    use lstmkd::models::{ModelConfig, Network, clip::TemporalConfig};
    let device = Device::flex();
    let (frames, e, mc, k) = (3, 4, 3, 5);
    let cfg = ModelConfig {
        frames,
        temporal: TemporalConfig {
            embed: e,
            motion: mc,
            layers: 1,
        },
        ..ModelConfig::new("resnet8")
    };
    let Network::Clip(m) = cfg.init(1, k, &device).unwrap() else {
        panic!("frames > 1 make a clip model")
    };
    let x = Tensor::<4>::random([2 * frames, 1, 8, 8], Distribution::Default, &device);
    let m = m.valid();
    let out = m.forward(x.clone());
    // Taps stay per frame (what AT and the extractors read); logits are one row per clip.
    let shapes: Vec<[usize; 4]> = out.taps.iter().map(|t| t.dims()).collect();
    assert_eq!(shapes, [[6, 16, 8, 8], [6, 32, 4, 4], [6, 64, 2, 2]]);
    assert_eq!(out.logits.dims(), [2, k]);
    let got = values(out.logits);
    // MACs per clip: the backbone's per image for each frame, plus the motion convolution's
    // (kernel 27 taps, 64 -> 3 channels, at every frame and 2x2 position), plus the classifier.
    let (_, clip_macs) = lstmkd::models::flops::count(|| m.forward(x.clone()));
    let frame = x.clone().slice([0..1, 0..1, 0..8, 0..8]);
    let (_, frame_macs) = lstmkd::models::flops::count(|| m.backbone[0].forward(frame));
    let motion = (mc * 64 * 27 * frames * 2 * 2) as u64;
    assert_eq!(
        clip_macs,
        frames as u64 * frame_macs + motion + ((e + mc) * k) as u64
    );
    // The head written out on the host from the backbone's per-frame outputs.
    let frame = m.backbone[0].forward(x);
    let emb = values(frame.logits);
    let tap = values(frame.taps[2].clone()); // [6, 64, 2, 2]
    let w = values(m.motion[0].weight.val()); // [mc, 64, 3, 3, 3]
    let bias = values(m.motion[0].bias.as_ref().unwrap().val());
    let wf = values(m.fc.weight.val()); // [e + mc, k]
    let bf = values(m.fc.bias.as_ref().unwrap().val());
    let at = |n: usize, t: isize, c: usize, y: isize, xx: isize| -> f32 {
        if t < 0 || y < 0 || xx < 0 || t >= frames as isize || y >= 2 || xx >= 2 {
            return 0.0;
        }
        tap[(((n * frames + t as usize) * 64 + c) * 2 + y as usize) * 2 + xx as usize]
    };
    let mut want = Vec::new();
    for n in 0..2 {
        let mut joined: Vec<f32> = (0..e)
            .map(|i| {
                (0..frames)
                    .map(|t| emb[(n * frames + t) * e + i])
                    .sum::<f32>()
                    / frames as f32
            })
            .collect();
        for o in 0..mc {
            let mut sum = 0.0;
            for t in 0..frames as isize {
                for y in 0..2isize {
                    for xx in 0..2isize {
                        let mut v = bias[o];
                        for c in 0..64 {
                            for kk in 0..27 {
                                let (kt, ky, kx) = (kk / 9, kk / 3 % 3, kk % 3);
                                v += w[(o * 64 + c) * 27 + kk as usize]
                                    * at(n, t + kt - 1, c, y + ky - 1, xx + kx - 1);
                            }
                        }
                        sum += v.max(0.0);
                    }
                }
            }
            joined.push(sum / (frames * 4) as f32);
        }
        for o in 0..k {
            want.push(bf[o] + (0..e + mc).map(|i| joined[i] * wf[i * k + o]).sum::<f32>());
        }
    }
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn a_clip_model_trains_evaluates_and_exports() {
    let d = tempdir().unwrap();
    let data = motion_set(d.path(), 3, 5);
    let run = d.path().join("run");
    let cfg = toml_config(&data, &run, "")
        .replace("format = \"idx\"", "format = \"clips\"\nframes = 3")
        .replace("epochs = 3", "epochs = 1");
    std::fs::write(d.path().join("clips.toml"), cfg).unwrap();
    let out = ok(lstmkd(&[
        "train",
        "--config",
        d.path().join("clips.toml").to_str().unwrap(),
    ]));
    assert!(out.contains("epoch 1/1"), "{out}");
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        resolved.contains("frames = 3"),
        "the model follows the data: {resolved}"
    );
    let report = ok(lstmkd(&[
        "eval",
        "--checkpoint",
        run.join("best.ckpt").to_str().unwrap(),
    ]));
    assert!(report.contains("top-1"), "{report}");
    // Export checks tract's logits against lstmkd's on [N, frames, C, H, W] before writing.
    let onnx = d.path().join("clip.onnx");
    let exported = ok(lstmkd(&[
        "export",
        "--checkpoint",
        run.join("best.ckpt").to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        onnx.to_str().unwrap(),
    ]));
    assert!(exported.contains("tract runs the graph"), "{exported}");
    // tract on one clip given as [1, frames, C, H, W] against lstmkd on its frames as a batch.
    let bytes = std::fs::read(&onnx).unwrap();
    let values: Vec<f32> = (0..3 * 12 * 12).map(|i| (i % 17) as f32 / 17.0).collect();
    let clip = burn::tensor::TensorData::new(values.clone(), [1, 3, 1, 12, 12]);
    let theirs = lstmkd::interop::export::run_tract(&bytes, &clip).unwrap();
    let device = burn::tensor::Device::flex();
    let ckpt = lstmkd::train::checkpoint::Checkpoint::load(&run.join("best.ckpt")).unwrap();
    let net = lstmkd::deploy::Deployed::load(&ckpt, &device).unwrap();
    let frames = burn::tensor::TensorData::new(values, [3, 1, 12, 12]);
    let ours = lstmkd::interop::export::lstmkd_logits(&ckpt.meta, &net, &frames, &device);
    assert_eq!(ours.len(), 16, "one clip, 16 classes");
    assert_eq!(theirs.len(), ours.len());
    for (a, b) in theirs.iter().zip(&ours) {
        assert!(
            (a - b).abs() < 1e-4 * (1.0 + b.abs()),
            "{theirs:?} vs {ours:?}"
        );
    }
    // predict on a clip folder: the logits tract gives for the frames the test split's reader
    // samples from that clip.
    let ds = clips::open(&data, 3).unwrap();
    let mut frames = vec![0u8; ds.test.sample_len()];
    ds.test.read(0, &mut frames).unwrap();
    let pixels: Vec<f32> = frames.iter().map(|&v| v as f32 / 255.0).collect();
    let expected = lstmkd::interop::export::run_tract(
        &bytes,
        &burn::tensor::TensorData::new(pixels, [1, 3, 1, 12, 12]),
    )
    .unwrap();
    let first = std::fs::read_dir(data.join("test").join(&ds.classes[0]))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let json = ok(lstmkd(&[
        "predict",
        "--checkpoint",
        run.join("best.ckpt").to_str().unwrap(),
        "--json",
        first.to_str().unwrap(),
    ]));
    let p: serde_json::Value = serde_json::from_str(&json).unwrap();
    let logits: Vec<f64> = p[0]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!((logits.len(), expected.len()), (16, 16));
    for (a, b) in logits.iter().zip(&expected) {
        assert!(
            (a - *b as f64).abs() < 1e-4 * (1.0 + b.abs() as f64),
            "{logits:?} vs {expected:?}"
        );
    }
}

#[test]
fn on_clips_the_extractor_runs_its_lstm_over_frames() {
    use burn::module::Module;
    use burn::tensor::{Device, Distribution, Tensor, TensorData};
    use lstmkd::distill::extractor::ExtractorConfig;
    let device = Device::flex();
    let (b, frames, c, h, w, d) = (2, 3, 2, 3, 2, 4);
    let cfg = ExtractorConfig {
        window: 3,
        conv_channels: d,
        hidden: 5,
        layers: 2,
        ..Default::default()
    };
    let e = cfg.init(c, 6, frames, &device).valid();
    let x = Tensor::<4>::random([b * frames, c, h, w], Distribution::Default, &device);
    let got = e.forward(x.clone(), None);
    // The features written out: a 3x3x3 convolution with zero padding over (frame, row,
    // column) of each clip, ReLU, the mean over rows and columns: [B, frames, D].
    let xv = values(x);
    let wv = values(e.conv.weight.val()); // [D, C, 3, 3, 3]
    let bv = values(e.conv.bias.as_ref().unwrap().val());
    let at = |n: usize, t: isize, ch: usize, y: isize, x: isize| -> f32 {
        if t < 0 || y < 0 || x < 0 || t >= frames as isize || y >= h as isize || x >= w as isize {
            return 0.0;
        }
        xv[(((n * frames + t as usize) * c + ch) * h + y as usize) * w + x as usize]
    };
    let mut feats = vec![0f32; b * frames * d];
    for n in 0..b {
        for t in 0..frames {
            for o in 0..d {
                let mut sum = 0.0;
                for y in 0..h {
                    for xx in 0..w {
                        let mut v = bv[o];
                        for ch in 0..c {
                            for (kt, ky, kx) in (0..27).map(|k| (k / 9, k / 3 % 3, k % 3)) {
                                v += wv[(o * c + ch) * 27 + kt * 9 + ky * 3 + kx]
                                    * at(
                                        n,
                                        t as isize + kt as isize - 1,
                                        ch,
                                        y as isize + ky as isize - 1,
                                        xx as isize + kx as isize - 1,
                                    );
                            }
                        }
                        sum += v.max(0.0);
                    }
                }
                feats[(n * frames + t) * d + o] = sum / (h * w) as f32;
            }
        }
    }
    // The stacked BiLSTM over those frame features gives the extractor's states.
    let mut seq = Tensor::<3>::from_data(TensorData::new(feats, [b, frames, d]), &device);
    let mut hidden = Vec::new();
    for layer in &e.lstm {
        let (out, state) = layer.forward(seq, None);
        hidden.push(state.hidden);
        seq = out;
    }
    let want = values(Tensor::cat(hidden, 0));
    let got = values(got.hidden);
    assert_eq!(got.len(), 2 * 2 * b * 5, "[layers x directions, B, hidden]");
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn a_clip_student_distils_from_a_clip_teacher() {
    let d = tempdir().unwrap();
    let data = motion_set(d.path(), 2, 4);
    let clips = |cfg: String| {
        cfg.replace("format = \"idx\"", "format = \"clips\"\nframes = 3")
            .replace("epochs = 3", "epochs = 1")
    };
    let teacher = d.path().join("teacher");
    std::fs::write(
        d.path().join("t.toml"),
        clips(toml_config(&data, &teacher, "")),
    )
    .unwrap();
    ok(lstmkd(&[
        "train",
        "--config",
        d.path().join("t.toml").to_str().unwrap(),
    ]));
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0, at = 10.0, temporal = 0.1, aux_ce = 0.5, crd = 0.8 }}\nend_to_end = true\nadapt_epochs = 1\ncrd = {{ negatives = 8, feat_dim = 4 }}\nextractor = {{ conv_channels = 4, hidden = 4 }}\n",
        teacher.join("best.ckpt").display()
    );
    let student = d.path().join("student");
    let cfg = d.path().join("s.toml");
    std::fs::write(&cfg, clips(toml_config(&data, &student, &distill))).unwrap();
    ok(lstmkd(&["adapt", "--config", cfg.to_str().unwrap()]));
    let out = ok(lstmkd(&["distill", "--config", cfg.to_str().unwrap()]));
    for part in ["at ", "temporal ", "aux_ce ", "crd ", "kd "] {
        assert!(out.contains(part), "{part} missing: {out}");
    }
    // A step on clips: KD compares the clip logits (frames joined by the clip head) of both
    // sides, as written out; the T = 1 of the dynamic policy before any validation.
    // A run fills in the frame count from its data; here it is given.
    let set = [
        "distill.weights={ce = 1.0, kd = 1.0}".into(),
        "model.frames=3".into(),
    ];
    let run = lstmkd::config::RunConfig::load(&cfg, &set).unwrap();
    let (tcfg, dcfg) = run.distillation().unwrap();
    let plain = burn::tensor::Device::flex();
    let (teacher, _) = lstmkd::train::distill::load_teacher(tcfg, dcfg, &plain).unwrap();
    let net =
        lstmkd::train::distill::new_student(&run, &teacher, 4, &plain.clone().autodiff()).unwrap();
    let [c, h, w] = teacher.input;
    let (b, frames) = (2, 3);
    let clip = burn::tensor::Tensor::<4>::random(
        [b * frames, c, h, w],
        burn::tensor::Distribution::Default,
        &plain.clone().autodiff(),
    );
    let s_logits = values(net.net.forward(clip.clone()).logits);
    let t_logits = values(teacher.net.forward(clip.clone().without_autodiff()).logits);
    let k = teacher.classes;
    let targets = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(vec![0i64, 1], [b]),
        &plain.clone().autodiff(),
    );
    let task = lstmkd::distill::step::Distill::new(teacher, dcfg.clone(), 1, 1, k, 0, None);
    let out = task.step(&net, clip, targets, &[0, 1], 0, 0);
    let (_, kd) = out.parts.iter().find(|(n, _)| n == "kd").unwrap();
    let kd = kd.clone().into_scalar::<f32>() as f64;
    let want = crate::distill::kd_reference(&s_logits, &t_logits, k, 1.0);
    assert!(
        want > 1e-6 && (kd - want).abs() < 1e-5 * (1.0 + want),
        "kd {kd} vs {want}"
    );
    ok(lstmkd(&[
        "eval",
        "--checkpoint",
        student.join("deployed.ckpt").to_str().unwrap(),
    ]));
    // Clips refuse what only makes sense for images, naming it.
    let bad = lstmkd(&[
        "distill",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "distill.rtc=true",
        "--set",
        &format!("train.out_dir=\"{}\"", d.path().join("other").display()),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not clips"));
}
