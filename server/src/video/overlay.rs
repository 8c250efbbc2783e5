//! Draws the latest face boxes onto every frame: pure green (B=0, G=255, R=0) outlines, or,
//! in privacy mode, pixelates the face regions beyond recognition.

use super::frame::{FaceBox, Frame};

/// Box colour in BGR order: pure green.
pub const BOX_BGR: [u8; 3] = [0, 255, 0];

/// Outline thickness in pixels: thick enough to survive H.264 at 640×480 (≥ 3 px).
pub const BOX_THICKNESS: i32 = 4;

/// Draws each box's outline, clipped to the frame.
pub fn draw_boxes(frame: &mut Frame, boxes: &[FaceBox]) {
    for b in boxes {
        let (x0, y0) = (b.x, b.y);
        let (x1, y1) = (b.x + b.width - 1, b.y + b.height - 1);
        let t = BOX_THICKNESS;
        fill(frame, x0, y0, x1, y0 + t - 1); // top
        fill(frame, x0, y1 - t + 1, x1, y1); // bottom
        fill(frame, x0, y0, x0 + t - 1, y1); // left
        fill(frame, x1 - t + 1, y0, x1, y1); // right
    }
}

/// Smallest block a hidden face is averaged into: coarse enough that no feature of a
/// face survives at 640×480.
pub const PRIVACY_BLOCK: i32 = 16;

/// A hidden face is at most this many blocks across, however large it is: a big face in
/// 16-pixel blocks would still be a recognisable (and detectable) face.
pub const PRIVACY_BLOCKS_ACROSS: i32 = 6;

/// A whole frame hidden in privacy mode is this many blocks across: shapes and colours
/// stay (the page shows something is happening), no face can be made out.
pub const WHOLE_FRAME_BLOCKS_ACROSS: i32 = 12;

/// Replaces each box's area (clipped to the frame) by blocks of its average colour, at
/// most [`PRIVACY_BLOCKS_ACROSS`] blocks across the box.
pub fn pixelate_boxes(frame: &mut Frame, boxes: &[FaceBox]) {
    for b in boxes {
        let block = (b.width.max(b.height) / PRIVACY_BLOCKS_ACROSS).max(PRIVACY_BLOCK);
        pixelate(frame, b, block);
    }
}

/// Pixelates the whole frame into [`WHOLE_FRAME_BLOCKS_ACROSS`] blocks across.
pub fn pixelate_whole(frame: &mut Frame) {
    let all = FaceBox {
        x: 0,
        y: 0,
        width: frame.width as i32,
        height: frame.height as i32,
    };
    let block = (all.width / WHOLE_FRAME_BLOCKS_ACROSS).max(PRIVACY_BLOCK);
    pixelate(frame, &all, block);
}

/// Replaces `b`'s area (clipped to the frame) by `block`-sized squares of their average.
fn pixelate(frame: &mut Frame, b: &FaceBox, block: i32) {
    let (w, h) = (frame.width as i32, frame.height as i32);
    if frame.data.len() < Frame::byte_len(frame.width, frame.height) {
        return;
    }
    let (x0, y0) = (b.x.max(0), b.y.max(0));
    let (x1, y1) = ((b.x + b.width).min(w), (b.y + b.height).min(h));
    let mut by = y0;
    while by < y1 {
        let mut bx = x0;
        let bh = block.min(y1 - by);
        while bx < x1 {
            let bw = block.min(x1 - bx);
            let mut sum = [0u64; 3];
            for y in by..by + bh {
                for x in bx..bx + bw {
                    let i = ((y * w + x) * 3) as usize;
                    for (total, v) in sum.iter_mut().zip(&frame.data[i..i + 3]) {
                        *total += u64::from(*v);
                    }
                }
            }
            let n = (bw * bh) as u64;
            let avg = [(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8];
            for y in by..by + bh {
                for x in bx..bx + bw {
                    let i = ((y * w + x) * 3) as usize;
                    frame.data[i..i + 3].copy_from_slice(&avg);
                }
            }
            bx += bw;
        }
        by += bh;
    }
}

/// Fills the inclusive rectangle (x0, y0)–(x1, y1), clipped to the frame.
fn fill(frame: &mut Frame, x0: i32, y0: i32, x1: i32, y1: i32) {
    let (w, h) = (frame.width as i32, frame.height as i32);
    let (x0, x1) = (x0.max(0), x1.min(w - 1));
    let (y0, y1) = (y0.max(0), y1.min(h - 1));
    if x0 > x1 || y0 > y1 {
        return;
    }
    for y in y0..=y1 {
        let row = (y * w) as usize * 3;
        let (start, end) = (row + x0 as usize * 3, row + (x1 as usize + 1) * 3);
        for px in frame.data[start..end].chunks_exact_mut(3) {
            px.copy_from_slice(&BOX_BGR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_green_outline_of_the_set_thickness() {
        let mut f = Frame::filled(64, 48, [10, 20, 30]);
        draw_boxes(
            &mut f,
            &[FaceBox {
                x: 10,
                y: 8,
                width: 20,
                height: 16,
            }],
        );
        // Edges are green for the whole thickness.
        for d in 0..BOX_THICKNESS as u32 {
            assert_eq!(f.pixel(15, 8 + d), BOX_BGR, "top row {d}");
            assert_eq!(f.pixel(15, 23 - d), BOX_BGR, "bottom row {d}");
            assert_eq!(f.pixel(10 + d, 15), BOX_BGR, "left col {d}");
            assert_eq!(f.pixel(29 - d, 15), BOX_BGR, "right col {d}");
        }
        // Inside, outside and just past the edges stay untouched.
        assert_eq!(f.pixel(20, 16), [10, 20, 30]);
        assert_eq!(f.pixel(9, 15), [10, 20, 30]);
        assert_eq!(f.pixel(30, 15), [10, 20, 30]);
        assert_eq!(f.pixel(15, 8 + BOX_THICKNESS as u32), [10, 20, 30]);
    }

    #[test]
    fn boxes_past_the_edges_are_clipped() {
        let mut f = Frame::filled(32, 32, [0, 0, 0]);
        draw_boxes(
            &mut f,
            &[
                FaceBox {
                    x: -10,
                    y: -10,
                    width: 20,
                    height: 20,
                },
                FaceBox {
                    x: 100,
                    y: 100,
                    width: 5,
                    height: 5,
                },
                FaceBox {
                    x: 25,
                    y: 25,
                    width: 50,
                    height: 50,
                },
            ],
        );
        assert_eq!(f.pixel(9, 0), BOX_BGR);
        assert_eq!(f.pixel(0, 9), BOX_BGR);
        assert_eq!(f.pixel(25, 31), BOX_BGR);
        assert_eq!(f.data.len(), Frame::byte_len(32, 32));
    }

    #[test]
    fn pixelation_averages_blocks_inside_the_box_only() {
        // A checkerboard inside the box.
        let mut f = Frame::checkerboard(64, 64, [200, 100, 50]);
        let outside = f.pixel(40, 40);
        pixelate_boxes(
            &mut f,
            &[FaceBox {
                x: 0,
                y: 0,
                width: 32,
                height: 32,
            }],
        );
        assert_eq!(f.pixel(0, 0), [100, 50, 25], "a block becomes its average");
        assert_eq!(f.pixel(0, 0), f.pixel(15, 15));
        assert_eq!(f.pixel(40, 40), outside, "outside the box nothing changes");
        pixelate_boxes(
            &mut f,
            &[FaceBox {
                x: 60,
                y: 60,
                width: 50,
                height: 50,
            }],
        ); // clipped
    }

    #[test]
    fn big_faces_get_bigger_blocks_and_a_whole_frame_can_be_hidden() {
        let mut f = Frame::filled(240, 240, [0, 0, 0]);
        for x in 0..240u32 {
            let i = (x * 3) as usize; // a bright top row
            f.data[i..i + 3].copy_from_slice(&[240, 240, 240]);
        }
        let mut big = f.clone();
        pixelate_boxes(
            &mut big,
            &[FaceBox {
                x: 0,
                y: 0,
                width: 240,
                height: 240,
            }],
        );
        // 240 / 6 = 40-pixel blocks: row 39 shares the top row's block, row 40 does not.
        assert_eq!(big.pixel(0, 0), big.pixel(39, 39));
        assert_eq!(big.pixel(0, 0), [6, 6, 6]);
        assert_eq!(big.pixel(0, 40), [0, 0, 0]);
        pixelate_whole(&mut f);
        // 240 / 12 = 20-pixel blocks.
        assert_eq!(f.pixel(0, 0), f.pixel(19, 19));
        assert_eq!(f.pixel(0, 0), [12, 12, 12]);
        assert_eq!(f.pixel(0, 20), [0, 0, 0]);
    }

    #[test]
    fn no_boxes_leave_the_frame_unchanged() {
        let mut f = Frame::filled(8, 8, [1, 2, 3]);
        let before = f.clone();
        draw_boxes(&mut f, &[]);
        assert_eq!(f, before);
    }
}
