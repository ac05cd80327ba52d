//! Label-free distillation: the second view, the labelled share, and a run without labels.

use burn::tensor::{Device, Tensor, TensorData};
use lstmkd::distill::views::{ViewAugment, second_view};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::common::{lstmkd, ok, toml_config};

#[test]
fn a_second_view_is_each_image_moved_and_maybe_flipped_with_black_padding() {
    let (b, h, w, p) = (3, 4, 5, 1);
    let values: Vec<f32> = (0..b * h * w).map(|v| v as f32).collect();
    let images = Tensor::<4>::from_data(
        TensorData::new(values.clone(), [b, 1, h, w]),
        &Device::flex(),
    );
    let aug = ViewAugment {
        pad: p,
        hflip: true,
        black: vec![-7.0],
    };
    let view: Vec<f32> = second_view(images, &aug, &mut StdRng::seed_from_u64(3))
        .into_data()
        .try_to_vec()
        .unwrap();
    // Every placement written out: the image read at (y + dy - p, x + dx - p), black outside,
    // then perhaps mirrored.
    let placed = |i: usize, dy: usize, dx: usize, flip: bool| -> Vec<f32> {
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let x = if flip { w - 1 - x } else { x };
                let (sy, sx) = (
                    y as isize + dy as isize - p as isize,
                    x as isize + dx as isize - p as isize,
                );
                out.push(
                    if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                        values[(i * h + sy as usize) * w + sx as usize]
                    } else {
                        -7.0
                    },
                );
            }
        }
        out
    };
    let mut moved = 0;
    for i in 0..b {
        let got = &view[i * h * w..(i + 1) * h * w];
        let found = (0..=2 * p)
            .flat_map(|dy| (0..=2 * p).flat_map(move |dx| [(dy, dx, false), (dy, dx, true)]))
            .find(|&(dy, dx, f)| placed(i, dy, dx, f) == got)
            .unwrap_or_else(|| panic!("image {i} is no placement of itself: {got:?}"));
        moved += usize::from(found != (p, p, false));
    }
    assert!(moved > 0, "a new placement was drawn");
    // Without a crop or flip the view is the batch itself.
    let plain = ViewAugment {
        pad: 0,
        hflip: false,
        black: vec![0.0],
    };
    let same = Tensor::<4>::from_data(
        TensorData::new(values.clone(), [b, 1, h, w]),
        &Device::flex(),
    );
    let v: Vec<f32> = second_view(same, &plain, &mut StdRng::seed_from_u64(0))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(v, values);
}

#[test]
fn label_free_distillation_runs_and_labels_are_refused_where_they_would_leak() {
    let d = tempfile::tempdir().unwrap();
    let (data, teacher_dir) = crate::distill::tiny_teacher(d.path(), 64, 16);
    let distill = format!(
        "[teacher]\ncheckpoint = \"{}\"\n\n[distill]\nweights = {{ ce = 1.0, kd = 1.0, ntxent = 1.0 }}\nend_to_end = true\nntxent = {{ feat_dim = 8 }}\n",
        teacher_dir.join("best.ckpt").display()
    );
    let cfg = d.path().join("lf.toml");
    let student = d.path().join("student");
    std::fs::write(
        &cfg,
        toml_config(&data, &student, &distill)
            .replace("epochs = 3", "epochs = 1")
            .replace("[data]", "[data]\nlabel_fraction = 0.0"),
    )
    .unwrap();
    let out = ok(lstmkd(&["distill", "--config", cfg.to_str().unwrap()]));
    assert!(out.contains("labels: the losses use 0 of"), "{out}");
    assert!(out.contains("ntxent "), "{out}");
    // Without a label in the share, CE contributes nothing: 0 in every epoch's record.
    let m = lstmkd::train::metrics::read_jsonl(&student.join("metrics.jsonl")).unwrap();
    assert_eq!(m[0].losses["ce"], 0.0);
    for (set, wanted) in [
        ("distill.tmix=0.5", "tmix"),
        ("distill.weights={ce = 1.0, dkd = 1.0}", "dkd"),
    ] {
        let bad = lstmkd(&[
            "distill",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            set,
            "--set",
            &format!("train.out_dir=\"{}\"", d.path().join("other").display()),
        ]);
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            !bad.status.success() && err.contains(wanted),
            "{set}: {err}"
        );
        assert!(
            !d.path().join("other").exists(),
            "a refused run writes nothing"
        );
    }
    let train = d.path().join("alone.toml");
    std::fs::write(
        &train,
        toml_config(&data, &d.path().join("alone"), "")
            .replace("[data]", "[data]\nlabel_fraction = 0.5"),
    )
    .unwrap();
    let bad = lstmkd(&["train", "--config", train.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("data.limit_train"));
}
