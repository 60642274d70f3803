//! Runs training steps in an ORT session, keeping the state (weights, optimizer buffers, BN
//! statistics) in ORT tensors between steps.
//!
//! With [`StepIo::Binding`] there are two sets of state tensors, A and B, and two I/O
//! bindings: step k reads A and writes B, step k+1 reads B and writes A. A buffer is never
//! bound as input and output of the same run (ORT then reads values it already overwrote).
//! The state inputs are re-bound before every run: on CPU that is a pointer store, and on a
//! GPU provider it makes ORT copy the current host values (a bound input is copied at bind
//! time there).

use ndarray::{Array4, ArrayD};
use ort::memory::Allocator;
use ort::session::{IoBinding, Session};
use ort::value::Tensor;

use crate::error::TrainError;
use crate::step_api::{CORRECT, DropoutMask, INPUT, LABELS, LOSS, LR, STEP, StateTensor};

/// How state moves between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepIo {
    /// Double-buffered I/O binding (the default).
    #[default]
    Binding,
    /// `session.run` with owned state arrays, copied in and out every step (the reference
    /// the binding path is checked against).
    Run,
}

/// One step's per-call inputs.
pub(crate) struct StepInputs<'a> {
    pub images: Array4<f32>,
    pub labels: &'a [u32],
    pub lr: f32,
    /// 1-based optimizer step (Adam bias correction).
    pub step: f32,
    pub masks: Vec<ArrayD<f32>>,
}

pub(crate) struct StepRunner {
    session: Session,
    state: Vec<StateTensor>,
    masks: Vec<DropoutMask>,
    io: Io,
}

enum Io {
    Binding(Box<Bound>),
    Run(Vec<ArrayD<f32>>),
}

struct Bound {
    /// `bindings[k]` reads `sets[k]` and writes `sets[1 - k]`.
    bindings: [IoBinding; 2],
    sets: [Vec<Tensor<f32>>; 2],
    loss: Tensor<f32>,
    correct: Tensor<f32>,
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
    pub fn new(
        session: Session,
        state: Vec<StateTensor>,
        masks: Vec<DropoutMask>,
        values: Vec<ArrayD<f32>>,
        io: StepIo,
    ) -> Result<StepRunner, TrainError> {
        let mut runner = StepRunner {
            session,
            state,
            masks,
            io: Io::Run(Vec::new()),
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

    /// Switches the I/O mode, installing `values` as the state.
    pub fn set_io(&mut self, io: StepIo, values: Vec<ArrayD<f32>>) -> Result<(), TrainError> {
        self.check_values(&values)?;
        self.io = match io {
            StepIo::Run => Io::Run(values),
            StepIo::Binding => Io::Binding(Box::new(self.bind(values)?)),
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

    fn bind(&mut self, values: Vec<ArrayD<f32>>) -> Result<Bound, TrainError> {
        let alloc = Allocator::default();
        let err = ort_err("allocating the training state");
        let make_set = |fill: Option<&[ArrayD<f32>]>| -> Result<Vec<Tensor<f32>>, ort::Error> {
            let mut set = Vec::with_capacity(self.state.len());
            for (i, spec) in self.state.iter().enumerate() {
                // Tensor::new (not from_array): only allocator-owned tensors can be bound as outputs.
                let mut t = Tensor::<f32>::new(&alloc, spec.shape.clone())?;
                if let Some(values) = fill {
                    let (_, data) = t.try_extract_tensor_mut()?;
                    let src = values[i].as_standard_layout();
                    data.copy_from_slice(src.as_slice().expect("standard layout"));
                }
                set.push(t);
            }
            Ok(set)
        };
        let a = make_set(Some(&values)).map_err(err)?;
        let b = make_set(None).map_err(ort_err("allocating the training state"))?;
        let mut sets = [a, b];
        let mut loss = Tensor::<f32>::new(&alloc, Vec::<usize>::new())
            .map_err(ort_err("allocating the loss"))?;
        let mut correct = Tensor::<f32>::new(&alloc, Vec::<usize>::new())
            .map_err(ort_err("allocating the loss"))?;
        let bind_err = ort_err("binding the training step's outputs");
        let mut make_binding = |k: usize| -> Result<IoBinding, ort::Error> {
            let mut binding = self.session.create_binding()?;
            binding.bind_output(LOSS, &mut loss)?;
            binding.bind_output(CORRECT, &mut correct)?;
            for (spec, t) in self.state.iter().zip(sets[1 - k].iter_mut()) {
                binding.bind_output(spec.output.as_str(), t)?;
            }
            Ok(binding)
        };
        let b0 = make_binding(0).map_err(bind_err)?;
        let b1 = make_binding(1).map_err(ort_err("binding the training step's outputs"))?;
        Ok(Bound {
            bindings: [b0, b1],
            sets,
            loss,
            correct,
            current: 0,
        })
    }

    /// Runs one step; returns (loss, correct count). On error the state is unchanged.
    pub fn step(&mut self, inputs: StepInputs<'_>) -> Result<(f32, f32), TrainError> {
        let n = inputs.images.shape()[0];
        let run_err = || ort_err("running a training step");
        let images = Tensor::from_array(inputs.images).map_err(run_err())?;
        let labels: Vec<i64> = inputs.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::from_array(([n], labels)).map_err(run_err())?;
        let lr = Tensor::from_array(((), vec![inputs.lr])).map_err(run_err())?;
        let step = Tensor::from_array(((), vec![inputs.step])).map_err(run_err())?;
        let masks: Vec<Tensor<f32>> = inputs
            .masks
            .into_iter()
            .map(Tensor::from_array)
            .collect::<Result<_, _>>()
            .map_err(run_err())?;
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
                    for (spec, t) in self.state.iter().zip(&b.sets[k]) {
                        binding.bind_input(spec.input.as_str(), t)?;
                    }
                    Ok(())
                };
                bind().map_err(run_err())?;
                self.session
                    .run_binding(&b.bindings[k])
                    .map(drop)
                    .map_err(run_err())?;
                b.current = 1 - k;
                let loss = b.loss.try_extract_tensor::<f32>().map_err(run_err())?.1[0];
                let correct = b.correct.try_extract_tensor::<f32>().map_err(run_err())?.1[0];
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

    /// A copy of the current state, in step order.
    pub fn state(&self) -> Result<Vec<ArrayD<f32>>, TrainError> {
        match &self.io {
            Io::Run(values) => Ok(values.clone()),
            Io::Binding(b) => b.sets[b.current]
                .iter()
                .map(|t| {
                    t.try_extract_array::<f32>()
                        .map(|v| v.to_owned())
                        .map_err(ort_err("reading the training state"))
                })
                .collect(),
        }
    }
}
