//! Function references as users write them: `name`, `name:qualifier`, partial and full Lambda ARNs.

use std::fmt;

use crate::names::{AccountId, AliasName, FunctionName};

/// Which version of a function a reference means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualifier {
    /// `$LATEST`: the editable version.
    Latest,
    /// A published, numbered version.
    Version(u64),
    Alias(AliasName),
}

impl Qualifier {
    pub fn parse(s: &str) -> Result<Self, RefError> {
        if s == "$LATEST" {
            return Ok(Self::Latest);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(Self::Version(n)),
                _ => Err(RefError(format!("version {s:?} is not valid: versions are numbered from 1"))),
            };
        }
        AliasName::parse(s)
            .map(Self::Alias)
            .map_err(|_| RefError(format!(
                "qualifier {s:?} is not valid: use $LATEST, a version number, or an alias name (letters, digits, '-', '_')"
            )))
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("$LATEST"),
            Self::Version(n) => write!(f, "{n}"),
            Self::Alias(a) => write!(f, "{a}"),
        }
    }
}

/// A parsed reference to a function, optionally qualified, optionally naming its account (ARNs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    /// The account an ARN names; the caller's account when absent.
    pub account: Option<AccountId>,
    pub name: FunctionName,
    pub qualifier: Option<Qualifier>,
}

/// A reference that cannot be parsed; the message says what form is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefError(pub String);

/// Lambda's limit on `FunctionName` in a path, ARN included.
pub const MAX_REF_LEN: usize = 256;

impl FunctionRef {
    /// Parses `name`, `name:qualifier`, `account:function:name[:qualifier]`, or
    /// `arn:aws:lambda:region:account:function:name[:qualifier]`.
    pub fn parse(s: &str) -> Result<Self, RefError> {
        if s.len() > MAX_REF_LEN {
            return Err(RefError(format!(
                "function reference is {} characters long; the limit is {MAX_REF_LEN}",
                s.len()
            )));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let (account, name, qualifier) = match parts.as_slice() {
            [name] => (None, *name, None),
            [name, q] => (None, *name, Some(*q)),
            [acct, "function", name] => (Some(*acct), *name, None),
            [acct, "function", name, q] => (Some(*acct), *name, Some(*q)),
            ["arn", partition, "lambda", _region, acct, "function", name, rest @ ..]
                if partition.starts_with("aws") && rest.len() <= 1 =>
            {
                (Some(*acct), *name, rest.first().copied())
            }
            _ => {
                return Err(RefError(format!(
                    "function reference {s:?} is not valid: use name, name:version, name:alias, or \
                     arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]"
                )))
            }
        };
        let account = account.map(|a| AccountId::parse(a).map_err(|e| RefError(e.message))).transpose()?;
        let name = FunctionName::parse(name).map_err(|e| RefError(e.message))?;
        let qualifier = qualifier.map(Qualifier::parse).transpose()?;
        Ok(Self { account, name, qualifier })
    }
}

/// The ARN of a function (qualified when `qualifier` is given), as Lambda formats it.
pub fn function_arn(region: &str, account: &AccountId, name: &FunctionName, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("arn:aws:lambda:{region}:{account}:function:{name}:{q}"),
        None => format!("arn:aws:lambda:{region}:{account}:function:{name}"),
    }
}

/// The ARN of a state machine (a workflow), as Step Functions formats it.
pub fn state_machine_arn(region: &str, account: &AccountId, name: &str) -> String {
    format!("arn:aws:states:{region}:{account}:stateMachine:{name}")
}

/// The account and name a state machine ARN (`arn:<partition>:states:<region>:<account>:stateMachine:<name>`)
/// names, unchecked; `None` for anything else.
pub fn parse_state_machine_arn(arn: &str) -> Option<(&str, &str)> {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "states", _, account, "stateMachine", name] => Some((account, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FunctionRef {
        FunctionRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn plain_and_qualified_names() {
        let r = parse("thumb");
        assert_eq!((r.name.as_str(), r.qualifier, r.account), ("thumb", None, None));
        assert_eq!(parse("thumb:$LATEST").qualifier, Some(Qualifier::Latest));
        assert_eq!(parse("thumb:7").qualifier, Some(Qualifier::Version(7)));
        assert_eq!(parse("thumb:prod").qualifier, Some(Qualifier::Alias(AliasName::parse("prod").unwrap())));
    }

    #[test]
    fn arns_full_and_partial() {
        let r = parse("arn:aws:lambda:us-east-1:123456789012:function:thumb:prod");
        assert_eq!(r.account.unwrap().as_str(), "123456789012");
        assert_eq!(r.name.as_str(), "thumb");
        assert_eq!(r.qualifier.unwrap().to_string(), "prod");
        let r = parse("123456789012:function:thumb");
        assert_eq!(r.account.unwrap().as_str(), "123456789012");
        assert!(parse("arn:aws-cn:lambda:cn-north-1:123456789012:function:f").qualifier.is_none());
    }

    #[test]
    fn state_machine_arns_round_trip() {
        let acct = AccountId::parse("123456789012").unwrap();
        let arn = state_machine_arn("us-east-1", &acct, "orders");
        assert_eq!(parse_state_machine_arn(&arn), Some(("123456789012", "orders")));
        assert_eq!(parse_state_machine_arn("arn:aws:states:us-east-1:123456789012:execution:orders:e"), None);
        assert_eq!(parse_state_machine_arn("orders"), None);
    }

    #[test]
    fn arns_round_trip() {
        let acct = AccountId::parse("123456789012").unwrap();
        let name = FunctionName::parse("f").unwrap();
        let arn = function_arn("us-east-1", &acct, &name, Some("3"));
        let r = parse(&arn);
        assert_eq!((r.account, r.name, r.qualifier), (Some(acct), name, Some(Qualifier::Version(3))));
    }

    #[test]
    fn bad_references_say_what_is_expected() {
        for bad in [
            "",
            "a:b:c",
            "f:0",
            "f:has space",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:us-east-1:12345:function:f",
            "arn:aws:lambda:us-east-1:123456789012:function:f:1:2",
            "bad name",
        ] {
            assert!(FunctionRef::parse(bad).is_err(), "{bad}");
        }
        let e = FunctionRef::parse(&"a".repeat(300)).unwrap_err();
        assert!(e.0.contains("256"), "{e}");
        let e = FunctionRef::parse("a:b:c").unwrap_err();
        assert!(e.0.contains("name:alias"), "{e}");
    }
}
