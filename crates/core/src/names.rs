//! Names of accounts, functions and aliases, and the rules they follow (Lambda's, so ARNs carry over).

use std::fmt;

use crate::validation::ValidationError;

/// A 12-digit account number, as in an AWS ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// Parses a 12-digit account number.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_string()))
        } else {
            Err(ValidationError::new(
                "account_id",
                format!("account id {s:?} is not valid: it must be exactly 12 digits"),
            ))
        }
    }

    /// Builds an account id from a number below 10^12 (used to turn random bits into an id).
    pub fn from_number(n: u64) -> Self {
        Self(format!("{:012}", n % 1_000_000_000_000))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `s` when it is a Lambda-style name of 1–`max` letters, digits, `-` and `_`; otherwise the error for the
/// `name` field, naming what kind of name (`what`) was refused.
fn lambda_name(what: &str, s: &str, max: usize) -> Result<String, ValidationError> {
    if !s.is_empty() && s.len() <= max && s.chars().all(is_name_char) {
        Ok(s.to_string())
    } else {
        Err(ValidationError::new(
            "name",
            format!("{what} name {s:?} is not valid: use 1-{max} letters, digits, '-' or '_'"),
        ))
    }
}

/// A function name: 1–64 characters of letters, digits, `-` and `_` (Lambda's rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionName(String);

impl FunctionName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        lambda_name("function", s, Self::MAX_LEN).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A layer name: 1–64 characters of letters, digits, `-` and `_` (Lambda's rule, so layer ARNs carry over).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerName(String);

impl LayerName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        lambda_name("layer", s, Self::MAX_LEN).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An alias name: 1–128 letters, digits, `-`, `_`, not all digits (that would read as a version).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AliasName(String);

impl AliasName {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = |why: &str| Err(ValidationError::new("alias", format!("alias name {s:?} is not valid: {why}")));
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.chars().all(is_name_char) {
            return err("use 1-128 letters, digits, '-' or '_'");
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return err("an all-digit name would be read as a version number; add a letter");
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Names travel as their plain strings and are checked again when read (a stored record with a name that
/// breaks the rules is refused, not trusted).
macro_rules! serde_as_checked_string {
    ($($name:ident),*) => {$(
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_checked_string!(AccountId, FunctionName, LayerName, AliasName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_serialize_as_strings_and_are_checked_when_read() {
        let name = FunctionName::parse("resize").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"resize\"");
        assert_eq!(serde_json::from_str::<FunctionName>("\"resize\"").unwrap(), name);
        assert!(serde_json::from_str::<FunctionName>("\"dot.name\"").is_err());
        assert!(serde_json::from_str::<AccountId>("\"12\"").is_err());
        assert_eq!(serde_json::from_str::<AliasName>("\"prod\"").unwrap().as_str(), "prod");
    }

    #[test]
    fn function_names_follow_lambda_rules() {
        assert!(FunctionName::parse("resize-image_2").is_ok());
        assert!(FunctionName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "has space", "dot.name", "colon:x", &"a".repeat(65), "é"] {
            let e = FunctionName::parse(bad).unwrap_err();
            assert_eq!(e.field, "name", "{bad}");
        }
    }

    #[test]
    fn layer_names_follow_lambda_rules() {
        assert_eq!(LayerName::parse("numpy_1-26").unwrap().as_str(), "numpy_1-26");
        for bad in ["", "a:b", "x y", &"l".repeat(65)] {
            assert!(LayerName::parse(bad).unwrap_err().message.contains("layer name"), "{bad}");
        }
    }

    #[test]
    fn alias_names_cannot_look_like_versions() {
        assert!(AliasName::parse("prod").is_ok());
        assert!(AliasName::parse("v2").is_ok());
        let e = AliasName::parse("12").unwrap_err();
        assert!(e.message.contains("version number"), "{}", e.message);
        assert!(AliasName::parse("$LATEST").is_err());
        assert!(AliasName::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert_eq!(AccountId::from_number(42).as_str(), "000000000042");
        assert_eq!(AccountId::from_number(123_456_789_012_345).as_str(), "456789012345");
        assert!(AccountId::parse("123456789012").is_ok());
        assert!(AccountId::parse("12345678901").is_err());
        assert!(AccountId::parse("12345678901a").is_err());
    }
}
