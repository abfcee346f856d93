//! [`FlatParams`]: every trainable parameter of a model as a view into one flat fp32 buffer, and
//! every gradient as a view into a second one.
//!
//! tch has no multi-tensor (`_foreach_*`) ops, so a per-parameter optimizer launches ~8 kernels
//! for each of ResNet-50's 161 parameters every step. With flat buffers LARS is a dozen kernels
//! over the whole model ([`crate::lars`]), zeroing gradients is one kernel, and gradient averaging
//! is one all-reduce over one buffer ([`crate::allreduce`]). Autograd accumulates straight into
//! the gradient views (a defined `.grad` is accumulated into in place), as PyTorch DDP's
//! `gradient_as_bucket_view` does.
//!
//! Parameters are laid out in name order, so every replica has the same layout. 4-D (conv)
//! parameters can be channels-last views: the buffer segment holds them in OHWI order.
//!
//! Accumulating into views costs two passes over every gradient that stealing does not: the
//! buffer is zeroed, and autograd then adds each new gradient into it (read, read, write) where
//! with an undefined `.grad` it would just keep the tensor it computed. So the CPU step
//! ([`crate::train::Replica::train_step`]) calls [`FlatParams::release_grads`] instead of
//! [`FlatParams::zero_grads`]: autograd keeps its own gradient tensors ([`GradLocation::Own`]),
//! LARS reads them where they are, and only data parallelism copies them into the flat buffer
//! ([`FlatParams::gather_grads`]: one copy instead of zero + add) for its one all-reduce.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

use crate::precision::{MemoryFormat, ShimError};

extern "C" {
    fn sf_set_grad(t: *mut C_tensor, grad: *const C_tensor) -> *mut std::ffi::c_char;
    fn sf_clear_grad(t: *mut C_tensor) -> *mut std::ffi::c_char;
    fn sf_free_error(err: *mut std::ffi::c_char);
}

fn shim_result(call: &'static str, err: *mut std::ffi::c_char) -> Result<(), ShimError> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'd by the shim.
    let message = unsafe { std::ffi::CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { sf_free_error(err) };
    Err(ShimError { call, message })
}

/// Where the gradients of the last backward are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradLocation {
    /// In the flat buffer ([`FlatParams::grads`]): every `.grad` is a view of it, and autograd
    /// accumulated into them.
    Flat,
    /// In autograd's own tensor per parameter ([`FlatParams::own_grads`]), after
    /// [`FlatParams::release_grads`]; the flat buffer holds stale values.
    Own,
}

/// How LARS treats a parameter (the reference's `skip_list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LarsRole {
    /// Conv and fully-connected weights: trust ratio and weight decay.
    Scaled,
    /// Batch-norm scales and shifts, and biases: plain momentum SGD, no weight decay.
    Skipped,
}

/// One parameter's place in the flat buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSegment {
    /// The VarStore name (torchvision's name for our ResNets, e.g. `layer1.0.conv1.weight`).
    pub name: String,
    /// The parameter's (NCHW) shape.
    pub shape: Vec<i64>,
    /// First element in the flat buffers.
    pub offset: i64,
    /// Number of elements.
    pub numel: i64,
    /// LARS treatment.
    pub role: LarsRole,
}

/// The rule our models follow: BN parameters and biases are exactly the rank-1 parameters.
pub fn lars_role_of(shape: &[i64]) -> LarsRole {
    if shape.len() <= 1 {
        LarsRole::Skipped
    } else {
        LarsRole::Scaled
    }
}

/// Flat parameter and gradient buffers of one model replica.
pub struct FlatParams {
    segments: Vec<ParamSegment>,
    format: MemoryFormat,
    vars: Vec<Tensor>,
    /// Each parameter's view of `grads`.
    grad_views: Vec<Tensor>,
    weights: Tensor,
    grads: Tensor,
    location: GradLocation,
}

impl FlatParams {
    /// Moves every trainable variable of `vs` (those that require grad; BN running statistics
    /// stay where they are) into flat buffers on the VarStore's device, in name order, and makes
    /// 4-D ones `format`. The model keeps working: its tensors now view the buffers.
    pub fn from_var_store(vs: &VarStore, format: MemoryFormat) -> Result<Self, ShimError> {
        let device = vs.device();
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_named(named, device, format)
    }

    /// As [`FlatParams::from_var_store`], for an explicit list of leaf tensors that require grad.
    pub fn from_named(
        named: Vec<(String, Tensor)>,
        device: Device,
        format: MemoryFormat,
    ) -> Result<Self, ShimError> {
        let mut segments = Vec::with_capacity(named.len());
        let mut offset = 0i64;
        for (name, t) in &named {
            let shape = t.size();
            let numel = shape.iter().product::<i64>();
            segments.push(ParamSegment {
                name: name.clone(),
                role: lars_role_of(&shape),
                shape,
                offset,
                numel,
            });
            offset += numel;
        }
        let weights = Tensor::zeros([offset], (Kind::Float, device));
        let grads = Tensor::zeros([offset], (Kind::Float, device));
        let mut vars = Vec::with_capacity(named.len());
        let mut grad_views = Vec::with_capacity(named.len());
        tch::no_grad(|| -> Result<(), ShimError> {
            for (seg, (_, var)) in segments.iter().zip(named) {
                let w_view = segment_view(&weights, seg, format);
                let g_view = segment_view(&grads, seg, format);
                let mut w_view_mut = w_view.shallow_clone();
                w_view_mut.copy_(&var.to_kind(Kind::Float));
                let mut var = var;
                var.set_data(&w_view);
                shim_result("set_grad", unsafe {
                    sf_set_grad(var.as_mut_ptr(), g_view.as_ptr())
                })?;
                vars.push(var);
                grad_views.push(g_view);
            }
            Ok(())
        })?;
        Ok(FlatParams {
            segments,
            format,
            vars,
            grad_views,
            weights,
            grads,
            location: GradLocation::Flat,
        })
    }

    /// The parameters' places, in buffer order.
    pub fn segments(&self) -> &[ParamSegment] {
        &self.segments
    }

    /// The parameters themselves (views into [`FlatParams::weights`]), in segment order.
    pub fn vars(&self) -> &[Tensor] {
        &self.vars
    }

    /// The memory format of the 4-D parameters' segments (channels-last: OHWI order).
    pub fn format(&self) -> MemoryFormat {
        self.format
    }

    /// Each parameter's view of `flat`, a buffer laid out as [`FlatParams::weights`] is (the
    /// gradients, the LARS momentum), in segment order, with the parameter's NCHW shape.
    /// Indexing a view is in logical (NCHW) order whatever the memory format, so copying into or
    /// out of these views moves values between runs of different memory formats correctly, which
    /// a copy of the flat buffer itself does not.
    pub fn param_views(&self, flat: &Tensor) -> Vec<Tensor> {
        self.segments
            .iter()
            .map(|seg| segment_view(flat, seg, self.format))
            .collect()
    }

    /// All parameters, flat fp32.
    pub fn weights(&self) -> &Tensor {
        &self.weights
    }

    /// All gradients, flat fp32 (what autograd accumulated since the last [`Self::zero_grads`]
    /// or, after [`Self::gather_grads`], the last backward's). Stale while
    /// [`Self::grad_location`] is [`GradLocation::Own`].
    pub fn grads(&self) -> &Tensor {
        &self.grads
    }

    /// Where the last backward's gradients are.
    pub fn grad_location(&self) -> GradLocation {
        self.location
    }

    /// Each parameter's own gradient tensor (`None` where the last backward gave it none), in
    /// segment order. Meaningful when [`Self::grad_location`] is [`GradLocation::Own`]; in
    /// [`GradLocation::Flat`] these are the views of [`Self::grads`].
    pub fn own_grads(&self) -> Vec<Option<Tensor>> {
        self.vars
            .iter()
            .map(|v| Some(v.grad()).filter(|g| g.defined()))
            .collect()
    }

    /// Total number of parameters.
    pub fn numel(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.offset + s.numel)
    }

    /// Zeroes every gradient (one kernel); the next backward accumulates into the flat buffer.
    pub fn zero_grads(&mut self) -> Result<(), ShimError> {
        self.point_grads_at_views()?;
        let _ = self.grads.zero_();
        Ok(())
    }

    /// Unsets every parameter's `.grad`, so the next backward leaves each gradient in the tensor
    /// autograd computed it in ([`GradLocation::Own`]): no zeroing pass, no accumulation pass.
    pub fn release_grads(&mut self) -> Result<(), ShimError> {
        for var in &mut self.vars {
            shim_result("clear_grad", unsafe { sf_clear_grad(var.as_mut_ptr()) })?;
        }
        self.location = GradLocation::Own;
        Ok(())
    }

    /// Copies the parameters' own gradients into the flat buffer (zeros where a parameter got
    /// none) and makes the views their `.grad` again ([`GradLocation::Flat`]): one copy per
    /// gradient, what an all-reduce of the flat buffer needs. Nothing to do in `Flat`.
    pub fn gather_grads(&mut self) -> Result<(), ShimError> {
        if self.location == GradLocation::Flat {
            return Ok(());
        }
        self.copy_own_grads_into(&self.grads);
        self.point_grads_at_views()
    }

    /// The last backward's gradients as one flat tensor laid out as [`Self::grads`]: that
    /// buffer itself in [`GradLocation::Flat`], a new tensor gathered from the own gradients in
    /// [`GradLocation::Own`].
    pub fn flat_grads(&self) -> Tensor {
        match self.location {
            GradLocation::Flat => self.grads.shallow_clone(),
            GradLocation::Own => {
                let out = self.grads.zeros_like();
                self.copy_own_grads_into(&out);
                out
            }
        }
    }

    /// Copies every own gradient into its view of `flat` (a buffer laid out as the weights),
    /// zeros where a parameter has none. (Same shapes and dtype by construction: tch's
    /// panicking ops, as the tensor-op LARS.)
    fn copy_own_grads_into(&self, flat: &Tensor) {
        let own = self.own_grads();
        tch::no_grad(|| {
            for (mut view, grad) in self.param_views(flat).into_iter().zip(own) {
                match grad {
                    Some(g) => view.copy_(&g),
                    None => {
                        let _ = view.zero_();
                    }
                }
            }
        })
    }

    /// Each parameter's view of [`Self::grads`] (its gradient slot), in segment order.
    pub fn grad_views(&self) -> &[Tensor] {
        &self.grad_views
    }

    /// Makes the flat buffer the gradients' location without copying: for a caller that has
    /// filled every slot itself (the bucketed all-reduce's hooks copy each own gradient into
    /// its slot as backward produces it).
    pub fn adopt_flat_grads(&mut self) -> Result<(), ShimError> {
        self.point_grads_at_views()
    }

    fn point_grads_at_views(&mut self) -> Result<(), ShimError> {
        if self.location == GradLocation::Flat {
            return Ok(());
        }
        for (var, view) in self.vars.iter_mut().zip(&self.grad_views) {
            shim_result("set_grad", unsafe {
                sf_set_grad(var.as_mut_ptr(), view.as_ptr())
            })?;
        }
        self.location = GradLocation::Flat;
        Ok(())
    }
}

/// The view of `seg` in a flat buffer, with the parameter's shape (channels-last for 4-D ones
/// when asked).
fn segment_view(flat: &Tensor, seg: &ParamSegment, format: MemoryFormat) -> Tensor {
    let part = flat.narrow(0, seg.offset, seg.numel);
    match (format, seg.shape.as_slice()) {
        (MemoryFormat::ChannelsLast, &[o, i, h, w]) => {
            part.view([o, h, w, i]).permute([0, 3, 1, 2])
        }
        _ => part.view(seg.shape.as_slice()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::is_memory_format;
    use tch::nn::{self, Module};

    #[test]
    fn parameters_become_views_and_grads_accumulate_into_the_flat_buffer() {
        let vs = VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root() / "conv", 3, 4, 3, Default::default());
        let lin = nn::linear(vs.root() / "fc", 4, 2, Default::default());
        let before = conv.ws.copy();
        let x = Tensor::randn([2, 3, 5, 5], (Kind::Float, Device::Cpu));
        let y_before = conv.forward(&x);
        let mut flat = FlatParams::from_var_store(&vs, MemoryFormat::ChannelsLast).unwrap();
        let names: Vec<_> = flat.segments().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["conv.bias", "conv.weight", "fc.bias", "fc.weight"]);
        assert_eq!(flat.numel(), 4 + 4 * 3 * 9 + 2 + 8);
        assert!(conv.ws.equal(&before));
        assert!(is_memory_format(&conv.ws, MemoryFormat::ChannelsLast).unwrap());
        // The model computes the same, from the flat buffer.
        let y = conv.forward(&x);
        assert!(y.allclose(&y_before, 1e-5, 1e-6, false));
        // Writing the buffer changes the model.
        tch::no_grad(|| {
            let _ = flat.weights().shallow_clone().fill_(0.5);
        });
        assert_eq!(conv.ws.mean(Kind::Float).double_value(&[]), 0.5);
        // Gradients land in the flat buffer, and accumulate until zeroed.
        let loss = lin
            .forward(
                &conv
                    .forward(&x)
                    .mean_dim([2i64, 3].as_slice(), false, Kind::Float),
            )
            .sum(Kind::Float);
        loss.backward();
        let g1 = flat.grads().copy();
        assert!(g1.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        let seg = &flat.segments()[1];
        let g_view = segment_view(flat.grads(), seg, MemoryFormat::ChannelsLast);
        assert!(conv.ws.grad().equal(&g_view));
        let loss = lin
            .forward(
                &conv
                    .forward(&x)
                    .mean_dim([2i64, 3].as_slice(), false, Kind::Float),
            )
            .sum(Kind::Float);
        loss.backward();
        assert!(flat.grads().allclose(&(&g1 * 2.0), 1e-5, 1e-6, false));
        flat.zero_grads().unwrap();
        assert_eq!(flat.grads().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn param_views_index_any_buffer_in_logical_order() {
        let w = Tensor::arange(2 * 3 * 2 * 2, (Kind::Float, Device::Cpu))
            .view([2, 3, 2, 2])
            .set_requires_grad(true);
        let b = Tensor::from_slice(&[7.0f32, 8.0]).set_requires_grad(true);
        let want = w.detach().copy();
        for format in [MemoryFormat::Contiguous, MemoryFormat::ChannelsLast] {
            let flat = FlatParams::from_named(
                vec![
                    (
                        "conv.weight".into(),
                        w.detach().copy().set_requires_grad(true),
                    ),
                    ("z.bias".into(), b.detach().copy().set_requires_grad(true)),
                ],
                Device::Cpu,
                format,
            )
            .unwrap();
            assert_eq!(flat.format(), format);
            let views = flat.param_views(flat.weights());
            assert!(views[0].equal(&want), "{format:?}");
            assert!(views[0].equal(&flat.vars()[0]), "{format:?}");
            // Writing through a view writes the buffer where the parameter reads it.
            let other = flat.weights().zeros_like();
            let mut v = flat.param_views(&other);
            tch::no_grad(|| v[0].copy_(&want));
            assert!(flat.param_views(&other)[0].equal(&want));
            assert_eq!(
                other.narrow(0, 24, 2).sum(Kind::Float).double_value(&[]),
                0.0
            );
        }
    }

    #[test]
    fn roles_follow_rank() {
        assert_eq!(lars_role_of(&[64]), LarsRole::Skipped);
        assert_eq!(lars_role_of(&[10, 64]), LarsRole::Scaled);
        assert_eq!(lars_role_of(&[64, 3, 7, 7]), LarsRole::Scaled);
    }
}
