//! Token counts with a real tokenizer: OpenAI's `o200k_base` BPE (tiktoken-rs), whose rank
//! file is compiled into the binary, so counting never touches the network or the disk.
//!
//! Text is encoded as ordinary text: a file that holds `<|endoftext|>` counts it as the
//! characters it is, never as a special token.

use std::sync::OnceLock;

/// The tokenizer's name, as the plan records it.
pub const TOKENIZER: &str = "o200k_base";

fn bpe() -> &'static tiktoken_rs::CoreBPE {
    static BPE: OnceLock<&'static tiktoken_rs::CoreBPE> = OnceLock::new();
    BPE.get_or_init(tiktoken_rs::o200k_base_singleton)
}

/// Load the tokenizer's ranks now (about 200k entries), e.g. on another thread while the tree
/// is read.
pub fn warm_up() {
    bpe();
}

/// The tokens of `text`.
pub fn count(text: &str) -> u64 {
    bpe().encode_ordinary(text).len() as u64
}

/// The tokens of each text, counted on up to `jobs` threads; the same counts as [`count`].
pub fn count_all(texts: &[&str], jobs: usize) -> Vec<u64> {
    let jobs = jobs.clamp(1, texts.len().max(1));
    if jobs == 1 {
        return texts.iter().map(|t| count(t)).collect();
    }
    let mut out = vec![0; texts.len()];
    let chunk = texts.len().div_ceil(jobs);
    std::thread::scope(|s| {
        for (texts, out) in texts.chunks(chunk).zip(out.chunks_mut(chunk)) {
            s.spawn(move || {
                for (t, o) in texts.iter().zip(out.iter_mut()) {
                    *o = count(t);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_the_tokenizers() {
        assert_eq!(count(""), 0);
        // "hello world" is two tokens in every OpenAI BPE.
        assert_eq!(count("hello world"), 2);
        assert_eq!(
            count_all(&["hello world", "", "a b c"], 2),
            vec![2, 0, count("a b c")]
        );
    }

    #[test]
    fn special_tokens_in_files_are_plain_text() {
        assert!(count("<|endoftext|>") > 1);
    }
}
