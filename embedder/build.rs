//! Links cuFFT in CUDA builds: cudarc's dynamic-linking build script names the other CUDA
//! libraries candle uses but not cuFFT, which M2-BERT's long convolution calls on CUDA.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rustc-link-lib=dylib=cufft");
    }
}
