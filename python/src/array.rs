//! `_Array`: a batch's images (or labels) lent to Python without a copy.
//!
//! The images stay in the engine's batch buffer. An `_Array` owns the engine's
//! [`Batch`](shardfeed_engine::loader::Batch) through an `Arc`; every DLPack capsule it makes
//! holds another clone of that `Arc` until the consumer (torch, numpy, JAX) calls the capsule's
//! deleter, which it does when the last tensor viewing the memory is freed. numpy's
//! `__array_interface__` path keeps the `_Array` itself alive (the array's `base`). So the
//! buffer goes back to the loader's pool exactly when nothing in Python can reach it any more:
//! never earlier (no use-after-free), and never later than the last reference.
//!
//! Layout: images are the engine's NHWC bytes, exported as shape `(N, 3, H, W)` with strides
//! `(H*W*3, 1, W*3, 3)`: an NCHW tensor in channels-last memory, which is what
//! `torch.channels_last` convolutions read without a copy.
//!
//! DLPack is exported in its original (unversioned, `"dltensor"`) form, which every consumer
//! accepts; the capsule protocol is the Python array API standard's: a consumer renames a capsule
//! it takes to `"used_dltensor"` and becomes responsible for the deleter; an unconsumed capsule
//! calls the deleter itself when it is collected.

use pyo3::exceptions::{PyBufferError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};
use std::any::Any;
use std::ffi::{c_void, CStr};
use std::ptr::NonNull;
use std::sync::Arc;

/// DLPack's C ABI (dlpack.h, v0.8 / the unversioned `DLManagedTensor`).
mod dl {
    use std::ffi::c_void;

    pub const CPU: i32 = 1;
    pub const INT: u8 = 0;
    pub const UINT: u8 = 1;

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct Device {
        pub device_type: i32,
        pub device_id: i32,
    }

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct DataType {
        pub code: u8,
        pub bits: u8,
        pub lanes: u16,
    }

    #[repr(C)]
    pub struct Tensor {
        pub data: *mut c_void,
        pub device: Device,
        pub ndim: i32,
        pub dtype: DataType,
        pub shape: *mut i64,
        pub strides: *mut i64,
        pub byte_offset: u64,
    }

    #[repr(C)]
    pub struct ManagedTensor {
        pub dl_tensor: Tensor,
        pub manager_ctx: *mut c_void,
        pub deleter: Option<unsafe extern "C" fn(*mut ManagedTensor)>,
    }
}

/// The element type of an [`Array`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// `uint8` (images).
    U8,
    /// `int64` (labels, as torch's losses want them).
    I64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::U8 => 1,
            Elem::I64 => 8,
        }
    }

    fn dl(self) -> dl::DataType {
        match self {
            Elem::U8 => dl::DataType {
                code: dl::UINT,
                bits: 8,
                lanes: 1,
            },
            Elem::I64 => dl::DataType {
                code: dl::INT,
                bits: 64,
                lanes: 1,
            },
        }
    }

    fn typestr(self) -> &'static str {
        match self {
            Elem::U8 => "|u1",
            Elem::I64 => "<i8",
        }
    }
}

/// Whatever keeps an array's memory alive (an engine `Batch`, a labels `Vec`).
pub type Owner = Arc<dyn Any + Send + Sync>;

/// One array of a batch, lent without a copy. Pass it to `torch.from_dlpack` or
/// `numpy.from_dlpack` (or `numpy.asarray`): the memory stays valid as long as the tensor or
/// array does. Treat it as read-only: it is the engine's batch buffer.
#[pyclass(frozen, name = "_Array", module = "shardfeed._shardfeed")]
pub struct Array {
    owner: Owner,
    /// The first element (an address: raw pointers are neither `Send` nor `Sync`).
    data: usize,
    elem: Elem,
    shape: Vec<i64>,
    /// In elements.
    strides: Vec<i64>,
}

impl Array {
    /// An array over `data`, which `owner` keeps alive and unchanged while it lives.
    ///
    /// # Safety
    ///
    /// `data` must point to memory owned by `owner` that holds every element `shape` and
    /// `strides` (in elements of `elem`) address, valid and unmodified while `owner` lives.
    pub unsafe fn new(
        owner: Owner,
        data: *const u8,
        elem: Elem,
        shape: Vec<i64>,
        strides: Vec<i64>,
    ) -> Array {
        Array {
            owner,
            data: data as usize,
            elem,
            shape,
            strides,
        }
    }

    /// Labels as an `int64` vector (a record stored without a label is -1).
    pub fn labels(labels: &[u32]) -> Array {
        let v: Arc<Vec<i64>> = Arc::new(
            labels
                .iter()
                .map(|&l| if l == u32::MAX { -1 } else { i64::from(l) })
                .collect(),
        );
        let n = v.len() as i64;
        let data = v.as_ptr().cast::<u8>();
        // SAFETY: `v` owns `n` contiguous i64s and is never changed (it is behind an `Arc`).
        unsafe { Array::new(v, data, Elem::I64, vec![n], vec![1]) }
    }
}

/// What a DLPack capsule owns: the managed tensor (first, so the two pointers are the same),
/// its shape and strides, and the memory's owner.
#[repr(C)]
struct Exported {
    managed: dl::ManagedTensor,
    shape: Vec<i64>,
    strides: Vec<i64>,
    _owner: Owner,
}

/// The deleter a consumer calls when it frees the tensor: drops the `Exported` and so the
/// owner's clone (no GIL needed: nothing here touches Python).
unsafe extern "C" fn delete_exported(m: *mut dl::ManagedTensor) {
    if !m.is_null() {
        // SAFETY: `m` is the `managed` field of an `Exported` leaked by `__dlpack__`, which is
        // its first field (repr(C)); each deleter is called once, by the DLPack contract.
        unsafe { drop(Box::from_raw((*m).manager_ctx.cast::<Exported>())) };
    }
}

const DLTENSOR: &CStr = c"dltensor";

/// The capsule's destructor: frees the tensor unless a consumer took it (and renamed the
/// capsule to `used_dltensor`).
unsafe extern "C" fn capsule_destructor(capsule: *mut pyo3::ffi::PyObject) {
    // SAFETY: called by Python with a live capsule and the GIL held. The name tells whether the
    // pointer is still ours; PyCapsule_IsValid sets no exception, and a mismatch (a consumer
    // renamed it `used_dltensor`) leaves nothing to free here.
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(capsule, DLTENSOR.as_ptr()) == 1 {
            let m = pyo3::ffi::PyCapsule_GetPointer(capsule, DLTENSOR.as_ptr());
            delete_exported(m.cast::<dl::ManagedTensor>());
        }
    }
}

#[pymethods]
impl Array {
    /// A DLPack capsule over the memory (CPU). `stream` is ignored (CPU memory),
    /// `max_version` is accepted (an unversioned capsule is returned, which the standard
    /// allows), `dl_device` must be CPU or omitted, `copy=True` is refused (this exporter only
    /// lends memory; use `tensor.clone()`).
    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<Bound<'py, PyAny>>,
        max_version: Option<Bound<'py, PyAny>>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = (stream, max_version);
        if let Some(d) = dl_device {
            if d.0 != dl::CPU {
                return Err(PyBufferError::new_err(format!(
                    "shardfeed batches are in CPU memory; cannot export to DLPack device {d:?}"
                )));
            }
        }
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "shardfeed lends batch memory without copying; copy it after import",
            ));
        }
        let mut exported = Box::new(Exported {
            managed: dl::ManagedTensor {
                dl_tensor: dl::Tensor {
                    data: self.data as *mut c_void,
                    device: dl::Device {
                        device_type: dl::CPU,
                        device_id: 0,
                    },
                    ndim: self.shape.len() as i32,
                    dtype: self.elem.dl(),
                    shape: std::ptr::null_mut(),
                    strides: std::ptr::null_mut(),
                    byte_offset: 0,
                },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_exported),
            },
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            _owner: Arc::clone(&self.owner),
        });
        exported.managed.dl_tensor.shape = exported.shape.as_mut_ptr();
        exported.managed.dl_tensor.strides = exported.strides.as_mut_ptr();
        let raw = Box::into_raw(exported);
        // SAFETY: `raw` is a live, leaked `Exported`; its address is also its `managed`'s.
        unsafe { (*raw).managed.manager_ctx = raw.cast::<c_void>() };
        let ptr = NonNull::new(raw.cast::<c_void>())
            .ok_or_else(|| PyRuntimeError::new_err("allocation returned null"))?;
        // SAFETY: the pointer is an `Exported` that only the destructor (name "dltensor") or a
        // consumer's call of its deleter frees.
        let capsule = unsafe {
            PyCapsule::new_with_pointer_and_destructor(py, ptr, DLTENSOR, Some(capsule_destructor))
        };
        if capsule.is_err() {
            // SAFETY: no capsule owns it; free it here, once.
            unsafe { delete_exported(raw.cast::<dl::ManagedTensor>()) };
        }
        capsule
    }

    /// `(kDLCPU, 0)`.
    fn __dlpack_device__(&self) -> (i32, i32) {
        (dl::CPU, 0)
    }

    /// numpy's array interface (version 3), read-only: `numpy.asarray(a)` views the memory and
    /// keeps this object alive as the array's `base`.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let size = self.elem.size() as i64;
        let strides: Vec<i64> = self.strides.iter().map(|s| s * size).collect();
        d.set_item("version", 3)?;
        d.set_item("typestr", self.elem.typestr())?;
        d.set_item("shape", PyTuple::new(py, &self.shape)?)?;
        d.set_item("strides", PyTuple::new(py, &strides)?)?;
        d.set_item("data", (self.data, true))?;
        Ok(d)
    }

    /// The shape.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    fn __repr__(&self) -> String {
        format!(
            "_Array(shape={:?}, dtype={})",
            self.shape,
            match self.elem {
                Elem::U8 => "uint8",
                Elem::I64 => "int64",
            }
        )
    }
}
