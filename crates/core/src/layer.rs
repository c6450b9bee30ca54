//! Layers (seed 003): archives of libraries published once per account, unpacked once into a shared
//! read-only directory, and mounted into every instance of every function that lists them. This module
//! holds their rules: references (`name:version` or a layer ARN), what a publish may carry, and where a
//! runtime looks for a layer's content (Lambda's layout under `/opt`).

use std::fmt;
use std::path::PathBuf;

use crate::names::{AccountId, LayerName};
use crate::runtime::Runtime;
use crate::validation::ValidationError;

/// A function's reference to one layer version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerRef {
    /// The account an ARN names; `None` for `name:version` (the caller's own).
    pub account: Option<AccountId>,
    pub name: LayerName,
    pub version: u64,
}

impl LayerRef {
    /// Parses `name:version` or `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let bad = || {
            ValidationError::new(
                "layers",
                format!(
                    "layer reference {s:?} is not valid: give it as name:version (e.g. numpy:3) or a layer version \
                     ARN (arn:aws:lambda:<region>:<account>:layer:<name>:<version>)"
                ),
            )
        };
        let (account, rest) = match s.strip_prefix("arn:") {
            Some(arn) => {
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                let [_partition, "lambda", _region, account, "layer", rest] = parts[..] else { return Err(bad()) };
                (Some(AccountId::parse(account).map_err(|_| bad())?), rest)
            }
            None => (None, s),
        };
        let (name, version) = rest.split_once(':').ok_or_else(bad)?;
        let name = LayerName::parse(name).map_err(|_| bad())?;
        let version = version.parse::<u64>().ok().filter(|v| *v > 0 && version.bytes().all(|b| b.is_ascii_digit()));
        Ok(LayerRef { account, name, version: version.ok_or_else(bad)? })
    }
}

impl fmt::Display for LayerRef {
    /// The canonical form stored in a configuration: `name:version`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

/// The ARN of a layer (`version` `None`) or of one of its versions.
pub fn layer_arn(region: &str, account: &AccountId, name: &LayerName, version: Option<u64>) -> String {
    let base = format!("arn:aws:lambda:{region}:{account}:layer:{name}");
    version.map_or(base.clone(), |v| format!("{base}:{v}"))
}

/// Most runtimes a layer may declare, as on Lambda.
pub const MAX_COMPATIBLE_RUNTIMES: usize = 15;
pub const MAX_LAYER_DESCRIPTION_LEN: usize = 256;

/// Checks what a publish carries besides the archive.
pub fn validate_publish(description: &str, compatible_runtimes: &[String]) -> Result<(), ValidationError> {
    if description.chars().count() > MAX_LAYER_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            "description",
            format!("description is longer than {MAX_LAYER_DESCRIPTION_LEN} characters"),
        ));
    }
    if compatible_runtimes.len() > MAX_COMPATIBLE_RUNTIMES {
        return Err(ValidationError::new(
            "compatible_runtimes",
            format!("{} runtimes given; a layer may list at most {MAX_COMPATIBLE_RUNTIMES}", compatible_runtimes.len()),
        ));
    }
    for r in compatible_runtimes {
        Runtime::parse(r).map_err(|e| ValidationError::new("compatible_runtimes", e.message))?;
    }
    Ok(())
}

/// The search paths a runtime gets for its layers, as environment variables to prepend: Lambda's layout
/// (`python/`, `python/lib/python3.N/site-packages/`, `nodejs/node_modules/`, `nodejs/nodeNN/node_modules/`,
/// `bin/`, `lib/`) under each root. `roots` are where the instance sees layer content, the layer that wins
/// first: `/opt` alone when the sandbox merges the layers there, or each layer's own directory otherwise.
pub fn search_paths(runtime: Runtime, roots: &[PathBuf]) -> Vec<(&'static str, Vec<PathBuf>)> {
    let under =
        |subs: &[String]| -> Vec<PathBuf> { roots.iter().flat_map(|r| subs.iter().map(move |s| r.join(s))).collect() };
    let mut out = vec![("PATH", under(&["bin".into()])), ("LD_LIBRARY_PATH", under(&["lib".into()]))];
    match runtime {
        Runtime::Python { minor } => {
            out.push(("PYTHONPATH", under(&[format!("python/lib/python3.{minor}/site-packages"), "python".into()])))
        }
        Runtime::Node { major } => {
            let mut subs: Vec<String> = major.map(|m| format!("nodejs/node{m}/node_modules")).into_iter().collect();
            subs.push("nodejs/node_modules".into());
            out.push(("NODE_PATH", under(&subs)));
        }
        Runtime::Provided => {}
    }
    out
}

/// A `PATH`-like variable with a layer's search paths merged in: in front of what it held for the module
/// paths (a layer's library beats one found elsewhere), behind it for `PATH` and `LD_LIBRARY_PATH` (as on
/// Lambda, where `/opt/bin` and `/opt/lib` come after the system's).
pub fn merge_search_path(var: &str, ours: &[PathBuf], existing: Option<&str>) -> String {
    let ours = ours.iter().map(|p| p.display().to_string());
    let existing = existing.filter(|e| !e.is_empty()).map(str::to_string);
    let parts: Vec<String> = if matches!(var, "PATH" | "LD_LIBRARY_PATH") {
        existing.into_iter().chain(ours).collect()
    } else {
        ours.chain(existing).collect()
    };
    parts.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_name_version_or_layer_arns() {
        let r = LayerRef::parse("numpy:3").unwrap();
        assert_eq!((r.account.clone(), r.name.as_str(), r.version), (None, "numpy", 3));
        assert_eq!(r.to_string(), "numpy:3");
        let r = LayerRef::parse("arn:aws:lambda:us-east-1:123456789012:layer:pandas:12").unwrap();
        assert_eq!(r.account.unwrap().as_str(), "123456789012");
        assert_eq!((r.name.as_str(), r.version), ("pandas", 12));
        for bad in [
            "numpy",
            "numpy:",
            "numpy:0",
            "numpy:+1",
            "numpy:x",
            ":3",
            "a b:1",
            "arn:aws:lambda:us-east-1:123456789012:function:f:1",
            "arn:aws:lambda:us-east-1:12345:layer:p:1",
            "arn:aws:lambda:us-east-1:123456789012:layer:p",
        ] {
            let e = LayerRef::parse(bad).unwrap_err();
            assert_eq!(e.field, "layers", "{bad}");
            assert!(e.message.contains("name:version"), "{bad}: {}", e.message);
        }
        assert_eq!(
            layer_arn("us-east-1", &AccountId::from_number(7), &LayerName::parse("np").unwrap(), Some(2)),
            "arn:aws:lambda:us-east-1:000000000007:layer:np:2"
        );
    }

    #[test]
    fn publish_rules() {
        validate_publish("numpy 1.26", &["python3.12".into(), "python3.11".into()]).unwrap();
        assert_eq!(validate_publish(&"d".repeat(257), &[]).unwrap_err().field, "description");
        let e = validate_publish("", &["cobol".into()]).unwrap_err();
        assert_eq!(e.field, "compatible_runtimes");
        assert!(e.message.contains("cobol"), "{}", e.message);
        let many: Vec<String> = (0..16).map(|_| "python3.12".to_string()).collect();
        assert_eq!(validate_publish("", &many).unwrap_err().field, "compatible_runtimes");
    }

    #[test]
    fn search_paths_follow_lambdas_layout_first_root_first() {
        let opt = [PathBuf::from("/opt")];
        let py = search_paths(Runtime::Python { minor: 12 }, &opt);
        let get = |v: &[(&str, Vec<PathBuf>)], k: &str| v.iter().find(|(n, _)| *n == k).map(|(_, p)| p.clone());
        assert_eq!(
            get(&py, "PYTHONPATH").unwrap(),
            [PathBuf::from("/opt/python/lib/python3.12/site-packages"), PathBuf::from("/opt/python")]
        );
        assert_eq!(get(&py, "PATH").unwrap(), [PathBuf::from("/opt/bin")]);
        assert_eq!(get(&py, "LD_LIBRARY_PATH").unwrap(), [PathBuf::from("/opt/lib")]);
        let node = search_paths(Runtime::Node { major: Some(20) }, &opt);
        assert_eq!(
            get(&node, "NODE_PATH").unwrap(),
            [PathBuf::from("/opt/nodejs/node20/node_modules"), PathBuf::from("/opt/nodejs/node_modules")]
        );
        assert!(get(&search_paths(Runtime::Provided, &opt), "PYTHONPATH").is_none());
        // Unmerged layers: each layer's own directory, the winning one first.
        let two = [PathBuf::from("/l/b"), PathBuf::from("/l/a")];
        let py = search_paths(Runtime::Python { minor: 11 }, &two);
        assert_eq!(get(&py, "PYTHONPATH").unwrap()[1], PathBuf::from("/l/b/python"));
        assert_eq!(get(&py, "PYTHONPATH").unwrap()[3], PathBuf::from("/l/a/python"));
        assert_eq!(merge_search_path("PATH", &[PathBuf::from("/opt/bin")], Some("/usr/bin")), "/usr/bin:/opt/bin");
        assert_eq!(merge_search_path("PATH", &[PathBuf::from("/opt/bin")], None), "/opt/bin");
        let py = [PathBuf::from("/opt/python")];
        assert_eq!(merge_search_path("PYTHONPATH", &py, Some("/mine")), "/opt/python:/mine");
        assert_eq!(merge_search_path("PYTHONPATH", &py, Some("")), "/opt/python");
    }
}
