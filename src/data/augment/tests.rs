use super::Normalize;

#[test]
fn padding_crop_shows_zero_padding_and_flip_mirrors() {
    use crate::data::augment::{Placement, render};
    let src: Vec<u8> = (1..=9).collect(); // 1 channel, 3x3
    let norm = Normalize::new(&[0.0], &[1.0 / 255.0]); // maps byte v to v
    let mut out = vec![0f32; 9];
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    render(
        &src,
        [1, 3, 3],
        Placement {
            dy: -1,
            dx: 1,
            flip: false,
        },
        &norm,
        &mut out,
    );
    assert!(
        close(&out, &[0., 0., 0., 2., 3., 0., 5., 6., 0.]),
        "{out:?}"
    );
    render(
        &src,
        [1, 3, 3],
        Placement {
            dy: 0,
            dx: 0,
            flip: true,
        },
        &norm,
        &mut out,
    );
    assert!(
        close(&out, &[3., 2., 1., 6., 5., 4., 9., 8., 7.]),
        "{out:?}"
    );
}
