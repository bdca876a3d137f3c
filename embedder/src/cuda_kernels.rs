//! ibex's own CUDA kernels, for the places where candle's building blocks make several slow
//! passes through memory or leave the device. Profiled with Nsight Compute on an H100
//! (BENCHMARKS.md), E5-Mistral's element-wise work between the GEMMs took longer than the GEMMs
//! themselves, and M2-BERT's long convolutions went through the host:
//!
//! - **masked softmax**: written with candle's building blocks, masked attention makes four
//!   passes over the `[batch, heads, len, len]` scores (scale, add a broadcast mask, softmax, and
//!   building and uploading the `len²` mask itself). This kernel does it in place in one launch:
//!   one thread block per query row scales the row, decides visibility from the query's position
//!   and a `[batch, len]` key mask (causal, sliding window, padding), and writes the normalized
//!   weights, zeros for hidden keys. A query with no visible key (left padding) gets an all-zero
//!   row, so nothing non-finite reaches the weighted sum.
//! - **SwiGLU**: `silu(gate) · up` read from the fused gate/up product, one pass instead of
//!   candle's strided SiLU and strided multiply (3.3 ms → 0.5 ms per layer at 8k tokens).
//! - **split_qkv / merge_heads**: the fused QKV product split into `[batch, heads, len, d]` Q, K
//!   and V in one pass, and the attention output back to `[tokens, heads·d]`, instead of candle's
//!   generic strided copies.
//! - **fft_long_conv**: M2-BERT's long convolutions through cuFFT on the device (pad, forward
//!   transform, spectrum product, inverse, scale and skip term), instead of a round trip through
//!   the host's FFT: 5.3 s → 0.30 s per 32k-token sequence.
//!
//! The kernels are compiled at first use by NVRTC (which the CUDA build links anyway) and need no
//! CUDA headers: bf16 is handled as its bit pattern.

use std::sync::OnceLock;

use candle_core::backend::BackendStorage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::cudarc::cufft::{sys::cufftType, CudaFft};
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::CudaDType;
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, DType, Device, InplaceOp2, Layout, Shape, Tensor,
};

const MODULE: &str = "ibex_attention";

const SOURCE: &str = r#"
__device__ __forceinline__ float load_f32(const float* p) { return *p; }
__device__ __forceinline__ void store_f32(float* p, float v) { *p = v; }
__device__ __forceinline__ float load_bf16(const unsigned short* p) {
    return __uint_as_float(((unsigned int)*p) << 16);
}
__device__ __forceinline__ void store_bf16(unsigned short* p, float v) {
    unsigned int u = __float_as_uint(v);
    u += 0x7fffu + ((u >> 16) & 1u); // round to nearest even (inputs are finite)
    *p = (unsigned short)(u >> 16);
}

__device__ __forceinline__ float block_reduce(float v, bool is_max) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) {
        float other = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, other) : v + other;
    }
    __syncthreads(); // the previous reduction's readers are done with `partial`
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    float identity = is_max ? -3.0e38f : 0.0f;
    v = threadIdx.x < (blockDim.x >> 5) ? partial[threadIdx.x] : identity;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) {
            float other = __shfl_xor_sync(0xffffffffu, v, o);
            v = is_max ? fmaxf(v, other) : v + other;
        }
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    return partial[0];
}

// scores: rows of `len`, row r is query (r % len) of batch row (r / rows_per_batch).
// keep: [batch, len], nonzero where the key is real. window: 0 for none.
#define MASKED_SOFTMAX(NAME, T, LOAD, STORE)                                                   \
extern "C" __global__ void NAME(T* scores, const unsigned int* keep, int len,                 \
                                long long rows_per_batch, int window, float scale) {          \
    long long row = blockIdx.x;                                                                \
    int i = (int)(row % len);                                                                  \
    const unsigned int* k = keep + (row / rows_per_batch) * (long long)len;                    \
    T* s = scores + row * (long long)len;                                                      \
    int lo = (window > 0 && i - window + 1 > 0) ? i - window + 1 : 0;                          \
    float m = -3.0e38f;                                                                        \
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x)                                    \
        if (k[j]) m = fmaxf(m, LOAD(s + j) * scale);                                           \
    m = block_reduce(m, true);                                                                 \
    float sum = 0.0f;                                                                          \
    for (int j = lo + threadIdx.x; j <= i; j += blockDim.x)                                    \
        if (k[j]) sum += expf(LOAD(s + j) * scale - m);                                        \
    sum = block_reduce(sum, false);                                                            \
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;                                                \
    for (int j = threadIdx.x; j < len; j += blockDim.x) {                                      \
        bool visible = j >= lo && j <= i && k[j] != 0u;                                        \
        STORE(s + j, visible ? expf(LOAD(s + j) * scale - m) * inv : 0.0f);                    \
    }                                                                                          \
}

MASKED_SOFTMAX(masked_softmax_f32, float, load_f32, store_f32)
MASKED_SOFTMAX(masked_softmax_bf16, unsigned short, load_bf16, store_bf16)

// src [tokens, (heads + 2·kv_heads)·d], tokens = batch·len; dst: Q [batch, heads, len, d], then
// K and V [batch, kv_heads, len, d]. One thread per element, reads coalesced, writes in runs of d.
#define SPLIT_QKV(NAME, T)                                                                     \
extern "C" __global__ void NAME(const T* src, T* dst, long long total, long long len,          \
                                long long heads, long long kv_heads, long long d) {            \
    long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;                            \
    if (n >= total) return;                                                                    \
    long long width = (heads + 2 * kv_heads) * d;                                              \
    long long token = n / width, c = n % width;                                                \
    long long head = c / d, e = c % d;                                                         \
    long long b = token / len, pos = token % len, batch = total / (len * width);               \
    long long out;                                                                             \
    if (head < heads) {                                                                        \
        out = ((b * heads + head) * len + pos) * d + e;                                        \
    } else if (head < heads + kv_heads) {                                                      \
        out = batch * heads * len * d + ((b * kv_heads + head - heads) * len + pos) * d + e;   \
    } else {                                                                                   \
        out = batch * (heads + kv_heads) * len * d                                             \
            + ((b * kv_heads + head - heads - kv_heads) * len + pos) * d + e;                  \
    }                                                                                          \
    dst[out] = src[n];                                                                         \
}

// src [batch, heads, len, d] -> dst [batch·len, heads·d].
#define MERGE_HEADS(NAME, T)                                                                   \
extern "C" __global__ void NAME(const T* src, T* dst, long long total, long long len,          \
                                long long heads, long long d) {                                \
    long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;                            \
    if (n >= total) return;                                                                    \
    long long width = heads * d;                                                               \
    long long token = n / width, c = n % width;                                                \
    long long head = c / d, e = c % d, b = token / len, pos = token % len;                     \
    dst[n] = src[((b * heads + head) * len + pos) * d + e];                                    \
}

// src [tokens, 2·inner] = [gate | up] -> dst [tokens, inner] = silu(gate)·up, in f32.
#define SWIGLU(NAME, T, LOAD, STORE)                                                           \
extern "C" __global__ void NAME(const T* src, T* dst, long long total, long long inner) {      \
    long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;                            \
    if (n >= total) return;                                                                    \
    long long t = n / inner, j = n % inner;                                                    \
    float g = LOAD(src + t * 2 * inner + j), u = LOAD(src + t * 2 * inner + inner + j);       \
    STORE(dst + n, g / (1.0f + expf(-g)) * u);                                                 \
}

// M2-BERT's FFT convolution around cuFFT: rows of len zero-padded to 2·len; spectra multiplied
// by each channel's kernel spectrum (interleaved complex, `bins` per row); the first len outputs
// of the inverse scaled, plus the skip term.
extern "C" __global__ void fft_pad(const float* src, float* dst, long long total, long long len) {
    long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (n >= total) return;
    long long row = n / (2 * len), i = n % (2 * len);
    dst[n] = i < len ? src[row * len + i] : 0.0f;
}

extern "C" __global__ void fft_multiply(float* spectrum, const float* kernel, long long total,
                                        long long bins, long long channels) {
    long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (n >= total) return;
    long long row = n / bins, f = n % bins;
    const float* k = kernel + ((row % channels) * bins + f) * 2;
    float* s = spectrum + n * 2;
    float re = s[0] * k[0] - s[1] * k[1], im = s[0] * k[1] + s[1] * k[0];
    s[0] = re;
    s[1] = im;
}

extern "C" __global__ void fft_finish(const float* conv, const float* u, const float* skip,
                                      float* y, long long total, long long len,
                                      long long channels, float scale) {
    long long n = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (n >= total) return;
    long long row = n / len, i = n % len;
    y[n] = conv[row * 2 * len + i] * scale + skip[row % channels] * u[n];
}

SPLIT_QKV(split_qkv_f32, float)
SPLIT_QKV(split_qkv_bf16, unsigned short)
MERGE_HEADS(merge_heads_f32, float)
MERGE_HEADS(merge_heads_bf16, unsigned short)
SWIGLU(swiglu_f32, float, load_f32, store_f32)
SWIGLU(swiglu_bf16, unsigned short, load_bf16, store_bf16)
"#;

/// The kernel's PTX, compiled once per process.
fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE)
            .map(|ptx| ptx.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(format!("compiling the attention kernel with NVRTC: {e}")))
}

/// Which keys of each batch row are real, on the device, for [`KeyMask::masked_softmax`].
pub(crate) struct KeyMask {
    keep: Tensor,
    window: usize,
}

impl KeyMask {
    /// `attention_mask`: one row of `len` 0/1 per sequence; `window`: the sliding window
    /// (`usize::MAX` for none).
    pub(crate) fn new(
        attention_mask: &[Vec<u32>],
        len: usize,
        window: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let flat: Vec<u32> = attention_mask
            .iter()
            .flat_map(|row| row.iter().map(|&m| u32::from(m != 0)))
            .collect();
        Ok(KeyMask {
            keep: Tensor::from_vec(flat, (attention_mask.len(), len), device)?,
            window,
        })
    }

    /// Softmax of `scores · scale` over the last dimension, hidden keys weighted 0, in place.
    /// `scores`: `[batch, kv_heads, groups·len, len]`, query `i` at row `g·len + i`.
    pub(crate) fn masked_softmax(&self, scores: Tensor, scale: f64) -> candle_core::Result<Tensor> {
        let scores = scores.contiguous()?;
        let (batch, kv_heads, rows, len) = scores.dims4()?;
        if self.keep.dims2()? != (batch, len) {
            candle_core::bail!(
                "key mask {:?} does not fit scores {:?}",
                self.keep.dims(),
                scores.dims()
            );
        }
        let op = MaskedSoftmax {
            len,
            rows_per_batch: kv_heads * rows,
            window: if self.window >= len { 0 } else { self.window },
            scale: scale as f32,
        };
        scores.inplace_op2(&self.keep, &op)?;
        Ok(scores)
    }
}

struct MaskedSoftmax {
    len: usize,
    rows_per_batch: usize,
    window: usize,
    scale: f32,
}

impl InplaceOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!("the fused masked softmax runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        scores: &mut CudaStorage,
        scores_layout: &Layout,
        keep: &CudaStorage,
        keep_layout: &Layout,
    ) -> candle_core::Result<()> {
        let contiguous = |layout: &Layout| {
            layout
                .contiguous_offsets()
                .map(|(start, _)| start)
                .ok_or_else(|| {
                    candle_core::Error::Msg("masked softmax needs contiguous inputs".into())
                })
        };
        let (scores_start, keep_start) = (contiguous(scores_layout)?, contiguous(keep_layout)?);
        let rows = scores_layout.shape().elem_count() / self.len;
        let to_i32 = |n: usize, what: &str| {
            i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("{what} {n} exceeds i32")))
        };
        let len = to_i32(self.len, "sequence length")?;
        let window = to_i32(self.window, "sliding window")?;
        let rows_per_batch = self.rows_per_batch as i64;
        let grid = u32::try_from(rows).map_err(|_| {
            candle_core::Error::Msg(format!("{rows} attention rows exceed one launch"))
        })?;
        let config = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let device = scores.device().clone();
        let keep = keep.as_cuda_slice::<u32>()?.slice(keep_start..);
        let (suffix, view_of) = match scores.dtype() {
            DType::BF16 => ("bf16", ScoresDtype::Bf16),
            DType::F32 => ("f32", ScoresDtype::F32),
            other => candle_core::bail!("masked softmax has no {other:?} kernel"),
        };
        let function =
            device.get_or_load_custom_func(&format!("masked_softmax_{suffix}"), MODULE, ptx()?)?;
        let mut launch = function.builder();
        // Either view is pushed as the kernel's first argument; only one exists.
        let (mut bf16_view, mut f32_view);
        match view_of {
            ScoresDtype::Bf16 => {
                bf16_view = scores
                    .as_cuda_slice_mut::<half::bf16>()?
                    .slice_mut(scores_start..);
                launch.arg(&mut bf16_view);
            }
            ScoresDtype::F32 => {
                f32_view = scores.as_cuda_slice_mut::<f32>()?.slice_mut(scores_start..);
                launch.arg(&mut f32_view);
            }
        }
        launch
            .arg(&keep)
            .arg(&len)
            .arg(&rows_per_batch)
            .arg(&window)
            .arg(&self.scale);
        // SAFETY: the arguments match the kernel's signature; the scores view holds rows × len
        // elements and `keep` batch × len, as the checks above established.
        unsafe { launch.launch(config) }
            .map(|_| ())
            .map_err(|e| candle_core::Error::Msg(format!("launching the masked softmax: {e}")))
    }
}

enum ScoresDtype {
    Bf16,
    F32,
}

/// Q, K and V `[batch, heads or kv_heads, len, d]` from the fused projection `[batch·len,
/// (heads + 2·kv_heads)·d]`.
pub(crate) fn split_qkv(
    qkv: &Tensor,
    batch: usize,
    heads: usize,
    kv_heads: usize,
    d: usize,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (tokens, _) = qkv.dims2()?;
    let len = tokens / batch;
    let parts = qkv.contiguous()?.apply_op1_no_bwd(&Reshuffle {
        kernel: "split_qkv",
        out_shape: Shape::from(tokens * (heads + 2 * kv_heads) * d),
        ints: vec![len as i64, heads as i64, kv_heads as i64, d as i64],
    })?;
    let (q_len, kv_len) = (tokens * heads * d, tokens * kv_heads * d);
    Ok((
        parts.narrow(0, 0, q_len)?.reshape((batch, heads, len, d))?,
        parts
            .narrow(0, q_len, kv_len)?
            .reshape((batch, kv_heads, len, d))?,
        parts
            .narrow(0, q_len + kv_len, kv_len)?
            .reshape((batch, kv_heads, len, d))?,
    ))
}

/// `[batch, heads, len, d]` to `[batch·len, heads·d]`.
pub(crate) fn merge_heads(xs: &Tensor) -> candle_core::Result<Tensor> {
    let (batch, heads, len, d) = xs.dims4()?;
    xs.contiguous()?.apply_op1_no_bwd(&Reshuffle {
        kernel: "merge_heads",
        out_shape: Shape::from((batch * len, heads * d)),
        ints: vec![len as i64, heads as i64, d as i64],
    })
}

/// `silu(gate) · up` of the fused `[tokens, 2·inner]` gate/up product.
pub(crate) fn swiglu(gate_up: &Tensor) -> candle_core::Result<Tensor> {
    let (tokens, width) = gate_up.dims2()?;
    gate_up.contiguous()?.apply_op1_no_bwd(&Reshuffle {
        kernel: "swiglu",
        out_shape: Shape::from((tokens, width / 2)),
        ints: vec![(width / 2) as i64],
    })
}

/// One element-wise kernel of [`SOURCE`] from a contiguous input to a new tensor: arguments
/// `(src, dst, total elements of dst, ints...)`, one thread per output element.
struct Reshuffle {
    kernel: &'static str,
    out_shape: Shape,
    ints: Vec<i64>,
}

impl Reshuffle {
    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        storage: &CudaStorage,
        start: usize,
        suffix: &str,
    ) -> candle_core::Result<CudaStorage> {
        let device = storage.device().clone();
        let total = self.out_shape.elem_count();
        let src = T::as_cuda_slice(storage)?.slice(start..);
        // SAFETY: every element of `dst` is written by the kernel before it is read.
        let mut dst = unsafe { device.alloc::<T>(total)? };
        let function =
            device.get_or_load_custom_func(&format!("{}_{suffix}", self.kernel), MODULE, ptx()?)?;
        let config = launch_config(total)?;
        let total = total as i64;
        let mut launch = function.builder();
        launch.arg(&src).arg(&mut dst).arg(&total);
        for value in &self.ints {
            launch.arg(value);
        }
        // SAFETY: the arguments match the kernel's signature, `src` holds the input's elements
        // (contiguous from `start`) and `dst` the output's.
        unsafe { launch.launch(config) }
            .map_err(|e| candle_core::Error::Msg(format!("launching {}: {e}", self.kernel)))?;
        Ok(CudaStorage::wrap_cuda_slice(dst, device))
    }
}

impl CustomOp1 for Reshuffle {
    fn name(&self) -> &'static str {
        self.kernel
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("{} runs on CUDA only", self.kernel)
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (start, _) = layout.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("{} needs a contiguous input", self.kernel))
        })?;
        let output = match storage.dtype() {
            DType::BF16 => self.launch::<half::bf16>(storage, start, "bf16")?,
            DType::F32 => self.launch::<f32>(storage, start, "f32")?,
            other => candle_core::bail!("{} has no {other:?} kernel", self.kernel),
        };
        Ok((output, self.out_shape.clone()))
    }
}

/// One launch of a kernel of [`SOURCE`] with one thread per element of `total`.
fn launch_config(total: usize) -> candle_core::Result<LaunchConfig> {
    let blocks = u32::try_from(total.div_ceil(256))
        .map_err(|_| candle_core::Error::Msg(format!("{total} elements exceed one launch")))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    })
}

fn cufft_error(
    what: &str,
) -> impl Fn(candle_core::cuda_backend::cudarc::cufft::result::CufftError) -> candle_core::Error + '_
{
    move |e| candle_core::Error::Msg(format!("cuFFT {what}: {e:?}"))
}

/// cuFFT plans by (device stream, transform length, batch, direction), shared by every layer: a
/// plan's work area is as large as its data (hundreds of MB at 32k tokens), so one per layer would
/// not fit. A plan's mutex serializes its executions, as cuFFT requires of one plan.
type PlanKey = (usize, usize, usize, bool);
fn plan(
    device: &candle_core::CudaDevice,
    fft_len: usize,
    batch: usize,
    forward: bool,
) -> candle_core::Result<Arc<Mutex<CudaFft>>> {
    static PLANS: OnceLock<Mutex<HashMap<PlanKey, Arc<Mutex<CudaFft>>>>> = OnceLock::new();
    let stream = device.cuda_stream();
    let key = (Arc::as_ptr(&stream) as usize, fft_len, batch, forward);
    let mut plans = PLANS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| candle_core::Error::Msg("cuFFT plan cache poisoned".into()))?;
    if let Some(found) = plans.get(&key) {
        return Ok(found.clone());
    }
    let to_i32 = |n: usize| {
        i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("FFT size {n} exceeds i32")))
    };
    let kind = if forward {
        cufftType::CUFFT_R2C
    } else {
        cufftType::CUFFT_C2R
    };
    let created = Arc::new(Mutex::new(
        CudaFft::plan_1d(to_i32(fft_len)?, kind, to_i32(batch)?, stream)
            .map_err(cufft_error("plan"))?,
    ));
    plans.insert(key, created.clone());
    Ok(created)
}

/// M2-BERT's two-sided long convolution on the device: `y = irfft(rfft(pad(u)) · K)[..len] +
/// skip · u` for `u` `[batch, channels, len]`, with `K` the channels' kernel spectra
/// `[channels, (len + 1)·2]` (interleaved complex of the `2·len` transform) and `skip`
/// `[channels]`, all f32.
pub(crate) fn fft_long_conv(
    u: &Tensor,
    spectra: &Tensor,
    skip: &Tensor,
) -> candle_core::Result<Tensor> {
    u.contiguous()?
        .apply_op3_no_bwd(&spectra.contiguous()?, &skip.contiguous()?, &FftLongConv)
}

struct FftLongConv;

impl candle_core::CustomOp3 for FftLongConv {
    fn name(&self) -> &'static str {
        "fft-long-conv"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!("the cuFFT long convolution runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        u: &CudaStorage,
        u_layout: &Layout,
        spectra: &CudaStorage,
        spectra_layout: &Layout,
        skip: &CudaStorage,
        skip_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (batch, channels, len) = u_layout.shape().dims3()?;
        let bins = len + 1;
        if spectra_layout.shape().dims2()? != (channels, 2 * bins)
            || skip_layout.shape().dims1()? != channels
        {
            candle_core::bail!(
                "kernel spectra {:?} or skip {:?} do not fit the input {:?}",
                spectra_layout.shape(),
                skip_layout.shape(),
                u_layout.shape()
            );
        }
        let start = |layout: &Layout| {
            layout.contiguous_offsets().map(|(s, _)| s).ok_or_else(|| {
                candle_core::Error::Msg("the long convolution needs contiguous inputs".into())
            })
        };
        let device = u.device().clone();
        let rows = batch * channels;
        let u_view = u.as_cuda_slice::<f32>()?.slice(start(u_layout)?..);
        let spectra_view = spectra
            .as_cuda_slice::<f32>()?
            .slice(start(spectra_layout)?..);
        let skip_view = skip.as_cuda_slice::<f32>()?.slice(start(skip_layout)?..);
        let function = |name: &str| device.get_or_load_custom_func(name, MODULE, ptx()?);
        let launch_error = |name: &'static str| {
            move |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
                candle_core::Error::Msg(format!("launching {name}: {e}"))
            }
        };

        // 1. Zero-pad every row to 2·len.
        let padded_len = rows * 2 * len;
        // SAFETY: fft_pad writes every element.
        let mut padded = unsafe { device.alloc::<f32>(padded_len)? };
        {
            let (total, len) = (padded_len as i64, len as i64);
            let pad = function("fft_pad")?;
            let mut launch = pad.builder();
            launch.arg(&u_view).arg(&mut padded).arg(&total).arg(&len);
            // SAFETY: arguments match fft_pad; sizes as allocated.
            unsafe { launch.launch(launch_config(padded_len)?) }
                .map_err(launch_error("fft_pad"))?;
        }
        // 2. Forward real FFTs, one per row.
        // SAFETY: the R2C transform writes every bin.
        let mut spectrum = unsafe {
            device.alloc::<candle_core::cuda_backend::cudarc::cufft::sys::float2>(rows * bins)?
        };
        {
            let forward = plan(&device, 2 * len, rows, true)?;
            let forward = forward
                .lock()
                .map_err(|_| candle_core::Error::Msg("cuFFT plan poisoned".into()))?;
            forward
                .exec_r2c(&padded, &mut spectrum)
                .map_err(cufft_error("forward transform"))?;
        }
        // 3. Multiply by the kernel spectra.
        {
            let total = (rows * bins) as i64;
            let (bins_arg, channels_arg) = (bins as i64, channels as i64);
            let multiply = function("fft_multiply")?;
            let mut launch = multiply.builder();
            launch
                .arg(&mut spectrum)
                .arg(&spectra_view)
                .arg(&total)
                .arg(&bins_arg)
                .arg(&channels_arg);
            // SAFETY: arguments match fft_multiply (float2 as interleaved floats).
            unsafe { launch.launch(launch_config(rows * bins)?) }
                .map_err(launch_error("fft_multiply"))?;
        }
        // 4. Inverse transforms back into the padded buffer (no longer needed as input).
        {
            let inverse = plan(&device, 2 * len, rows, false)?;
            let inverse = inverse
                .lock()
                .map_err(|_| candle_core::Error::Msg("cuFFT plan poisoned".into()))?;
            inverse
                .exec_c2r(&mut spectrum, &mut padded)
                .map_err(cufft_error("inverse transform"))?;
        }
        // 5. The first len outputs, scaled, plus the skip term.
        let out_len = rows * len;
        // SAFETY: fft_finish writes every element.
        let mut y = unsafe { device.alloc::<f32>(out_len)? };
        {
            let (total, len_arg, channels_arg) = (out_len as i64, len as i64, channels as i64);
            let scale = 1.0f32 / (2 * len) as f32;
            let finish = function("fft_finish")?;
            let mut launch = finish.builder();
            launch
                .arg(&padded)
                .arg(&u_view)
                .arg(&skip_view)
                .arg(&mut y)
                .arg(&total)
                .arg(&len_arg)
                .arg(&channels_arg)
                .arg(&scale);
            // SAFETY: arguments match fft_finish; sizes as allocated.
            unsafe { launch.launch(launch_config(out_len)?) }
                .map_err(launch_error("fft_finish"))?;
        }
        Ok((
            CudaStorage::wrap_cuda_slice(y, device),
            Shape::from((batch, channels, len)),
        ))
    }
}
