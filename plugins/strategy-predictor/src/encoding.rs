//! Architecture encodings: a choice vector as a fixed-length vector of numbers for the
//! surrogate.
//!
//! - **One-hot** for every categorical choice with more than one option; the **scaled value**
//!   `(v - low) / (high - low)` for integer and float choices (of `ln v` for log-scaled floats).
//!   Works for every space the descriptor can describe.
//! - **Path encoding** (White et al., BANANAS) when the descriptor is a cell DAG of the
//!   NAS-Bench-201 kind: every choice categorical, named `edge_<to>_<from>` with `to > from`,
//!   all with the same options, so each choice is the operation on the edge `from -> to`.
//!   An option named `none` (if any) removes the edge. Node 0 is the input, the largest node the
//!   output; one feature per (input-to-output path, sequence of operations along it) that is
//!   present. The descriptor says nothing else about structure, so any other naming falls back to
//!   the one-hot encoding alone; [`PathEncoding::detect`] refuses rather than guesses.

use nas_plugin::{ChoiceKind, SpaceDescriptor};

/// Largest number of path features before the path encoding is left out (deep cells with
/// many operations make the feature count explode).
pub const MAX_PATH_FEATURES: usize = 4096;

/// How one choice enters the encoding.
#[derive(Clone, Debug)]
enum Part {
    /// One-hot over `options` columns starting at `offset`.
    OneHot { offset: usize },
    /// One column: the value scaled to [0, 1].
    Scaled {
        offset: usize,
        low: f64,
        high: f64,
        log: bool,
    },
    /// A single possible value: nothing to encode.
    Fixed,
}

/// The path encoding of a cell DAG.
#[derive(Clone, Debug)]
pub struct PathEncoding {
    /// Each path as the choice indices of its edges, input to output.
    paths: Vec<Vec<usize>>,
    /// The first feature column of each path.
    path_offsets: Vec<usize>,
    /// The index of the `none` option, if there is one.
    none: Option<usize>,
    /// Options that are not `none`, in option order; `op_rank[option]` is its position here.
    op_rank: Vec<Option<usize>>,
    ops: usize,
    /// Number of path features.
    pub len: usize,
}

impl PathEncoding {
    /// The path encoding of `space` if it is a cell DAG of the NAS-Bench-201 kind (see the
    /// module documentation); `None` otherwise.
    pub fn detect(space: &SpaceDescriptor) -> Option<PathEncoding> {
        let first = space.choices.first()?;
        let ChoiceKind::Categorical { options } = &first.kind else {
            return None;
        };
        let mut edges = Vec::with_capacity(space.choices.len());
        for c in &space.choices {
            match &c.kind {
                ChoiceKind::Categorical { options: o } if o == options => {}
                _ => return None,
            }
            let rest = c.name.strip_prefix("edge_")?;
            let (to, from) = rest.split_once('_')?;
            let (to, from): (usize, usize) = (to.parse().ok()?, from.parse().ok()?);
            if from >= to || edges.contains(&(to, from)) {
                return None;
            }
            edges.push((to, from));
        }
        let output = edges.iter().map(|&(to, _)| to).max()?;
        let none = options.iter().position(|o| o == "none");
        let mut op_rank = vec![None; options.len()];
        let mut ops: usize = 0;
        for (i, rank) in op_rank.iter_mut().enumerate() {
            if Some(i) != none {
                *rank = Some(ops);
                ops += 1;
            }
        }
        if ops == 0 {
            return None;
        }
        // Every path from node 0 to the output, by depth-first search over the edges.
        let mut paths = Vec::new();
        let mut stack: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new())];
        while let Some((node, path)) = stack.pop() {
            if node == output {
                paths.push(path);
                continue;
            }
            for (i, &(to, from)) in edges.iter().enumerate() {
                if from == node {
                    let mut p = path.clone();
                    p.push(i);
                    stack.push((to, p));
                }
            }
            if paths.len() > MAX_PATH_FEATURES {
                return None;
            }
        }
        if paths.is_empty() {
            return None;
        }
        paths.sort();
        let mut path_offsets = Vec::with_capacity(paths.len());
        let mut len = 0usize;
        for p in &paths {
            path_offsets.push(len);
            len = len.checked_add(ops.checked_pow(u32::try_from(p.len()).ok()?)?)?;
            if len > MAX_PATH_FEATURES {
                return None;
            }
        }
        Some(PathEncoding {
            paths,
            path_offsets,
            none,
            op_rank,
            ops,
            len,
        })
    }

    /// Sets the features of the paths present in `values` to 1 in `out` (of length `len`).
    fn write(&self, values: &[f64], out: &mut [f64]) {
        'paths: for (p, offset) in self.paths.iter().zip(&self.path_offsets) {
            let mut index = 0;
            for &edge in p {
                let option = values[edge] as usize;
                if Some(option) == self.none {
                    continue 'paths;
                }
                let Some(rank) = self.op_rank.get(option).copied().flatten() else {
                    continue 'paths;
                };
                index = index * self.ops + rank;
            }
            out[offset + index] = 1.0;
        }
    }

    /// Number of input-to-output paths of the cell.
    pub fn paths(&self) -> usize {
        self.paths.len()
    }
}

/// Turns choice vectors into feature vectors.
#[derive(Clone, Debug)]
pub struct Encoder {
    parts: Vec<Part>,
    /// Columns of the choice part (one-hot and scaled).
    choice_len: usize,
    path: Option<PathEncoding>,
}

/// Which encodings to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// One-hot / scaled values, plus the path encoding when the space is a cell DAG.
    Auto,
    OneHot,
    /// Path encoding only (an error for spaces that are not cell DAGs).
    Path,
}

impl Encoder {
    pub fn new(space: &SpaceDescriptor, which: Which) -> Result<Encoder, String> {
        let path = match which {
            Which::OneHot => None,
            Which::Auto | Which::Path => PathEncoding::detect(space),
        };
        if which == Which::Path && path.is_none() {
            return Err(format!(
                "the `{}` space is not a cell DAG the path encoding understands (categorical \
                 choices named `edge_<to>_<from>` with equal options, at most \
                 {MAX_PATH_FEATURES} path features); use `encoding = \"auto\"` or \"onehot\"",
                space.kind
            ));
        }
        let mut parts = Vec::with_capacity(space.choices.len());
        let mut offset = 0;
        for c in &space.choices {
            let part = if !nas_plugin::kit::is_mutable(&c.kind) || which == Which::Path {
                Part::Fixed
            } else {
                match &c.kind {
                    ChoiceKind::Categorical { options } => {
                        let p = Part::OneHot { offset };
                        offset += options.len();
                        p
                    }
                    ChoiceKind::Integer { low, high } => {
                        let p = Part::Scaled {
                            offset,
                            low: *low as f64,
                            high: *high as f64,
                            log: false,
                        };
                        offset += 1;
                        p
                    }
                    ChoiceKind::Float { low, high, log } => {
                        let (low, high) = if *log {
                            (low.ln(), high.ln())
                        } else {
                            (*low, *high)
                        };
                        let p = Part::Scaled {
                            offset,
                            low,
                            high,
                            log: *log,
                        };
                        offset += 1;
                        p
                    }
                }
            };
            parts.push(part);
        }
        Ok(Encoder {
            parts,
            choice_len: offset,
            path,
        })
    }

    /// Length of an encoded vector.
    pub fn len(&self) -> usize {
        self.choice_len + self.path.as_ref().map_or(0, |p| p.len)
    }

    /// Whether the encoding is empty (a space of fixed choices only).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the path encoding is in use.
    pub fn has_path(&self) -> bool {
        self.path.is_some()
    }

    /// Writes the encoding of `values` into `out` (of length [`Encoder::len`]).
    pub fn write(&self, values: &[f64], out: &mut [f64]) {
        out.fill(0.0);
        for (part, &v) in self.parts.iter().zip(values) {
            match *part {
                Part::OneHot { offset } => out[offset + v as usize] = 1.0,
                Part::Scaled {
                    offset,
                    low,
                    high,
                    log,
                } => {
                    let x = if log { v.ln() } else { v };
                    out[offset] = ((x - low) / (high - low)).clamp(0.0, 1.0);
                }
                Part::Fixed => {}
            }
        }
        if let Some(p) = &self.path {
            p.write(values, &mut out[self.choice_len..]);
        }
    }

    pub fn encode(&self, values: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.len()];
        self.write(values, &mut out);
        out
    }
}
