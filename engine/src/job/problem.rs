//! What is wrong with a job definition, and where: the TOML path of the
//! offending key (`window.size_ms`, `filter.all[1].eq`, `aggregates[2]`).

use std::fmt;

/// One problem in a job definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The TOML path of the key at fault (empty: the whole file).
    pub at: String,
    pub message: String,
}

impl Problem {
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            message: message.into(),
        }
    }

    /// The one-line error naming the file (or other origin) and the path.
    pub fn into_error(self, origin: &str) -> crate::Error {
        crate::Error::Invalid(format!("{origin}: {self}"))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.at.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

/// `parent.key`, or `key` at the top level.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}
