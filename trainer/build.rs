//! Links the trainer against the libtorch that torch-sys found (scripts/setup-torch.sh), so that
//! its binaries and tests run without `LD_LIBRARY_PATH` and really load `libtorch_cuda`:
//!
//! - `-Wl,--no-as-needed -ltorch`: without it the linker drops `libtorch.so` (no symbol of it is
//!   used directly), and with it `libtorch_cuda.so`, so CUDA is "not available" (tch-rs issue 980).
//! - an rpath to `torch/lib`, and to the venv's NCCL folder, which cudarc loads by name at run
//!   time (setup-torch.sh adds the `libnccl.so` link it looks for).
//! - compiles `csrc/shim.cpp` (autocast dtype, memory formats) and `csrc/c10d.cpp` (TCPStore,
//!   ProcessGroupGloo/NCCL, the bucketed all-reduce) against the same headers; gloo's headers,
//!   which the wheel lacks, are declared in `csrc/gloo_decls` (see its README). ProcessGroupNCCL
//!   is compiled in when the venv has the CUDA wheel's CUDA and NCCL headers (`nvidia/cu13`,
//!   `nvidia/nccl`, and the headers of `nvidia-cuda-crt` and `nvidia-cuda-cccl`), which `scripts/setup-torch.sh`
//!   installs with torch.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/c10d.cpp");
    println!("cargo:rerun-if-changed=csrc/shim_error.h");
    println!("cargo:rerun-if-changed=csrc/gloo_decls");
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
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(
            include
                .join("torch")
                .join("csrc")
                .join("api")
                .join("include"),
        )
        .include("csrc/gloo_decls")
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/shim.cpp")
        .file("csrc/c10d.cpp");
    let mut nccl_built = false;
    if let Some(site) = torch_root.parent() {
        let cuda = site.join("nvidia").join("cu13").join("include");
        let nccl = site.join("nvidia").join("nccl").join("include");
        let headers = [
            cuda.join("cuda_runtime_api.h"),
            cuda.join("crt").join("host_config.h"),
            cuda.join("nv").join("target"),
            nccl.join("nccl.h"),
        ];
        if headers.iter().all(|h| h.is_file()) {
            build
                .include(cuda)
                .include(nccl)
                .define("SHARDFEED_C10D_NCCL", None)
                .define("USE_CUDA", None);
            nccl_built = true;
        }
    }
    build.compile("shardfeed_trainer_shim");

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
        if nccl_built {
            // ProcessGroupNCCL lives in libtorch_cuda.so, which the linker must see itself.
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
    }
}
