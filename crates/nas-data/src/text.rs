//! Plain-text classification: one `label<TAB>text` line per sample, turned into token-id
//! sequences (see [`DataKind::Sequence`]) with a vocabulary built on the training split only.
//!
//! Lines are UTF-8 (a leading byte-order mark and `\r\n` endings are accepted, blank lines are
//! skipped, gzipped files are read as they are). Everything before the first tab is the label
//! (trimmed), everything after it the text. Class names are the distinct labels of the
//! training and test files, sorted; class `i` is the `i`-th name.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, MAX_VOCAB_SIZE, PAD_ID, UNKNOWN_ID};
use crate::error::{DataError, Location};
use crate::read::read_maybe_gz;
use crate::split::{SplitConfig, SplitDataset, Splits};

/// How a text is cut into tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenize {
    /// Every Unicode character (scalar value) is a token, case and spaces kept.
    Char,
    /// Lowercased, then split on every character that is not alphanumeric; empty pieces
    /// dropped.
    #[default]
    Word,
}

/// The tokens of `text`.
pub fn tokenize(text: &str, how: Tokenize) -> Vec<String> {
    match how {
        Tokenize::Char => text.chars().map(String::from).collect(),
        Tokenize::Word => text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect(),
    }
}

/// How to turn texts into token ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    pub tokenize: Tokenize,
    /// At most this many ids, padding and unknown included (at least 3); the most frequent
    /// tokens are kept. `None`: every token of the training split.
    pub max_vocab: Option<usize>,
    /// Sequence length: longer texts keep their first `max_len` tokens, shorter ones are
    /// padded at the end. `None`: the longest training text (at least 1).
    pub max_len: Option<usize>,
}

/// Token ids of a training split: id 0 is padding, 1 an unknown token, then the tokens by
/// descending frequency in the training texts, ties in alphabetical (code point) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    tokenize: Tokenize,
    /// The token of id `i + 2`.
    tokens: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    /// Counts the tokens of `texts` and keeps the most frequent, `max_vocab` ids in all.
    pub fn build<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        how: Tokenize,
        max_vocab: Option<usize>,
    ) -> Vocabulary {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for text in texts {
            for token in tokenize(text, how) {
                *counts.entry(token).or_default() += 1;
            }
        }
        let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
        ranked.sort_by(|(a, ca), (b, cb)| cb.cmp(ca).then_with(|| a.cmp(b)));
        let room = max_vocab.unwrap_or(MAX_VOCAB_SIZE).min(MAX_VOCAB_SIZE);
        ranked.truncate(room.saturating_sub(2));
        let tokens: Vec<String> = ranked.into_iter().map(|(t, _)| t).collect();
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32 + 2))
            .collect();
        Vocabulary {
            tokenize: how,
            tokens,
            index,
        }
    }

    /// Number of ids, padding and unknown included: the size of an embedding table.
    pub fn size(&self) -> usize {
        self.tokens.len() + 2
    }

    /// The tokenization the vocabulary was built with.
    pub fn tokenization(&self) -> Tokenize {
        self.tokenize
    }

    /// The known tokens in id order; token `tokens()[i]` has id `i + 2`.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The id of one token: its own, or [`UNKNOWN_ID`].
    pub fn id(&self, token: &str) -> u32 {
        self.index.get(token).copied().unwrap_or(UNKNOWN_ID)
    }

    /// The ids of `text`, cut or padded (with [`PAD_ID`]) to `max_len`.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids: Vec<u32> = tokenize(text, self.tokenize)
            .iter()
            .take(max_len)
            .map(|t| self.id(t))
            .collect();
        ids.resize(max_len, PAD_ID);
        ids
    }
}

/// Labelled texts from a training file and an optional test file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextCorpus {
    /// The texts of the training file, then those of the test file.
    pub texts: Vec<String>,
    pub labels: Vec<u32>,
    /// The sorted distinct labels; label `i` is `class_names[i]`.
    pub class_names: Vec<String>,
    /// The class count: `classes` when given (at least the number of names), else the number
    /// of names.
    pub classes: usize,
    /// How many samples came from the training file.
    pub source_train: usize,
}

/// One file's samples: (label, text).
type Lines = Vec<(String, String)>;

impl TextCorpus {
    /// Reads `label<TAB>text` files.
    pub fn read(
        train: &Path,
        test: Option<&Path>,
        classes: Option<usize>,
    ) -> Result<TextCorpus, DataError> {
        let a = read_lines(train)?;
        let b = test.map(read_lines).transpose()?;
        let all = || a.iter().chain(b.iter().flatten());
        let names: Vec<String> = all()
            .map(|(l, _)| l.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(c) = classes
            && c < names.len()
        {
            return Err(DataError::config(
                "classes",
                format!(
                    "is {c}, but the text files hold {} distinct labels ({})",
                    names.len(),
                    names.join(", ")
                ),
            ));
        }
        let labels = all()
            .map(|(l, _)| names.binary_search(l).expect("collected above") as u32)
            .collect();
        Ok(TextCorpus {
            texts: all().map(|(_, t)| t.clone()).collect(),
            labels,
            classes: classes.unwrap_or(names.len()),
            class_names: names,
            source_train: a.len(),
        })
    }

    /// The samples as token ids `[N, max_len]` under `vocabulary` (see [`Vocabulary::encode`]).
    pub fn to_dataset(
        &self,
        vocabulary: &Vocabulary,
        max_len: usize,
        name: &str,
    ) -> Result<Dataset, DataError> {
        if max_len == 0 {
            return Err(DataError::config(
                "max_len",
                "is 0; give the number of tokens per sample (at least 1)",
            ));
        }
        let ids: Vec<u32> = self
            .texts
            .iter()
            .flat_map(|t| vocabulary.encode(t, max_len))
            .collect();
        let ids = Array2::from_shape_vec((self.texts.len(), max_len), ids).expect("n * max_len");
        let mut d = Dataset::token_ids(
            name,
            &ids,
            self.labels.clone(),
            self.classes,
            vocabulary.size(),
        )?;
        d.class_names = Some(self.class_names.clone());
        Ok(d)
    }
}

/// Reads a text classification set, splits it from `seed` (the test file, if given, is the
/// test set), builds the vocabulary on the training split only and encodes every sample.
pub fn load_text(
    train: &Path,
    test: Option<&Path>,
    opts: &TextOptions,
    classes: Option<usize>,
    name: &str,
    split: &SplitConfig,
    seed: u64,
) -> Result<SplitDataset, DataError> {
    if let Some(m) = opts.max_vocab
        && m < 3
    {
        return Err(DataError::config(
            "max_vocab",
            format!("is {m}; ids 0 and 1 are padding and unknown, so give at least 3"),
        ));
    }
    let corpus = TextCorpus::read(train, test, classes)?;
    let splits = Splits::new(
        &corpus.labels,
        corpus.classes,
        corpus.source_train,
        split,
        seed,
    )?;
    let training = || splits.train.iter().map(|&i| corpus.texts[i].as_str());
    let vocabulary = Vocabulary::build(training(), opts.tokenize, opts.max_vocab);
    let max_len = match opts.max_len {
        Some(m) => m,
        None => training()
            .map(|t| tokenize(t, opts.tokenize).len())
            .max()
            .unwrap_or(0)
            .max(1),
    };
    let data = corpus.to_dataset(&vocabulary, max_len, name)?;
    let mut out = SplitDataset::from_splits(data, splits, None, seed)?;
    out.vocabulary = Some(vocabulary);
    Ok(out)
}

/// The samples of one file, checked line by line.
fn read_lines(path: &Path) -> Result<Lines, DataError> {
    let bytes = read_maybe_gz(path)?.bytes;
    let file = PathBuf::from(path);
    let at = |line: usize, column: Option<usize>| Location::Line {
        line: line as u64 + 1,
        column,
    };
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if i == 0 {
            raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw)
        } else {
            raw
        };
        let line = std::str::from_utf8(raw).map_err(|e| {
            DataError::corrupt(
                &file,
                at(i, None),
                format!(
                    "byte {} of the line is not valid UTF-8",
                    e.valid_up_to() + 1
                ),
                "Save the file as UTF-8",
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let Some((label, text)) = line.split_once('\t') else {
            return Err(DataError::corrupt(
                &file,
                at(i, None),
                "the line has no tab between label and text",
                "Write one sample per line as `label<TAB>text`",
            ));
        };
        let label = label.trim();
        if label.is_empty() {
            return Err(DataError::corrupt(
                &file,
                at(i, Some(1)),
                "the label before the tab is empty",
                "Write one sample per line as `label<TAB>text`",
            ));
        }
        out.push((label.to_string(), text.to_string()));
    }
    if out.is_empty() {
        return Err(DataError::corrupt(
            &file,
            Location::Byte(0),
            "the file holds no samples",
            "Write one sample per line as `label<TAB>text`",
        ));
    }
    Ok(out)
}
