//! Runs training steps in an ORT session, keeping the state (weights, optimizer buffers, BN
//! statistics) in ORT tensors between steps.
//!
//! With [`StepIo::Binding`] there are two sets of state tensors, A and B, and two I/O
//! bindings: step k reads A and writes B, step k+1 reads B and writes A. A buffer is never
//! bound as input and output of the same run (ORT then reads values it already overwrote).
//! Each binding's outputs are bound once, when the sets are made; its inputs (the per-call
//! ones and the state set it reads) are bound before every run. Re-binding a state tensor is a
//! pointer store where ORT consumes it on the device it lives on; where ORT placed its
//! consumers on another device (a node the GPU provider lacks), ORT copies it at bind time, so
//! a binding made once would keep reading a stale copy.
//!
//! Where the sets live follows the provider the session actually runs on (after any
//! fallback), as a [`TensorHome`]; the code is the same for every home. Per step:
//!
//! - CPU ([`TensorHome::Host`]): the sets are host tensors, read and written in place by the
//!   run. The batch, labels, lr, step and dropout masks are bound by pointer; loss and correct
//!   are written into two host scalars. No copies.
//! - CUDA and TensorRT ([`TensorHome::Device`], CUDA device 0): the sets are allocated once by
//!   the session's CUDA allocator and filled by one host->device copy when the state is
//!   installed (start, resume, [`StepRunner::set_io`]). Each step copies only the batch,
//!   labels, lr, step and dropout masks host->device (ORT copies a host input at bind time;
//!   the step waits for those copies), the run reads set k and writes set 1-k on the device,
//!   and only loss and correct come back: they are bound to host scalars, which ORT fills at
//!   the end of the run. No weight, optimizer buffer or BN statistic crosses per step (unless
//!   ORT runs one of its consumers on CPU, see above; `cargo xtask gpu-check` would show that
//!   as lower throughput).
//! - [`StepRunner::state`] (weights for validation, checkpoints, export) copies the current
//!   set device->host on demand, one copy per state tensor.
//!
//! [`StepIo::Run`] keeps the state in host arrays and copies all of it in and out every step
//! through `session.run`: the reference the binding path is checked against.

use nas_data::Targets;
use nas_runtime::{TensorHome, TensorStore};
use ndarray::{ArrayD, IxDyn};
use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::Tensor;

use crate::error::TrainError;
use crate::step_api::{CORRECT, DropoutMask, INPUT, LABELS, LOSS, LR, MixInput, STEP, StateTensor};

/// How state moves between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepIo {
    /// Double-buffered I/O binding with the state in the session's memory (the default).
    #[default]
    Binding,
    /// `session.run` with owned state arrays, copied in and out every step (the reference
    /// the binding path is checked against).
    Run,
}

/// One step's per-call inputs.
pub(crate) struct StepInputs<'a> {
    /// The batch in the shape the network takes (see `nas_data::Dataset::network_batch`).
    pub images: ArrayD<f32>,
    /// Class indices, or regression targets (standardized, as the step predicts them).
    pub labels: &'a Targets,
    pub lr: f32,
    /// 1-based optimizer step (Adam bias correction).
    pub step: f32,
    pub masks: Vec<ArrayD<f32>>,
    /// The mixing weights of the step's mixed edges (supernets), in step order.
    pub mixes: Vec<ArrayD<f32>>,
    /// Keep the state the step computed; `false` only reads the loss and the gradients of
    /// the mixing weights (a supernet's architecture step) and leaves the state as it was.
    pub commit: bool,
}

pub(crate) struct StepRunner {
    // Declared before `session`: bound tensors and bindings go before the session they serve.
    io: Io,
    session: Session,
    home: TensorHome,
    state: Vec<StateTensor>,
    masks: Vec<DropoutMask>,
    mixes: Vec<MixInput>,
    /// The last step's gradients of the mixing weights, in `mixes` order.
    mix_grads: Vec<Vec<f32>>,
}

enum Io {
    Binding(Box<Bound>),
    Run(Vec<ArrayD<f32>>),
}

struct Bound {
    /// `bindings[k]` reads `sets[k]` and writes `sets[1 - k]`.
    bindings: [IoBinding; 2],
    sets: [Vec<Tensor<f32>>; 2],
    store: TensorStore,
    /// Host scalars on every provider: the only values a step brings back.
    loss: Tensor<f32>,
    correct: Tensor<f32>,
    /// Host tensors the mixing weights' gradients are written to.
    mix_grads: Vec<Tensor<f32>>,
    /// The set holding the current state.
    current: usize,
}

fn ort_err(during: &str) -> impl FnOnce(ort::Error) -> TrainError + '_ {
    move |e| TrainError::Ort {
        during: during.to_string(),
        reason: e.to_string(),
    }
}

impl StepRunner {
    /// A runner whose bound state lives in `home` (see the module comment; the trainer takes
    /// it from the provider the session runs on).
    pub fn new(
        session: Session,
        home: TensorHome,
        state: Vec<StateTensor>,
        masks: Vec<DropoutMask>,
        mixes: Vec<MixInput>,
        values: Vec<ArrayD<f32>>,
        io: StepIo,
    ) -> Result<StepRunner, TrainError> {
        let mut runner = StepRunner {
            io: Io::Run(Vec::new()),
            session,
            home,
            state,
            masks,
            mix_grads: mixes.iter().map(|m| vec![0.0; m.len + 1]).collect(),
            mixes,
        };
        runner.set_io(io, values)?;
        Ok(runner)
    }

    pub fn io(&self) -> StepIo {
        match self.io {
            Io::Binding(_) => StepIo::Binding,
            Io::Run(_) => StepIo::Run,
        }
    }

    /// Where the bound state lives.
    pub fn home(&self) -> &TensorHome {
        &self.home
    }

    /// Switches the I/O mode, installing `values` as the state. When the bound sets cannot be
    /// made, the state is kept in host arrays ([`StepIo::Run`]) and the error returned.
    pub fn set_io(&mut self, io: StepIo, values: Vec<ArrayD<f32>>) -> Result<(), TrainError> {
        self.check_values(&values)?;
        // The old sets are freed first: on a GPU two copies of the state may not fit.
        self.io = Io::Run(Vec::new());
        self.io = match io {
            StepIo::Run => Io::Run(values),
            StepIo::Binding => match self.bind(&values) {
                Ok(bound) => Io::Binding(Box::new(bound)),
                Err(e) => {
                    self.io = Io::Run(values);
                    return Err(e);
                }
            },
        };
        Ok(())
    }

    fn check_values(&self, values: &[ArrayD<f32>]) -> Result<(), TrainError> {
        if values.len() != self.state.len() {
            return Err(TrainError::Mismatch(format!(
                "{} state tensors given, the training step has {}",
                values.len(),
                self.state.len()
            )));
        }
        for (spec, v) in self.state.iter().zip(values) {
            if v.shape() != spec.shape.as_slice() {
                return Err(TrainError::Mismatch(format!(
                    "state tensor `{}` has shape {:?}, the training step expects {:?}",
                    spec.name,
                    v.shape(),
                    spec.shape
                )));
            }
        }
        Ok(())
    }

    fn bind(&mut self, values: &[ArrayD<f32>]) -> Result<Bound, TrainError> {
        let store = TensorStore::new(&self.session, self.home.clone())?;
        let mut a = Vec::with_capacity(self.state.len());
        let mut b = Vec::with_capacity(self.state.len());
        for (spec, v) in self.state.iter().zip(values) {
            let v = v.as_standard_layout();
            a.push(store.upload(&spec.shape, v.as_slice().expect("standard layout"))?);
            b.push(store.alloc(&spec.shape)?);
        }
        let mut sets = [a, b];
        // Tensor::new (not from_array): only allocator-owned tensors can be bound as outputs.
        let host = Allocator::default();
        let scalar = || Tensor::<f32>::new(&host, Vec::<usize>::new());
        let mut loss = scalar().map_err(ort_err("allocating the loss"))?;
        let mut correct = scalar().map_err(ort_err("allocating the loss"))?;
        let mut mix_grads = self
            .mixes
            .iter()
            .map(|m| Tensor::<f32>::new(&host, vec![m.len + 1]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ort_err("allocating the mixing weights' gradients"))?;
        let mut make_binding = |k: usize| -> Result<IoBinding, ort::Error> {
            let mut binding = self.session.create_binding()?;
            binding.bind_output(LOSS, &mut loss)?;
            binding.bind_output(CORRECT, &mut correct)?;
            for (m, t) in self.mixes.iter().zip(mix_grads.iter_mut()) {
                binding.bind_output(m.grad.as_str(), t)?;
            }
            for (spec, t) in self.state.iter().zip(sets[1 - k].iter_mut()) {
                binding.bind_output(spec.output.as_str(), t)?;
            }
            Ok(binding)
        };
        let b0 = make_binding(0).map_err(ort_err("binding the training step's outputs"))?;
        let b1 = make_binding(1).map_err(ort_err("binding the training step's outputs"))?;
        Ok(Bound {
            bindings: [b0, b1],
            sets,
            store,
            loss,
            correct,
            mix_grads,
            current: 0,
        })
    }

    /// Runs one step; returns (loss, correct count). On error the state is unchanged.
    pub fn step(&mut self, inputs: StepInputs<'_>) -> Result<(f32, f32), TrainError> {
        let n = inputs.images.shape()[0];
        let run_err = || ort_err("running a training step");
        let images = Tensor::from_array(inputs.images).map_err(run_err())?;
        let labels: ort::value::DynValue = match inputs.labels {
            Targets::Classes(c) => {
                let c: Vec<i64> = c.iter().map(|&l| l as i64).collect();
                Tensor::from_array(([n], c)).map_err(run_err())?.into_dyn()
            }
            Targets::Values(v) => Tensor::from_array(([n], v.clone()))
                .map_err(run_err())?
                .into_dyn(),
        };
        let lr = Tensor::from_array(((), vec![inputs.lr])).map_err(run_err())?;
        let step = Tensor::from_array(((), vec![inputs.step])).map_err(run_err())?;
        let masks: Vec<Tensor<f32>> = inputs
            .masks
            .into_iter()
            .map(Tensor::from_array)
            .collect::<Result<_, _>>()
            .map_err(run_err())?;
        if inputs.mixes.len() != self.mixes.len() {
            return Err(TrainError::Mismatch(format!(
                "{} mixing weight vectors given, the training step has {} mixed edges",
                inputs.mixes.len(),
                self.mixes.len()
            )));
        }
        let mixes: Vec<Tensor<f32>> = inputs
            .mixes
            .into_iter()
            .map(Tensor::from_array)
            .collect::<Result<_, _>>()
            .map_err(run_err())?;
        let commit = inputs.commit;
        match &mut self.io {
            Io::Binding(b) => {
                let k = b.current;
                let binding = &mut b.bindings[k];
                let mut bind = || -> Result<(), ort::Error> {
                    binding.bind_input(INPUT, &images)?;
                    binding.bind_input(LABELS, &labels)?;
                    binding.bind_input(LR, &lr)?;
                    binding.bind_input(STEP, &step)?;
                    for (m, t) in self.masks.iter().zip(&masks) {
                        binding.bind_input(m.input.as_str(), t)?;
                    }
                    for (m, t) in self.mixes.iter().zip(&mixes) {
                        binding.bind_input(m.input.as_str(), t)?;
                    }
                    for (spec, t) in self.state.iter().zip(&b.sets[k]) {
                        binding.bind_input(spec.input.as_str(), t)?;
                    }
                    // A device session copied the host inputs at bind time: wait for them.
                    if !self.home.is_host() {
                        binding.synchronize_inputs()?;
                    }
                    Ok(())
                };
                bind().map_err(run_err())?;
                self.session
                    .run_binding(&b.bindings[k])
                    .map(drop)
                    .map_err(run_err())?;
                if commit {
                    b.current = 1 - k;
                }
                let loss = b.loss.try_extract_tensor::<f32>().map_err(run_err())?.1[0];
                let correct = b.correct.try_extract_tensor::<f32>().map_err(run_err())?.1[0];
                for (out, t) in self.mix_grads.iter_mut().zip(&b.mix_grads) {
                    out.copy_from_slice(t.try_extract_tensor::<f32>().map_err(run_err())?.1);
                }
                Ok((loss, correct))
            }
            Io::Run(values) => {
                let mut feeds: Vec<(String, ort::session::SessionInputValue<'_>)> = vec![
                    (INPUT.into(), images.into()),
                    (LABELS.into(), labels.into()),
                    (LR.into(), lr.into()),
                    (STEP.into(), step.into()),
                ];
                for (m, t) in self.masks.iter().zip(masks) {
                    feeds.push((m.input.clone(), t.into()));
                }
                for (m, t) in self.mixes.iter().zip(mixes) {
                    feeds.push((m.input.clone(), t.into()));
                }
                let views: Vec<ort::value::TensorRef<'_, f32>> = values
                    .iter()
                    .map(|v| ort::value::TensorRef::from_array_view(v.view()))
                    .collect::<Result<_, _>>()
                    .map_err(run_err())?;
                for (spec, t) in self.state.iter().zip(views) {
                    feeds.push((spec.input.clone(), t.into()));
                }
                let outputs = self.session.run(feeds).map_err(run_err())?;
                let scalar = |name: &str| -> Result<f32, TrainError> {
                    let v = outputs[name]
                        .try_extract_tensor::<f32>()
                        .map_err(run_err())?;
                    Ok(v.1[0])
                };
                let (loss, correct) = (scalar(LOSS)?, scalar(CORRECT)?);
                for (m, out) in self.mixes.iter().zip(self.mix_grads.iter_mut()) {
                    let v = outputs[m.grad.as_str()]
                        .try_extract_tensor::<f32>()
                        .map_err(run_err())?;
                    out.copy_from_slice(v.1);
                }
                if !commit {
                    return Ok((loss, correct));
                }
                let mut next = Vec::with_capacity(values.len());
                for spec in &self.state {
                    let v = outputs[spec.output.as_str()]
                        .try_extract_array::<f32>()
                        .map_err(run_err())?;
                    next.push(v.to_owned());
                }
                drop(outputs);
                *values = next;
                Ok((loss, correct))
            }
        }
    }

    /// The last step's gradients of the mixing weights (each followed by the sum of the
    /// edge's output gradient), in the step's mixed-edge order.
    pub fn mix_grads(&self) -> &[Vec<f32>] {
        &self.mix_grads
    }

    /// A copy of the current state, in step order (device->host copies when the state lives
    /// on a device).
    pub fn state(&self) -> Result<Vec<ArrayD<f32>>, TrainError> {
        match &self.io {
            Io::Run(values) => Ok(values.clone()),
            Io::Binding(b) => self
                .state
                .iter()
                .zip(&b.sets[b.current])
                .map(|(spec, t)| {
                    let data = b.store.read(t)?;
                    ArrayD::from_shape_vec(IxDyn(&spec.shape), data).map_err(|e| {
                        TrainError::Mismatch(format!(
                            "state tensor `{}` read back with the wrong size: {e}",
                            spec.name
                        ))
                    })
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step_api::{TrainOptions, TrainingStep, initial_state, training_step};
    use nas_graph::{GraphBuilder, Op, Weights};
    use nas_runtime::SessionSettings;
    use ndarray::Array4;

    const BATCH: usize = 4;

    /// conv-BN-ReLU, global pool, dropout, linear: every kind of state (weights, momentum,
    /// running statistics) and a per-step mask input.
    fn step_model() -> (TrainingStep, Vec<ArrayD<f32>>) {
        let mut b = GraphBuilder::new(&[3, 6, 6]);
        let x = b.input();
        let c = b.conv(x, 5, 3, 1, 1);
        let n = b.batch_norm(c);
        let r = b.add(Op::Relu, &[n]);
        let p = b.add(Op::GlobalAvgPool, &[r]);
        let d = b.add(Op::Dropout { p: 0.25 }, &[p]);
        let l = b.add(
            Op::Linear {
                out_features: 3,
                bias: true,
            },
            &[d],
        );
        let graph = b.finish(l);
        let options = TrainOptions {
            batch: Some(BATCH),
            weight_decay: 1e-3,
            ..TrainOptions::default()
        };
        let step = training_step(&graph, &options).unwrap();
        let values = initial_state(&step, &Weights::he_init(&graph, 3).unwrap()).unwrap();
        (step, values)
    }

    fn runner(
        step: &TrainingStep,
        values: &[ArrayD<f32>],
        home: TensorHome,
        io: StepIo,
    ) -> StepRunner {
        let lib = nas_runtime::locate_library(None)
            .expect("ONNX Runtime is provisioned (`cargo xtask ort` or ORT_DYLIB_PATH)");
        let session =
            nas_runtime::session_from_bytes(&step.model, &SessionSettings::cpu(&lib)).unwrap();
        StepRunner::new(
            session,
            home,
            step.state.clone(),
            step.dropout_masks.clone(),
            Vec::new(),
            values.to_vec(),
            io,
        )
        .unwrap()
    }

    /// Step `i`'s inputs: a batch, labels and masks that differ from step to step.
    fn inputs<'a>(step: &TrainingStep, i: usize, labels: &'a Targets) -> StepInputs<'a> {
        let images = Array4::from_shape_fn((BATCH, 3, 6, 6), |(n, c, h, w)| {
            ((n * 31 + c * 7 + h * 5 + w * 3 + i * 11) % 17) as f32 / 8.0 - 1.0
        });
        let masks = step
            .dropout_masks
            .iter()
            .map(|m| {
                let mut shape = vec![BATCH];
                shape.extend_from_slice(&m.shape);
                let mut k = i;
                ArrayD::from_shape_simple_fn(IxDyn(&shape), || {
                    k += 1;
                    if k.is_multiple_of(4) { 0.0 } else { 1.0 / 0.75 }
                })
            })
            .collect();
        StepInputs {
            images: images.into_dyn(),
            labels,
            lr: 0.1,
            step: (i + 1) as f32,
            masks,
            mixes: Vec::new(),
            commit: true,
        }
    }

    /// The device path (state in a session allocator's memory, reached by copies) on the CPU
    /// device: what a CUDA session does, minus the GPU.
    fn cpu_device() -> TensorHome {
        TensorHome::Device {
            device: "Cpu".into(),
            id: 0,
        }
    }

    #[test]
    fn every_home_trains_bit_for_bit_like_session_run() {
        let (step, values) = step_model();
        let labels = Targets::Classes((0..BATCH as u32).map(|l| l % 3).collect());
        let mut runners = [
            runner(&step, &values, TensorHome::Host, StepIo::Run),
            runner(&step, &values, TensorHome::Host, StepIo::Binding),
            runner(&step, &values, cpu_device(), StepIo::Binding),
        ];
        assert_eq!(runners[2].state().unwrap(), values, "installed as given");
        for i in 0..5 {
            let results: Vec<(f32, f32)> = runners
                .iter_mut()
                .map(|r| r.step(inputs(&step, i, &labels)).unwrap())
                .collect();
            assert!(results[0].0.is_finite());
            assert_eq!(results[1], results[0], "host binding, step {i}");
            assert_eq!(results[2], results[0], "device binding, step {i}");
        }
        let reference = runners[0].state().unwrap();
        assert_ne!(reference, values, "the steps changed the state");
        assert_eq!(runners[1].state().unwrap(), reference);
        assert_eq!(runners[2].state().unwrap(), reference);
        // Switching modes carries the state over, and the device path goes on in step.
        let state = runners[2].state().unwrap();
        runners[2].set_io(StepIo::Binding, state).unwrap();
        let a = runners[0].step(inputs(&step, 5, &labels)).unwrap();
        let b = runners[2].step(inputs(&step, 5, &labels)).unwrap();
        assert_eq!(a, b);
        assert_eq!(runners[2].state().unwrap(), runners[0].state().unwrap());
        assert_eq!(runners[2].home(), &cpu_device());
    }

    #[test]
    fn the_home_follows_the_provider_after_a_fallback() {
        use nas_data::{DataConfig, SplitDataset};
        use nas_runtime::ExecutionProvider;

        let cfg = DataConfig {
            dataset: Some("digits".into()),
            ..DataConfig::default()
        };
        let data: SplitDataset = nas_data::load(&cfg, 0).unwrap();
        let mut b = GraphBuilder::new(&[1, 8, 8]);
        let x = b.input();
        let p = b.add(Op::GlobalAvgPool, &[x]);
        let l = b.add(
            Op::Linear {
                out_features: 10,
                bias: true,
            },
            &[p],
        );
        let graph = b.finish(l);
        let lib = nas_runtime::locate_library(None).unwrap();
        let gpu_or_cpu = SessionSettings {
            provider: ExecutionProvider::Cuda,
            fallback: Some(ExecutionProvider::Cpu),
            ..SessionSettings::cpu(&lib)
        };
        let weights = Weights::he_init(&graph, 0).unwrap();
        let config = crate::TrainConfig {
            epochs: 1,
            ..crate::TrainConfig::default()
        };
        let mut trainer =
            crate::Trainer::new(&graph, weights, &config, &gpu_or_cpu, &data).unwrap();
        // Here CUDA is unavailable (no GPU, or a CPU build): the session falls back to CPU and
        // the state stays in host memory; on a GPU both would say CUDA.
        let expected = TensorHome::for_provider_name(trainer.provider()).unwrap();
        assert_eq!(trainer.state_home(), &expected);
        if trainer.provider() == "cpu" {
            assert_eq!(trainer.state_home(), &TensorHome::Host);
        }
        assert!(trainer.train_epochs(1).unwrap()[0].train_loss.is_finite());
    }

    #[test]
    fn a_cuda_home_on_a_cpu_session_is_a_clear_error() {
        let (step, values) = step_model();
        let lib = nas_runtime::locate_library(None).unwrap();
        let session =
            nas_runtime::session_from_bytes(&step.model, &SessionSettings::cpu(&lib)).unwrap();
        let err = StepRunner::new(
            session,
            TensorHome::cuda(0),
            step.state.clone(),
            step.dropout_masks.clone(),
            Vec::new(),
            values,
            StepIo::Binding,
        )
        .err()
        .expect("a CPU session has no CUDA allocator")
        .to_string();
        println!("{err}");
        assert!(err.contains("device memory (Cuda:0)"), "{err}");
    }
}
