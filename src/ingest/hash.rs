//! Incident hashes such as `KXW-482-91735`: random, readable aloud, never sequential.
//!
//! The format is a pattern of `A` (a letter), `9` (a digit) and `-`. Letters leave out I and O,
//! which readers confuse with 1 and 0. The random number generator is an argument, so tests are
//! repeatable; uniqueness is the database's job (a UNIQUE constraint and a retry).

use std::fmt;

use rand::Rng;
use regex::Regex;
use serde::{Serialize, Serializer};

/// Letters that cannot be mistaken for digits.
const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";

/// Fewer combinations than this make hashes guessable and collisions frequent.
const MIN_COMBINATIONS: f64 = 1e9;

#[derive(Clone)]
pub struct HashFormat {
    pattern: String,
    tag: Regex,
}

impl HashFormat {
    pub fn parse(pattern: &str) -> Result<HashFormat, String> {
        let expectation = "expected a pattern of A (letter), 9 (digit) and - with at least \
                           1,000,000,000 combinations, such as \"AAA-999-99999\"";
        if pattern.is_empty()
            || !pattern.chars().all(|c| matches!(c, 'A' | '9' | '-'))
            || pattern.starts_with('-')
            || pattern.ends_with('-')
        {
            return Err(expectation.to_string());
        }
        let combinations: f64 = pattern
            .chars()
            .map(|c| match c {
                'A' => LETTERS.len() as f64,
                '9' => DIGITS.len() as f64,
                _ => 1.0,
            })
            .product();
        if combinations < MIN_COMBINATIONS {
            return Err(expectation.to_string());
        }
        let body: String = pattern
            .chars()
            .map(|c| match c {
                'A' => "[A-HJ-NP-Z]",
                '9' => "[0-9]",
                _ => "-",
            })
            .collect();
        let tag = Regex::new(&format!(r"(?i)\[#({body})\]"))
            .map_err(|error| format!("cannot build the subject tag pattern: {error}"))?;
        Ok(HashFormat {
            pattern: pattern.to_string(),
            tag,
        })
    }

    /// A fresh random hash in this format.
    pub fn generate(&self, rng: &mut impl Rng) -> String {
        self.pattern
            .chars()
            .map(|c| match c {
                'A' => LETTERS[rng.random_range(0..LETTERS.len())] as char,
                '9' => DIGITS[rng.random_range(0..DIGITS.len())] as char,
                other => other,
            })
            .collect()
    }

    /// The hash named by a `[#HASH]` tag in a subject, upper-cased; the first tag wins.
    pub fn tag_in(&self, subject: &str) -> Option<String> {
        self.tag
            .captures(subject)
            .and_then(|captures| captures.get(1))
            .map(|hash| hash.as_str().to_uppercase())
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl fmt::Debug for HashFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "HashFormat({:?})", self.pattern)
    }
}

impl Serialize for HashFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn generated_hashes_follow_the_pattern_and_differ() {
        let format = HashFormat::parse("AAA-999-99999").expect("default format");
        let mut rng = StdRng::seed_from_u64(7);
        let first = format.generate(&mut rng);
        let second = format.generate(&mut rng);
        assert_ne!(first, second);
        for hash in [&first, &second] {
            assert_eq!(hash.len(), 13);
            assert!(!hash.contains(['I', 'O']), "{hash}");
            assert_eq!(
                format.tag_in(&format!("Re: [#{hash}] printer")),
                Some(hash.clone())
            );
        }
    }

    #[test]
    fn patterns() {
        let check = |pattern: &str, valid: bool| {
            assert_eq!(HashFormat::parse(pattern).is_ok(), valid, "{pattern}");
        };
        check("AAA-999-99999", true);
        check("AAAA-9999-AAAA", true);
        check("AAA-999", false); // too few combinations: guessable
        check("AAA-999-9999X", false);
        check("-AAA-999-99999", false);
        check("", false);
    }

    #[test]
    fn tags() {
        let format = HashFormat::parse("AAA-999-99999").expect("default format");
        let cases = [
            ("Re: [#KXW-482-91735] broken", Some("KXW-482-91735")),
            ("Re: [#kxw-482-91735] lower case", Some("KXW-482-91735")),
            ("[#KXW-482-9173] too short", None),
            ("[#KIW-482-91735] ambiguous letter", None),
            ("KXW-482-91735 without brackets", None),
            (
                "[#ABC-123-45678] [#KXW-482-91735] first wins",
                Some("ABC-123-45678"),
            ),
        ];
        for (subject, expected) in cases {
            assert_eq!(format.tag_in(subject).as_deref(), expected, "{subject}");
        }
    }
}
