//! ResNets with torchvision's architecture and parameter names (`conv1.weight`,
//! `layer1.0.bn1.running_mean`, `layer2.0.downsample.0.weight`, `fc.bias`, …), so weights and
//! numbers can be compared with PyTorch: [`Arch::ResNet50`] (25,557,032 parameters, the v1.5
//! bottleneck with its stride on the 3x3 conv), [`Arch::ResNet18`], and [`Arch::Small`], a
//! three-stage ResNet for CPU runs on small images. [`ResNet`] is a `tch::nn::ModuleT`.
//!
//! Initialisation is torchvision's too: convs N(0, 2/fan_out) (`kaiming_normal_`, fan-out, ReLU),
//! BN scale 1 and shift 0 (scale 0 on each block's last BN with
//! [`ModelOptions::zero_init_residual`], off by default as in torchvision), fc weight and bias
//! U(±1/√fan_in) (`nn.Linear`'s default).
//!
//! ```
//! use shardfeed_trainer::model::{Arch, ModelOptions, ResNet};
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let model = ResNet::new(&vs.root(), Arch::Small, 10, ModelOptions::default());
//! let x = tch::Tensor::zeros([2, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
//! let logits = tch::nn::ModuleT::forward_t(&model, &x, false);
//! assert_eq!(logits.size(), vec![2, 10]);
//! ```

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// torchvision `resnet18`: basic blocks [2, 2, 2, 2].
    ResNet18,
    /// torchvision `resnet50`: bottleneck blocks [3, 4, 6, 3].
    ResNet50,
    /// Basic blocks [1, 1, 1] of 16/32/64 channels, 3x3 stem without max-pool: for CPU runs on
    /// 32-64 pixel images.
    Small,
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "resnet18" => Ok(Arch::ResNet18),
            "resnet50" => Ok(Arch::ResNet50),
            "small" | "resnet-small" => Ok(Arch::Small),
            _ => Err(format!(
                "unknown model '{s}' (expected resnet50, resnet18 or small)"
            )),
        }
    }
}

impl Arch {
    /// The name the CLI and checkpoints use.
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
            Arch::Small => "small",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Construction options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelOptions {
    /// Start each residual block's last BN scale at 0 (torchvision's `zero_init_residual`), so
    /// every block starts as the identity; helps at large batch (Goyal et al. 2017).
    pub zero_init_residual: bool,
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu"), no bias.
    let cfg = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ws_init: nn::Init::Kaiming {
            dist: nn::init::NormalOrUniform::Normal,
            fan: nn::init::FanInOut::FanOut,
            non_linearity: nn::init::NonLinearity::ReLU,
        },
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, cfg)
}

/// torchvision leaves its fc with `nn.Linear`'s own init: weight and bias U(±1/√fan_in)
/// (`kaiming_uniform_(a=√5)` works out to that bound). tch's default weight init is
/// Kaiming-uniform with the ReLU gain, bound √6/√fan_in: 2.45x wider.
fn linear(p: nn::Path, c_in: i64, c_out: i64) -> nn::Linear {
    let bound = 1.0 / (c_in as f64).sqrt();
    let uniform = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let cfg = nn::LinearConfig {
        ws_init: uniform,
        bs_init: Some(uniform),
        bias: true,
    };
    nn::linear(p, c_in, c_out, cfg)
}

fn bn(p: nn::Path, c: i64, zero_scale: bool) -> nn::BatchNorm {
    let cfg = nn::BatchNormConfig {
        ws_init: nn::Init::Const(if zero_scale { 0.0 } else { 1.0 }),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::batch_norm2d(p, c, cfg)
}

struct Downsample {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl Downsample {
    fn maybe(p: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Option<Downsample> {
        (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: conv(p / "downsample" / "0", c_in, c_out, 1, stride, 0),
            bn: bn(p / "downsample" / "1", c_out, false),
        })
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train)
    }
}

/// Two 3x3 convs (ResNet-18/34 and the small ResNet).
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, stride: i64, opts: ModelOptions) -> Self {
        BasicBlock {
            conv1: conv(&p / "conv1", c_in, c_out, 3, stride, 1),
            bn1: bn(&p / "bn1", c_out, false),
            conv2: conv(&p / "conv2", c_out, c_out, 3, 1, 1),
            bn2: bn(&p / "bn2", c_out, opts.zero_init_residual),
            downsample: Downsample::maybe(&p, c_in, c_out, stride),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train);
        add_shortcut(ys, xs, self.downsample.as_ref(), train)
    }
}

/// The end of every residual block: `relu(ys + shortcut(xs))`, the shortcut downsampled when the
/// block changes shape.
fn add_shortcut(ys: Tensor, xs: &Tensor, downsample: Option<&Downsample>, train: bool) -> Tensor {
    let shortcut = match downsample {
        Some(d) => d.forward_t(xs, train),
        None => xs.shallow_clone(),
    };
    (ys + shortcut).relu()
}

/// 1x1 → 3x3 (stride here, v1.5) → 1x1 with 4x expansion (ResNet-50).
struct Bottleneck {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    downsample: Option<Downsample>,
}

impl Bottleneck {
    fn new(p: nn::Path, c_in: i64, width: i64, stride: i64, opts: ModelOptions) -> Self {
        let c_out = width * 4;
        Bottleneck {
            conv1: conv(&p / "conv1", c_in, width, 1, 1, 0),
            bn1: bn(&p / "bn1", width, false),
            conv2: conv(&p / "conv2", width, width, 3, stride, 1),
            bn2: bn(&p / "bn2", width, false),
            conv3: conv(&p / "conv3", width, c_out, 1, 1, 0),
            bn3: bn(&p / "bn3", c_out, opts.zero_init_residual),
            downsample: Downsample::maybe(&p, c_in, c_out, stride),
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .apply(&self.conv2)
            .apply_t(&self.bn2, train)
            .relu()
            .apply(&self.conv3)
            .apply_t(&self.bn3, train);
        add_shortcut(ys, xs, self.downsample.as_ref(), train)
    }
}

enum Block {
    Basic(Box<BasicBlock>),
    Bottleneck(Box<Bottleneck>),
}

impl Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Block::Basic(b) => b.forward_t(xs, train),
            Block::Bottleneck(b) => b.forward_t(xs, train),
        }
    }
}

/// A ResNet classifier: NCHW float images in (any memory format), logits out.
pub struct ResNet {
    arch: Arch,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    stages: Vec<Vec<Block>>,
    fc: nn::Linear,
}

impl ResNet {
    /// Builds `arch` with `num_classes` outputs under `p` (use the VarStore root for
    /// torchvision's names).
    pub fn new(p: &nn::Path, arch: Arch, num_classes: i64, opts: ModelOptions) -> Self {
        let (stem_k, stem_stride, stem_pad, stem_c) = match arch {
            Arch::Small => (3, 1, 1, 16),
            _ => (7, 2, 3, 64),
        };
        let conv1 = conv(p / "conv1", 3, stem_c, stem_k, stem_stride, stem_pad);
        let bn1 = bn(p / "bn1", stem_c, false);
        let (depths, widths): (&[i64], &[i64]) = match arch {
            Arch::ResNet18 => (&[2, 2, 2, 2], &[64, 128, 256, 512]),
            Arch::ResNet50 => (&[3, 4, 6, 3], &[64, 128, 256, 512]),
            Arch::Small => (&[1, 1, 1], &[16, 32, 64]),
        };
        let mut c_in = stem_c;
        let mut stages = Vec::new();
        for (i, (&depth, &width)) in depths.iter().zip(widths).enumerate() {
            let layer = p / format!("layer{}", i + 1);
            let mut blocks = Vec::new();
            for j in 0..depth {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                let bp = &layer / j;
                let block = match arch {
                    Arch::ResNet50 => {
                        let b = Bottleneck::new(bp, c_in, width, stride, opts);
                        c_in = width * 4;
                        Block::Bottleneck(Box::new(b))
                    }
                    _ => {
                        let b = BasicBlock::new(bp, c_in, width, stride, opts);
                        c_in = width;
                        Block::Basic(Box::new(b))
                    }
                };
                blocks.push(block);
            }
            stages.push(blocks);
        }
        let fc = linear(p / "fc", c_in, num_classes);
        ResNet {
            arch,
            conv1,
            bn1,
            stages,
            fc,
        }
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }
}

impl std::fmt::Debug for ResNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResNet").field("arch", &self.arch).finish()
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        if self.arch != Arch::Small {
            ys = ys.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for stage in &self.stages {
            for block in stage {
                ys = block.forward_t(&ys, train);
            }
        }
        ys.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.fc)
    }
}

/// Number of trainable parameters in a VarStore (BN running statistics are not parameters).
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn resnet50_has_torchvisions_parameter_count_and_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = ResNet::new(&vs.root(), Arch::ResNet50, 1000, ModelOptions::default());
        assert_eq!(parameter_count(&vs), 25_557_032);
        let vars = vs.variables();
        assert_eq!(vs.trainable_variables().len(), 161);
        for name in [
            "conv1.weight",
            "bn1.running_var",
            "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.bias",
            "layer2.0.conv2.weight",
            "layer4.2.bn3.weight",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(vars.contains_key(name), "missing {name}");
        }
        // Shapes only (v1 has the same); resnet50_strides_on_the_3x3_conv_as_in_v1_5 checks
        // where the stride is.
        assert_eq!(vars["layer2.0.conv2.weight"].size(), vec![128, 128, 3, 3]);
        assert_eq!(vars["fc.weight"].size(), vec![1000, 2048]);
    }

    /// v1.5 (torchvision, MLPerf) downsamples in the 3x3 conv (`conv2`) of the first block of
    /// stages 2-4; v1 strides the first 1x1 (`conv1`) instead, with the same parameter shapes.
    /// Every conv of every block sees an 8x8 map here, and only the strided ones halve it.
    #[test]
    fn resnet50_strides_on_the_3x3_conv_as_in_v1_5() {
        use tch::nn::Module;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = ResNet::new(&vs.root(), Arch::ResNet50, 10, ModelOptions::default());
        let side = |conv: &nn::Conv2D| {
            let c_in = conv.ws.size()[1];
            let x = Tensor::zeros([1, c_in, 8, 8], (Kind::Float, Device::Cpu));
            tch::no_grad(|| conv.forward(&x)).size()[2..].to_vec()
        };
        let mut strided = 0;
        for (i, stage) in m.stages.iter().enumerate() {
            for (j, block) in stage.iter().enumerate() {
                let Block::Bottleneck(b) = block else {
                    panic!("layer{}.{j} is not a bottleneck", i + 1)
                };
                let want = if i > 0 && j == 0 {
                    vec![4, 4]
                } else {
                    vec![8, 8]
                };
                strided += usize::from(want[0] == 4);
                let name = format!("layer{}.{j}", i + 1);
                assert_eq!(side(&b.conv1), vec![8, 8], "{name}.conv1");
                assert_eq!(side(&b.conv2), want, "{name}.conv2");
                assert_eq!(side(&b.conv3), vec![8, 8], "{name}.conv3");
                if let Some(d) = &b.downsample {
                    assert_eq!(side(&d.conv), want, "{name}.downsample.0");
                }
            }
        }
        assert_eq!(strided, 3);
    }

    /// Mean, standard deviation and largest magnitude of a tensor, in f64.
    fn stats(t: &Tensor) -> (f64, f64, f64) {
        let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        (mean, var.sqrt(), max)
    }

    /// torchvision's `ResNet.__init__`: every conv `kaiming_normal_(mode="fan_out",
    /// nonlinearity="relu")`, i.e. N(0, 2/(c_out·k·k)); BN scale 1 and shift 0
    /// (`zero_init_residual=False` by default); the fc keeps `nn.Linear`'s own init, weight and
    /// bias U(±1/√fan_in). Tolerances are 4 standard errors of each estimate, so they pass for
    /// the right init and fail for tch's defaults (the fc weight's Kaiming-uniform bound is 2.45x
    /// too wide) or a fan-in conv init.
    #[test]
    fn init_is_torchvisions_for_every_layer_type() {
        assert!(!ModelOptions::default().zero_init_residual);
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = ResNet::new(&vs.root(), Arch::ResNet50, 1000, ModelOptions::default());
        let mut seen = [0usize; 4];
        for (name, t) in vs.variables() {
            let size = t.size();
            let n = t.numel() as f64;
            let (mean, std, max) = stats(&t);
            if size.len() == 4 {
                seen[0] += 1;
                let want = (2.0 / (size[0] * size[2] * size[3]) as f64).sqrt();
                let se = 4.0 / (2.0 * n).sqrt();
                assert!(
                    (std / want - 1.0).abs() < se,
                    "{name}: std {std}, want {want}"
                );
                assert!(mean.abs() < 4.0 * want / n.sqrt(), "{name}: mean {mean}");
                // Normal, not uniform of the same spread (whose largest value is √3·std): with
                // 4096+ values, some lie beyond 2.5 standard deviations.
                assert!(max > 2.5 * want, "{name}: largest |w| {max}, std {want}");
            } else if name == "fc.weight" || name == "fc.bias" {
                seen[1] += 1;
                let bound = 1.0 / 2048f64.sqrt();
                assert!(max <= bound, "{name}: largest |w| {max} > {bound}");
                assert!(
                    max > 0.95 * bound,
                    "{name}: largest |w| {max}, bound {bound}"
                );
                let want = bound / 3f64.sqrt();
                assert!(
                    (std / want - 1.0).abs() < 4.0 * 0.45 / n.sqrt(),
                    "{name}: std {std}, want {want}"
                );
            } else {
                let want = if name.ends_with(".weight") || name.ends_with(".running_var") {
                    seen[2] += 1;
                    1.0
                } else {
                    seen[3] += 1;
                    0.0
                };
                assert_eq!((mean, std), (want, 0.0), "{name}");
            }
        }
        // 53 convs, the fc's 2 tensors, BN: 53 scales + 53 running variances, 53 shifts + 53
        // running means.
        assert_eq!(seen, [53, 2, 106, 106]);
    }

    #[test]
    fn resnet18_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = ResNet::new(&vs.root(), Arch::ResNet18, 1000, ModelOptions::default());
        assert_eq!(parameter_count(&vs), 11_689_512);
    }

    #[test]
    fn zero_init_residual_zeroes_last_bn_scales_only() {
        let vs = nn::VarStore::new(Device::Cpu);
        let opts = ModelOptions {
            zero_init_residual: true,
        };
        let m = ResNet::new(&vs.root(), Arch::Small, 10, opts);
        let vars = vs.variables();
        assert_eq!(
            vars["layer1.0.bn2.weight"]
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        assert_eq!(
            vars["layer1.0.bn1.weight"]
                .mean(Kind::Float)
                .double_value(&[]),
            1.0
        );
        let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
        let y = m.forward_t(&x, true);
        assert_eq!(y.size(), vec![2, 10]);
        assert!(bool::try_from(y.isfinite().all()).unwrap());
    }

    #[test]
    fn arch_names_parse() {
        assert_eq!("resnet50".parse::<Arch>(), Ok(Arch::ResNet50));
        assert!("vgg"
            .parse::<Arch>()
            .unwrap_err()
            .contains("unknown model 'vgg'"));
    }
}
