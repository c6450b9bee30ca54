//! Runtime identifiers: which language runtime runs a function's code.

use std::fmt;

use crate::validation::ValidationError;

/// The runtimes stoke runs. Identifiers follow Lambda's (`python3.12`, `nodejs20.x`, `provided.al2023`),
/// plus the bare `nodejs` and `provided` for "whatever this node has".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// `python3.N`; the minor version is what the function asked for.
    Python { minor: u32 },
    /// `nodejs` or `nodejsNN.x`.
    Node { major: Option<u32> },
    /// `provided`, `provided.al2`, `provided.al2023`: the archive's `bootstrap` executable.
    Provided,
}

/// Python minor versions accepted in `python3.N`.
pub const PYTHON_MINORS: std::ops::RangeInclusive<u32> = 8..=14;
/// Node major versions accepted in `nodejsNN.x`.
pub const NODE_MAJORS: [u32; 4] = [18, 20, 22, 24];

impl Runtime {
    /// Parses a runtime identifier; the error lists what is accepted.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if let Some(minor) = s.strip_prefix("python3.") {
            if let Ok(minor) = minor.parse::<u32>() {
                if PYTHON_MINORS.contains(&minor) {
                    return Ok(Self::Python { minor });
                }
            }
        }
        if s == "nodejs" {
            return Ok(Self::Node { major: None });
        }
        if let Some(rest) = s.strip_prefix("nodejs").and_then(|r| r.strip_suffix(".x")) {
            if let Ok(major) = rest.parse::<u32>() {
                if NODE_MAJORS.contains(&major) {
                    return Ok(Self::Node { major: Some(major) });
                }
            }
        }
        if matches!(s, "provided" | "provided.al2" | "provided.al2023") {
            return Ok(Self::Provided);
        }
        Err(ValidationError::new(
            "runtime",
            format!(
                "runtime {s:?} is not supported: use python3.8 … python3.14, nodejs, nodejs18.x … nodejs24.x, \
                 or provided (provided.al2, provided.al2023) for a custom bootstrap"
            ),
        ))
    }

    /// Every identifier [`Runtime::parse`] accepts in its usual spelling, for the documents that list them
    /// (`python3.8` … `python3.14`, `nodejs`, `nodejs18.x` … `nodejs24.x`, `provided`, `provided.al2`,
    /// `provided.al2023`).
    pub fn identifiers() -> Vec<String> {
        let mut out: Vec<String> = PYTHON_MINORS.map(|minor| format!("python3.{minor}")).collect();
        out.push("nodejs".to_string());
        out.extend(NODE_MAJORS.iter().map(|major| format!("nodejs{major}.x")));
        out.extend(["provided", "provided.al2", "provided.al2023"].map(String::from));
        out
    }

    /// Whether the runtime needs a `module.function` handler to find the code to run.
    pub fn needs_handler(self) -> bool {
        !matches!(self, Self::Provided)
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Python { minor } => write!(f, "python3.{minor}"),
            Self::Node { major: None } => f.write_str("nodejs"),
            Self::Node { major: Some(m) } => write!(f, "nodejs{m}.x"),
            Self::Provided => f.write_str("provided"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lambda_identifiers() {
        assert_eq!(Runtime::parse("python3.12").unwrap(), Runtime::Python { minor: 12 });
        assert_eq!(Runtime::parse("nodejs").unwrap(), Runtime::Node { major: None });
        assert_eq!(Runtime::parse("nodejs20.x").unwrap(), Runtime::Node { major: Some(20) });
        assert_eq!(Runtime::parse("provided.al2023").unwrap(), Runtime::Provided);
        assert_eq!(Runtime::parse("python3.11").unwrap().to_string(), "python3.11");
    }

    #[test]
    fn refuses_unknown_runtimes_with_the_accepted_list() {
        for bad in ["python2.7", "python3.x", "java17", "nodejs21.x", "", "ruby3.3"] {
            let e = Runtime::parse(bad).unwrap_err();
            assert_eq!(e.field, "runtime");
            assert!(e.message.contains("python3.8"), "{}", e.message);
        }
    }

    #[test]
    fn every_listed_identifier_parses() {
        let ids = Runtime::identifiers();
        assert_eq!(ids.len(), 7 + 1 + 4 + 3, "{ids:?}");
        for id in &ids {
            assert!(Runtime::parse(id).is_ok(), "{id}");
        }
        assert!(ids.contains(&"python3.12".to_string()) && ids.contains(&"provided.al2023".to_string()));
    }

    #[test]
    fn only_provided_runs_without_handler() {
        assert!(!Runtime::Provided.needs_handler());
        assert!(Runtime::Python { minor: 12 }.needs_handler());
        assert!(Runtime::Node { major: None }.needs_handler());
    }
}
