//! The recipe (docs/PROTOCOL.md, "Recipe"): everything in a [`LoaderConfig`] besides the dataset
//! that changes a batch's bytes, as canonical JSON (sorted keys, no spaces). A client sends it in
//! its `Hello`; a worker rebuilds the configuration from it ([`parse`]) with its own thread
//! count and buffers, which change nothing in the bytes. Pure: no I/O.
//!
//! ```
//! use shardfeed_engine::loader::{recipe, LoaderConfig};
//!
//! let config = LoaderConfig { batch_size: 32, seed: 7, ..LoaderConfig::train(64) };
//! let json = recipe::canonical(&config);
//! let back = recipe::parse(&json)?;
//! assert_eq!(recipe::canonical(&back), json);
//! assert_eq!((back.batch_size, back.seed), (32, 7));
//! # Ok::<(), shardfeed_engine::loader::recipe::RecipeError>(())
//! ```

use crate::augment::{DecodeLimits, JpegBackend, TrainTransform, Transform, ValTransform};
use crate::loader::config::{LoaderConfig, TransformSchedule};
use crate::sampler::{LastBatch, Partition, Shuffle};
use serde_json::{json, Map, Value};

/// A recipe that cannot be honoured, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    /// Not JSON, or not an object.
    #[error("recipe is not a JSON object: {0}")]
    Json(String),
    /// A field this version does not know.
    #[error("recipe field {0:?} is unknown to this worker")]
    Unknown(String),
    /// A field that is missing.
    #[error("recipe field {0:?} is missing")]
    Missing(&'static str),
    /// A field with a value of the wrong type or out of range.
    #[error("recipe field {field:?} has an invalid value: {value}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// The recipe parses, but the configuration it gives does not validate.
    #[error("recipe gives an invalid configuration: {0}")]
    Config(String),
}

const FIELDS: &[&str] = &[
    "batch_size",
    "dct_downscale",
    "decode_only",
    "decoder",
    "full_batches",
    "last_batch",
    "max_pixels",
    "partition",
    "rank",
    "seed",
    "shuffle",
    "strict",
    "transform",
    "world",
];

fn transform_json(from_epoch: u64, t: &Transform) -> Value {
    match t {
        Transform::Train(t) => json!({
            "from_epoch": from_epoch,
            "kind": "train",
            "size": t.size,
            "scale": [t.scale.0, t.scale.1],
            "ratio": [t.ratio.0, t.ratio.1],
            "flip": t.flip_probability,
        }),
        Transform::Val(t) => json!({
            "from_epoch": from_epoch,
            "kind": "val",
            "size": t.size,
            "resize": t.resize,
        }),
    }
}

/// The canonical recipe of `config`: two configs give the same string exactly when their
/// batches have the same bytes (threads, buffers, readahead and the epoch limit are left out).
pub fn canonical(config: &LoaderConfig) -> String {
    let shuffle = match config.shuffle {
        Shuffle::Sequential => json!("sequential"),
        Shuffle::Global => json!("global"),
        Shuffle::ShardWindow { window } => json!({ "window": window }),
    };
    let value = json!({
        "batch_size": config.batch_size,
        "dct_downscale": config.dct_downscale,
        "decode_only": config.decode_only,
        "decoder": match config.decoder {
            JpegBackend::Turbo => "turbo",
            JpegBackend::Zune => "zune",
        },
        "full_batches": config.full_batches,
        "last_batch": match config.last_batch {
            LastBatch::Drop => "drop",
            LastBatch::Pad => "pad",
        },
        "max_pixels": config.decode_limits.max_pixels,
        "partition": match config.partition {
            Partition::Blocks => "blocks",
            Partition::GlobalBatches => "global_batches",
        },
        "rank": config.rank,
        "seed": config.seed,
        "shuffle": shuffle,
        "strict": config.strict,
        "transform": config
            .transform
            .steps()
            .iter()
            .map(|(e, t)| transform_json(*e, t))
            .collect::<Vec<_>>(),
        "world": config.world,
    });
    // serde_json's maps are sorted by key (no `preserve_order`): the output is canonical.
    value.to_string()
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn get(&self, field: &'static str) -> Result<&Value, RecipeError> {
        self.map.get(field).ok_or(RecipeError::Missing(field))
    }

    fn u64(&self, field: &'static str) -> Result<u64, RecipeError> {
        let v = self.get(field)?;
        v.as_u64().ok_or_else(|| invalid(field, v))
    }

    fn u32(&self, field: &'static str) -> Result<u32, RecipeError> {
        let v = self.get(field)?;
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(field, v))
    }

    fn bool(&self, field: &'static str) -> Result<bool, RecipeError> {
        let v = self.get(field)?;
        v.as_bool().ok_or_else(|| invalid(field, v))
    }

    fn str(&self, field: &'static str) -> Result<&str, RecipeError> {
        let v = self.get(field)?;
        v.as_str().ok_or_else(|| invalid(field, v))
    }

    fn f64(&self, field: &'static str) -> Result<f64, RecipeError> {
        let v = self.get(field)?;
        v.as_f64().ok_or_else(|| invalid(field, v))
    }

    fn pair(&self, field: &'static str) -> Result<(f64, f64), RecipeError> {
        let v = self.get(field)?;
        match v.as_array().map(Vec::as_slice) {
            Some([a, b]) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(invalid(field, v)),
            },
            _ => Err(invalid(field, v)),
        }
    }
}

fn invalid(field: &'static str, value: &Value) -> RecipeError {
    let mut value = value.to_string();
    value.truncate(80);
    RecipeError::Invalid { field, value }
}

fn parse_transform(v: &Value) -> Result<(u64, Transform), RecipeError> {
    let map = v.as_object().ok_or_else(|| invalid("transform", v))?;
    let f = Fields { map };
    let known: &[&str] = match f.str("kind")? {
        "train" => &["flip", "from_epoch", "kind", "ratio", "scale", "size"],
        "val" => &["from_epoch", "kind", "resize", "size"],
        _ => return Err(invalid("kind", f.get("kind")?)),
    };
    if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(RecipeError::Unknown(format!("transform.{k}")));
    }
    let t = if f.str("kind")? == "train" {
        Transform::Train(TrainTransform {
            size: f.u32("size")?,
            scale: f.pair("scale")?,
            ratio: f.pair("ratio")?,
            flip_probability: f.f64("flip")?,
        })
    } else {
        Transform::Val(ValTransform {
            size: f.u32("size")?,
            resize: f.u32("resize")?,
        })
    };
    Ok((f.u64("from_epoch")?, t))
}

/// The configuration a recipe describes, with [`LoaderConfig::train`]'s defaults for what a
/// recipe leaves to the worker (threads, buffers, readahead, no epoch limit). Unknown fields
/// are refused, so a worker never silently makes other bytes than the client's engine would.
///
/// # Errors
///
/// [`RecipeError`] naming the field, or the configuration's own validation error.
pub fn parse(json: &str) -> Result<LoaderConfig, RecipeError> {
    let value: Value = serde_json::from_str(json).map_err(|e| RecipeError::Json(e.to_string()))?;
    let map = value
        .as_object()
        .ok_or_else(|| RecipeError::Json("not an object".into()))?;
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(RecipeError::Unknown(k.clone()));
    }
    let f = Fields { map };
    let steps = f
        .get("transform")?
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("transform", &map["transform"]))?;
    let mut parsed = steps.iter().map(parse_transform);
    let (first_epoch, first) = parsed.next().ok_or(RecipeError::Missing("transform"))??;
    if first_epoch != 0 {
        return Err(RecipeError::Invalid {
            field: "transform",
            value: format!("the first step starts at epoch {first_epoch}, not 0"),
        });
    }
    let mut schedule = TransformSchedule::new(first);
    for step in parsed {
        let (epoch, t) = step?;
        schedule = schedule.from_epoch(epoch, t);
    }
    let shuffle = match f.get("shuffle")? {
        Value::String(s) if s == "sequential" => Shuffle::Sequential,
        Value::String(s) if s == "global" => Shuffle::Global,
        Value::Object(m) if m.len() == 1 => {
            let w = Fields { map: m }.u64("window")?;
            Shuffle::ShardWindow {
                window: usize::try_from(w).map_err(|_| invalid("shuffle", &map["shuffle"]))?,
            }
        }
        v => return Err(invalid("shuffle", v)),
    };
    let config = LoaderConfig {
        transform: schedule,
        batch_size: usize::try_from(f.u64("batch_size")?)
            .map_err(|_| invalid("batch_size", &map["batch_size"]))?,
        seed: f.u64("seed")?,
        shuffle,
        rank: f.u32("rank")?,
        world: f.u32("world")?,
        last_batch: match f.str("last_batch")? {
            "drop" => LastBatch::Drop,
            "pad" => LastBatch::Pad,
            _ => return Err(invalid("last_batch", &map["last_batch"])),
        },
        partition: match f.str("partition")? {
            "blocks" => Partition::Blocks,
            "global_batches" => Partition::GlobalBatches,
            _ => return Err(invalid("partition", &map["partition"])),
        },
        full_batches: f.bool("full_batches")?,
        strict: f.bool("strict")?,
        decode_only: f.bool("decode_only")?,
        decoder: match f.str("decoder")? {
            "turbo" => JpegBackend::Turbo,
            "zune" => JpegBackend::Zune,
            _ => return Err(invalid("decoder", &map["decoder"])),
        },
        dct_downscale: f.bool("dct_downscale")?,
        decode_limits: DecodeLimits {
            max_pixels: f.u64("max_pixels")?,
        },
        ..LoaderConfig::train(1)
    };
    config
        .validate()
        .map_err(|e| RecipeError::Config(e.to_string()))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn train_and_val_recipes_round_trip() {
        let configs = [
            LoaderConfig {
                batch_size: 7,
                seed: u64::MAX,
                rank: 3,
                world: 8,
                last_batch: LastBatch::Drop,
                partition: Partition::GlobalBatches,
                full_batches: true,
                strict: true,
                decoder: JpegBackend::Zune,
                dct_downscale: true,
                shuffle: Shuffle::ShardWindow { window: 4 },
                ..LoaderConfig::train(160)
            },
            LoaderConfig::val(224),
            LoaderConfig {
                transform: TransformSchedule::new(Transform::Train(TrainTransform::new(128)))
                    .from_epoch(5, Transform::Train(TrainTransform::new(192))),
                ..LoaderConfig::train(1)
            },
        ];
        for config in configs {
            let json = canonical(&config);
            let back = parse(&json).expect("parses");
            assert_eq!(back.transform, config.transform);
            assert_eq!(canonical(&back), json);
        }
    }

    #[test]
    fn what_does_not_change_bytes_is_not_in_the_recipe() {
        let a = LoaderConfig::train(64);
        let b = LoaderConfig {
            workers: 9,
            prefetch: 17,
            readahead: 0,
            epochs: Some(3),
            ..a.clone()
        };
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(
            canonical(&a),
            canonical(&LoaderConfig {
                seed: 1,
                ..a.clone()
            })
        );
    }

    #[test]
    fn the_recipe_is_canonical_json() {
        let json = canonical(&LoaderConfig::val(32));
        assert!(!json.contains(' '), "{json}");
        assert!(json.starts_with("{\"batch_size\":256,\"dct_downscale\":false,"));
    }

    #[test]
    fn unknown_missing_and_invalid_fields_are_named() {
        let json = canonical(&LoaderConfig::train(64));
        let with = |k: &str, v: Value| {
            let mut m: Map<String, Value> = serde_json::from_str(&json).expect("json");
            m.insert(k.into(), v);
            Value::Object(m).to_string()
        };
        assert_eq!(
            parse(&with("colour", json!(1))),
            Err(RecipeError::Unknown("colour".into()))
        );
        assert!(matches!(
            parse(&with("world", json!(-1))),
            Err(RecipeError::Invalid { field: "world", .. })
        ));
        assert!(matches!(
            parse(&with("batch_size", json!(0))),
            Err(RecipeError::Config(_))
        ));
        let mut m: Map<String, Value> = serde_json::from_str(&json).expect("json");
        m.remove("seed");
        assert_eq!(
            parse(&Value::Object(m).to_string()),
            Err(RecipeError::Missing("seed"))
        );
        assert!(matches!(parse("[1]"), Err(RecipeError::Json(_))));
        assert!(matches!(parse("{"), Err(RecipeError::Json(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn numbers_round_trip(seed: u64, batch in 1usize..4096, size in 1u32..1024, lo in 0.01f64..0.5, hi in 0.5f64..1.0) {
            let config = LoaderConfig {
                seed,
                batch_size: batch,
                transform: Transform::Train(TrainTransform { scale: (lo, hi), ..TrainTransform::new(size) }).into(),
                ..LoaderConfig::train(1)
            };
            let back = parse(&canonical(&config)).expect("parses");
            prop_assert_eq!(back.transform, config.transform);
            prop_assert_eq!(back.seed, seed);
        }
    }
}
