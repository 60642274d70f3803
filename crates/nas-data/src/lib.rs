//! Data sets for training candidate networks, as float32 tensors `[N, C, H, W]`.
//!
//! - Loaders: [`load_idx`] (MNIST-style IDX, plain or gzipped), [`load_cifar`] (CIFAR-10 and
//!   CIFAR-100 binary batches), [`load_npy`] / [`load_npz`] (NumPy arrays), [`load_csv`]
//!   (tabular), [`load_text`] (`label<TAB>text` lines) and the bundled [`digits`] set.
//!   Values are kept as stored (no scaling).
//! - Tabular data with `F` features is stored as `[N, F, 1, 1]` ([`DataKind::Tabular`]): each
//!   feature is a channel, so per-channel normalization standardizes each feature. CSV
//!   categorical columns become one-hot features or category codes
//!   ([`Dataset::categorical`], never normalized) with categories from the training file;
//!   missing values ([`MISSING_VALUES`]) are a category of their own or, in numeric columns,
//!   an error or the training mean ([`Missing`]).
//! - Sequences are stored as `[N, T, F, 1]` ([`DataKind::Sequence`]; one sample is `[T, F]`,
//!   or `[T]` for token ids with a [`Dataset::vocab_size`]): NPY / NPZ arrays with layout
//!   `nt` / `ntf` and optional lengths ([`load_npy_with_lengths`]), text ([`load_text`],
//!   vocabulary built on the training split) and single-channel images read row by row
//!   ([`Dataset::rows_as_sequence`]). Float features are normalized per feature over samples
//!   and steps; token ids never.
//! - [`Splits`]: deterministic train / validation / test indices from a seed (ChaCha8),
//!   stratified by class; [`Normalization`]: per-channel mean and std of the training split,
//!   as values the exporter can bake into the model; [`Batches`]: per-epoch shuffled,
//!   normalized, optionally augmented batches.
//! - Regression ([`Task::Regression`], CSV `task = "regression"`): one float target per
//!   sample in [`Dataset::targets`], standardized for training by the [`TargetScale`] in the
//!   [`Normalization`].
//! - [`DataConfig`] mirrors the study file's `[data]` table and [`load`] turns it into a
//!   [`SplitDataset`].
//!
//! Every error names the file and the byte offset, record or line where the data broke, and
//! says what to do.

mod batch;
mod cifar;
mod config;
mod dataset;
mod digits;
mod error;
mod idx;
mod normalize;
mod npy;
mod read;
mod rng;
mod sequence;
mod split;
mod tabular;
mod targets;
mod text;

pub use batch::{Augment, BatchOptions, Batches, TargetBatches, batches};
pub use cifar::{CifarKind, load_cifar, load_cifar_file};
pub use config::{DataConfig, FASHION_MNIST_DIR, Format, load};
pub use dataset::{CategoricalFeature, DataKind, Dataset, MAX_VOCAB_SIZE, PAD_ID, UNKNOWN_ID};
pub use digits::{DIGITS_TEST_FRACTION, digits};
pub use error::{DataError, Location};
pub use idx::load_idx;
pub use normalize::{Normalization, is_padding};
pub use npy::{
    LabelKind, Layout, NpyArray, NpzKeys, load_npy, load_npy_with_lengths, load_npz, read_npy,
};
pub use split::{Part, SplitConfig, SplitDataset, Splits};
pub use tabular::{
    CategoricalEncoding, CsvOptions, LabelColumn, MISSING_VALUES, Missing, MissingLabel, load_csv,
};
pub use targets::{TargetScale, Targets, Task};
pub use text::{TextCorpus, TextOptions, Tokenize, Vocabulary, load_text, tokenize};
