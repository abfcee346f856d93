//! Writes a synthetic dataset and prints how long it took.
//!
//! `cargo run --release -p shardfeed-synth --example synth -- OUT [CLASSES] [PER_CLASS] [THREADS] [--oddities]`

use std::time::Instant;

use shardfeed_synth::{generate, SynthOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let out = positional
        .first()
        .ok_or("usage: synth OUT [CLASSES] [PER_CLASS] [THREADS] [--oddities]")?;
    let num = |i: usize, default: u64| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(positional
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let opts = SynthOptions {
        classes: num(1, 10)? as u32,
        per_class: num(2, 100)? as u32,
        val_per_class: 0,
        threads: num(3, 0)? as usize,
        oddities: args.iter().any(|a| a == "--oddities"),
        ..SynthOptions::default()
    };
    let start = Instant::now();
    let s = generate(out.as_ref(), &opts, &|_| {})?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} images, {:.1} MB in {secs:.2} s ({:.0} images/s, {} threads)",
        s.images,
        s.bytes as f64 / 1e6,
        s.images as f64 / secs,
        if opts.threads == 0 {
            "all".to_string()
        } else {
            opts.threads.to_string()
        },
    );
    Ok(())
}
