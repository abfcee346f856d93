//! Links the trainer against the libtorch that torch-sys found (scripts/setup-torch.sh), so that
//! its binaries and tests run without `LD_LIBRARY_PATH` and really load `libtorch_cuda`:
//!
//! - `-Wl,--no-as-needed -ltorch`: without it the linker drops `libtorch.so` (no symbol of it is
//!   used directly), and with it `libtorch_cuda.so`, so CUDA is "not available" (tch-rs issue 980).
//! - an rpath to `torch/lib`, and to the venv's NCCL folder, which cudarc loads by name at run
//!   time (setup-torch.sh adds the `libnccl.so` link it looks for).
//! - compiles `csrc/shim.cpp` (autocast dtype, memory formats) against the same headers.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let lib = match std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        Some(lib) => PathBuf::from(lib),
        None => panic!("torch-sys did not report its libtorch folder (DEP_TCH_LIBTORCH_LIB); source scripts/setup-torch.sh first"),
    };
    let torch_root = lib
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| lib.clone());
    let include = torch_root.join("include");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/shim.cpp")
        .compile("shardfeed_trainer_shim");

    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        if let Some(site) = torch_root.parent() {
            let nccl = site.join("nvidia").join("nccl").join("lib");
            if nccl.is_dir() {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{}", nccl.display());
            }
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
