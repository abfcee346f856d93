//! Renders a PNG contact sheet: one row per class, one column per image.
//!
//! `cargo run --release -p shardfeed-synth --example contact_sheet -- OUT.png [CLASSES] [PER_ROW]`

use image::ImageEncoder;
use shardfeed_synth::{render_image, Split};

const CELL: u32 = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .ok_or("usage: contact_sheet OUT.png [CLASSES] [PER_ROW]")?;
    let classes: u32 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let per_row: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let (w, h) = (CELL * per_row, CELL * classes);
    let mut sheet = vec![255u8; (w * h * 3) as usize];
    for class in 0..classes {
        for k in 1..=per_row {
            let img = render_image(class, classes, 0, Split::Train, k);
            // Nearest-neighbour fit into the cell, keeping the aspect ratio.
            let scale = (img.width.max(img.height) as f32 / (CELL - 4) as f32).max(1.0);
            let (tw, th) = (
                (img.width as f32 / scale) as u32,
                (img.height as f32 / scale) as u32,
            );
            for y in 0..th {
                for x in 0..tw {
                    let sx = ((x as f32 * scale) as u32).min(img.width - 1);
                    let sy = ((y as f32 * scale) as u32).min(img.height - 1);
                    let s = ((sy * img.width + sx) * 3) as usize;
                    let d = (((class * CELL + 2 + y) * w + (k - 1) * CELL + 2 + x) * 3) as usize;
                    sheet[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
                }
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    image::codecs::png::PngEncoder::new(file).write_image(
        &sheet,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(())
}
