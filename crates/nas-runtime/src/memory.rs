//! Where tensors that outlive one run live, and the copies between host and device.
//!
//! A session on a GPU provider computes in device memory. A tensor kept across runs (a
//! training step's state, a latency probe's input) is allocated there once, filled by one
//! host->device copy and then bound by pointer; reading it back is an explicit device->host
//! copy ([`TensorStore::read`]). On CPU the same tensors are host memory, written and read in
//! place. [`TensorHome::for_provider`] picks the home from the provider a session actually
//! runs on (after any fallback), so callers have one code path with two cases.
//!
//! Copies to and from a device go through `ort`'s `Tensor::copy_into` / `Tensor::to` (a
//! one-node Identity session per device pair, synchronous). A [`TensorHome::Device`] on the
//! CPU device takes exactly those copies too, which lets the CPU tests exercise the device
//! path.

use std::fmt;
use std::time::Instant;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::Tensor;

use crate::{ExecutionProvider, RuntimeError};

/// Where a session's long-lived tensors are allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorHome {
    /// Host memory from ONNX Runtime's default allocator, written and read in place.
    Host,
    /// Memory of an ONNX Runtime allocation device (`"Cuda"` for CUDA and TensorRT sessions),
    /// from the session's own allocator; reached through copies.
    Device {
        /// `ort`'s allocation device name: "Cuda", or "Cpu" to test the copy path on a CPU.
        device: String,
        id: i32,
    },
}

impl TensorHome {
    /// CUDA device `id` (as numbered inside the process, after CUDA_VISIBLE_DEVICES).
    pub fn cuda(id: i32) -> TensorHome {
        TensorHome::Device {
            device: AllocationDevice::CUDA.as_str().to_string(),
            id,
        }
    }

    /// The home that keeps a session on `provider` free of per-run host<->device copies:
    /// device 0 for the GPU providers (sessions are built on the provider's default device),
    /// host memory for CPU.
    pub fn for_provider(provider: ExecutionProvider) -> TensorHome {
        match provider {
            ExecutionProvider::Cpu => TensorHome::Host,
            ExecutionProvider::Cuda | ExecutionProvider::TensorRt => TensorHome::cuda(0),
        }
    }

    /// [`TensorHome::for_provider`] for a provider name (`RuntimeSession::provider`).
    pub fn for_provider_name(provider: &str) -> Result<TensorHome, RuntimeError> {
        ExecutionProvider::parse(provider).map(TensorHome::for_provider)
    }

    pub fn is_host(&self) -> bool {
        matches!(self, TensorHome::Host)
    }

    fn memory_info(&self) -> ort::Result<MemoryInfo<'static>> {
        match self {
            TensorHome::Host => Ok(Allocator::default().memory_info().to_owned()),
            TensorHome::Device { device, id } => MemoryInfo::new(
                AllocationDevice::new(device),
                *id,
                AllocatorType::Device,
                MemoryType::Default,
            ),
        }
    }
}

impl fmt::Display for TensorHome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorHome::Host => f.write_str("host memory"),
            TensorHome::Device { device, id } => write!(f, "device memory ({device}:{id})"),
        }
    }
}

/// Allocates float32 tensors in one [`TensorHome`] for one session, and copies host data in
/// and out of them.
pub struct TensorStore {
    home: TensorHome,
    allocator: Allocator,
}

impl fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorStore")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

fn memory_err(during: &str, home: &TensorHome) -> impl FnOnce(ort::Error) -> RuntimeError {
    let during = during.to_string();
    let home = home.clone();
    move |e| RuntimeError::Memory {
        during,
        hint: if home.is_host() {
            ""
        } else {
            "; device memory needs a session built on that device's provider (cuda or tensorrt) and \
             free memory on the GPU (`nvidia-smi`)"
        },
        home: home.to_string(),
        reason: e.to_string().trim_end().trim_end_matches('.').to_string(),
    }
}

impl TensorStore {
    /// A store in `home` for tensors bound to `session`. A device home takes the session's
    /// allocator for that device, which fails when the session does not run there.
    pub fn new(session: &Session, home: TensorHome) -> Result<TensorStore, RuntimeError> {
        let allocator = match &home {
            TensorHome::Host => Allocator::default(),
            TensorHome::Device { .. } => home
                .memory_info()
                .and_then(|info| Allocator::new(session, info))
                .map_err(memory_err("create an allocator", &home))?,
        };
        Ok(TensorStore { home, allocator })
    }

    pub fn home(&self) -> &TensorHome {
        &self.home
    }

    /// Where [`crate::time_runs`] binds outputs.
    pub fn memory_info(&self) -> &MemoryInfo<'_> {
        self.allocator.memory_info()
    }

    /// An uninitialised tensor (outputs bound with `IoBinding::bind_output` must be made
    /// this way: `ort` refuses tensors over borrowed buffers there).
    pub fn alloc(&self, shape: &[usize]) -> Result<Tensor<f32>, RuntimeError> {
        Tensor::<f32>::new(&self.allocator, shape.to_vec())
            .map_err(memory_err("allocate a tensor", &self.home))
    }

    /// A tensor of `shape` holding `data` (row-major).
    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor<f32>, RuntimeError> {
        let mut t = self.alloc(shape)?;
        self.write(&mut t, data)?;
        Ok(t)
    }

    /// Overwrites `tensor` (from this store) with `data`: in place on the host, one
    /// host->device copy on a device.
    pub fn write(&self, tensor: &mut Tensor<f32>, data: &[f32]) -> Result<(), RuntimeError> {
        let shape: Vec<usize> = tensor.shape().iter().map(|&d| d as usize).collect();
        let len: usize = shape.iter().product();
        if data.len() != len {
            return Err(RuntimeError::Memory {
                during: "fill a tensor".into(),
                home: self.home.to_string(),
                reason: format!(
                    "{} values given for shape {shape:?} ({len} values)",
                    data.len()
                ),
                hint: "",
            });
        }
        let err = memory_err("copy values into a tensor", &self.home);
        match self.home {
            TensorHome::Host => {
                let (_, dst) = tensor.try_extract_tensor_mut().map_err(err)?;
                dst.copy_from_slice(data);
                Ok(())
            }
            TensorHome::Device { .. } => Tensor::from_array((shape, data.to_vec()))
                .and_then(|host| host.copy_into(tensor))
                .map_err(err),
        }
    }

    /// The values of `tensor` (from this store), row-major: one device->host copy on a device.
    pub fn read(&self, tensor: &Tensor<f32>) -> Result<Vec<f32>, RuntimeError> {
        let err = memory_err("read a tensor back", &self.home);
        match self.home {
            TensorHome::Host => tensor
                .try_extract_tensor::<f32>()
                .map(|(_, v)| v.to_vec())
                .map_err(err),
            TensorHome::Device { .. } => tensor
                .to(AllocationDevice::CPU, 0)
                .and_then(|host| host.try_extract_tensor::<f32>().map(|(_, v)| v.to_vec()))
                .map_err(err),
        }
    }
}

/// Times `runs` runs of `session` on one input (after `warmup` untimed ones), in milliseconds,
/// in run order. The input is placed in `store`'s home once and every output is bound to that
/// home, so no run copies between host and device; each timed run is followed by a
/// synchronisation of the bound outputs, so on a GPU the figure is the time until the results
/// exist on the device, not the time to queue the work nor a host round trip.
pub fn time_runs(
    session: &mut Session,
    store: &TensorStore,
    input: &str,
    shape: &[usize],
    data: &[f32],
    warmup: usize,
    runs: usize,
) -> Result<Vec<f64>, RuntimeError> {
    let tensor = store.upload(shape, data)?;
    let run_err = |during: &'static str| {
        move |e: ort::Error| RuntimeError::Run {
            during: during.into(),
            reason: e.to_string().trim_end().trim_end_matches('.').to_string(),
        }
    };
    let outputs: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let mut binding = session
        .create_binding()
        .map_err(run_err("binding the model's input and outputs"))?;
    let mut bind = || -> ort::Result<()> {
        binding.bind_input(input, &tensor)?;
        for name in &outputs {
            binding.bind_output_to_device(name.as_str(), store.memory_info())?;
        }
        binding.synchronize_inputs()
    };
    bind().map_err(run_err("binding the model's input and outputs"))?;
    let mut run_once = || -> ort::Result<()> {
        let results = session.run_binding(&binding)?;
        binding.synchronize_outputs()?;
        drop(results);
        Ok(())
    };
    for _ in 0..warmup {
        run_once().map_err(run_err("running the model"))?;
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        run_once().map_err(run_err("running the model"))?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::relu_model;
    use crate::{SessionSettings, build_session, locate_library};

    fn cpu_session() -> Session {
        let lib = locate_library(None).expect("ONNX Runtime is provisioned (`cargo xtask ort`)");
        build_session(&relu_model(), &SessionSettings::cpu(&lib))
            .unwrap()
            .session
    }

    /// The device path on the CPU device: same allocator lookup and copies as on a GPU.
    fn cpu_device() -> TensorHome {
        TensorHome::Device {
            device: "Cpu".into(),
            id: 0,
        }
    }

    #[test]
    fn homes_follow_the_provider() {
        assert_eq!(
            TensorHome::for_provider(ExecutionProvider::Cpu),
            TensorHome::Host
        );
        for gpu in ["cuda", "tensorrt"] {
            assert_eq!(
                TensorHome::for_provider_name(gpu).unwrap(),
                TensorHome::cuda(0)
            );
        }
        assert_eq!(TensorHome::cuda(0).to_string(), "device memory (Cuda:0)");
        assert!(TensorHome::for_provider_name("tpu").is_err());
    }

    #[test]
    fn values_round_trip_in_every_home() {
        let session = cpu_session();
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        for home in [TensorHome::Host, cpu_device()] {
            let store = TensorStore::new(&session, home.clone()).unwrap();
            let mut t = store.upload(&[3, 4], &data).unwrap();
            assert_eq!(store.read(&t).unwrap(), data, "{home}");
            let doubled: Vec<f32> = data.iter().map(|v| v * 2.0).collect();
            store.write(&mut t, &doubled).unwrap();
            assert_eq!(store.read(&t).unwrap(), doubled, "{home}");
            let err = store.write(&mut t, &data[..5]).unwrap_err().to_string();
            assert!(
                err.contains("5 values given for shape [3, 4] (12 values)"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_device_the_session_does_not_run_on_is_a_clear_error() {
        let err = TensorStore::new(&cpu_session(), TensorHome::cuda(0))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot create an allocator in device memory (Cuda:0): ")
                && err.contains("nvidia-smi"),
            "{err}"
        );
    }

    #[test]
    fn timed_runs_keep_input_and_outputs_in_the_home() {
        let mut session = cpu_session();
        let data = vec![1.0f32; 8];
        for home in [TensorHome::Host, cpu_device()] {
            let store = TensorStore::new(&session, home).unwrap();
            let samples = time_runs(&mut session, &store, "x", &[2, 4], &data, 2, 5).unwrap();
            assert_eq!(samples.len(), 5);
            assert!(samples.iter().all(|ms| ms.is_finite() && *ms >= 0.0));
        }
        let store = TensorStore::new(&session, TensorHome::Host).unwrap();
        let err = time_runs(&mut session, &store, "nope", &[2, 4], &data, 0, 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ONNX Runtime failed binding the model's input and outputs: "),
            "{err}"
        );
    }
}
